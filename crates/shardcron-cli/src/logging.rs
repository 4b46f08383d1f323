//! Log setup: `tracing` to stderr, filtered by `RUST_LOG`.
//!
//! Logs go to stderr and command output to stdout so that `shardcron job get x
//! | jq` and friends never see a log line. A long-running worker defaults to
//! `info` (its log is the operator's view of membership and leases), one-shot
//! commands to `warn` (a script wants their output, not their chatter). JSON
//! lines are for log shippers: each carries the event's fields at the top
//! level and, under `spans`, every span it was logged in, outermost first,
//! with its fields (the `worker` span's `node`, the `fire` span's `job`,
//! `fire`, `shard`, `token`, `delivery`), so a handler's lines say which
//! fire they belong to, as the text format's prefix does.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Default filter of the worker.
pub const WORKER_DEFAULT_FILTER: &str = "info";

/// Default filter of one-shot commands and the demo.
pub const ONE_SHOT_DEFAULT_FILTER: &str = "warn";

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is
/// unset; an invalid `RUST_LOG` falls back to it with a warning. Does nothing
/// if a subscriber is already installed (tests call this more than once).
pub fn init(format: LogFormat, default_filter: &str) {
    let (filter, bad_env) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(default_filter),
                Some(format!("{value:?}: {e}")),
            ),
        },
        _ => (EnvFilter::new(default_filter), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init()
            .is_ok(),
    };
    if let (true, Some(bad)) = (installed, bad_env) {
        tracing::warn!("ignoring invalid RUST_LOG {bad}; using {default_filter:?}");
    }
}
