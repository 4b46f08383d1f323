//! The run tasks of a node in flight, and the ends of those that finished.
//!
//! At the top of a busy second a node spawns thousands of run tasks at once
//! and every one of them ends within microseconds, so what a spawn and an end
//! cost is paid thousands of times while later fires of the same second wait
//! to start. A `JoinSet` keeps each task on lists behind one lock that every
//! ending task takes to move itself to the "notified" list, and the node loop
//! takes again to pop it: a lock shared by both runtime threads, taken
//! twice per fire. Here an ending task sends what it reports on a lock-free
//! channel (from a drop guard, so a task that panics or is aborted is
//! reported too: what it reports is given at spawn) and the node reaps the
//! channel; the only per-task state the node keeps is the handle that can
//! abort it, in a slab.

use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::warn;

/// What a run task reports when it ends, and which slot it held.
struct Ended<T> {
    slot: usize,
    report: T,
}

/// Reports the end of a run task when dropped: after its future completed,
/// or when it panicked or was aborted.
struct EndGuard<T> {
    slot: usize,
    report: Option<T>,
    ends: mpsc::Sender<Ended<T>>,
    woken: Arc<Notify>,
}

impl<T> Drop for EndGuard<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            warn!("run task failed outside the handler");
        }
        if let Some(report) = self.report.take() {
            // The receiver lives as long as the set; a send can only fail
            // after the set is gone, when nobody waits for the end any more.
            let _ = self.ends.send(Ended {
                slot: self.slot,
                report,
            });
        }
        self.woken.notify_one();
    }
}

/// Run tasks spawned and not yet reaped.
pub struct RunSet<T> {
    /// Abort handles by slot; `None` marks a free slot.
    slots: Vec<Option<AbortHandle>>,
    free: Vec<usize>,
    in_flight: usize,
    ends_tx: mpsc::Sender<Ended<T>>,
    ends_rx: mpsc::Receiver<Ended<T>>,
    woken: Arc<Notify>,
}

impl<T: Send + 'static> Default for RunSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> RunSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        let (ends_tx, ends_rx) = mpsc::channel();
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            ends_tx,
            ends_rx,
            woken: Arc::new(Notify::new()),
        }
    }

    /// Tasks spawned and not reaped yet (ended ones included until reaped).
    pub fn len(&self) -> usize {
        self.in_flight
    }

    /// Whether no task is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight == 0
    }

    /// Spawns `task` on the current runtime; `report` is reaped by
    /// [`RunSet::try_reap`] or [`RunSet::reap`] once the task has ended,
    /// however it ended (completed, panicked, aborted).
    pub fn spawn(&mut self, report: T, task: impl Future<Output = ()> + Send + 'static) {
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let guard = EndGuard {
            slot,
            report: Some(report),
            ends: self.ends_tx.clone(),
            woken: self.woken.clone(),
        };
        let handle = tokio::spawn(async move {
            task.await;
            drop(guard);
        });
        let abort = handle.abort_handle();
        if slot == self.slots.len() {
            self.slots.push(Some(abort));
        } else {
            self.slots[slot] = Some(abort);
        }
        self.in_flight += 1;
    }

    /// Takes one ended task's report without waiting (`None` when no task
    /// has ended since the last reap).
    pub fn try_reap(&mut self) -> Option<T> {
        let ended = self.ends_rx.try_recv().ok()?;
        if let Some(slot) = self.slots.get_mut(ended.slot) {
            if slot.take().is_some() {
                self.free.push(ended.slot);
                self.in_flight -= 1;
            }
        }
        Some(ended.report)
    }

    /// Waits for the next task to end and takes its report (pending
    /// forever when none is in flight). Cancel-safe: an end is taken only
    /// in the poll that returns it.
    pub async fn reap(&mut self) -> T {
        loop {
            if let Some(report) = self.try_reap() {
                return report;
            }
            if self.in_flight == 0 {
                std::future::pending::<()>().await;
            }
            // A task that ends between the check above and this wait leaves
            // a permit, so its end is not missed.
            self.woken.notified().await;
        }
    }

    /// Aborts every task in flight; returns how many. Their ends are still
    /// reported and reaped as usual.
    pub fn abort_all(&mut self) -> usize {
        for abort in self.slots.iter().flatten() {
            abort.abort();
        }
        self.in_flight
    }
}

impl<T> Drop for RunSet<T> {
    fn drop(&mut self) {
        for abort in self.slots.iter().flatten() {
            abort.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_end_is_reaped_once_and_slots_are_reused() {
        let mut set = RunSet::new();
        for i in 0..100u32 {
            set.spawn(i, async {});
        }
        assert_eq!(set.len(), 100);
        let mut seen = Vec::new();
        while !set.is_empty() {
            seen.push(set.reap().await);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        set.spawn(7, async {});
        assert_eq!(set.slots.len(), 100, "a freed slot is taken again");
        assert_eq!(set.reap().await, 7);
        assert!(set.try_reap().is_none());
    }

    #[tokio::test]
    async fn an_aborted_or_panicking_task_is_still_reaped() {
        let mut set = RunSet::new();
        set.spawn("sleeps", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        set.spawn("panics", async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
        });
        assert_eq!(set.reap().await, "panics", "it ends first");
        assert_eq!(set.len(), 1);
        assert_eq!(set.abort_all(), 1);
        assert_eq!(set.reap().await, "sleeps");
        assert!(set.is_empty());
    }
}
