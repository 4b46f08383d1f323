//! The run history: records in a `runs` table, in write order.
//!
//! A write (with the closes of `at_least_once` fires, see `fires`) is one
//! call of `record_and_close()`, however many records and jobs it carries:
//! it appends the records, moves each claimed fire's row to its run's
//! outcome, stamps each job's last record hour, and deletes the written
//! jobs' rows that are beyond both caps. The namespace list is the newest
//! [`RUN_HISTORY_CAP`] rows, a job's history its newest
//! [`JOB_RUN_HISTORY_CAP`] visible rows, so reads never depend on when
//! rows beyond the caps are deleted. Housekeeping (`sweep()`) is a bounded
//! step in a round trip of its own once a minute of record time per
//! coordinator, whose failure never fails the write: the rows of jobs no
//! longer defined whose last record is older than
//! [`JOB_RUN_HISTORY_RETENTION_HOURS`] leave their job's history (they stay
//! in the namespace list while among its newest, and are deleted after),
//! and expired fire rows are deleted.

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{json, Value};
use shardcron_coord::redis_coord::{
    JOB_RUN_HISTORY_CAP, JOB_RUN_HISTORY_RETENTION_HOURS, RUN_HISTORY_CAP,
};
use shardcron_coord::{CloseFire, CoordResult, RunRecord};
use tracing::debug;

use crate::coordinator::PostgresCoordinator;
use crate::error::{corrupt, map_pg};

/// Milliseconds per hour: job history carries the hour of its last write.
const HOUR_MS: i64 = 3_600_000;
/// Least record time between two housekeeping steps of one coordinator.
const SWEEP_EVERY_MS: u64 = 60_000;
/// Rows one housekeeping step deletes at most, per kind.
const SWEEP_BATCH: i32 = 5_000;

/// What a coordinator keeps between history writes.
pub(crate) struct HistoryState {
    /// Record time of the last housekeeping step.
    swept_ms: AtomicI64,
}

impl HistoryState {
    pub(crate) fn new() -> Self {
        Self {
            swept_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether a housekeeping step is due at record time `now_ms` (and if
    /// so, takes it).
    fn sweep_due(&self, now_ms: i64) -> bool {
        let last = self.swept_ms.load(Ordering::Relaxed);
        now_ms.abs_diff(last) >= SWEEP_EVERY_MS
            && self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl PostgresCoordinator {
    /// Writes `runs` (oldest first) and applies `closes`, one round trip.
    pub(crate) async fn write_history(
        &self,
        runs: &[RunRecord],
        closes: &[CloseFire],
    ) -> CoordResult<()> {
        let op = "record runs";
        let mut records = Vec::with_capacity(runs.len());
        for run in runs {
            let record = serde_json::to_string(run).map_err(|e| corrupt("run record", e))?;
            records.push(json!({
                "job": run.job_id,
                "at": run.scheduled_ms,
                "outcome": run.outcome.as_str(),
                "record": record,
            }));
        }
        let closes = Value::Array(
            closes
                .iter()
                .map(|c| {
                    json!({
                        "shard": c.shard,
                        "job": c.job_id,
                        "at": c.scheduled_ms,
                        "holder": c.holder,
                        "token": c.token,
                        "delivery": c.delivery,
                        "abandon": c.abandon,
                    })
                })
                .collect(),
        );
        let newest = runs.iter().map(|r| r.finished_ms).fold(0, i64::max);
        let hour = newest.div_euclid(HOUR_MS);
        let records = Value::Array(records);
        self.query(
            op,
            "SELECT __SCHEMA__.record_and_close($1, $2, $3, $4, $5)",
            &[
                &records,
                &closes,
                &hour,
                &(RUN_HISTORY_CAP as i32),
                &(JOB_RUN_HISTORY_CAP as i32),
            ],
        )
        .await?;
        if !runs.is_empty() && self.history.sweep_due(newest) {
            self.sweep_step(hour - JOB_RUN_HISTORY_RETENTION_HOURS)
                .await;
        }
        Ok(())
    }

    /// One housekeeping step, in a round trip of its own after a write:
    /// a failure only waits for the next step, the write stands.
    async fn sweep_step(&self, cutoff_hour: i64) {
        if let Err(e) = self
            .query(
                "sweep history",
                "SELECT __SCHEMA__.sweep($1, $2, $3)",
                &[&cutoff_hour, &(RUN_HISTORY_CAP as i32), &SWEEP_BATCH],
            )
            .await
        {
            debug!(error = %e, "run history sweep step failed");
        }
    }

    /// Most recent runs first, of the namespace or of one job.
    pub(crate) async fn read_runs(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> CoordResult<Vec<RunRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let op = "recent runs";
        let rows = match job_id {
            Some(job) => {
                let limit = limit.min(JOB_RUN_HISTORY_CAP) as i64;
                self.query(
                    op,
                    "SELECT record FROM __SCHEMA__.runs WHERE job_id = $1 AND job_visible
                     ORDER BY seq DESC LIMIT $2",
                    &[&job, &limit],
                )
                .await?
            }
            None => {
                let limit = limit.min(RUN_HISTORY_CAP) as i64;
                self.query(
                    op,
                    "SELECT record FROM __SCHEMA__.runs ORDER BY seq DESC LIMIT $1",
                    &[&limit],
                )
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                let raw: String = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
                serde_json::from_str(&raw).map_err(|e| corrupt("run record", e))
            })
            .collect()
    }
}
