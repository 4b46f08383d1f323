//! The timer heap over owned jobs and the misfire policy, as pure logic.
//!
//! Normal firing and catch-up are one mechanism: every job has a *cursor*, the
//! last scheduled instant this node has dealt with. When the node wakes, it
//! takes every fire in `(cursor, now]` and sorts it into on-time fires, late
//! fires within `misfire_grace` and fires beyond it, then applies the job's
//! misfire policy. A new owner starts the cursor at the shard's last-fired time
//! (or the job's last write), so takeover catch-up needs no special path. No
//! I/O happens here, so the policy is unit-tested exhaustively.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use shardcron_core::{Job, MisfirePolicy};

/// Most fires of one job examined in one wake-up.
const MAX_FIRES_PER_WAKE: usize = 1000;

/// One owned job and where its schedule stands.
#[derive(Clone, Debug)]
pub struct JobEntry {
    /// The validated job.
    pub job: Arc<Job>,
    /// Stored version (claims fail if it changed).
    pub version: u64,
    /// Shard of the job.
    pub shard: u32,
    /// Last scheduled instant dealt with (claimed, skipped or counted).
    pub cursor_ms: i64,
    /// Next scheduled instant after the cursor.
    pub next_ms: Option<i64>,
}

/// What to do with one job's due fires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueFires {
    /// Job id.
    pub job_id: String,
    /// Shard of the job.
    pub shard: u32,
    /// Job version.
    pub version: u64,
    /// Fires to claim and run, ascending.
    pub run: Vec<i64>,
    /// Fires not run because of the policy or the grace, ascending.
    pub misfired: Vec<i64>,
    /// Fires older than the grace that were skipped without being listed:
    /// (first such fire, true if more may exist).
    pub beyond_grace: Option<i64>,
}

/// Owned jobs and their next fire times.
#[derive(Default)]
pub struct Timetable {
    jobs: HashMap<String, JobEntry>,
    heap: BinaryHeap<Reverse<(i64, String)>>,
}

impl Timetable {
    /// An empty timetable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when no job is owned.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Looks a job up.
    pub fn get(&self, job_id: &str) -> Option<&JobEntry> {
        self.jobs.get(job_id)
    }

    /// Ids of the jobs of one shard.
    pub fn jobs_of_shard(&self, shard: u32) -> Vec<String> {
        self.jobs
            .values()
            .filter(|e| e.shard == shard)
            .map(|e| e.job.id().to_owned())
            .collect()
    }

    /// Adds or replaces a job; paused jobs are kept but never come due.
    pub fn upsert(&mut self, mut entry: JobEntry) {
        entry.next_ms = if entry.job.spec.paused {
            None
        } else {
            entry.job.next_after(entry.cursor_ms)
        };
        if let Some(next) = entry.next_ms {
            self.heap.push(Reverse((next, entry.job.id().to_owned())));
        }
        self.jobs.insert(entry.job.id().to_owned(), entry);
    }

    /// Removes a job.
    pub fn remove(&mut self, job_id: &str) -> Option<JobEntry> {
        self.jobs.remove(job_id)
    }

    /// Removes every job of a shard; returns how many.
    pub fn remove_shard(&mut self, shard: u32) -> usize {
        let before = self.jobs.len();
        self.jobs.retain(|_, e| e.shard != shard);
        before - self.jobs.len()
    }

    fn drop_stale_top(&mut self) {
        while let Some(Reverse((due, id))) = self.heap.peek() {
            let live = self.jobs.get(id).is_some_and(|e| e.next_ms == Some(*due));
            if live {
                return;
            }
            self.heap.pop();
        }
    }

    /// Earliest due time, Unix ms.
    pub fn next_due(&mut self) -> Option<i64> {
        self.drop_stale_top();
        self.heap.peek().map(|Reverse((due, _))| *due)
    }

    /// Takes every job due at `now_ms`, advances its cursor and decides, per
    /// misfire policy, which fires to run.
    pub fn take_due(&mut self, now_ms: i64, on_time_tolerance_ms: i64) -> Vec<DueFires> {
        let mut out = Vec::new();
        loop {
            self.drop_stale_top();
            let Some(Reverse((due, id))) = self.heap.peek().cloned() else {
                break;
            };
            if due > now_ms {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.jobs.get_mut(&id) else {
                continue;
            };
            let decision = decide(entry, now_ms, on_time_tolerance_ms);
            entry.next_ms = entry.job.next_after(entry.cursor_ms);
            if let Some(next) = entry.next_ms {
                self.heap.push(Reverse((next, id)));
            }
            if !decision.run.is_empty()
                || !decision.misfired.is_empty()
                || decision.beyond_grace.is_some()
            {
                out.push(decision);
            }
        }
        out
    }
}

/// Applies the misfire policy to the fires in `(cursor, now]` and advances the cursor.
fn decide(entry: &mut JobEntry, now_ms: i64, tolerance_ms: i64) -> DueFires {
    let spec = &entry.job.spec;
    let grace_ms = spec.misfire_grace.as_millis() as i64;
    let mut decision = DueFires {
        job_id: spec.id.clone(),
        shard: entry.shard,
        version: entry.version,
        ..DueFires::default()
    };
    let grace_floor = now_ms - grace_ms.max(tolerance_ms);
    if entry.cursor_ms < grace_floor {
        if let Some(first) = entry.job.next_after(entry.cursor_ms) {
            if first < grace_floor {
                decision.beyond_grace = Some(first);
            }
        }
        entry.cursor_ms = grace_floor;
    }
    let pending = entry
        .job
        .fires_between(entry.cursor_ms, now_ms, MAX_FIRES_PER_WAKE);
    if let Some(&last) = pending.last() {
        entry.cursor_ms = last;
    }
    let (on_time, late): (Vec<i64>, Vec<i64>) = pending
        .into_iter()
        .partition(|&t| now_ms - t <= tolerance_ms);
    match spec.misfire {
        MisfirePolicy::CatchUp => {
            decision.run = late;
            decision.run.extend(on_time);
        }
        MisfirePolicy::RunOnce => {
            if on_time.is_empty() {
                if let Some((&latest, rest)) = late.split_last() {
                    decision.misfired = rest.to_vec();
                    decision.run = vec![latest];
                }
            } else {
                decision.misfired = late;
                decision.run = on_time;
            }
        }
        MisfirePolicy::Skip => {
            decision.misfired = late;
            decision.run = on_time;
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcron_core::JobSpec;

    fn entry(schedule: &str, policy: MisfirePolicy, cursor_ms: i64) -> JobEntry {
        let mut spec = JobSpec::new("j", schedule, "noop");
        spec.misfire = policy;
        JobEntry {
            job: Arc::new(spec.validate().expect("valid")),
            version: 1,
            shard: 0,
            cursor_ms,
            next_ms: None,
        }
    }

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn on_time_fire_runs_once_and_advances() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        assert_eq!(t.next_due(), Some(T0 + 1000));
        assert!(t.take_due(T0 + 999, 2000).is_empty());
        let due = t.take_due(T0 + 1005, 2000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].run, vec![T0 + 1000]);
        assert!(t.take_due(T0 + 1005, 2000).is_empty());
        assert_eq!(t.next_due(), Some(T0 + 2000));
    }

    #[test]
    fn catch_up_runs_missed_fires_within_grace() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        let due = t.take_due(T0 + 10_000, 2000);
        assert_eq!(
            due[0].run,
            (1..=10).map(|i| T0 + i * 1000).collect::<Vec<_>>()
        );
        assert!(due[0].misfired.is_empty());
    }

    #[test]
    fn run_once_coalesces_late_fires() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 10s", MisfirePolicy::RunOnce, T0));
        let due = t.take_due(T0 + 35_000, 2000);
        assert_eq!(due[0].run, vec![T0 + 30_000]);
        assert_eq!(due[0].misfired, vec![T0 + 10_000, T0 + 20_000]);
    }

    #[test]
    fn skip_runs_only_on_time_fires() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 10s", MisfirePolicy::Skip, T0));
        let due = t.take_due(T0 + 30_500, 2000);
        assert_eq!(due[0].run, vec![T0 + 30_000]);
        assert_eq!(due[0].misfired, vec![T0 + 10_000, T0 + 20_000]);
    }

    #[test]
    fn fires_beyond_grace_are_counted_not_run() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        let now = T0 + 3_600_000;
        let due = t.take_due(now, 2000);
        assert_eq!(due[0].beyond_grace, Some(T0 + 1000));
        assert_eq!(due[0].run.len(), 60);
        assert!(due[0].run.iter().all(|&f| now - f <= 60_000));
    }

    #[test]
    fn paused_jobs_never_come_due() {
        let mut t = Timetable::new();
        let mut e = entry("@every 1s", MisfirePolicy::CatchUp, T0);
        let mut spec = e.job.spec.clone();
        spec.paused = true;
        e.job = Arc::new(spec.validate().expect("valid"));
        t.upsert(e);
        assert_eq!(t.next_due(), None);
        assert!(t.take_due(T0 + 10_000, 2000).is_empty());
    }

    #[test]
    fn removing_a_shard_drops_its_jobs() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        assert_eq!(t.remove_shard(0), 1);
        assert_eq!(t.next_due(), None);
    }
}
