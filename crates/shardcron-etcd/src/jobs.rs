//! The job store: jobs, their index, shard versions and live weights.
//!
//! A job write is one transaction over the job key, its index entry, its
//! shard's state document (the version counter and the job's version the
//! claim checks) and the live weights, compared on the mod revisions of the
//! shard document and the weights read: all of it or none, as
//! `put_job.lua`. The shard's version key moves in the same transaction,
//! which the watch reports as `JobsChanged`.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use shardcron_coord::{decode_shard_jobs, CoordError, CoordResult, JobPage, ShardJobs, StoredJob};
use shardcron_core::{candidate_shards, job_shard, JobSpec};

use crate::client::{json, now_ms, to_json, unexpected, MAX_OPS};
use crate::coordinator::Inner;
use crate::keys::{prefix_end, suffix};
use crate::members::LiveWeights;
use crate::shards::{contended_pause, read_states, state_of, update_shards, MAX_ROUNDS};

impl Inner {
    fn contended(&self, op: &'static str) -> CoordError {
        CoordError::Unreachable {
            url: self.etcd.url.clone(),
            message: format!("{op}: still conflicting after {MAX_ROUNDS} rounds; nothing written"),
        }
    }

    /// Where the job `job_id` is stored: per candidate shard (one per
    /// placement), the shard, its job key as read (absent: `None`). A write
    /// compares every candidate key's mod revision as read, so a job
    /// created, moved or deleted meanwhile anywhere makes it read again.
    async fn candidates(
        &self,
        op: &'static str,
        job_id: &str,
    ) -> CoordResult<Vec<(u32, Option<etcd_client::KeyValue>)>> {
        let shards = candidate_shards(job_id, self.ring.shard_count);
        let names: Vec<String> = shards.iter().map(|&n| self.keys.job(n, job_id)).collect();
        let kvs = self.etcd.get_many(op, &names).await?;
        Ok(shards.into_iter().zip(kvs).collect())
    }

    /// Compares that every candidate job key is as read.
    fn unchanged(
        &self,
        job_id: &str,
        found: &[(u32, Option<etcd_client::KeyValue>)],
    ) -> Vec<Compare> {
        found
            .iter()
            .map(|(n, kv)| {
                Compare::mod_revision(
                    self.keys.job(*n, job_id),
                    CompareOp::Equal,
                    kv.as_ref().map_or(0, |kv| kv.mod_revision()),
                )
            })
            .collect()
    }

    /// [`shardcron_coord::Coordinator::put_job`]. A placement change moves
    /// the job from the shard it is in to its placement's shard in the same
    /// transaction, with its watermark and queued triggers (see "Placement
    /// per job" in docs/ARCHITECTURE.md).
    pub(crate) async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        const OP: &str = "put job";
        let units = spec.validate()?.load_units();
        let n = job_shard(&spec.id, spec.placement, self.ring.shard_count);
        for round in 0..MAX_ROUNDS {
            if round > 0 {
                contended_pause(round - 1).await;
            }
            let found = self.candidates(OP, &spec.id).await?;
            let source = found
                .iter()
                .find_map(|(s, kv)| kv.as_ref().map(|kv| (*s, kv)))
                .filter(|(s, _)| *s != n);
            let mut names = vec![self.keys.shard(n), self.keys.load()];
            if let Some((from, _)) = source {
                names.push(self.keys.shard(from));
            }
            let kvs = self.etcd.get_many(OP, &names).await?;
            let mut kvs = kvs.into_iter();
            let (shard_kv, load_kv) = (kvs.next().flatten(), kvs.next().flatten());
            let load_rev = load_kv.as_ref().map_or(0, |kv| kv.mod_revision());
            let (mut state, shard_rev) = state_of(n, shard_kv)?;
            let mut moved_from = match source {
                Some((from, _)) => {
                    let (state, rev) = state_of(from, kvs.next().flatten())?;
                    Some((from, state, rev))
                }
                None => None,
            };
            let mut live: LiveWeights = match &load_kv {
                Some(kv) => json(kv, "shard weights")?,
                None => LiveWeights::default(),
            };
            let current = match &moved_from {
                Some((_, from_state, _)) => from_state.job_version(&spec.id),
                None => state.job_version(&spec.id),
            }
            .unwrap_or(0);
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: spec.id.clone(),
                        expected,
                        current,
                    });
                }
            }
            let now = now_ms();
            let previous_kv = match source {
                Some((_, kv)) => Some(kv),
                None => found
                    .iter()
                    .find(|(s, _)| *s == n)
                    .and_then(|(_, kv)| kv.as_ref()),
            };
            let previous =
                previous_kv.and_then(|kv| serde_json::from_slice::<StoredJob>(kv.value()).ok());
            let mut compares = self.unchanged(&spec.id, &found);
            compares.push(Compare::mod_revision(
                self.keys.shard(n),
                CompareOp::Equal,
                shard_rev,
            ));
            compares.push(Compare::mod_revision(
                self.keys.load(),
                CompareOp::Equal,
                load_rev,
            ));
            let mut ops = Vec::new();
            if let Some((from, from_state, from_rev)) = moved_from.as_mut() {
                if let Some(moving) = from_state.take_moving_job(&spec.id) {
                    live.apply(*from, moving.units, 0);
                    state.receive_moving_job(&spec.id, moving);
                }
                compares.push(Compare::mod_revision(
                    self.keys.shard(*from),
                    CompareOp::Equal,
                    *from_rev,
                ));
                ops.push(TxnOp::put(
                    self.keys.shard(*from),
                    to_json(&*from_state, "shard state")?,
                    None,
                ));
                ops.push(TxnOp::put(
                    self.keys.ver(*from),
                    from_state.version().to_string(),
                    None,
                ));
                ops.push(TxnOp::delete(self.keys.job(*from, &spec.id), None));
            }
            let version = state.next_version();
            let stored = StoredJob::written(spec, version, now, previous.as_ref());
            let record = to_json(&stored, &format!("job {}", spec.id))?;
            let old = state.set_job(&spec.id, version, String::new(), units);
            live.apply(n, old, units);
            ops.extend([
                TxnOp::put(self.keys.shard(n), to_json(&state, "shard state")?, None),
                TxnOp::put(self.keys.ver(n), version.to_string(), None),
                TxnOp::put(self.keys.job(n, &spec.id), record, None),
                TxnOp::put(self.keys.index(&spec.id), "", None),
                TxnOp::put(self.keys.load(), to_json(&live, "shard weights")?, None),
            ]);
            let txn = Txn::new().when(compares).and_then(ops);
            if self.etcd.txn(OP, txn).await?.succeeded() {
                return Ok(stored);
            }
        }
        Err(self.contended(OP))
    }

    /// [`shardcron_coord::Coordinator::get_job`]: from whichever candidate
    /// shard holds it.
    pub(crate) async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let found = self.candidates("get job", job_id).await?;
        found
            .into_iter()
            .find_map(|(_, kv)| kv)
            .map(|kv| json(&kv, &format!("job {job_id}")))
            .transpose()
    }

    /// [`shardcron_coord::Coordinator::delete_job`].
    pub(crate) async fn delete_job(
        &self,
        job_id: &str,
        expected_version: Option<u64>,
    ) -> CoordResult<bool> {
        const OP: &str = "delete job";
        for round in 0..MAX_ROUNDS {
            if round > 0 {
                contended_pause(round - 1).await;
            }
            let found = self.candidates(OP, job_id).await?;
            let Some(n) = found.iter().find(|(_, kv)| kv.is_some()).map(|(n, _)| *n) else {
                return Ok(false);
            };
            let names = [self.keys.shard(n), self.keys.load()];
            let kvs = self.etcd.get_many(OP, &names).await?;
            let [shard_kv, load_kv] = <[_; 2]>::try_from(kvs).map_err(|_| unexpected(OP))?;
            let load_rev = load_kv.as_ref().map_or(0, |kv| kv.mod_revision());
            let (mut state, shard_rev) = state_of(n, shard_kv)?;
            let mut live: LiveWeights = match &load_kv {
                Some(kv) => json(kv, "shard weights")?,
                None => LiveWeights::default(),
            };
            let Some(current) = state.job_version(job_id) else {
                // Moved or deleted between the two reads: look again.
                continue;
            };
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: job_id.to_owned(),
                        expected,
                        current,
                    });
                }
            }
            let old = state.remove_job(job_id, now_ms());
            live.apply(n, old, 0);
            let mut compares = self.unchanged(job_id, &found);
            compares.extend([
                Compare::mod_revision(self.keys.shard(n), CompareOp::Equal, shard_rev),
                Compare::mod_revision(self.keys.load(), CompareOp::Equal, load_rev),
            ]);
            let txn = Txn::new().when(compares).and_then([
                TxnOp::put(self.keys.shard(n), to_json(&state, "shard state")?, None),
                TxnOp::put(self.keys.ver(n), state.version().to_string(), None),
                TxnOp::delete(self.keys.job(n, job_id), None),
                TxnOp::delete(self.keys.index(job_id), None),
                TxnOp::put(self.keys.load(), to_json(&live, "shard weights")?, None),
            ]);
            if self.etcd.txn(OP, txn).await?.succeeded() {
                return Ok(true);
            }
        }
        Err(self.contended(OP))
    }

    /// [`shardcron_coord::Coordinator::trigger_job`]: queued in the shard
    /// the job is in (looked for again if it moved meanwhile).
    pub(crate) async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        const OP: &str = "trigger job";
        for _ in 0..MAX_ROUNDS {
            let found = self.candidates(OP, job_id).await?;
            let Some(n) = found.iter().find(|(_, kv)| kv.is_some()).map(|(n, _)| *n) else {
                return Ok(None);
            };
            let mut answers = update_shards(
                &self.etcd,
                &self.keys,
                OP,
                &[n],
                false,
                |_, state, _, now| state.queue_trigger(job_id, now),
            )
            .await?;
            if let Some(at) = answers.remove(&n).flatten() {
                return Ok(Some(at));
            }
        }
        Err(self.contended(OP))
    }

    /// [`shardcron_coord::Coordinator::list_jobs`].
    pub(crate) async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let index = self.keys.index_prefix();
        let from = format!("{index}{prefix}");
        let start = match after {
            Some(a) if a >= prefix => {
                let mut key = format!("{index}{a}").into_bytes();
                key.push(0);
                key
            }
            _ => from.clone().into_bytes(),
        };
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let kvs = if limit == 0 {
            Vec::new()
        } else {
            self.etcd
                .range("list jobs", &from, Some(start), fetch, true)
                .await?
        };
        let mut ids: Vec<String> = kvs
            .iter()
            .filter_map(|kv| suffix(kv.key(), &index).map(str::to_owned))
            .collect();
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().cloned()
        } else {
            None
        };
        Ok(JobPage { ids, next })
    }

    /// [`shardcron_coord::Coordinator::load_shards`]: per shard, its jobs
    /// (one range read) and its state (version, watermarks), in one
    /// transaction per 64 shards, so each shard's jobs and watermarks are
    /// one snapshot.
    pub(crate) async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        const OP: &str = "load shards";
        let mut out = Vec::with_capacity(shards.len());
        for chunk in shards.chunks(MAX_OPS / 2) {
            let mut ops = Vec::with_capacity(chunk.len() * 2);
            for &n in chunk {
                let prefix = self.keys.job_prefix(n);
                ops.push(TxnOp::get(
                    prefix.as_str(),
                    Some(GetOptions::new().with_range(prefix_end(&prefix))),
                ));
                ops.push(TxnOp::get(self.keys.shard(n), None));
            }
            let reply = self.etcd.txn(OP, Txn::new().and_then(ops)).await?;
            let mut replies = reply.op_responses().into_iter();
            for &n in chunk {
                let (Some(TxnOpResponse::Get(mut jobs)), Some(TxnOpResponse::Get(mut state))) =
                    (replies.next(), replies.next())
                else {
                    return Err(unexpected(OP));
                };
                let prefix = self.keys.job_prefix(n);
                let raw: Vec<(String, String)> = jobs
                    .take_kvs()
                    .into_iter()
                    .filter_map(|kv| {
                        let id = suffix(kv.key(), &prefix)?.to_owned();
                        Some((id, String::from_utf8_lossy(kv.value()).into_owned()))
                    })
                    .collect();
                let (jobs, unreadable) = decode_shard_jobs(raw);
                let (state, _) = state_of(n, state.take_kvs().into_iter().next())?;
                out.push(ShardJobs {
                    shard: n,
                    version: state.version(),
                    jobs,
                    last_fired: state.last_fired(),
                    unreadable,
                });
            }
        }
        Ok(out)
    }

    /// [`shardcron_coord::Coordinator::shard_versions`].
    pub(crate) async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        let states = read_states(&self.etcd, &self.keys, "shard versions", shards, false).await?;
        Ok(states.into_iter().map(|((s, _), _)| s.version()).collect())
    }

    /// Every job id defined, as a set (for the history sweep).
    pub(crate) async fn defined(&self, ids: &[String]) -> CoordResult<BTreeMap<String, bool>> {
        let names: Vec<String> = ids.iter().map(|id| self.keys.index(id)).collect();
        let kvs = self.etcd.get_many("job index", &names).await?;
        Ok(ids
            .iter()
            .cloned()
            .zip(kvs.into_iter().map(|kv| kv.is_some()))
            .collect())
    }
}
