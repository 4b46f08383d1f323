//! SIGTERM/SIGINT handling.
//!
//! The first signal starts a graceful shutdown (the worker stops firing,
//! deregisters, releases its leases so peers take over at once, and drains
//! in-flight runs up to its drain timeout). A second signal means the
//! operator does not want to wait: the process exits at once, and the leases
//! it still holds expire on their own.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::exit::{CliError, ExitKind};

/// Installs the handlers; the token is cancelled on the first signal.
pub fn shutdown_on_signals() -> Result<CancellationToken, CliError> {
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::failure(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::failure(format!("cannot install the SIGINT handler: {e}")))?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down gracefully (signal again to exit at once)"
        );
        cancel.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(
            signal = name,
            "second signal: exiting without finishing the drain"
        );
        std::process::exit(i32::from(ExitKind::Failure.code()));
    });
    Ok(token)
}
