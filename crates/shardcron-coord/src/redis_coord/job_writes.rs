//! Job writes and job listing on a Redis Cluster.
//!
//! On one server `put_job.lua` and `delete_job.lua` change a shard's jobs
//! and the namespace's job index and live weights in one atomic step. On a
//! cluster those keys live in different slots (often on different nodes),
//! and no script may span slots, so each write is split (the argument that
//! no lost reply or crash between the steps breaks anything is in
//! docs/ARCHITECTURE.md, "Redis Cluster"):
//!
//! 1. put only: `ZADD` of the id to the job index, first. The index may
//!    name a job that does not exist (a failed or conflicting write, a
//!    deleted job), never miss one that does: the history sweep keeps what
//!    the index names, and listing skips the absent ones.
//! 2. the shard step (`put_job_shard.lua` / `delete_job_shard.lua`): the
//!    whole decision and every shard key, atomically, as on one server; it
//!    returns the shard's total weight and the shard version after it.
//! 3. the namespace step (`set_weight.lua`): the shard's live weight set to
//!    that total unless a later shard version's total was set already.
//!    Idempotent and order-proof; a step lost to a crash leaves the shard's
//!    weight stale until the shard's next job write, which only skews
//!    placement's balance for a while.
//!
//! Exactly-once never depends on these keys: claims read only shard keys.

use shardcron_core::JobSpec;

use super::RedisCoordinator;
use crate::coordinator::CoordResult;
use crate::error::CoordError;
use crate::model::{JobPage, StoredJob};

impl RedisCoordinator {
    /// `put_job` on a cluster: index, shard step, namespace step.
    pub(super) async fn put_job_split(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
        units: u64,
        json: String,
    ) -> CoordResult<StoredJob> {
        let shard = self.shard(&spec.id);
        let _: i64 = self
            .query(
                "index job",
                redis::cmd("ZADD")
                    .arg(self.keys.job_index())
                    .arg(0)
                    .arg(&spec.id),
            )
            .await?;
        let keys = [
            self.keys.jobs(shard),
            self.keys.last_fired(shard),
            self.keys.shard_version(shard),
            self.keys.job_weights(shard),
            self.keys.legacy_job_versions(shard),
            self.keys.legacy_trigger_instants(shard),
        ];
        let args = [
            spec.id.clone(),
            json,
            expected_version.map(|v| v.to_string()).unwrap_or_default(),
            if spec.paused { "1" } else { "0" }.to_owned(),
            self.keys.events_channel(),
            shard.to_string(),
            units.to_string(),
        ];
        let reply: Vec<i64> = self
            .eval("put job", &self.scripts.put_job_shard, &keys, &args)
            .await?;
        match reply.as_slice() {
            [-1, current] => Err(CoordError::VersionConflict {
                job_id: spec.id.clone(),
                expected: expected_version.unwrap_or(0),
                current: (*current).max(0) as u64,
            }),
            [version, updated_ms, active_since_ms, total] => {
                self.set_weight(shard, *version, *total).await?;
                Ok(StoredJob {
                    version: *version as u64,
                    updated_ms: *updated_ms,
                    active_since_ms: *active_since_ms,
                    spec: spec.clone(),
                })
            }
            other => Err(Self::corrupt("put job reply", format!("{other:?}"))),
        }
    }

    /// `delete_job` on a cluster: shard step, namespace step. `Ok(None)`
    /// is a version conflict.
    pub(super) async fn delete_job_split(
        &self,
        job_id: &str,
        expected_version: Option<u64>,
    ) -> CoordResult<Option<bool>> {
        let shard = self.shard(job_id);
        let keys = [
            self.keys.jobs(shard),
            self.keys.legacy_job_versions(shard),
            self.keys.shard_version(shard),
            self.keys.last_fired(shard),
            self.keys.legacy_trigger_instants(shard),
            self.keys.job_weights(shard),
            self.keys.triggers(shard),
        ];
        let args = [
            job_id.to_owned(),
            expected_version.map(|v| v.to_string()).unwrap_or_default(),
            self.keys.events_channel(),
            shard.to_string(),
        ];
        let reply: Vec<i64> = self
            .eval("delete job", &self.scripts.delete_job_shard, &keys, &args)
            .await?;
        match reply.as_slice() {
            [1, version, total] => {
                self.set_weight(shard, *version, *total).await?;
                Ok(Some(true))
            }
            [0] => Ok(Some(false)),
            [-1] => Ok(None),
            other => Err(Self::corrupt("delete job reply", format!("{other:?}"))),
        }
    }

    /// The namespace step: the shard's live weight to `total` unless a
    /// later version's total was applied.
    async fn set_weight(&self, shard: u32, version: i64, total: i64) -> CoordResult<()> {
        let keys = [
            self.keys.live_weights(),
            self.keys.live_weights_version(),
            self.keys.live_weights_applied(),
        ];
        let args = [shard.to_string(), version.to_string(), total.to_string()];
        let _: i64 = self
            .eval("set live weight", &self.scripts.set_weight, &keys, &args)
            .await?;
        Ok(())
    }

    /// `list_jobs` on a cluster: the index names every job and maybe some
    /// that no longer exist, so each page's ids are checked in their
    /// shards (one `HEXISTS` each, in parallel by slot) and the absent
    /// ones skipped, reading on until the page is full or the index ends.
    pub(super) async fn list_jobs_checked(
        &self,
        min: String,
        max: &str,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let fetch = limit.saturating_add(1).max(64);
        let mut ids: Vec<String> = Vec::new();
        let mut from = min;
        loop {
            let batch: Vec<String> = self
                .query(
                    "list jobs",
                    redis::cmd("ZRANGEBYLEX")
                        .arg(self.keys.job_index())
                        .arg(&from)
                        .arg(max)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(fetch),
                )
                .await?;
            let Some(last) = batch.last().cloned() else {
                break;
            };
            let mut pipe = redis::pipe();
            for id in &batch {
                pipe.cmd("HEXISTS")
                    .arg(self.keys.jobs(self.shard(id)))
                    .arg(id);
            }
            let exists: Vec<bool> = self.pipeline("list jobs", &pipe).await?;
            ids.extend(
                batch
                    .iter()
                    .zip(exists)
                    .filter(|(_, e)| *e)
                    .map(|(id, _)| id.clone()),
            );
            if ids.len() > limit || batch.len() < fetch {
                break;
            }
            from = format!("({last}");
        }
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().cloned()
        } else {
            None
        };
        Ok(JobPage { ids, next })
    }
}
