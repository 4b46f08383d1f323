//! Redis side of the run history: the writes of one recorder flush, queued
//! in the pipeline that also closes `at_least_once` fires, and the reads of
//! a job's last runs.
//!
//! A flush costs at most four commands however many records and jobs it
//! carries: `LPUSH` + `LTRIM` of the namespace list (each run's ring
//! entry behind its job id, [`ring_entry::listed`]), one `HSET` of the
//! records into the per-job rings (one hash for all jobs, `{ns}:jobruns`)
//! and, when any is due (below), one `HSET` of run counts
//! (`{ns}:jobruns:n`). Per-job lists
//! would cost commands per job, i.e. per fire when each job fires about
//! once per flush (10,000 jobs every second); a Lua script doing the same
//! in one call would spend as much Redis CPU as the per-job lists did on
//! moving every record through Lua (measured). So the numbers that pick
//! each run's slot in its job's ring are counted here, and the ring
//! entries, which carry their numbers, are what the numbers are read back
//! from:
//!
//! * A job's stored count (`count|hour`) is written when its next number
//!   reaches a multiple of [`COUNT_EVERY`], when the record hour changed
//!   since this coordinator last wrote it, and the first time this
//!   coordinator writes the job. So it is at most `COUNT_EVERY - 1` behind
//!   the job's runs, and a busy job's count costs a tenth of a field per
//!   run instead of one (the counts were about 3 % of redis-server's CPU
//!   at 10,000 every-second jobs, docs/BENCHMARKS.md §4o).
//! * The first time this coordinator writes a job, it reads the count `c`
//!   and then the ring slots of numbers `c`, `c + 1`, ... (the slot of `c`
//!   alone first, then windows of `COUNT_EVERY` per round trip) until one
//!   does not hold the number its place expects: that number is the job's
//!   next. An entry left by a
//!   flush whose reply was lost, past the stored count, is found the same
//!   way.
//!
//! A job's runs are written by the holder of its shard's lease, so the
//! numbers of a shard's jobs are forgotten (and read again) whenever this
//! coordinator acquires, releases or fails to renew that lease. Only two
//! writers overlapping at a handoff (the old holder's last flush after the
//! new holder read the ring) can give two runs one number: one replaces
//! the other in the ring (both stay in the namespace list). Every ring
//! entry carries its number, and reads order by it, so that never shows
//! runs out of order.
//!
//! A job's last [`JOB_RUN_HISTORY_CAP`] runs stay readable however rarely it
//! fires and however busy the namespace is, as long as the job is defined;
//! a sweep (`sweep_history.lua`, a step a minute per writer,
//! [`HISTORY_SWEEP_EVERY_MS`], in a round trip of its own) removes the rings
//! of deleted jobs once their last run is older than
//! [`JOB_RUN_HISTORY_RETENTION_HOURS`]. The per-job lists earlier versions
//! wrote (`{ns}:runs:<job>`, 7 days TTL) are still read until they expire.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::{HashMap, HashSet, HashSetExt};
use redis::{Cmd, Pipeline, Value};
use tracing::debug;

use super::ring_entry;
use super::{
    value_to_string, RedisCoordinator, HISTORY_SWEEP_EVERY_MS, JOB_RUN_HISTORY_CAP,
    JOB_RUN_HISTORY_RETENTION_HOURS, RUN_HISTORY_CAP,
};
use crate::coordinator::CoordResult;
use crate::keyspace::Keyspace;
use crate::model::{CloseFire, RunRecord};

/// Milliseconds per hour: run counts carry the hour of their last write.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Run counts one sweep step looks at.
const SWEEP_COUNT: usize = 500;

/// A job's stored run count is written when its next number reaches a
/// multiple of this (and when the record hour changes): the count is at
/// most this much minus one behind the job's ring, and reading a job's
/// next number back reads this many ring slots per round trip.
pub(crate) const COUNT_EVERY: u64 = 10;

/// What this coordinator knows of one job's run numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JobNumbers {
    /// The number the job's next run gets.
    next: u64,
    /// The record hour of the count this coordinator last stored for the
    /// job (`None`: none stored yet).
    stored_hour: Option<i64>,
}

/// The stored count (`count|hour`) as a number; absent or unreadable: 0.
fn parse_count(count: Option<&str>) -> u64 {
    count
        .and_then(|c| c.split('|').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether a job's count is to be stored after a run of a flush at record
/// hour `hour` moved its next number up to `numbers.next`: the count was
/// not stored in this hour, or the number reached a multiple of
/// [`COUNT_EVERY`].
fn count_due(numbers: &JobNumbers, hour: i64) -> bool {
    numbers.stored_hour != Some(hour) || numbers.next % COUNT_EVERY == 0
}

/// A command `name key` with room for `args` more arguments of `bytes`
/// bytes in all, so that adding them does not grow its buffer.
fn sized_cmd(name: &str, key: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(args + 2, bytes + name.len() + key.len());
    cmd.arg(name).arg(key);
    cmd
}

/// The newest `finished_ms` of `runs` (0 if none): the history's notion of
/// "now", so retention follows the records, not this process's clock.
pub(crate) fn newest_finish(runs: &[RunRecord]) -> i64 {
    runs.iter().map(|r| r.finished_ms).fold(0, i64::max)
}

/// What a coordinator keeps between history writes.
pub(super) struct HistoryState {
    /// Per shard, per job: its next run number and stored count.
    numbers: Mutex<HashMap<u32, HashMap<String, JobNumbers>>>,
    /// Record time of the last sweep step.
    swept_ms: AtomicI64,
    /// Where the sweep goes on.
    cursor: AtomicU64,
}

impl HistoryState {
    pub(super) fn new() -> Self {
        Self {
            numbers: Mutex::default(),
            swept_ms: AtomicI64::new(i64::MIN),
            cursor: AtomicU64::new(0),
        }
    }

    fn numbers(&self) -> MutexGuard<'_, HashMap<u32, HashMap<String, JobNumbers>>> {
        self.numbers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the run numbers of the jobs of `shards`: another node may
    /// write their runs while this one does not hold the lease.
    pub(super) fn forget_shards(&self, shards: impl IntoIterator<Item = u32>) {
        let mut numbers = self.numbers();
        for shard in shards {
            numbers.remove(&shard);
        }
    }

    /// Forgets the run numbers of the jobs of `runs` (a write that failed
    /// may or may not have landed). `shards[i]` is the shard of `runs[i]`.
    fn forget_jobs(&self, runs: &[RunRecord], shards: &[u32]) {
        let mut numbers = self.numbers();
        for (run, shard) in runs.iter().zip(shards) {
            if let Some(jobs) = numbers.get_mut(shard) {
                jobs.remove(&run.job_id);
            }
        }
    }

    /// The jobs of `runs` without a known number, once each, with their
    /// shards.
    fn unknown(&self, runs: &[RunRecord], shards: &[u32]) -> Vec<(u32, String)> {
        let numbers = self.numbers();
        let mut unknown: Vec<(u32, String)> = runs
            .iter()
            .zip(shards)
            .filter(|(r, shard)| {
                numbers
                    .get(shard)
                    .is_none_or(|jobs| !jobs.contains_key(&r.job_id))
            })
            .map(|(r, &shard)| (shard, r.job_id.clone()))
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// Takes `next[i]` as the next number of `jobs[i]` (read back from the
    /// store).
    fn seed(&self, jobs: Vec<(u32, String)>, next: &[u64]) {
        let mut numbers = self.numbers();
        for ((shard, job), &next) in jobs.into_iter().zip(next) {
            numbers
                .entry(shard)
                .or_default()
                .entry(job)
                .or_insert(JobNumbers {
                    next,
                    stored_hour: None,
                });
        }
    }

    /// Numbers `runs` (oldest first), recorded at record hour `hour`, and
    /// returns the numbers with, in order of becoming due, each job whose
    /// count is to be stored and its next number after them.
    fn number(
        &self,
        runs: &[RunRecord],
        shards: &[u32],
        hour: i64,
    ) -> (Vec<u64>, Vec<(String, u64)>) {
        let mut numbers = self.numbers();
        let mut assigned = Vec::with_capacity(runs.len());
        // The jobs whose count became due in this flush, each once, with
        // the shard it is kept under. Most flushes make few of them due, so
        // only these are looked up again for their number after the flush.
        let mut due: Vec<(&str, u32)> = Vec::new();
        let mut due_seen: HashSet<&str> = HashSet::new();
        for (run, &shard) in runs.iter().zip(shards) {
            let jobs = numbers.entry(shard).or_default();
            // Known jobs (nearly all) are looked up once, without copying
            // the id.
            let (number, now_due) = match jobs.get_mut(&run.job_id) {
                Some(n) => {
                    n.next += 1;
                    let now_due = count_due(n, hour);
                    if now_due {
                        n.stored_hour = Some(hour);
                    }
                    (n.next - 1, now_due)
                }
                None => {
                    jobs.insert(
                        run.job_id.clone(),
                        JobNumbers {
                            next: 1,
                            stored_hour: Some(hour),
                        },
                    );
                    (0, true)
                }
            };
            assigned.push(number);
            if now_due && due_seen.insert(run.job_id.as_str()) {
                due.push((run.job_id.as_str(), shard));
            }
        }
        let stored = due
            .into_iter()
            .filter_map(|(job, shard)| {
                let next = numbers.get(&shard)?.get(job)?.next;
                Some((job.to_owned(), next))
            })
            .collect();
        (assigned, stored)
    }

    /// Whether a sweep step is due at record time `now_ms` (and if so,
    /// takes it).
    fn sweep_due(&self, now_ms: i64) -> bool {
        let last = self.swept_ms.load(Ordering::Relaxed);
        now_ms.abs_diff(last) >= HISTORY_SWEEP_EVERY_MS
            && self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl RedisCoordinator {
    /// Writes `runs` (oldest first) to the history and applies `closes`,
    /// in one round trip (two or more the first time a job is written, to
    /// read its next number back).
    pub(super) async fn write_history(
        &self,
        runs: &[RunRecord],
        closes: &[CloseFire],
    ) -> CoordResult<()> {
        // The shard each run was claimed in, the one whose lease changes
        // forget the numbers.
        let shards: Vec<u32> = runs.iter().map(|r| r.shard).collect();
        let unknown = self.history.unknown(runs, &shards);
        if !unknown.is_empty() {
            let next = self.read_next_numbers(&unknown).await?;
            self.history.seed(unknown, &next);
        }
        let mut pipe = redis::pipe();
        self.push_run_records(&mut pipe, runs, &shards);
        self.push_closes(&mut pipe, closes);
        if let Err(e) = self.pipeline::<()>("record runs", &pipe).await {
            self.history.forget_jobs(runs, &shards);
            return Err(e);
        }
        let newest = newest_finish(runs);
        if !runs.is_empty() && self.history.sweep_due(newest) {
            self.sweep_step(newest.div_euclid(HOUR_MS)).await;
        }
        Ok(())
    }

    /// The next run number of each of `jobs`: its stored count, then as
    /// many more as its ring holds in the places that follow (see the
    /// module docs): the count's own slot first, then [`COUNT_EVERY`] ring
    /// slots per job and round trip.
    async fn read_next_numbers(&self, jobs: &[(u32, String)]) -> CoordResult<Vec<u64>> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(self.keys.job_history_counts());
        for (_, job) in jobs {
            hmget.arg(job);
        }
        let counts: Vec<Option<String>> = self.query("run counts", &hmget).await?;
        let mut next: Vec<u64> = counts.iter().map(|c| parse_count(c.as_deref())).collect();
        // The jobs whose ring may hold numbers past `next`: those with a
        // count. A coordinator's first write of a job writes its count in
        // the pipeline that starts the ring, so a job without one has no
        // ring (short of that pipeline stopping between the two, which
        // numbers as two overlapping writers do). A whole ring is the most
        // that can be read back.
        let mut open: Vec<usize> = (0..jobs.len()).filter(|&i| counts[i].is_some()).collect();
        // The first window is the count's own slot: a job written no
        // further than its count (new, rare, or whose writer stored the
        // count last) is settled by one field, not ten.
        let mut window = 1;
        let mut read = 0;
        while !open.is_empty() && read < JOB_RUN_HISTORY_CAP as u64 {
            let mut slots = redis::cmd("HMGET");
            slots.arg(self.keys.job_history());
            for &i in &open {
                for d in 0..window {
                    let slot = ((next[i] + d) % JOB_RUN_HISTORY_CAP as u64) as usize;
                    slots.arg(Keyspace::job_history_slot(slot, &jobs[i].1));
                }
            }
            let entries: Vec<Option<String>> = self.query("run numbers", &slots).await?;
            let mut still_open = Vec::new();
            for (&i, held_here) in open.iter().zip(entries.chunks(window as usize)) {
                let from = next[i];
                let held = held_here
                    .iter()
                    .zip(from..)
                    .take_while(|(entry, number)| {
                        entry.as_deref().and_then(ring_entry::number) == Some(*number)
                    })
                    .count() as u64;
                next[i] = from + held;
                if held == window {
                    still_open.push(i);
                }
            }
            open = still_open;
            read += window;
            window = COUNT_EVERY;
        }
        Ok(next)
    }

    /// Queues the history writes of `runs` on `pipe`, numbered from the
    /// known counts (`shards[i]` is the shard of `runs[i]`).
    fn push_run_records(&self, pipe: &mut Pipeline, runs: &[RunRecord], shards: &[u32]) {
        if runs.is_empty() {
            return;
        }
        let hour = newest_finish(runs).div_euclid(HOUR_MS);
        let (numbers, stored) = self.history.number(runs, shards, hour);
        let entries: Vec<(String, String)> = runs
            .iter()
            .zip(&numbers)
            .map(|(run, &number)| {
                let slot = (number % JOB_RUN_HISTORY_CAP as u64) as usize;
                (
                    Keyspace::job_history_slot(slot, &run.job_id),
                    ring_entry::encode(number, run),
                )
            })
            .collect();

        // The two big commands are sized before their arguments go in: a
        // write carries up to 5,000 records, and a command grown argument
        // by argument reallocates (and copies) its buffer about a dozen
        // times, onto fresh pages the kernel must zero (in a profile of
        // four workers at 20,000 fires a second, that zeroing and the
        // copies under the history write were about a tenth of the
        // samples). The namespace list gets each ring entry behind its job
        // id (see `ring_entry`).
        let runs_key = self.keys.runs();
        let listed: Vec<String> = runs
            .iter()
            .zip(&entries)
            .map(|(run, (_, entry))| ring_entry::listed(&run.job_id, entry))
            .collect();
        let mut list = sized_cmd(
            "LPUSH",
            &runs_key,
            listed.len(),
            listed.iter().map(String::len).sum(),
        );
        for text in &listed {
            list.arg(text);
        }
        pipe.add_command(list).ignore();
        pipe.cmd("LTRIM")
            .arg(&runs_key)
            .arg(0)
            .arg(RUN_HISTORY_CAP - 1)
            .ignore();
        let mut ring = sized_cmd(
            "HSET",
            &self.keys.job_history(),
            entries.len() * 2,
            entries.iter().map(|(f, v)| f.len() + v.len()).sum(),
        );
        for (field, value) in &entries {
            ring.arg(field).arg(value);
        }
        pipe.add_command(ring).ignore();
        if !stored.is_empty() {
            let counts = pipe.cmd("HSET").arg(self.keys.job_history_counts());
            for (job, count) in &stored {
                counts.arg(job).arg(format!("{count}|{hour}"));
            }
            counts.ignore();
        }
    }

    /// One step of the sweep of deleted jobs' history, at record hour
    /// `hour`: its own round trip, once a minute, after a write. It is
    /// housekeeping, so a failure only waits for the next step.
    async fn sweep_step(&self, hour: i64) {
        let keys = [
            self.keys.job_history(),
            self.keys.job_history_counts(),
            self.keys.job_index(),
        ];
        let args = [
            self.history.cursor.load(Ordering::Relaxed).to_string(),
            (hour - JOB_RUN_HISTORY_RETENTION_HOURS).to_string(),
            SWEEP_COUNT.to_string(),
            JOB_RUN_HISTORY_CAP.to_string(),
        ];
        match self
            .eval::<Value>("sweep history", &self.scripts.sweep_history, &keys, &args)
            .await
        {
            Ok(cursor) => {
                let cursor = value_to_string(&cursor)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                self.history.cursor.store(cursor, Ordering::Relaxed);
            }
            Err(e) => debug!(error = %e, "run history sweep step failed"),
        }
    }

    /// The last `limit` runs of `job_id`, most recent first: its ring,
    /// ordered by run number, merged with the per-job list an earlier
    /// version wrote (if not expired yet), in one round trip.
    pub(super) async fn read_job_runs(
        &self,
        job_id: &str,
        limit: usize,
    ) -> CoordResult<Vec<RunRecord>> {
        let mut pipe = redis::pipe();
        let hmget = pipe.cmd("HMGET").arg(self.keys.job_history());
        for slot in 0..JOB_RUN_HISTORY_CAP {
            hmget.arg(Keyspace::job_history_slot(slot, job_id));
        }
        pipe.cmd("LRANGE")
            .arg(self.keys.legacy_job_runs(job_id))
            .arg(0)
            .arg(limit.saturating_sub(1));
        let (slots, legacy): (Vec<Option<String>>, Vec<String>) =
            self.pipeline("recent runs", &pipe).await?;
        let parse = |json: &str| -> CoordResult<RunRecord> {
            serde_json::from_str(json).map_err(|e| Self::corrupt("run record", e))
        };
        let mut numbered = Vec::new();
        for entry in slots.iter().flatten() {
            numbered.push(
                ring_entry::decode(job_id, entry).map_err(|e| Self::corrupt("run record", e))?,
            );
        }
        numbered.sort_by_key(|(number, run)| Reverse((*number, run.finished_ms)));
        let mut runs: Vec<RunRecord> = numbered
            .into_iter()
            .take(limit)
            .map(|(_, run)| run)
            .collect();
        if !legacy.is_empty() {
            for json in &legacy {
                runs.push(parse(json)?);
            }
            // Stable: within one source the order stays.
            runs.sort_by_key(|r| Reverse(r.finished_ms));
            runs.truncate(limit);
        }
        Ok(runs)
    }
}
