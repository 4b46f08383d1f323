//! Writes run records to the history in batches, off the scheduling path,
//! with the terminal-state writes of `at_least_once` fires in the same
//! round trip.
//!
//! History is best effort: a store outage must not block firing, so records
//! are buffered (bounded) and written by their own task; when the buffer is
//! full the oldest records are dropped and counted. The open-entry changes
//! of tracked fires (close on a terminal state, abandon when given up) are
//! never dropped: a lost close would leave a finished fire open, to be run
//! again when its node dies. They are few (at most the fires that were in
//! flight), since nothing is claimed while the store is unreachable.
//!
//! A node must not release a shard while a close of that shard is still
//! unwritten: a successor reading the shard's open entries after a graceful
//! leave would otherwise find a finished fire open, its holder gone, and
//! run it again. [`UnwrittenCloses`] counts them per shard for the release
//! rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardcron_coord::{CloseFire, Coordinator, RunRecord};
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// Most records buffered while the store is unreachable.
const MAX_BUFFERED: usize = 10_000;

/// What the recorder writes when a fire ends (or is given up): its run
/// record and, for a tracked (`at_least_once`) fire, the change to its open
/// entry.
#[derive(Clone, Debug)]
pub struct FireEnd {
    /// The run record for the history.
    pub record: RunRecord,
    /// Close (terminal state) or abandon (given up) the fire's open entry.
    pub open_entry: Option<CloseFire>,
}

/// Per shard, the open-entry changes sent to the recorder and not yet
/// written.
#[derive(Debug, Default)]
pub struct UnwrittenCloses {
    by_shard: Mutex<HashMap<u32, usize>>,
    written: Notify,
}

impl UnwrittenCloses {
    /// Counts one more change of `shard` to write.
    pub fn add(&self, shard: u32) {
        let mut map = self.by_shard.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(shard).or_default() += 1;
    }

    fn written(&self, closes: &[CloseFire]) {
        let mut map = self.by_shard.lock().unwrap_or_else(PoisonError::into_inner);
        for close in closes {
            if let Some(n) = map.get_mut(&close.shard) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&close.shard);
                }
            }
        }
        drop(map);
        if !closes.is_empty() {
            self.written.notify_waiters();
        }
    }

    /// Resolves after a write of open-entry changes lands (a shard waiting
    /// for its closes may be released then).
    pub async fn written_changed(&self) {
        self.written.notified().await;
    }

    /// Whether a change of `shard` is still to be written.
    pub fn pending(&self, shard: u32) -> bool {
        self.by_shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&shard)
    }
}

fn take(end: FireEnd, records: &mut Vec<RunRecord>, closes: &mut Vec<CloseFire>) {
    records.push(end.record);
    closes.extend(end.open_entry);
}

/// Spawns the recorder; it ends after the sender side is dropped and the
/// buffer is flushed (or one last attempt failed).
pub fn spawn_recorder(
    coordinator: Arc<dyn Coordinator>,
    unwritten: Arc<UnwrittenCloses>,
    mut rx: mpsc::UnboundedReceiver<FireEnd>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut records: Vec<RunRecord> = Vec::new();
        let mut closes: Vec<CloseFire> = Vec::new();
        let mut failing = false;
        loop {
            let open = if records.is_empty() && closes.is_empty() {
                match rx.recv().await {
                    Some(end) => {
                        take(end, &mut records, &mut closes);
                        true
                    }
                    None => false,
                }
            } else {
                true
            };
            while let Ok(end) = rx.try_recv() {
                take(end, &mut records, &mut closes);
            }
            if records.len() > MAX_BUFFERED {
                let excess = records.len() - MAX_BUFFERED;
                records.drain(..excess);
                warn!(
                    dropped = excess,
                    "run history buffer full; oldest records dropped"
                );
            }
            if records.is_empty() && closes.is_empty() && !open {
                return;
            }
            match coordinator.record_and_close(&records, &closes).await {
                Ok(()) => {
                    unwritten.written(&closes);
                    records.clear();
                    closes.clear();
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
