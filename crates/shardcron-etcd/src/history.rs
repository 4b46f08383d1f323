//! Run history: the namespace's last runs in pages, each job's last runs
//! in one key, with the retention the history conformance suite checks.
//!
//! * **Namespace.** A write appends its records as pages of at most
//!   [`PAGE`] records (`runs/page/<seq>`, oldest record first) and updates
//!   the page list `runs/meta` by compare-and-set in the same transaction,
//!   dropping the oldest pages while the rest still hold
//!   [`RUN_HISTORY_CAP`] records; reads take the newest pages and return at
//!   most that many records. Pages keep a write to a few keys whatever its
//!   size (a record per key would cost one operation per record, against
//!   etcd's operations-per-transaction limit).
//! * **Per job.** `jobruns/<id>` holds the job's last
//!   [`JOB_RUN_HISTORY_CAP`] runs, newest first, and `jobhour/<id>` the
//!   hour of its last write; each written job's key is updated by
//!   compare-and-set (a job's runs come from its shard's holders, one at a
//!   time, so conflicts are rare and simply retried).
//! * **Retention of deleted jobs.** Once per minute of record time per
//!   coordinator, the jobs whose last write is more than
//!   [`JOB_RUN_HISTORY_RETENTION_HOURS`] old and that are no longer defined
//!   lose their history (the sweep reads only the small hour keys).
//!
//! History is not part of any exactly-once argument: a lost write only
//! loses records, never runs a fire.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use shardcron_coord::redis_coord::{
    JOB_RUN_HISTORY_CAP, JOB_RUN_HISTORY_RETENTION_HOURS, RUN_HISTORY_CAP,
};
use shardcron_coord::{CloseFire, CoordResult, RunRecord};

use crate::client::{json, to_json, MAX_OPS};
use crate::coordinator::Inner;
use crate::keys::suffix;
use crate::shards::MAX_ROUNDS;

/// Records per page of the namespace history.
pub const PAGE: usize = 500;

/// Pages written per transaction (keeps a request well under etcd's
/// default 1.5 MiB request limit).
const PAGES_PER_WRITE: usize = 4;

/// One hour in ms: history retention counts hours of record time.
const HOUR_MS: i64 = 3_600_000;

/// Record time between two sweeps of deleted jobs' history.
const SWEEP_EVERY_MS: u64 = 60_000;

/// The namespace history's pages, oldest first.
#[derive(Default, Serialize, Deserialize)]
struct Meta {
    next: u64,
    pages: Vec<(u64, usize)>,
}

/// The newest `finished_ms` of `runs` (0 if none): history's "now", so
/// retention follows the records, not this process's clock.
fn newest_finish(runs: &[RunRecord]) -> i64 {
    runs.iter().map(|r| r.finished_ms).fold(0, i64::max)
}

impl Inner {
    /// [`shardcron_coord::Coordinator::record_runs`].
    pub(crate) async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let newest = newest_finish(runs);
        let hour = newest.div_euclid(HOUR_MS);
        self.append_pages(runs).await?;
        self.append_job_runs(runs, hour).await?;
        let due = {
            let mut swept = self
                .history_swept_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = swept.is_none_or(|last| newest.abs_diff(last) >= SWEEP_EVERY_MS);
            if due {
                *swept = Some(newest);
            }
            due
        };
        if due {
            if let Err(e) = self.sweep(hour - JOB_RUN_HISTORY_RETENTION_HOURS).await {
                tracing::warn!(error = %e, "history sweep failed; the next one retries");
            }
        }
        Ok(())
    }

    async fn append_pages(&self, runs: &[RunRecord]) -> CoordResult<()> {
        const OP: &str = "record runs";
        let meta_key = self.keys.runs_meta();
        let pages: Vec<&[RunRecord]> = runs.chunks(PAGE).collect();
        for group in pages.chunks(PAGES_PER_WRITE) {
            let mut written = false;
            for _ in 0..MAX_ROUNDS {
                let kv = self
                    .etcd
                    .get_many(OP, std::slice::from_ref(&meta_key))
                    .await?
                    .into_iter()
                    .next()
                    .flatten();
                let revision = kv.as_ref().map_or(0, |kv| kv.mod_revision());
                let mut meta: Meta = match &kv {
                    Some(kv) => json(kv, "run history pages")?,
                    None => Meta::default(),
                };
                let mut ops = Vec::new();
                for page in group {
                    let seq = meta.next;
                    meta.next += 1;
                    meta.pages.push((seq, page.len()));
                    ops.push(TxnOp::put(
                        self.keys.runs_page(seq),
                        to_json(page, "run history page")?,
                        None,
                    ));
                }
                let mut total: usize = meta.pages.iter().map(|(_, c)| c).sum();
                while let Some(&(seq, count)) = meta.pages.first() {
                    if total - count < RUN_HISTORY_CAP {
                        break;
                    }
                    total -= count;
                    meta.pages.remove(0);
                    ops.push(TxnOp::delete(self.keys.runs_page(seq), None));
                }
                ops.push(TxnOp::put(
                    meta_key.as_str(),
                    to_json(&meta, "run history pages")?,
                    None,
                ));
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        meta_key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then(ops);
                if self.etcd.txn(OP, txn).await?.succeeded() {
                    written = true;
                    break;
                }
            }
            if !written {
                return Err(shardcron_coord::CoordError::Unreachable {
                    url: self.etcd.url.clone(),
                    message: format!("{OP}: history pages kept changing"),
                });
            }
        }
        Ok(())
    }

    async fn append_job_runs(&self, runs: &[RunRecord], hour: i64) -> CoordResult<()> {
        const OP: &str = "record job runs";
        let mut by_job: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
        for run in runs {
            by_job.entry(run.job_id.as_str()).or_default().push(run);
        }
        let jobs: Vec<(&str, Vec<&RunRecord>)> = by_job.into_iter().collect();
        for chunk in jobs.chunks(MAX_OPS / 2) {
            let mut written = false;
            for _ in 0..MAX_ROUNDS {
                let names: Vec<String> =
                    chunk.iter().map(|(id, _)| self.keys.job_runs(id)).collect();
                let kvs = self.etcd.get_many(OP, &names).await?;
                let mut compares = Vec::with_capacity(chunk.len());
                let mut ops = Vec::with_capacity(chunk.len() * 2);
                for ((id, new), kv) in chunk.iter().zip(kvs) {
                    let mut list: Vec<RunRecord> = match &kv {
                        Some(kv) => json(kv, &format!("run history of {id}"))?,
                        None => Vec::new(),
                    };
                    let mut fresh: Vec<RunRecord> =
                        new.iter().rev().map(|r| (*r).clone()).collect();
                    fresh.append(&mut list);
                    fresh.truncate(JOB_RUN_HISTORY_CAP);
                    let key = self.keys.job_runs(id);
                    compares.push(Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        kv.as_ref().map_or(0, |kv| kv.mod_revision()),
                    ));
                    ops.push(TxnOp::put(
                        key.as_str(),
                        to_json(&fresh, "run history")?,
                        None,
                    ));
                    ops.push(TxnOp::put(self.keys.job_hour(id), hour.to_string(), None));
                }
                let txn = Txn::new().when(compares).and_then(ops);
                if self.etcd.txn(OP, txn).await?.succeeded() {
                    written = true;
                    break;
                }
            }
            if !written {
                return Err(shardcron_coord::CoordError::Unreachable {
                    url: self.etcd.url.clone(),
                    message: format!("{OP}: job histories kept changing"),
                });
            }
        }
        Ok(())
    }

    /// Drops the history of jobs last written before `cutoff_hour` that
    /// are no longer defined.
    async fn sweep(&self, cutoff_hour: i64) -> CoordResult<()> {
        const OP: &str = "sweep history";
        let prefix = self.keys.job_hour_prefix();
        let hours = self.etcd.range(OP, &prefix, None, 0, false).await?;
        let old: Vec<(String, i64)> = hours
            .iter()
            .filter_map(|kv| {
                let id = suffix(kv.key(), &prefix)?;
                let hour: i64 = std::str::from_utf8(kv.value()).ok()?.parse().ok()?;
                (hour < cutoff_hour).then(|| (id.to_owned(), kv.mod_revision()))
            })
            .collect();
        if old.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = old.iter().map(|(id, _)| id.clone()).collect();
        let defined = self.defined(&ids).await?;
        let deletes: Vec<Txn> = old
            .iter()
            .filter(|(id, _)| !defined.get(id).copied().unwrap_or(false))
            .map(|(id, revision)| {
                Txn::new()
                    .when([Compare::mod_revision(
                        self.keys.job_hour(id),
                        CompareOp::Equal,
                        *revision,
                    )])
                    .and_then([
                        TxnOp::delete(self.keys.job_hour(id), None),
                        TxnOp::delete(self.keys.job_runs(id), None),
                    ])
            })
            .collect();
        self.etcd.txns(OP, deletes).await?;
        Ok(())
    }

    /// [`shardcron_coord::Coordinator::record_and_close`].
    pub(crate) async fn record_and_close(
        &self,
        runs: &[RunRecord],
        closes: &[CloseFire],
    ) -> CoordResult<()> {
        self.record_runs(runs).await?;
        self.close_fires(closes).await
    }

    /// [`shardcron_coord::Coordinator::recent_runs`].
    pub(crate) async fn recent_runs(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> CoordResult<Vec<RunRecord>> {
        const OP: &str = "recent runs";
        if let Some(id) = job_id {
            let kv = self
                .etcd
                .get_many(OP, &[self.keys.job_runs(id)])
                .await?
                .into_iter()
                .next()
                .flatten();
            let mut list: Vec<RunRecord> = match &kv {
                Some(kv) => json(kv, &format!("run history of {id}"))?,
                None => Vec::new(),
            };
            list.truncate(limit.min(JOB_RUN_HISTORY_CAP));
            return Ok(list);
        }
        let want = limit.min(RUN_HISTORY_CAP);
        if want == 0 {
            return Ok(Vec::new());
        }
        let kv = self
            .etcd
            .get_many(OP, &[self.keys.runs_meta()])
            .await?
            .into_iter()
            .next()
            .flatten();
        let meta: Meta = match &kv {
            Some(kv) => json(kv, "run history pages")?,
            None => return Ok(Vec::new()),
        };
        let mut names = Vec::new();
        let mut counted = 0;
        for &(seq, count) in meta.pages.iter().rev() {
            if counted >= want {
                break;
            }
            names.push(self.keys.runs_page(seq));
            counted += count;
        }
        // One snapshot at the meta's revision would be stricter; a page
        // trimmed meanwhile is simply absent (the read is newest-first).
        let pages = self.etcd.get_many(OP, &names).await?;
        let mut out = Vec::with_capacity(want);
        for kv in pages.into_iter().flatten() {
            let page: Vec<RunRecord> = json(&kv, "run history page")?;
            out.extend(page.into_iter().rev());
            if out.len() >= want {
                break;
            }
        }
        out.truncate(want);
        Ok(out)
    }
}
