//! Redis side of delivery `at_least_once`: open entries per shard
//! (`{ns:s}:open`), their recovery and their closing (in the round trip of
//! the run history write, see `history`).
//!
//! A claim with `track_open` writes the open entry inside `claim.lua`; a
//! terminal state removes it in the same pipeline as the fire's run record
//! (`close.lua`, one call per shard of the batch), so neither adds a round
//! trip; `at_most_once` fires never touch these keys.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::Pipeline;

use super::RedisCoordinator;
use crate::coordinator::CoordResult;
use crate::model::{CloseFire, HandBack, OpenFire, RecoverBatch, RecoverOutcome};

impl RedisCoordinator {
    /// Queues one `close.lua` call per shard of `closes` on `pipe`.
    pub(super) fn push_closes(&self, pipe: &mut Pipeline, closes: &[CloseFire]) {
        let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for close in closes {
            let args = by_shard.entry(close.shard).or_default();
            args.push(format!("{}@{}", close.job_id, close.scheduled_ms));
            args.push(format!(
                "{}|{}|{}",
                close.holder, close.token, close.delivery
            ));
            args.push(if close.abandon { "a" } else { "c" }.to_owned());
        }
        for (shard, args) in by_shard {
            let keys = [self.keys.open_fires(shard)];
            Self::evalsha(pipe, &self.scripts.close, &keys, &args);
            // The count removed is not needed: a close that found its entry
            // recovered by another node is not an error.
            pipe.ignore();
        }
    }

    /// `HGETALL` of each shard's open entries, one round trip.
    pub(super) async fn read_open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &shard in shards {
            pipe.cmd("HGETALL").arg(self.keys.open_fires(shard));
        }
        let replies: Vec<Vec<(String, String)>> = self.pipeline("open fires", &pipe).await?;
        Ok(shards
            .iter()
            .zip(replies)
            .map(|(&shard, entries)| {
                let mut fires: Vec<OpenFire> = entries
                    .iter()
                    .filter_map(|(field, value)| OpenFire::parse(shard, field, value))
                    .collect();
                fires.sort_by(|a, b| (a.scheduled_ms, &a.job_id).cmp(&(b.scheduled_ms, &b.job_id)));
                fires
            })
            .collect())
    }

    /// The arguments `claim.lua` and `recover.lua` both start with: the
    /// caller's `holder|token` (checked against the shard's lease), the
    /// claim keys' retention in ms and the shard's claim key prefix; room
    /// for `more` arguments after them.
    pub(super) fn lease_script_header(
        &self,
        shard: u32,
        holder: &str,
        token: u64,
        retention: Duration,
        more: usize,
    ) -> Vec<String> {
        let mut args = Vec::with_capacity(3 + more);
        args.push(format!("{holder}|{token}"));
        args.push(retention.as_millis().to_string());
        args.push(self.keys.claim_prefix(shard));
        args
    }

    /// One `recover.lua` call per batch, one round trip.
    pub(super) async fn recover_open_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for batch in batches {
            let keys = [
                self.keys.lease(batch.shard),
                self.keys.open_fires(batch.shard),
            ];
            let mut args = self.lease_script_header(
                batch.shard,
                &batch.holder,
                batch.token,
                retention,
                2 * batch.fires.len(),
            );
            for fire in &batch.fires {
                args.push(fire.field());
                args.push(fire.value());
            }
            Self::evalsha(&mut pipe, &self.scripts.recover, &keys, &args);
        }
        let replies: Vec<Vec<i64>> = self.pipeline("recover fires", &pipe).await?;
        Ok(replies
            .into_iter()
            .map(|codes| match codes.first() {
                Some(1) => RecoverOutcome::Recovered(codes[1..].iter().map(|c| *c == 1).collect()),
                _ => RecoverOutcome::LeaseLost,
            })
            .collect())
    }

    /// One `hand_back.lua` call per shard of `fires`, one round trip;
    /// per fire (in request order) whether it was handed back.
    pub(super) async fn hand_back(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_shard: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, fire) in fires.iter().enumerate() {
            by_shard.entry(fire.shard).or_default().push(i);
        }
        let mut pipe = redis::pipe();
        for (&shard, members) in &by_shard {
            let keys = [
                self.keys.open_fires(shard),
                self.keys.shard_version(shard),
                self.keys.last_fired(shard),
            ];
            let mut args = vec![
                holder.to_owned(),
                retention.as_millis().to_string(),
                self.keys.claim_prefix(shard),
                self.keys.events_channel(),
                shard.to_string(),
            ];
            for &i in members {
                let fire = &fires[i];
                let lost: Vec<String> = fire.lost_attempts.iter().map(u64::to_string).collect();
                args.push(fire.job_id.clone());
                args.push(fire.scheduled_ms.to_string());
                args.push(fire.kind.code().to_owned());
                args.push(fire.token.to_string());
                args.push(lost.join(","));
            }
            Self::evalsha(&mut pipe, &self.scripts.hand_back, &keys, &args);
        }
        let replies: Vec<Vec<i64>> = self.pipeline("hand back fires", &pipe).await?;
        let mut out = vec![false; fires.len()];
        for (members, codes) in by_shard.values().zip(replies) {
            for (&i, code) in members.iter().zip(codes) {
                out[i] = code == 1;
            }
        }
        Ok(out)
    }
}
