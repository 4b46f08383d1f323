//! `shardcron-bench`: see the library docs. This file only parses arguments
//! and maps errors to exit codes: 0 ok, 1 the run failed (or `live` saw a
//! duplicate or missed fire), 2 invalid arguments, 3 (`peer`) a
//! prerequisite is missing.

use std::process::ExitCode;

use clap::Parser;
use shardcron_bench::cli::{Cli, Command};
use shardcron_bench::{live, peer, sim_cmd, BenchError};

/// The allocator the `shardcron` daemon also uses: a burst of fires
/// allocates on every runtime thread at once, where glibc's malloc spent a
/// sixth of the workers' CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
