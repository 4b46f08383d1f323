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
//!
//! Even so, a task per run was a third of what a node spent at the top of
//! a busy second (a task's cell, its place on the runtime's owned list, a
//! schedule, a completion; docs/BENCHMARKS.md §4z). Runs released together
//! are therefore spawned as *groups* ([`RunSet::spawn_group`]): one task per
//! up to [`GROUP`] runs polls each run once, in order, and keeps driving
//! the ones that did not end on that first poll. Each run still has its own
//! drop guard, so each end is reported as soon as that run ends, however
//! long its group's other runs take; aborting a group aborts its runs, and
//! each is reported. The price is that a run's first poll waits for the
//! first polls of the runs before it in its group, on one thread: a
//! handler that blocks its thread before its first await holds back at most
//! `GROUP - 1` others of its release, as it would hold back the fires
//! queued behind it on that thread with a task each. A group is spawned as
//! soon as it is full, so the first runs of a release start while the
//! release goes on. Small releases (below [`GROUP_FROM`] runs) keep a task
//! per run, so a handful of fires due together still start on every
//! runtime thread at once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, StreamExt};
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

/// A run's future, boxed so that the runs of a group can be held together.
pub type BoxedRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Most runs one task of a group drives ([`RunSet::spawn_group`]).
pub const GROUP: usize = 32;

/// Fewest fires a release must hold for its runs to be grouped: below,
/// a task per run.
pub const GROUP_FROM: usize = 64;

/// The task a slot stands for, and how many of its runs have not ended.
struct Slot {
    abort: AbortHandle,
    left: usize,
}

/// A run of a group: its future, and the guard that reports its end when
/// either is dropped (it ended, panicked, or its group was aborted).
struct GroupRun<T> {
    run: BoxedRun,
    /// Reports the end when the run is dropped.
    _end: EndGuard<T>,
}

// The report is never pinned: it only moves into the end channel.
impl<T> Unpin for GroupRun<T> {}

impl<T> Future for GroupRun<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A panic outside the handler ends this run (reported by its guard
        // when dropped), not its group's other runs.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| self.run.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => Poll::Ready(()),
            Err(_) => {
                warn!("run task failed outside the handler");
                Poll::Ready(())
            }
        }
    }
}

/// One task's runs: polled once each in order, then driven together.
struct Group<T> {
    fresh: std::vec::IntoIter<GroupRun<T>>,
    waiting: FuturesUnordered<GroupRun<T>>,
}

impl<T> Unpin for Group<T> {}

impl<T> Future for Group<T> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        for mut run in this.fresh.by_ref() {
            // Unpin (the run is boxed): polled here, moved on if pending;
            // its next poll, by `waiting`, registers that waker instead.
            if Pin::new(&mut run).poll(cx).is_pending() {
                this.waiting.push(run);
            }
        }
        while let Poll::Ready(Some(())) = this.waiting.poll_next_unpin(cx) {}
        if this.waiting.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Run tasks spawned and not yet reaped.
pub struct RunSet<T> {
    /// The task of each slot; `None` marks a free slot.
    slots: Vec<Option<Slot>>,
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

    /// Runs spawned and not reaped yet (ended ones included until reaped).
    pub fn len(&self) -> usize {
        self.in_flight
    }

    /// Whether no run is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight == 0
    }

    /// Spawns `task` on the current runtime; `report` is reaped by
    /// [`RunSet::try_reap`] or [`RunSet::reap`] once the task has ended,
    /// however it ended (completed, panicked, aborted).
    pub fn spawn(&mut self, report: T, task: impl Future<Output = ()> + Send + 'static) {
        let slot = self.free_slot();
        let guard = self.guard(slot, report);
        let handle = tokio::spawn(async move {
            task.await;
            drop(guard);
        });
        self.fill(slot, handle.abort_handle(), 1);
    }

    /// Spawns `runs` (at most [`GROUP`] of a release of at least
    /// [`GROUP_FROM`]) as one task that polls each once, in order, then
    /// drives the ones still running together. Each run's report is reaped
    /// as soon as that run ends, as with [`RunSet::spawn`].
    pub fn spawn_group(&mut self, runs: Vec<(T, BoxedRun)>) {
        if runs.is_empty() {
            return;
        }
        let slot = self.free_slot();
        let group: Vec<GroupRun<T>> = runs
            .into_iter()
            .map(|(report, run)| GroupRun {
                run,
                _end: self.guard(slot, report),
            })
            .collect();
        let left = group.len();
        let handle = tokio::spawn(Group {
            fresh: group.into_iter(),
            waiting: FuturesUnordered::new(),
        });
        self.fill(slot, handle.abort_handle(), left);
    }

    fn free_slot(&mut self) -> usize {
        self.free.pop().unwrap_or(self.slots.len())
    }

    fn guard(&self, slot: usize, report: T) -> EndGuard<T> {
        EndGuard {
            slot,
            report: Some(report),
            ends: self.ends_tx.clone(),
            woken: self.woken.clone(),
        }
    }

    fn fill(&mut self, slot: usize, abort: AbortHandle, left: usize) {
        let filled = Some(Slot { abort, left });
        if slot == self.slots.len() {
            self.slots.push(filled);
        } else {
            self.slots[slot] = filled;
        }
        self.in_flight += left;
    }

    /// Takes one ended task's report without waiting (`None` when no task
    /// has ended since the last reap).
    pub fn try_reap(&mut self) -> Option<T> {
        let ended = self.ends_rx.try_recv().ok()?;
        if let Some(entry) = self.slots.get_mut(ended.slot) {
            if let Some(slot) = entry {
                slot.left -= 1;
                self.in_flight -= 1;
                if slot.left == 0 {
                    *entry = None;
                    self.free.push(ended.slot);
                }
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

    /// Aborts every run in flight; returns how many. Their ends are still
    /// reported and reaped as usual.
    pub fn abort_all(&mut self) -> usize {
        for slot in self.slots.iter().flatten() {
            slot.abort.abort();
        }
        self.in_flight
    }
}

impl<T> Drop for RunSet<T> {
    fn drop(&mut self) {
        for slot in self.slots.iter().flatten() {
            slot.abort.abort();
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

    /// Spawns runs `0..n` made by `run` in groups of [`GROUP`], as a
    /// release does.
    fn spawn_grouped(set: &mut RunSet<u32>, n: u32, run: impl Fn(u32) -> BoxedRun) {
        let runs: Vec<(u32, BoxedRun)> = (0..n).map(|i| (i, run(i))).collect();
        let mut runs = runs.into_iter().peekable();
        while runs.peek().is_some() {
            set.spawn_group(runs.by_ref().take(GROUP).collect());
        }
    }

    #[tokio::test]
    async fn grouped_runs_are_reaped_once_each_and_free_their_slots() {
        let mut set = RunSet::new();
        let n = (GROUP_FROM + GROUP + 3) as u32;
        spawn_grouped(&mut set, n, |_| Box::pin(async {}));
        assert_eq!(set.len(), n as usize);
        assert_eq!(
            set.slots.len(),
            (n as usize).div_ceil(GROUP),
            "a task per group"
        );
        let mut seen = Vec::new();
        while !set.is_empty() {
            seen.push(set.reap().await);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(set.slots.iter().all(Option::is_none), "every slot freed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_does_not_hold_back_the_ends_of_its_group() {
        let mut set = RunSet::new();
        let n = GROUP_FROM as u32;
        spawn_grouped(&mut set, n, |i| {
            Box::pin(async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            })
        });
        let mut seen = Vec::new();
        for _ in 1..n {
            seen.push(set.reap().await);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..n).collect::<Vec<_>>(),
            "all but the sleeper ended"
        );
        assert_eq!(set.len(), 1);
        assert_eq!(set.abort_all(), 1);
        assert_eq!(set.reap().await, 0, "the aborted run is reported");
        assert!(set.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_run_ends_alone_and_an_aborted_group_reports_each_run() {
        let mut set = RunSet::new();
        let n = GROUP_FROM as u32;
        spawn_grouped(&mut set, n, |i| {
            Box::pin(async move {
                if i == 1 && std::hint::black_box(true) {
                    panic!("boom");
                }
                if i >= 2 {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            })
        });
        let mut first = vec![set.reap().await, set.reap().await];
        first.sort_unstable();
        assert_eq!(
            first,
            [0, 1],
            "the panicking run ends, its neighbours run on"
        );
        tokio::task::yield_now().await;
        assert!(set.try_reap().is_none(), "the group's other runs still run");
        assert_eq!(set.len(), n as usize - 2);
        assert_eq!(set.abort_all(), n as usize - 2);
        let mut rest = Vec::new();
        while !set.is_empty() {
            rest.push(set.reap().await);
        }
        rest.sort_unstable();
        assert_eq!(rest, (2..n).collect::<Vec<_>>());
    }
}
