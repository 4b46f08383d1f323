//! Recording fires and auditing them against what should have fired.
//!
//! The counting handler only appends `(job, scheduled, started)` to a
//! [`Recorder`]; all judgement happens afterwards in [`audit`], which is a
//! pure function so it can be unit-tested: within the measured window every
//! job must have fired exactly once at every multiple of its period.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// One run observed by the counting handler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fire {
    /// Index `i` of job `job-i` (`u32::MAX` for an id of another form).
    pub job: u32,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// When the handler started, Unix ms.
    pub started_ms: i64,
    /// The worker that ran it: an index into [`Recorder::workers`].
    pub worker: u16,
}

/// How many logs a [`Recorder`] keeps: each thread that records appends
/// to its own, so the runs being measured do not queue on one lock, nor
/// stall behind a thread preempted while holding it. More threads than logs
/// share them.
const LOGS: usize = 8;

/// The first threads to record, whose logs get the room set aside up
/// front: the two threads of the runtime the workers run on.
const PREPARED_LOGS: usize = 2;

/// Gives every recorder an identity, so a thread can remember its log in
/// each.
static RECORDERS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's log in the recorder it last recorded to: (recorder,
    /// log).
    static LOG_OF_THIS_THREAD: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// What a [`Recorder`] shares between its clones.
#[derive(Debug)]
struct Shared {
    id: u64,
    logs: Vec<Mutex<Vec<Fire>>>,
    threads: AtomicUsize,
    workers: Mutex<Vec<String>>,
}

/// Shared, append-only log of fires.
///
/// The counting handler is part of what a run measures, so recording is
/// kept off the paths that would slow the runs down: a worker's index is
/// looked up once, when it joins ([`Recorder::worker`]); each thread
/// appends to a log of its own; and the logs' memory is written once up
/// front, so that the first run to reach a fresh page does not take the
/// page fault (thousands of runs start in the same few milliseconds).
#[derive(Clone, Debug)]
pub struct Recorder {
    shared: Arc<Shared>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Recorder {
    /// A recorder with room for `fires` runs set aside and written up front,
    /// so that neither growing a log (a copy of all of it, under the lock
    /// its thread takes) nor a first touch of its memory stalls the runs
    /// being measured.
    pub fn with_capacity(fires: usize) -> Self {
        // The runs split about evenly between the runtime's two threads:
        // their logs get 60 % each; the others grow on demand.
        let per_log = fires.saturating_mul(3) / 5;
        let logs = (0..LOGS)
            .map(|index| {
                let mut log = Vec::new();
                if index < PREPARED_LOGS {
                    log.resize(per_log, Fire::default());
                    log.clear();
                }
                Mutex::new(log)
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                id: RECORDERS.fetch_add(1, Ordering::Relaxed),
                logs,
                threads: AtomicUsize::new(0),
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The index of worker `name` in [`Recorder::workers`] (and in
    /// [`Fire::worker`]): registered at its first call, the same ever after.
    pub fn worker(&self, name: &str) -> u16 {
        let mut workers = lock(&self.shared.workers);
        let index = match workers.iter().position(|w| w == name) {
            Some(index) => index,
            None => {
                workers.push(name.to_owned());
                workers.len() - 1
            }
        };
        u16::try_from(index).unwrap_or(u16::MAX)
    }

    /// Records a run of `job_id` by worker `worker` (see
    /// [`Recorder::worker`]), scheduled at `scheduled_ms`, started at
    /// `started_ms`.
    pub fn record(&self, worker: u16, job_id: &str, scheduled_ms: i64, started_ms: i64) {
        let job = job_id
            .strip_prefix("job-")
            .and_then(|i| i.parse().ok())
            .unwrap_or(u32::MAX);
        lock(&self.shared.logs[self.log_of_this_thread()]).push(Fire {
            job,
            scheduled_ms,
            started_ms,
            worker,
        });
    }

    /// The log this thread appends to: taken in turn at its first record.
    fn log_of_this_thread(&self) -> usize {
        LOG_OF_THIS_THREAD.with(|cell| {
            let (recorder, log) = cell.get();
            if recorder == self.shared.id {
                return log;
            }
            let log = self.shared.threads.fetch_add(1, Ordering::Relaxed) % LOGS;
            cell.set((self.shared.id, log));
            log
        })
    }

    /// Number of fires recorded so far.
    /// (Summed over the logs, not counted per run: a shared counter would
    /// put back the cache line both threads write that the logs avoid.)
    pub fn len(&self) -> usize {
        self.shared.logs.iter().map(|log| lock(log).len()).sum()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every fire recorded so far, in order of start.
    pub fn snapshot(&self) -> Vec<Fire> {
        let mut fires = Vec::with_capacity(self.len());
        for log in &self.shared.logs {
            fires.extend_from_slice(&lock(log));
        }
        fires.sort_by_key(|f| f.started_ms);
        fires
    }

    /// Calls `visit` on every fire recorded since `cursor` last read (each
    /// log in its own order), and moves `cursor` past them: how the phases
    /// around the window follow the runs without copying all of them.
    pub fn read_new(&self, cursor: &mut ReadCursor, mut visit: impl FnMut(&Fire)) {
        for (log, read) in self.shared.logs.iter().zip(cursor.read.iter_mut()) {
            let log = lock(log);
            log.get(*read..)
                .unwrap_or_default()
                .iter()
                .for_each(&mut visit);
            *read = log.len();
        }
    }

    /// Names of the workers that recorded fires; [`Fire::worker`] indexes it.
    pub fn workers(&self) -> Vec<String> {
        lock(&self.shared.workers).clone()
    }
}

/// How far a reader of a [`Recorder`] got in each of its logs (see
/// [`Recorder::read_new`]); a new cursor starts at the first fire.
#[derive(Clone, Debug, Default)]
pub struct ReadCursor {
    read: [usize; LOGS],
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lateness percentiles, milliseconds (start of the handler minus scheduled time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Lateness {
    /// Median.
    pub p50_ms: i64,
    /// 99th percentile.
    pub p99_ms: i64,
    /// Largest.
    pub max_ms: i64,
}

/// Outcome of the audit of one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Audit {
    /// Fires that should have run in the window (`jobs × slots`).
    pub expected: u64,
    /// Distinct `(job, instant)` pairs that ran in the window.
    pub fired: u64,
    /// Expected pairs that never ran.
    pub misses: u64,
    /// Extra runs of a pair that already ran.
    pub duplicates: u64,
    /// Runs in the window at an instant the schedule does not have, or of
    /// an unknown job.
    pub unexpected: u64,
    /// Lateness of the runs in the window.
    pub lateness: Lateness,
}

/// Value at quantile `q` (0..=1) of ascending `sorted` (nearest rank).
pub fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The multiples of `period_ms` in `[from_ms, to_ms)`, ascending.
pub fn period_instants(period_ms: i64, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let period = period_ms.max(1);
    let first_slot = from_ms.div_euclid(period) + i64::from(from_ms.rem_euclid(period) != 0);
    let end_slot = to_ms.div_euclid(period) + i64::from(to_ms.rem_euclid(period) != 0);
    (first_slot..end_slot)
        .map(|slot| slot.saturating_mul(period))
        .collect()
}

/// Audits `fires` of `jobs` jobs firing every `period_ms` over the window
/// `[from_ms, to_ms)`.
pub fn audit(fires: &[Fire], jobs: u32, period_ms: i64, from_ms: i64, to_ms: i64) -> Audit {
    audit_at(
        fires,
        jobs,
        &period_instants(period_ms, from_ms, to_ms),
        from_ms,
        to_ms,
    )
}

/// Audits `fires` of `jobs` jobs that all fire at `instants` (ascending, the
/// schedule's fires in the window `[from_ms, to_ms)`).
pub fn audit_at(fires: &[Fire], jobs: u32, instants: &[i64], from_ms: i64, to_ms: i64) -> Audit {
    let expected = instants.len() as u64 * u64::from(jobs);

    let mut seen: HashMap<(u32, i64), u64> = HashMap::new();
    let mut unexpected = 0u64;
    let mut lateness = Vec::new();
    for fire in fires
        .iter()
        .filter(|f| f.scheduled_ms >= from_ms && f.scheduled_ms < to_ms)
    {
        lateness.push(fire.started_ms - fire.scheduled_ms);
        if fire.job >= jobs || instants.binary_search(&fire.scheduled_ms).is_err() {
            unexpected += 1;
            continue;
        }
        *seen.entry((fire.job, fire.scheduled_ms)).or_default() += 1;
    }
    lateness.sort_unstable();
    let fired = seen.len() as u64;
    Audit {
        expected,
        fired,
        misses: expected.saturating_sub(fired),
        duplicates: seen.values().map(|&c| c - 1).sum(),
        unexpected,
        lateness: Lateness {
            p50_ms: percentile(&lateness, 0.50),
            p99_ms: percentile(&lateness, 0.99),
            max_ms: lateness.last().copied().unwrap_or(0),
        },
    }
}

/// The expected `(job, instant)` pairs of the window `[from_ms, to_ms)`
/// that no run in `fires` covers, by instant then job. Same slots as
/// [`audit`], so `missing(..).len() == audit(..).misses`.
pub fn missing(
    fires: &[Fire],
    jobs: u32,
    period_ms: i64,
    from_ms: i64,
    to_ms: i64,
) -> Vec<(u32, i64)> {
    missing_at(
        fires,
        jobs,
        &period_instants(period_ms, from_ms, to_ms),
        from_ms,
        to_ms,
    )
}

/// [`missing`] for jobs that all fire at `instants` (as [`audit_at`]).
pub fn missing_at(
    fires: &[Fire],
    jobs: u32,
    instants: &[i64],
    from_ms: i64,
    to_ms: i64,
) -> Vec<(u32, i64)> {
    let seen: HashSet<(u32, i64)> = fires
        .iter()
        .filter(|f| f.scheduled_ms >= from_ms && f.scheduled_ms < to_ms && f.job < jobs)
        .map(|f| (f.job, f.scheduled_ms))
        .collect();
    let mut out = Vec::new();
    for &at in instants {
        out.extend(
            (0..jobs)
                .filter(|&job| !seen.contains(&(job, at)))
                .map(|job| (job, at)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(job: u32, scheduled_ms: i64, late: i64) -> Fire {
        Fire {
            job,
            scheduled_ms,
            started_ms: scheduled_ms + late,
            worker: 0,
        }
    }

    #[test]
    fn a_clean_window() {
        let fires: Vec<Fire> = (0..2)
            .flat_map(|job| (1..=3).map(move |s| fire(job, s * 1000, 5)))
            .collect();
        // Window [1000, 4000) holds slots 1000, 2000, 3000.
        let result = audit(&fires, 2, 1000, 1000, 4000);
        assert_eq!((result.expected, result.fired), (6, 6));
        assert_eq!(
            (result.misses, result.duplicates, result.unexpected),
            (0, 0, 0)
        );
        assert_eq!(result.lateness.max_ms, 5);
    }

    #[test]
    fn a_burst_is_audited_at_the_schedules_instants() {
        // `0 * * * * *` over [60_000, 121_000): the instants 60 s and 120 s.
        let instants = vec![60_000, 120_000];
        let fires = vec![
            fire(0, 60_000, 10),
            fire(1, 60_000, 250),
            fire(0, 120_000, 3),
            fire(0, 61_000, 3),
        ];
        let result = audit_at(&fires, 2, &instants, 60_000, 121_000);
        assert_eq!((result.expected, result.fired), (4, 3));
        assert_eq!((result.misses, result.unexpected), (1, 1));
        assert_eq!(
            missing_at(&fires, 2, &instants, 60_000, 121_000),
            vec![(1, 120_000)]
        );
        assert_eq!(period_instants(1000, 500, 2500), vec![1000, 2000]);
    }

    #[test]
    fn misses_duplicates_and_strays() {
        let fires = vec![
            fire(0, 1000, 1),
            fire(0, 1000, 9),
            fire(1, 1500, 1),
            fire(7, 2000, 1),
            fire(0, 9000, 1),
        ];
        let result = audit(&fires, 2, 1000, 500, 2500);
        assert_eq!(result.expected, 4);
        assert_eq!(result.fired, 1);
        assert_eq!(result.misses, 3);
        assert_eq!(result.duplicates, 1);
        assert_eq!(result.unexpected, 2);
        let lost = missing(&fires, 2, 1000, 500, 2500);
        assert_eq!(lost, vec![(1, 1000), (0, 2000), (1, 2000)]);
        assert_eq!(lost.len() as u64, result.misses);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&[], 0.5), 0);
        let recorder = Recorder::default();
        let (w1, w0) = (recorder.worker("w1"), recorder.worker("w0"));
        assert_eq!(recorder.worker("w1"), w1, "a worker keeps its index");
        recorder.record(w1, "job-12", 1000, 1003);
        recorder.record(w0, "other", 1000, 1003);
        recorder.record(w1, "job-3", 2000, 2003);
        let fires = recorder.snapshot();
        assert_eq!(fires[0].job, 12);
        assert_eq!(fires[1].job, u32::MAX);
        assert_eq!(recorder.workers(), vec!["w1".to_owned(), "w0".to_owned()]);
        assert_eq!(
            fires.iter().map(|f| f.worker).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
    }

    #[test]
    fn runs_recorded_on_many_threads_all_reach_the_snapshot_in_order_of_start() {
        let recorder = Recorder::with_capacity(1_000);
        let worker = recorder.worker("w");
        let threads: Vec<_> = (0..LOGS as i64 + 2)
            .map(|t| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        recorder.record(worker, &format!("job-{i}"), 0, 1000 - t * 100 - i);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a recording thread");
        }
        let fires = recorder.snapshot();
        assert_eq!(fires.len(), (LOGS + 2) * 100);
        assert_eq!(recorder.len(), fires.len());
        assert!(fires.windows(2).all(|w| w[0].started_ms <= w[1].started_ms));
        let other = Recorder::default();
        other.record(worker, "job-1", 0, 1);
        assert_eq!(other.snapshot().len(), 1, "a thread's log is per recorder");
    }
}
