//! Writes run records to the history in batches, off the scheduling path,
//! with the terminal-state writes of `at_least_once` fires in the same
//! round trip.
//!
//! History is best effort only against an outage: a store outage must not
//! block firing, so records are buffered (bounded) and written by their own
//! task; when the buffer is full while writes fail, the oldest records are
//! dropped and counted. While the store answers nothing is dropped: a burst
//! of ends larger than one write (`WRITE_AT_ONCE`) is written in writes of
//! that size back to back from the timer on, the rest waiting in the
//! channel meanwhile (a
//! 100,000-fire burst on four nodes used to lose all but each node's newest
//! 10,000 records, bounded as if the store were down). The open-entry changes
//! of tracked fires (close on a terminal state, abandon when given up) are
//! never dropped: a lost close would leave a finished fire open, to be run
//! again when its node dies. They are few (at most the fires that were in
//! flight), since nothing is claimed while the store is unreachable.
//!
//! Records are written on a timer, not as they come: the first record
//! buffered is written [`FLUSH_INTERVAL`] later together with every record
//! that arrived meanwhile. Fires end staggered (handlers take different
//! times), so writing whenever anything is buffered costs about one round
//! trip, and the store's per-write commands, per run; on the timer a node
//! writes its history a few times a second whatever its fire rate. When the
//! sender side is dropped (shutdown) what is left is written at once.
//!
//! A node must not release a shard while a close of that shard is still
//! unwritten: a successor reading the shard's open entries after a graceful
//! leave would otherwise find a finished fire open, its holder gone, and
//! run it again. [`UnwrittenCloses`] counts them per shard for the release
//! rule. Open-entry changes therefore do not wait the flush interval: they
//! are written within [`CLOSE_FLUSH_DELAY`], and at once when a release
//! asks for them ([`UnwrittenCloses::pending`]), so a handoff never waits
//! for the timer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardcron_coord::{CloseFire, CoordResult, Coordinator, RunRecord, StartedFire};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::warn;

/// Most records buffered while the store is unreachable.
const MAX_BUFFERED: usize = 10_000;

/// Records a write carries at most; a buffer holding this many takes no
/// more ends until it is written (the rest wait in the channel).
const WRITE_AT_ONCE: usize = 5_000;

/// Longest a run record waits in the buffer before it is written. The
/// write's cost is a few commands whatever it carries, so a node's history
/// costs about four writes a second however many fires end; a quarter
/// second keeps `shardcron runs` and the API practically current, and a
/// longer interval would save little more.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Longest an open-entry change (close or abandon of an `at_least_once`
/// fire) waits before it is written, with whatever else is buffered.
/// Shorter than [`FLUSH_INTERVAL`]: until its close is written a finished
/// fire would be run again if its node died, and a shard in handoff cannot
/// be released (a release waiting for it flushes at once anyway). Not zero,
/// so the closes of fires ending together share one write.
pub const CLOSE_FLUSH_DELAY: Duration = Duration::from_millis(50);

/// Wait after a failed write before the next attempt.
const RETRY_AFTER: Duration = Duration::from_millis(500);

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

/// What the executor tells the recorder, in the order it happened.
#[derive(Clone, Debug)]
pub enum Note {
    /// A fire's handler started (for stores that keep a state per fire).
    Started(StartedFire),
    /// A fire ended or was given up.
    Ended(FireEnd),
}

/// Per shard, the open-entry changes sent to the recorder and not yet
/// written.
#[derive(Debug, Default)]
pub struct UnwrittenCloses {
    by_shard: Mutex<HashMap<u32, usize>>,
    written: Notify,
    /// A release waits for some of them: write without delay.
    hurry: Notify,
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

    /// Whether a change of `shard` is still to be written. The caller is
    /// about to release the shard, so a `true` also asks the recorder to
    /// write the buffered changes at once instead of after
    /// [`CLOSE_FLUSH_DELAY`].
    pub fn pending(&self, shard: u32) -> bool {
        let pending = self
            .by_shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&shard);
        if pending {
            self.hurry.notify_one();
        }
        pending
    }
}

/// What waits to be written, with the arrival of the oldest record and of
/// the oldest open-entry change.
#[derive(Default)]
struct Buffer {
    /// Fires started since the last write; a start whose end is written in
    /// the same write is not reported (the outcome says more).
    started: Vec<StartedFire>,
    records: VecDeque<RunRecord>,
    closes: Vec<CloseFire>,
    records_since: Option<Instant>,
    closes_since: Option<Instant>,
    /// Records dropped (buffer full) since the last warning.
    dropped: usize,
    /// The buffer stopped taking ends at a write's worth: more may wait in
    /// the channel, due as soon as this write is done.
    backlog: bool,
}

impl Buffer {
    fn take(&mut self, note: Note, now: Instant) {
        let end = match note {
            Note::Started(start) => {
                // Informational: past the bound, starts are not kept.
                if self.started.len() < MAX_BUFFERED {
                    self.started.push(start);
                    self.records_since.get_or_insert(now);
                }
                return;
            }
            Note::Ended(end) => end,
        };
        if self.records.len() >= MAX_BUFFERED {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(end.record);
        self.records_since.get_or_insert(now);
        if let Some(close) = end.open_entry {
            self.closes.push(close);
            self.closes_since.get_or_insert(now);
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.closes.is_empty() && self.started.is_empty()
    }

    /// The starts to report with a write of `records`: those whose end is
    /// not among them.
    fn starts_without_end(&self, records: &[RunRecord]) -> Vec<StartedFire> {
        if self.started.is_empty() {
            return Vec::new();
        }
        let ended: HashSet<(&str, i64)> = records
            .iter()
            .map(|r| (r.job_id.as_str(), r.scheduled_ms))
            .collect();
        self.started
            .iter()
            .filter(|f| !ended.contains(&(f.job_id.as_str(), f.scheduled_ms)))
            .cloned()
            .collect()
    }

    /// When the buffer is to be written by the timers (`None` if empty).
    fn due(&self) -> Option<Instant> {
        let records = self.records_since.map(|t| t + FLUSH_INTERVAL);
        let closes = self.closes_since.map(|t| t + CLOSE_FLUSH_DELAY);
        match (records, closes) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }

    /// Forgets what a successful write carried: the first `records`
    /// records and every close. Records left over (a burst larger than one
    /// write) keep their time, so they are written at once or on it.
    fn written(&mut self, records: usize) {
        self.records.drain(..records);
        self.started.clear();
        self.closes.clear();
        self.closes_since = None;
        if self.records.is_empty() && !std::mem::take(&mut self.backlog) {
            self.records_since = None;
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where the recorder writes: the store, or a stand-in in tests.
trait Sink: Send + Sync + 'static {
    fn write(
        &self,
        started: &[StartedFire],
        runs: &[RunRecord],
        closes: &[CloseFire],
    ) -> impl Future<Output = CoordResult<()>> + Send;
}

impl Sink for Arc<dyn Coordinator> {
    async fn write(
        &self,
        started: &[StartedFire],
        runs: &[RunRecord],
        closes: &[CloseFire],
    ) -> CoordResult<()> {
        if !started.is_empty() {
            self.mark_running(started).await?;
        }
        if runs.is_empty() && closes.is_empty() {
            return Ok(());
        }
        self.record_and_close(runs, closes).await
    }
}

/// Spawns the recorder; it ends after the sender side is dropped and the
/// buffer is flushed (or one last attempt failed).
pub fn spawn_recorder(
    coordinator: Arc<dyn Coordinator>,
    unwritten: Arc<UnwrittenCloses>,
    rx: mpsc::UnboundedReceiver<Note>,
) -> tokio::task::JoinHandle<()> {
    spawn_with(coordinator, unwritten, rx)
}

fn spawn_with<S: Sink>(
    sink: S,
    unwritten: Arc<UnwrittenCloses>,
    mut rx: mpsc::UnboundedReceiver<Note>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer = Buffer::default();
        let mut open = true;
        let mut retry_at: Option<Instant> = None;
        loop {
            if !open && buffer.is_empty() {
                return;
            }
            // While writes succeed, the buffer takes a write's worth and the
            // rest waits in the channel (written back to back after it, on
            // the same timer: a burst's history is not written in the middle
            // of the burst's starts); only while the store fails does the
            // buffer take everything, up to its bound.
            let limit = retry_at.is_none().then_some(WRITE_AT_ONCE);
            let full = limit.is_some_and(|l| buffer.records.len() >= l);
            // When to write: on the buffer's timers, at once once the
            // sender is gone; never before a failed write's retry time.
            let wake = if open {
                buffer.due()
            } else {
                Some(Instant::now())
            }
            .map(|at| retry_at.map_or(at, |retry| at.max(retry)));
            let hurry = open && retry_at.is_none() && !buffer.closes.is_empty();
            // The timers first: a steady stream of ends must not starve them.
            tokio::select! {
                biased;
                () = sleep_until_opt(wake) => {}
                () = unwritten.hurry.notified(), if hurry => {}
                end = rx.recv(), if open && !full => {
                    match end {
                        Some(end) => {
                            let now = Instant::now();
                            buffer.take(end, now);
                            drain(&mut rx, &mut buffer, now, limit);
                        }
                        None => open = false,
                    }
                    continue;
                }
            }
            drain(&mut rx, &mut buffer, Instant::now(), limit);
            if buffer.is_empty() {
                // A backlog that turned out empty: nothing to write.
                buffer.records_since = None;
                buffer.backlog = false;
                continue;
            }
            if buffer.dropped > 0 {
                warn!(
                    dropped = buffer.dropped,
                    "run history buffer full; oldest records dropped"
                );
                buffer.dropped = 0;
            }
            let part = buffer.records.len().min(WRITE_AT_ONCE);
            buffer.records.make_contiguous();
            let records = &buffer.records.as_slices().0[..part];
            let started = buffer.starts_without_end(records);
            match sink.write(&started, records, &buffer.closes).await {
                Ok(()) => {
                    unwritten.written(&buffer.closes);
                    buffer.written(part);
                    retry_at = None;
                }
                Err(e) => {
                    if retry_at.is_none() {
                        warn!(error = %e, "cannot write run history; will retry");
                    }
                    if !open {
                        return;
                    }
                    retry_at = Some(Instant::now() + RETRY_AFTER);
                }
            }
        }
    })
}

/// Moves ends waiting in the channel into the buffer, until it holds
/// `limit` records (no limit: all of them, dropping the oldest past the
/// buffer's bound).
fn drain(
    rx: &mut mpsc::UnboundedReceiver<Note>,
    buffer: &mut Buffer,
    now: Instant,
    limit: Option<usize>,
) {
    loop {
        if limit.is_some_and(|l| buffer.records.len() >= l) {
            buffer.backlog = true;
            return;
        }
        match rx.try_recv() {
            Ok(end) => buffer.take(end, now),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use shardcron_coord::{CoordError, RunOutcome};

    use super::*;

    /// One write the recorder made: when (ms after the test's start) and
    /// what it carried (scheduled instants of the records, shards closed).
    #[derive(Debug, PartialEq)]
    struct Write {
        at_ms: u64,
        records: Vec<i64>,
        closes: Vec<u32>,
        ok: bool,
        /// Scheduled instants of the starts reported.
        started: Vec<i64>,
    }

    #[derive(Clone)]
    struct FakeStore {
        start: Instant,
        writes: Arc<Mutex<Vec<Write>>>,
        failing: Arc<AtomicBool>,
    }

    impl FakeStore {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                writes: Arc::default(),
                failing: Arc::default(),
            }
        }

        fn writes(&self) -> Vec<(u64, usize, usize, bool)> {
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|w| (w.at_ms, w.records.len(), w.closes.len(), w.ok))
                .collect()
        }
    }

    impl Sink for FakeStore {
        async fn write(
            &self,
            started: &[StartedFire],
            runs: &[RunRecord],
            closes: &[CloseFire],
        ) -> CoordResult<()> {
            let ok = !self.failing.load(Ordering::SeqCst);
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Write {
                    at_ms: self.start.elapsed().as_millis() as u64,
                    records: runs.iter().map(|r| r.scheduled_ms).collect(),
                    closes: closes.iter().map(|c| c.shard).collect(),
                    ok,
                    started: started.iter().map(|f| f.scheduled_ms).collect(),
                });
            if ok {
                Ok(())
            } else {
                Err(CoordError::Unreachable {
                    url: "redis://test".into(),
                    message: "down".into(),
                })
            }
        }
    }

    struct Harness {
        store: FakeStore,
        unwritten: Arc<UnwrittenCloses>,
        tx: Option<mpsc::UnboundedSender<Note>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn start() -> Self {
            let store = FakeStore::new();
            let unwritten = Arc::new(UnwrittenCloses::default());
            let (tx, rx) = mpsc::unbounded_channel();
            let task = spawn_with(store.clone(), unwritten.clone(), rx);
            Self {
                store,
                unwritten,
                tx: Some(tx),
                task,
            }
        }

        /// Sends the end of the fire scheduled at `at`, closing its open
        /// entry of shard `close` if given (counted as the executor does).
        fn end(&self, at: i64, close: Option<u32>) {
            let record = RunRecord {
                job_id: format!("job-{at}"),
                fire_id: format!("job-{at}@{at}"),
                node_id: "n1".into(),
                shard: close.unwrap_or(0),
                fencing_token: 1,
                scheduled_ms: at,
                started_ms: at,
                finished_ms: at,
                attempts: 1,
                outcome: RunOutcome::Succeeded,
                error: None,
                detail: None,
            };
            let open_entry = close.map(|shard| CloseFire {
                shard,
                job_id: record.job_id.clone(),
                scheduled_ms: at,
                holder: "n1/i".into(),
                token: 1,
                delivery: 1,
                abandon: false,
            });
            if let Some(shard) = close {
                self.unwritten.add(shard);
            }
            if let Some(tx) = &self.tx {
                tx.send(Note::Ended(FireEnd { record, open_entry }))
                    .expect("recorder alive");
            }
        }

        /// Sends the start of the fire scheduled at `at`.
        fn begin(&self, at: i64) {
            let start = StartedFire {
                shard: 0,
                job_id: format!("job-{at}"),
                scheduled_ms: at,
                holder: "n1/i".into(),
                token: 1,
                started_ms: at,
            };
            if let Some(tx) = &self.tx {
                tx.send(Note::Started(start)).expect("recorder alive");
            }
        }

        async fn at(&self, ms: u64) {
            tokio::time::sleep_until(self.store.start + Duration::from_millis(ms)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn records_arriving_within_the_interval_share_one_write() {
        let h = Harness::start();
        for i in 0..10 {
            h.at(i * 20).await;
            h.end(i as i64, None);
        }
        h.at(1000).await;
        assert_eq!(
            h.store.writes(),
            vec![(250, 10, 0, true)],
            "one write, an interval after the first record"
        );
        h.end(100, None);
        h.at(1100).await;
        h.end(101, None);
        h.at(2000).await;
        assert_eq!(h.store.writes()[1..], [(1250, 2, 0, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn closes_are_written_promptly_with_the_records_before_them() {
        let h = Harness::start();
        h.end(1, None);
        h.at(100).await;
        h.end(2, Some(7));
        h.end(3, Some(8));
        assert!(h.unwritten.pending(7), "a release of shard 7 must wait");
        h.at(120).await;
        h.end(4, Some(9));
        h.at(160).await;
        // The release waiting for shard 7 made the write happen at once,
        // with everything buffered; the later close waits the close delay.
        assert_eq!(h.store.writes(), vec![(100, 3, 2, true)]);
        h.at(1000).await;
        assert_eq!(h.store.writes(), vec![(100, 3, 2, true), (170, 1, 1, true)]);
        assert!(!h.unwritten.pending(7) && !h.unwritten.pending(8) && !h.unwritten.pending(9));
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_alone_waits_only_the_close_delay() {
        let h = Harness::start();
        h.end(1, Some(3));
        h.at(1000).await;
        assert_eq!(h.store.writes(), vec![(50, 1, 1, true)]);
        assert!(!h.unwritten.pending(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sender_dropped_flushes_at_once_and_ends() {
        let mut h = Harness::start();
        h.end(1, None);
        h.end(2, None);
        h.at(10).await;
        h.tx = None;
        h.task.await.expect("recorder ends");
        assert_eq!(h.store.writes(), vec![(10, 2, 0, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_is_reported_only_when_its_end_is_not_in_the_same_write() {
        let h = Harness::start();
        h.begin(1);
        h.begin(2);
        h.at(100).await;
        h.end(1, None);
        h.at(1000).await;
        // Fire 1 ended within the interval: its outcome says more. Fire 2
        // still runs: it is reported, with the next write after its start.
        let started: Vec<Vec<i64>> = h
            .store
            .writes
            .lock()
            .expect("writes")
            .iter()
            .map(|w| w.started.clone())
            .collect();
        assert_eq!(started, vec![vec![2]]);
        assert_eq!(h.store.writes(), vec![(250, 1, 0, true)]);
        h.begin(3);
        h.at(2000).await;
        assert_eq!(h.store.writes()[1..], [(1250, 0, 0, true)]);
        assert_eq!(h.store.writes.lock().expect("writes")[1].started, vec![3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_ends_is_written_whole_while_the_store_answers() {
        // 25,000 fires of one node ending together (a burst claimed ahead
        // whose lease ended, or a top-of-the-minute burst): none may be
        // dropped while every write succeeds.
        let h = Harness::start();
        let burst = 5 * WRITE_AT_ONCE as i64;
        for i in 0..burst {
            h.end(i, None);
        }
        h.at(1000).await;
        let writes = h.store.writes();
        let written: usize = writes.iter().map(|w| w.1).sum();
        assert_eq!(written, burst as usize, "{writes:?}");
        assert!(
            writes.iter().all(|w| w.1 <= WRITE_AT_ONCE && w.3),
            "{writes:?}"
        );
        assert!(
            writes.iter().all(|w| w.0 == 250),
            "on the timer, then back to back: {writes:?}"
        );
        assert_eq!(writes.len(), 5, "{writes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_keep_closes_and_drop_the_oldest_records() {
        let mut h = Harness::start();
        h.store.failing.store(true, Ordering::SeqCst);
        h.end(-1, Some(5));
        for i in 0..MAX_BUFFERED as i64 + 4 {
            h.end(i, None);
        }
        h.at(800).await;
        h.store.failing.store(false, Ordering::SeqCst);
        h.at(2000).await;
        // The first write goes after the close delay with a write's worth;
        // once it failed the buffer takes everything up to its bound, and
        // writes carry at most a write's worth each.
        let n = WRITE_AT_ONCE;
        assert_eq!(
            h.store.writes(),
            vec![
                (50, n, 1, false),
                (550, n, 1, false),
                (1050, n, 1, true),
                (1050, n, 0, true)
            ]
        );
        let first = h.store.writes.lock().expect("writes")[2].records[0];
        assert_eq!(first, 4, "the five oldest records were dropped");
        let written: usize = h.store.writes()[2..].iter().map(|w| w.1).sum();
        assert_eq!(written, MAX_BUFFERED, "the bound is kept, no more");
        assert!(!h.unwritten.pending(5));
        // Failing at shutdown: one last attempt, at the retry time.
        h.store.failing.store(true, Ordering::SeqCst);
        h.end(7, None);
        h.at(2300).await;
        h.tx = None;
        h.task.await.expect("recorder ends");
        assert_eq!(
            h.store.writes()[4..],
            [(2250, 1, 0, false), (2750, 1, 0, false)]
        );
    }
}
