//! `shardcron-bench`: see the library docs. This file only parses arguments
//! and maps errors to exit codes: 0 ok, 1 the run failed (or `live` saw a
//! duplicate or missed fire), 2 invalid arguments, 3 (`peer`) a
//! prerequisite is missing.

use std::process::ExitCode;

use clap::Parser;
use shardcron_bench::cli::{Cli, Command};
use shardcron_bench::{live, peer, sim_cmd, BenchError};

fn main() -> ExitCode {
    // The daemon's allocator, tuned as the daemon tunes it.
    shardcron_alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => match sim_cmd::run(&args) {
            Ok(_) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("shardcron-bench sim: {error}");
                match error {
                    BenchError::InvalidArgs(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                }
            }
        },
        Command::Live(args) => live::run(&args),
        Command::Peer(args) => peer::run(&args),
    }
}
