//! Starts the same private etcd `live --store etcd` runs on (test-kit
//! member in a temporary directory, free loopback ports, raft timing
//! shortened), prints its store URL and keeps it running until standard
//! input closes; the server and its directory are removed then. For
//! baseline tools such as `etcdctl check perf` or `benchmark`:
//!
//! ```text
//! cargo run --release -p shardcron-bench --example private_etcd
//! ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:<port> check perf
//! ```

use std::io::Read;
use std::process::ExitCode;

use shardcron_bench::live::etcd::EtcdStore;

fn main() -> ExitCode {
    let store = match EtcdStore::start(None) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("private_etcd: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", store.url());
    println!("etcd {}", store.version);
    eprintln!("running; close standard input (Ctrl-D) to stop");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(store);
    ExitCode::SUCCESS
}
