//! Starts the same private PostgreSQL server `live --store postgres` runs
//! on (test-kit cluster in a temporary directory, free loopback port,
//! `pg_stat_statements` and `track_functions=all`), prints its URL and
//! keeps it running until standard input closes; the server and its
//! directory are removed then. For baseline tools such as `pgbench`:
//!
//! ```text
//! cargo run --release -p shardcron-bench --example private_postgres
//! pgbench -h 127.0.0.1 -p <port> -U postgres -i -s 10 postgres
//! ```

use std::io::Read;
use std::process::ExitCode;

use shardcron_bench::live::pg::PgStore;

fn main() -> ExitCode {
    let store = match PgStore::start() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("private_postgres: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", store.url());
    println!("PostgreSQL {}", store.version);
    eprintln!("running; close standard input (Ctrl-D) to stop");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(store);
    ExitCode::SUCCESS
}
