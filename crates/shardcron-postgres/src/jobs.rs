//! The job store and the trigger queue: versioned job writes, reads of
//! whole shards in one snapshot, and triggers that stay queued until the
//! claim of their fire.

use shardcron_coord::{
    decode_shard_jobs, CoordError, CoordResult, JobPage, QueuedTrigger, ShardJobs, StoredJob,
    MAX_RELOCATIONS,
};
use shardcron_core::JobSpec;

use crate::coordinator::PostgresCoordinator;
use crate::error::{corrupt, map_pg};
use crate::leases::{shards_param, tokens_param};

impl PostgresCoordinator {
    /// [`shardcron_coord::Coordinator::put_job`]: `put_job()`.
    pub(crate) async fn write_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        let op = "put job";
        let units = spec.validate()?.load_units();
        let shard = self.shard(&spec.id, spec.placement);
        let json = serde_json::to_string(spec).map_err(|e| corrupt("job spec", e))?;
        let expected = expected_version.map(|v| v as i64);
        for _ in 0..MAX_RELOCATIONS {
            let source = self
                .job_location(&spec.id)
                .await?
                .filter(|&s| s != shard)
                .map(|s| s as i32);
            let row = self
                .query_one(
                    op,
                    "SELECT __SCHEMA__.put_job($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &spec.id,
                        &(shard as i32),
                        &json,
                        &expected,
                        &spec.paused,
                        &(units as i64),
                        &source,
                    ],
                )
                .await?;
            let reply: Vec<i64> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
            if reply.as_slice() == [-2] {
                continue;
            }
            return Self::put_reply(spec, expected_version, &reply);
        }
        Err(CoordError::moved_while_written(&spec.id))
    }

    /// The shard the job `job_id` is stored in, if it exists.
    async fn job_location(&self, job_id: &str) -> CoordResult<Option<u32>> {
        let op = "locate job";
        let rows = self
            .query(
                op,
                "SELECT shard FROM __SCHEMA__.jobs WHERE job_id = $1",
                &[&job_id],
            )
            .await?;
        rows.first()
            .map(|row| row.try_get::<_, i32>(0).map(|s| s as u32))
            .transpose()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    fn put_reply(
        spec: &JobSpec,
        expected_version: Option<u64>,
        reply: &[i64],
    ) -> CoordResult<StoredJob> {
        match reply {
            [-1, current] => Err(CoordError::VersionConflict {
                job_id: spec.id.clone(),
                expected: expected_version.unwrap_or(0),
                current: (*current).max(0) as u64,
            }),
            [version, updated_ms, active_since_ms] => Ok(StoredJob {
                version: *version as u64,
                updated_ms: *updated_ms,
                active_since_ms: *active_since_ms,
                spec: spec.clone(),
            }),
            other => Err(corrupt("put job reply", format!("{other:?}"))),
        }
    }

    /// [`shardcron_coord::Coordinator::get_job`].
    pub(crate) async fn read_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let op = "get job";
        let rows = self
            .query(
                op,
                "SELECT record FROM __SCHEMA__.jobs WHERE job_id = $1",
                &[&job_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let raw: String = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| corrupt(format!("job {job_id}"), e))
    }

    /// [`shardcron_coord::Coordinator::delete_job`]: `delete_job()`; on a conflict, one more read for the current version.
    pub(crate) async fn remove_job(
        &self,
        job_id: &str,
        expected_version: Option<u64>,
    ) -> CoordResult<bool> {
        let op = "delete job";
        let expected = expected_version.map(|v| v as i64);
        for _ in 0..MAX_RELOCATIONS {
            let Some(shard) = self.job_location(job_id).await? else {
                return Ok(false);
            };
            let row = self
                .query_one(
                    op,
                    "SELECT __SCHEMA__.delete_job($1, $2, $3)",
                    &[&job_id, &(shard as i32), &expected],
                )
                .await?;
            let removed: i32 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
            return match removed {
                1 => Ok(true),
                0 => Ok(false),
                -2 => continue,
                _ => {
                    let current = self.read_job(job_id).await?.map_or(0, |j| j.version);
                    Err(CoordError::VersionConflict {
                        job_id: job_id.to_owned(),
                        expected: expected_version.unwrap_or(0),
                        current,
                    })
                }
            };
        }
        Err(CoordError::moved_while_written(job_id))
    }

    /// [`shardcron_coord::Coordinator::trigger_job`]: `trigger_job()`.
    pub(crate) async fn queue_trigger(&self, job_id: &str) -> CoordResult<Option<i64>> {
        let op = "trigger job";
        for _ in 0..MAX_RELOCATIONS {
            let Some(shard) = self.job_location(job_id).await? else {
                return Ok(None);
            };
            let row = self
                .query_one(
                    op,
                    "SELECT __SCHEMA__.trigger_job($1, $2)",
                    &[&job_id, &(shard as i32)],
                )
                .await?;
            let at: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
            if at != -2 {
                return Ok((at >= 0).then_some(at));
            }
        }
        Err(CoordError::moved_while_written(job_id))
    }

    /// [`shardcron_coord::Coordinator::read_triggers`]: `read_triggers()`, all leases in one call.
    pub(crate) async fn queued_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let op = "read triggers";
        let (shards, tokens) = tokens_param(leases);
        let rows = self
            .query(
                op,
                "SELECT o_shard, o_job_id, o_at_ms FROM __SCHEMA__.read_triggers($1, $2, $3)",
                &[&shards, &tokens, &holder],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(QueuedTrigger {
                    shard: row.try_get::<_, i32>(0)? as u32,
                    job_id: row.try_get(1)?,
                    at_ms: row.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    /// [`shardcron_coord::Coordinator::list_jobs`]: ids in byte order (`COLLATE "C"`), one more than asked to tell whether a page follows.
    pub(crate) async fn job_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let op = "list jobs";
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .query(
                op,
                "SELECT job_id FROM __SCHEMA__.jobs
                 WHERE starts_with(job_id, $1) AND ($2::text IS NULL OR job_id > $2)
                 ORDER BY job_id LIMIT $3",
                &[&prefix, &after, &fetch],
            )
            .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))?;
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().cloned()
        } else {
            None
        };
        Ok(JobPage { ids, next })
    }

    /// [`shardcron_coord::Coordinator::load_shards`]: versions, jobs and watermarks of all shards in one statement, so one snapshot.
    pub(crate) async fn shard_jobs(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "load shards";
        // One statement, one snapshot: versions, jobs and watermarks agree.
        let rows = self
            .query(
                op,
                "SELECT u.ord, coalesce(v.version, 0), j.job_id, j.record, j.last_fired_ms
                 FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.shard_versions v ON v.shard = u.shard
                 LEFT JOIN __SCHEMA__.jobs j ON j.shard = u.shard
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        let mut per_shard: Vec<ShardRows> = vec![(0, Vec::new(), Vec::new()); shards.len()];
        for row in &rows {
            let parse = || -> Result<_, tokio_postgres::Error> {
                let ord: i64 = row.try_get(0)?;
                let version: i64 = row.try_get(1)?;
                let job: Option<String> = row.try_get(2)?;
                let record: Option<String> = row.try_get(3)?;
                let last: Option<i64> = row.try_get(4)?;
                Ok((ord, version, job, record, last))
            };
            let (ord, version, job, record, last) =
                parse().map_err(|e| map_pg(&self.url, op, &e))?;
            let Some(slot) = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| per_shard.get_mut(i))
            else {
                return Err(corrupt("shard jobs", format!("row for position {ord}")));
            };
            slot.0 = version.max(0) as u64;
            if let (Some(job), Some(record)) = (job, record) {
                if let Some(last) = last {
                    slot.2.push((job.clone(), last));
                }
                slot.1.push((job, record));
            }
        }
        Ok(shards
            .iter()
            .zip(per_shard)
            .map(|(&shard, (version, jobs, last_fired))| {
                let (jobs, unreadable) = decode_shard_jobs(jobs);
                ShardJobs {
                    shard,
                    version,
                    jobs,
                    last_fired,
                    unreadable,
                }
            })
            .collect())
    }

    /// [`shardcron_coord::Coordinator::shard_versions`].
    pub(crate) async fn versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "shard versions";
        let rows = self
            .query(
                op,
                "SELECT coalesce(v.version, 0)
                 FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.shard_versions v ON v.shard = u.shard
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map(|v| v.max(0) as u64))
            .collect::<Result<_, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }
}

/// A shard's version, `(id, record)` rows and `(id, watermark)` pairs.
type ShardRows = (u64, Vec<(String, String)>, Vec<(String, i64)>);
