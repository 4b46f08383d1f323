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
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

use foldhash::HashMap;
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
    /// Misfire grace in force, ms: the job's, capped so that a fire is never
    /// run after its claim key could have expired.
    pub grace_ms: i64,
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
    /// The job's cursor before this decision, to go back to if the claim of
    /// these fires is refused for a reason that makes the decision void (the
    /// store says they are not due yet).
    pub cursor_before: i64,
}

/// A job's next fire in the heap.
///
/// Ordered by instant, then by when it was pushed, never by the job's id:
/// thousands of every-second jobs share one instant, and a heap ordered by
/// id compared their ids (long common prefixes) at every step of every pop
/// of every claim step. Jobs of one instant leave in the order they were
/// put in.
#[derive(Clone, Debug)]
struct NextFire {
    at: i64,
    seq: u64,
    /// The job's id, shared by its entry's successive heap items (one
    /// allocation per upsert, not per fire).
    id: Arc<str>,
}

impl PartialEq for NextFire {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for NextFire {}

impl PartialOrd for NextFire {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NextFire {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Owned jobs and their next fire times.
#[derive(Default)]
pub struct Timetable {
    /// The entries by job id (`foldhash`: looked up twice per fire taken).
    jobs: HashMap<String, JobEntry>,
    /// Job ids per shard, so per-shard questions cost the shard's jobs, not
    /// every job of the node.
    by_shard: HashMap<u32, BTreeSet<String>>,
    heap: BinaryHeap<Reverse<NextFire>>,
    /// Heap items pushed so far (the tie-break among equal instants).
    pushed: u64,
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
        self.by_shard
            .get(&shard)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The entries of one shard's jobs.
    pub fn entries_of_shard(&self, shard: u32) -> impl Iterator<Item = &JobEntry> {
        self.by_shard
            .get(&shard)
            .into_iter()
            .flatten()
            .filter_map(|id| self.jobs.get(id))
    }

    /// Adds or replaces a job; paused jobs are kept but never come due.
    pub fn upsert(&mut self, mut entry: JobEntry) {
        entry.next_ms = if entry.job.spec.paused {
            None
        } else {
            entry.job.next_after(entry.cursor_ms)
        };
        if let Some(next) = entry.next_ms {
            self.push_next(next, Arc::from(entry.job.id()));
        }
        let id = entry.job.id().to_owned();
        if let Some(old) = self.jobs.insert(id.clone(), entry) {
            if let Some(ids) = self.by_shard.get_mut(&old.shard) {
                ids.remove(&id);
            }
        }
        if let Some(shard) = self.jobs.get(&id).map(|e| e.shard) {
            self.by_shard.entry(shard).or_default().insert(id);
        }
    }

    /// Moves a job's cursor back to `cursor_ms` (if it is ahead of it), so
    /// the fires after it are decided again.
    pub fn rewind(&mut self, job_id: &str, cursor_ms: i64) {
        if let Some(entry) = self.jobs.get(job_id) {
            if entry.cursor_ms > cursor_ms {
                let mut entry = entry.clone();
                entry.cursor_ms = cursor_ms;
                self.upsert(entry);
            }
        }
    }

    /// Removes a job.
    pub fn remove(&mut self, job_id: &str) -> Option<JobEntry> {
        let entry = self.jobs.remove(job_id)?;
        if let Some(ids) = self.by_shard.get_mut(&entry.shard) {
            ids.remove(job_id);
            if ids.is_empty() {
                self.by_shard.remove(&entry.shard);
            }
        }
        Some(entry)
    }

    /// Removes every job of a shard; returns how many.
    pub fn remove_shard(&mut self, shard: u32) -> usize {
        let ids = self.by_shard.remove(&shard).unwrap_or_default();
        for id in &ids {
            self.jobs.remove(id);
        }
        ids.len()
    }

    fn push_next(&mut self, at: i64, id: Arc<str>) {
        self.pushed += 1;
        self.heap.push(Reverse(NextFire {
            at,
            seq: self.pushed,
            id,
        }));
    }

    fn drop_stale_top(&mut self) {
        while let Some(Reverse(top)) = self.heap.peek() {
            let live = self
                .jobs
                .get(&*top.id)
                .is_some_and(|e| e.next_ms == Some(top.at));
            if live {
                return;
            }
            self.heap.pop();
        }
    }

    /// Earliest due time, Unix ms.
    pub fn next_due(&mut self) -> Option<i64> {
        self.drop_stale_top();
        self.heap.peek().map(|Reverse(top)| top.at)
    }

    /// Takes the jobs with fires up to their shard's horizon in `window`,
    /// advances their cursors and decides, per misfire policy, which fires
    /// to run. Stops taking jobs once the decisions hold `max_runs` fires to
    /// run now, or `window.max_ahead` fires to run later; the rest stay due.
    /// A job whose next fire lies beyond its shard's horizon (but within the
    /// window's furthest) is left as it is.
    pub fn take_due(
        &mut self,
        window: &ClaimWindow<'_>,
        on_time_tolerance_ms: i64,
        max_runs: usize,
    ) -> Vec<DueFires> {
        let mut out = Vec::new();
        let mut deferred = Vec::new();
        let mut runs = 0;
        let mut ahead = 0;
        loop {
            if runs >= max_runs {
                break;
            }
            // Once the ahead line is full, only fires already due are taken.
            let ahead_full = ahead >= window.max_ahead;
            let furthest_ms = if ahead_full {
                window.now_ms
            } else {
                window.furthest_ms
            };
            self.drop_stale_top();
            match self.heap.peek() {
                Some(Reverse(top)) if top.at <= furthest_ms => {}
                _ => break,
            }
            // Taken by value: the id moves on to the job's next heap item.
            let Some(Reverse(top)) = self.heap.pop() else {
                break;
            };
            let due = top.at;
            let Some(entry) = self.jobs.get_mut(&*top.id) else {
                continue;
            };
            let horizon_ms = if ahead_full {
                window.now_ms
            } else {
                (window.shard_horizon)(entry.shard).max(window.now_ms)
            };
            if due > horizon_ms {
                deferred.push(Reverse(top));
                continue;
            }
            let decision = decide(entry, window.now_ms, horizon_ms, on_time_tolerance_ms);
            entry.next_ms = entry.job.next_after(entry.cursor_ms);
            if let Some(next) = entry.next_ms {
                self.push_next(next, top.id);
            }
            if !decision.run.is_empty()
                || !decision.misfired.is_empty()
                || decision.beyond_grace.is_some()
            {
                let later = decision.run.iter().filter(|&&t| t > window.now_ms).count();
                runs += decision.run.len() - later;
                ahead += later;
                out.push(decision);
            }
        }
        self.heap.extend(deferred);
        out
    }
}

/// How far a claim step may reach: the present and, per shard, the latest
/// scheduled instant that may be claimed ahead of it.
pub struct ClaimWindow<'a> {
    /// The present, Unix ms: fires at or before it are due, and misfire
    /// decisions are made against it.
    pub now_ms: i64,
    /// The latest horizon of any shard (an upper bound of `shard_horizon`).
    pub furthest_ms: i64,
    /// Per shard, the latest scheduled instant that may be claimed now
    /// (never earlier than `now_ms`).
    pub shard_horizon: &'a dyn Fn(u32) -> i64,
    /// Most fires after `now_ms` to take (room in the ahead line).
    pub max_ahead: usize,
}

impl ClaimWindow<'_> {
    /// A window that claims nothing ahead: only fires due at `now_ms`.
    pub fn due_at(now_ms: i64) -> ClaimWindow<'static> {
        ClaimWindow {
            now_ms,
            furthest_ms: now_ms,
            shard_horizon: &|_| i64::MIN,
            max_ahead: 0,
        }
    }
}

/// Applies the misfire policy to the fires in `(cursor, horizon]` and
/// advances the cursor; lateness (and so the policy) is judged against `now`.
/// Fires after `now` (claimed ahead) are on time.
///
/// `catch_up` takes at most [`MAX_FIRES_PER_WAKE`] fires per wake-up and
/// leaves the cursor at the last one, so the rest come next time. `run_once`
/// and `skip` look at every fire in the window at once (counting only the
/// first few), so a window holding more fires than one wake-up takes still
/// runs once, not once per thousand.
fn decide(entry: &mut JobEntry, now_ms: i64, horizon_ms: i64, tolerance_ms: i64) -> DueFires {
    let spec = &entry.job.spec;
    let grace_ms = entry.grace_ms;
    let mut decision = DueFires {
        job_id: spec.id.clone(),
        shard: entry.shard,
        version: entry.version,
        cursor_before: entry.cursor_ms,
        ..DueFires::default()
    };
    // Fires at or after the floor are within the grace (a fire exactly
    // `grace` late still runs); the cursor is exclusive, hence the `- 1`.
    let grace_floor = now_ms - grace_ms.max(tolerance_ms);
    if entry.cursor_ms < grace_floor - 1 {
        if let Some(first) = entry.job.next_after(entry.cursor_ms) {
            if first < grace_floor {
                decision.beyond_grace = Some(first);
            }
        }
        entry.cursor_ms = grace_floor - 1;
    }
    if spec.misfire == MisfirePolicy::CatchUp {
        let pending = entry
            .job
            .fires_between(entry.cursor_ms, horizon_ms, MAX_FIRES_PER_WAKE);
        if let Some(&last) = pending.last() {
            entry.cursor_ms = last;
        }
        decision.run = pending;
        return decision;
    }
    // run_once and skip: walk the whole window, keep the latest late fire,
    // the on-time ones, and the first few of the rest.
    let mut late_latest = None;
    let mut late_listed = Vec::new();
    let mut on_time = Vec::new();
    loop {
        let chunk = entry
            .job
            .fires_between(entry.cursor_ms, horizon_ms, MAX_FIRES_PER_WAKE);
        let Some(&last) = chunk.last() else { break };
        entry.cursor_ms = last;
        for t in chunk {
            if now_ms - t <= tolerance_ms {
                on_time.push(t);
            } else {
                if let Some(prev) = late_latest.replace(t) {
                    if late_listed.len() < MAX_FIRES_PER_WAKE {
                        late_listed.push(prev);
                    }
                }
            }
        }
    }
    let run_late = spec.misfire == MisfirePolicy::RunOnce && on_time.is_empty();
    match late_latest {
        Some(latest) if run_late => decision.run = vec![latest],
        Some(latest) => {
            late_listed.push(latest);
        }
        None => {}
    }
    decision.misfired = late_listed;
    decision.run.extend(on_time);
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
            grace_ms: 60_000,
        }
    }

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn on_time_fire_runs_once_and_advances() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        assert_eq!(t.next_due(), Some(T0 + 1000));
        assert!(t
            .take_due(&ClaimWindow::due_at(T0 + 999), 2000, usize::MAX)
            .is_empty());
        let due = t.take_due(&ClaimWindow::due_at(T0 + 1005), 2000, usize::MAX);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].run, vec![T0 + 1000]);
        assert!(t
            .take_due(&ClaimWindow::due_at(T0 + 1005), 2000, usize::MAX)
            .is_empty());
        assert_eq!(t.next_due(), Some(T0 + 2000));
    }

    #[test]
    fn catch_up_runs_missed_fires_within_grace() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        let due = t.take_due(&ClaimWindow::due_at(T0 + 10_000), 2000, usize::MAX);
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
        let due = t.take_due(&ClaimWindow::due_at(T0 + 35_000), 2000, usize::MAX);
        assert_eq!(due[0].run, vec![T0 + 30_000]);
        assert_eq!(due[0].misfired, vec![T0 + 10_000, T0 + 20_000]);
    }

    #[test]
    fn skip_runs_only_on_time_fires() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 10s", MisfirePolicy::Skip, T0));
        let due = t.take_due(&ClaimWindow::due_at(T0 + 30_500), 2000, usize::MAX);
        assert_eq!(due[0].run, vec![T0 + 30_000]);
        assert_eq!(due[0].misfired, vec![T0 + 10_000, T0 + 20_000]);
    }

    #[test]
    fn fires_beyond_grace_are_counted_not_run() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        let now = T0 + 3_600_000;
        let due = t.take_due(&ClaimWindow::due_at(now), 2000, usize::MAX);
        assert_eq!(due[0].beyond_grace, Some(T0 + 1000));
        // now − 60 s .. now: a fire exactly the grace late still runs.
        assert_eq!(due[0].run.len(), 61);
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
        assert!(t
            .take_due(&ClaimWindow::due_at(T0 + 10_000), 2000, usize::MAX)
            .is_empty());
    }

    #[test]
    fn removing_a_shard_drops_its_jobs() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, T0));
        assert_eq!(t.remove_shard(0), 1);
        assert_eq!(t.next_due(), None);
    }
}

#[cfg(test)]
mod window_tests {
    #[test]
    fn a_fire_exactly_at_the_end_of_its_grace_still_runs() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, 10_000));
        let due = t.take_due(&ClaimWindow::due_at(T0 + 20_000), 2000, usize::MAX);
        assert_eq!(due[0].beyond_grace, Some(T0 + 1000));
        assert_eq!(
            due[0].run.first(),
            Some(&(T0 + 10_000)),
            "10 s late, grace 10 s"
        );
    }

    use super::*;
    use shardcron_core::JobSpec;

    const T0: i64 = 1_800_000_000_000;

    fn entry(schedule: &str, policy: MisfirePolicy, grace_ms: i64) -> JobEntry {
        let mut spec = JobSpec::new("j", schedule, "noop");
        spec.misfire = policy;
        spec.misfire_grace = std::time::Duration::from_millis(grace_ms as u64);
        JobEntry {
            job: Arc::new(spec.validate().expect("valid")),
            version: 1,
            shard: 0,
            cursor_ms: T0,
            next_ms: None,
            grace_ms,
        }
    }

    #[test]
    fn run_once_runs_once_however_many_fires_the_window_holds() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::RunOnce, 3_600_000));
        let now = T0 + 2_500_500;
        let due = t.take_due(&ClaimWindow::due_at(now), 100, usize::MAX);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].run, vec![T0 + 2_500_000], "only the latest, once");
        assert!(
            t.take_due(&ClaimWindow::due_at(now), 100, usize::MAX)
                .is_empty(),
            "nothing left"
        );
        assert_eq!(t.next_due(), Some(T0 + 2_501_000));
    }

    #[test]
    fn take_due_stops_at_the_run_limit_and_leaves_the_rest_due() {
        let mut t = Timetable::new();
        for i in 0..5 {
            let mut e = entry("@every 1s", MisfirePolicy::CatchUp, 60_000);
            let mut spec = e.job.spec.clone();
            spec.id = format!("j{i}");
            e.job = Arc::new(spec.validate().expect("valid"));
            t.upsert(e);
        }
        let due = t.take_due(&ClaimWindow::due_at(T0 + 1000), 2000, 2);
        assert_eq!(due.len(), 2);
        assert_eq!(
            t.take_due(&ClaimWindow::due_at(T0 + 1000), 2000, usize::MAX)
                .len(),
            3
        );
    }

    #[test]
    fn rewind_decides_the_same_fires_again() {
        let mut t = Timetable::new();
        t.upsert(entry("@every 1s", MisfirePolicy::CatchUp, 60_000));
        let due = t.take_due(&ClaimWindow::due_at(T0 + 3000), 2000, usize::MAX);
        assert_eq!(due[0].run.len(), 3);
        t.rewind("j", due[0].cursor_before);
        let again = t.take_due(&ClaimWindow::due_at(T0 + 3000), 2000, usize::MAX);
        assert_eq!(again[0].run, due[0].run);
    }

    fn job_on(id: &str, shard: u32, schedule: &str, policy: MisfirePolicy) -> JobEntry {
        let mut e = entry(schedule, policy, 60_000);
        let mut spec = e.job.spec.clone();
        spec.id = id.to_owned();
        e.job = Arc::new(spec.validate().expect("valid"));
        e.shard = shard;
        e
    }

    #[test]
    fn a_window_ahead_takes_fires_before_their_instant_as_on_time() {
        let mut t = Timetable::new();
        t.upsert(job_on("a", 0, "@every 1s", MisfirePolicy::Skip));
        let window = ClaimWindow {
            now_ms: T0 + 600,
            furthest_ms: T0 + 1100,
            shard_horizon: &|_| T0 + 1100,
            max_ahead: usize::MAX,
        };
        let due = t.take_due(&window, 100, usize::MAX);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].run, vec![T0 + 1000], "on time although 400 ms ahead");
        assert!(due[0].misfired.is_empty());
        assert_eq!(t.get("a").map(|e| e.cursor_ms), Some(T0 + 1000));
        assert_eq!(t.next_due(), Some(T0 + 2000));
    }

    #[test]
    fn a_shard_without_a_horizon_keeps_its_fires_until_they_are_due() {
        let mut t = Timetable::new();
        t.upsert(job_on("a", 0, "@every 1s", MisfirePolicy::Skip));
        t.upsert(job_on("b", 1, "@every 1s", MisfirePolicy::Skip));
        // Shard 1 is being handed off: nothing ahead for it.
        let horizon = |shard: u32| if shard == 0 { T0 + 1100 } else { T0 + 600 };
        let window = ClaimWindow {
            now_ms: T0 + 600,
            furthest_ms: T0 + 1100,
            shard_horizon: &horizon,
            max_ahead: usize::MAX,
        };
        let due = t.take_due(&window, 100, usize::MAX);
        assert_eq!(
            due.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(t.get("b").map(|e| e.cursor_ms), Some(T0), "b untouched");
        let due = t.take_due(&ClaimWindow::due_at(T0 + 1000), 100, usize::MAX);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].job_id.as_str(), due[0].run.as_slice()),
            ("b", &[T0 + 1000][..])
        );
    }

    #[test]
    fn a_full_ahead_line_still_takes_the_fires_already_due() {
        let mut t = Timetable::new();
        t.upsert(job_on("due", 0, "@every 1s", MisfirePolicy::Skip));
        let mut later = job_on("later", 0, "@every 1s", MisfirePolicy::Skip);
        later.cursor_ms = T0 + 1000;
        t.upsert(later);
        let window = ClaimWindow {
            now_ms: T0 + 1000,
            furthest_ms: T0 + 2100,
            shard_horizon: &|_| T0 + 2100,
            max_ahead: 0,
        };
        let due = t.take_due(&window, 100, usize::MAX);
        assert_eq!(
            due.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(),
            ["due"]
        );
        assert_eq!(t.get("later").map(|e| e.cursor_ms), Some(T0 + 1000));
        assert_eq!(t.get("later").and_then(|e| e.next_ms), Some(T0 + 2000));
    }

    #[test]
    fn the_shard_index_follows_upserts_and_removals() {
        let mut t = Timetable::new();
        t.upsert(job_on("a", 0, "@every 1s", MisfirePolicy::Skip));
        t.upsert(job_on("b", 0, "@every 1s", MisfirePolicy::Skip));
        t.upsert(job_on("c", 1, "@every 1s", MisfirePolicy::Skip));
        t.upsert(job_on("a", 0, "@every 2s", MisfirePolicy::Skip));
        assert_eq!(t.jobs_of_shard(0), ["a", "b"]);
        assert_eq!(t.entries_of_shard(1).count(), 1);
        assert!(t.remove("b").is_some());
        assert_eq!(t.jobs_of_shard(0), ["a"]);
        assert_eq!(t.remove_shard(0), 1);
        assert!(t.jobs_of_shard(0).is_empty() && t.get("a").is_none());
        assert_eq!((t.len(), t.jobs_of_shard(1)), (1, vec!["c".to_owned()]));
    }

    #[test]
    fn jobs_of_one_instant_are_taken_in_the_order_they_were_put_in() {
        let mut t = Timetable::new();
        for id in ["c", "a", "b"] {
            let mut e = job_on(id, 0, "@every 1s", MisfirePolicy::Skip);
            e.cursor_ms = T0;
            t.upsert(e);
        }
        let mut taken = Vec::new();
        for now_ms in [T0 + 1000, T0 + 1000, T0 + 1000, T0 + 2000] {
            let due = t.take_due(&ClaimWindow::due_at(now_ms), 2000, 1);
            taken.extend(due.into_iter().map(|d| (d.job_id, d.run)));
        }
        let at = |ms: i64| vec![T0 + ms];
        assert_eq!(
            taken,
            [
                ("c".to_owned(), at(1000)),
                ("a".to_owned(), at(1000)),
                ("b".to_owned(), at(1000)),
                ("c".to_owned(), at(2000)),
            ]
        );
    }
}
