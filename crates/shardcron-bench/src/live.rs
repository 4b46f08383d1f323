//! `live`: a fleet benchmark against a real Redis — not implemented yet.
//!
//! The simulation answers *where* work goes; `live` is meant to answer *what
//! it costs*: fires per second, lateness, Redis commands and CPU per fire,
//! with in-process workers on a private `redis-server`. Until then the
//! subcommand exists (so scripts can name it) and fails with exit code 2.

use std::process::ExitCode;

use crate::cli::LiveArgs;

/// Exit code of a subcommand that is not implemented.
pub const NOT_IMPLEMENTED: u8 = 2;

/// Prints "not yet implemented" and returns exit code 2.
pub fn run(_args: &LiveArgs) -> ExitCode {
    eprintln!("shardcron-bench live: not yet implemented");
    ExitCode::from(NOT_IMPLEMENTED)
}
