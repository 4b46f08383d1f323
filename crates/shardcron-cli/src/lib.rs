//! The `shardcron` daemon and command-line interface.
//!
//! The binary is thin: `src/main.rs` of the root package calls [`main`].
//! Everything lives in this library so the pieces can be tested without
//! spawning processes (file parsing, exit-code mapping, the demo) and reused
//! (the [`status_report`] is also what the HTTP API serves).
//!
//! Modules:
//! * [`args`]: the command-line syntax (clap).
//! * [`exit`]: exit codes and the error type every command returns.
//! * [`logging`]: `tracing` to stderr, `RUST_LOG`, text or JSON.
//! * [`config`]: the worker's TOML config file.
//! * [`jobs_input`]: job definitions from flags, job files and the config.
//! * [`connect`]: connecting one-shot commands to Redis.
//! * [`output`]: stdout, tables and time formats.
//! * [`status_report`]: the fleet status, for `status` and the API.
//! * [`admin_http`]: `/metrics`, `/healthz`, `/readyz` of a worker.
//! * [`observe`]: the worker's log subscriber and recorder in one call,
//!   for workers run outside the daemon.
//! * [`api`]: the authenticated `/v1` admin API on the same address.
//! * [`signals`]: graceful shutdown on SIGTERM/SIGINT.
//! * [`cmd`]: the subcommands.

#![warn(missing_docs)]

pub mod admin_http;
pub mod api;
pub mod args;
pub mod cmd;
pub mod config;
pub mod connect;
pub mod exit;
pub mod jobs_input;
pub mod logging;
pub mod observe;
pub mod output;
pub mod signals;
pub mod status_report;

use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

pub use exit::{CliError, ExitKind, EXIT_CODES};
pub use status_report::{collect, StatusReport};

use args::{Cli, Command};
use connect::Target;

/// Entry point of the `shardcron` binary.
pub fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(ExitKind::Usage.code()));
        }
    };
    let from_command_line = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let redis_explicit = from_command_line("redis") || from_command_line("store");
    let namespace_explicit = from_command_line("namespace");
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitKind::Usage.exit_code();
        }
    };
    let default_filter = match cli.command {
        Command::Worker(_) => logging::WORKER_DEFAULT_FILTER,
        _ => logging::ONE_SHOT_DEFAULT_FILTER,
    };
    logging::init(cli.log_format, default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitKind::Failure.exit_code();
        }
    };
    let result = runtime.block_on(run(cli, redis_explicit, namespace_explicit));
    // Background tasks (pub/sub listeners, the admin server) must not delay exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Runs a parsed command line. `redis_explicit` / `namespace_explicit` tell
/// whether those flags were given on the command line (the demo only uses
/// Redis then).
pub async fn run(cli: Cli, redis_explicit: bool, namespace_explicit: bool) -> Result<(), CliError> {
    if cli.namespace.is_empty() || cli.namespace.contains(['{', '}']) {
        return Err(CliError::config(format!(
            "invalid namespace {:?}: it must be non-empty and without braces (they are Redis hash tags)",
            cli.namespace
        )));
    }
    let target = Target {
        url: cli.store.unwrap_or(cli.redis),
        namespace: cli.namespace,
    };
    // An unknown scheme is a configuration error, found before anything
    // starts (exit 3, naming the supported schemes).
    shardcron_store::store_kind(&target.url)?;
    match cli.command {
        Command::Worker(args) => cmd::worker::run(&target, args).await,
        Command::Job(command) => cmd::job::run(&target, command).await,
        Command::Status(args) => cmd::status::run(&target, args).await,
        Command::Runs(args) => cmd::runs::run(&target, args).await,
        Command::Demo(args) => {
            cmd::demo::run_cli(&target, redis_explicit, namespace_explicit, args).await
        }
    }
}
