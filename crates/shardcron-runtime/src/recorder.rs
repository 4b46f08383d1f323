//! Writes run records to the history in batches, off the scheduling path.
//!
//! History is best effort: a Redis outage must not block firing, so records
//! are buffered (bounded) and written by their own task; when the buffer is
//! full the oldest records are dropped and counted.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{Coordinator, RunRecord};
use tokio::sync::mpsc;
use tracing::warn;

/// Most records buffered while the store is unreachable.
const MAX_BUFFERED: usize = 10_000;

/// Spawns the recorder; it ends after the sender side is dropped and the
/// buffer is flushed (or one last attempt failed).
pub fn spawn_recorder(
    coordinator: Arc<dyn Coordinator>,
    mut rx: mpsc::UnboundedReceiver<RunRecord>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer: Vec<RunRecord> = Vec::new();
        let mut failing = false;
        loop {
            let open = if buffer.is_empty() {
                match rx.recv().await {
                    Some(r) => {
                        buffer.push(r);
                        true
                    }
                    None => false,
                }
            } else {
                true
            };
            while let Ok(r) = rx.try_recv() {
                buffer.push(r);
            }
            if buffer.len() > MAX_BUFFERED {
                let excess = buffer.len() - MAX_BUFFERED;
                buffer.drain(..excess);
                warn!(
                    dropped = excess,
                    "run history buffer full; oldest records dropped"
                );
            }
            if buffer.is_empty() && !open {
                return;
            }
            match coordinator.record_runs(&buffer).await {
                Ok(()) => {
                    buffer.clear();
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cannot write run history; will retry");
                    }
                    failing = true;
                    if rx.is_closed() && rx.is_empty() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if !open {
                return;
            }
        }
    })
}
