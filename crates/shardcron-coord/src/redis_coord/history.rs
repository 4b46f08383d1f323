//! Redis side of the run history: the writes of one recorder flush, queued
//! in the pipeline that also closes `at_least_once` fires, and the reads of
//! a job's last runs.
//!
//! A flush costs the same four commands however many records and jobs it
//! carries: `LPUSH` + `LTRIM` of the namespace list, one `HSET` of the
//! records into the per-job rings (one hash for all jobs, `{ns}:jobruns`)
//! and one `HSET` of the jobs' run counts (`{ns}:jobruns:n`). Per-job lists
//! would cost commands per job, i.e. per fire when each job fires about
//! once per flush (10,000 jobs every second); a Lua script doing the same
//! in one call would spend as much Redis CPU as the per-job lists did on
//! moving every record through Lua (measured). So the numbers that pick
//! each run's slot in its job's ring are
//! counted here: seeded from the stored counts the first time this
//! coordinator writes a job, then kept. A job's runs are written by the
//! holder of its shard's lease, so the numbers of a shard's jobs are
//! forgotten (and read again) whenever this coordinator acquires, releases
//! or fails to renew that lease. Only two writers overlapping at a handoff
//! (the old holder's last flush after the new holder read the count) can
//! give two runs one number: one replaces the other in the ring (both stay
//! in the namespace list). Every ring entry carries its number, and reads
//! order by it, so that never shows runs out of order.
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

use foldhash::{HashMap, HashMapExt};
use redis::{Pipeline, Value};
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

/// The newest `finished_ms` of `runs` (0 if none): the history's notion of
/// "now", so retention follows the records, not this process's clock.
pub(crate) fn newest_finish(runs: &[RunRecord]) -> i64 {
    runs.iter().map(|r| r.finished_ms).fold(0, i64::max)
}

/// What a coordinator keeps between history writes.
pub(super) struct HistoryState {
    /// Per shard, per job: the number the job's next run gets.
    numbers: Mutex<HashMap<u32, HashMap<String, u64>>>,
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

    fn numbers(&self) -> MutexGuard<'_, HashMap<u32, HashMap<String, u64>>> {
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

    /// Takes the stored counts (`count|hour`, absent: 0) of `jobs` as their
    /// next numbers.
    fn seed(&self, jobs: Vec<(u32, String)>, counts: &[Option<String>]) {
        let mut numbers = self.numbers();
        for ((shard, job), count) in jobs.into_iter().zip(counts) {
            let next = count
                .as_deref()
                .and_then(|c| c.split('|').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            numbers.entry(shard).or_default().entry(job).or_insert(next);
        }
    }

    /// Numbers `runs` (oldest first) and returns the numbers with each
    /// job's next number after them, in order of first appearance.
    fn number(&self, runs: &[RunRecord], shards: &[u32]) -> (Vec<u64>, Vec<(String, u64)>) {
        let mut numbers = self.numbers();
        let mut assigned = Vec::with_capacity(runs.len());
        let mut next: Vec<(String, u64)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (run, &shard) in runs.iter().zip(shards) {
            let jobs = numbers.entry(shard).or_default();
            // Known jobs (nearly all) are looked up once, without copying
            // the id.
            let number = match jobs.get_mut(&run.job_id) {
                Some(n) => std::mem::replace(n, *n + 1),
                None => {
                    jobs.insert(run.job_id.clone(), 1);
                    0
                }
            };
            assigned.push(number);
            let following = number + 1;
            match index.get(run.job_id.as_str()) {
                Some(&i) => next[i].1 = following,
                None => {
                    index.insert(run.job_id.as_str(), next.len());
                    next.push((run.job_id.clone(), following));
                }
            }
        }
        (assigned, next)
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
    /// in one round trip (one more the first time a job is written, to
    /// read its count).
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
            let mut hmget = redis::cmd("HMGET");
            hmget.arg(self.keys.job_history_counts());
            for (_, job) in &unknown {
                hmget.arg(job);
            }
            let counts: Vec<Option<String>> = self.query("run counts", &hmget).await?;
            self.history.seed(unknown, &counts);
        }
        let mut pipe = redis::pipe();
        self.push_run_records(&mut pipe, runs, &shards)?;
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

    /// Queues the history writes of `runs` on `pipe`, numbered from the
    /// known counts (`shards[i]` is the shard of `runs[i]`).
    fn push_run_records(
        &self,
        pipe: &mut Pipeline,
        runs: &[RunRecord],
        shards: &[u32],
    ) -> CoordResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let jsons = runs
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| Self::corrupt("run record", e))?;
        let (numbers, next) = self.history.number(runs, shards);
        let hour = newest_finish(runs).div_euclid(HOUR_MS);

        let list = pipe.cmd("LPUSH").arg(self.keys.runs());
        for json in &jsons {
            list.arg(json);
        }
        list.ignore();
        pipe.cmd("LTRIM")
            .arg(self.keys.runs())
            .arg(0)
            .arg(RUN_HISTORY_CAP - 1)
            .ignore();
        let ring = pipe.cmd("HSET").arg(self.keys.job_history());
        for (run, &number) in runs.iter().zip(&numbers) {
            let slot = (number % JOB_RUN_HISTORY_CAP as u64) as usize;
            ring.arg(Keyspace::job_history_slot(slot, &run.job_id))
                .arg(ring_entry::encode(number, run));
        }
        ring.ignore();
        let counts = pipe.cmd("HSET").arg(self.keys.job_history_counts());
        for (job, count) in &next {
            counts.arg(job).arg(format!("{count}|{hour}"));
        }
        counts.ignore();
        Ok(())
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
