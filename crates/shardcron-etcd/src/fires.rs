//! Claims, triggers and `at_least_once` entries: each a read-decide-CAS
//! step of [`crate::shards::update_shards`] over the shard's state, decided
//! by the same [`ShardState`] methods the in-memory store uses.
//!
//! Why this keeps exactly once: a claim's write (watermarks, claim keys,
//! open entries, the trigger queue) is committed only if neither the
//! shard's state nor its lease key changed since the read it was decided
//! on, so the claim is atomic with its lease check and with every other
//! claim, close, recovery and hand-back of the shard, exactly as one Lua
//! script is on Redis. A lost reply leaves the caller not knowing whether
//! the transaction applied; the attempt ids it carried are in the state
//! (as the watermark's record or a claim key) if and only if it did, and
//! the runtime's takeover and hand-back handle both cases unchanged.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use shardcron_coord::{
    BatchOutcome, ClaimBatch, CloseFire, CoordResult, HandBack, LeaseInfo, OpenFire, QueuedTrigger,
    RecoverBatch, RecoverOutcome, ShardState,
};

use crate::client::ms;
use crate::coordinator::Inner;
use crate::shards::{read_states, update_shards};

/// Indices of `items` by shard, in order.
fn by_shard<T>(items: &[T], shard: impl Fn(&T) -> u32) -> BTreeMap<u32, Vec<usize>> {
    let mut out: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        out.entry(shard(item)).or_default().push(i);
    }
    out
}

/// Puts per-shard answers `(index, answer)` back in request order.
fn in_order<T>(len: usize, answers: BTreeMap<u32, Vec<(usize, T)>>, missing: T) -> Vec<T>
where
    T: Clone,
{
    let mut out: Vec<Option<T>> = vec![None; len];
    for (i, a) in answers.into_values().flatten() {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(a);
        }
    }
    out.into_iter()
        .map(|a| a.unwrap_or_else(|| missing.clone()))
        .collect()
}

/// A batch decided under its shard's lease: which shard, and the holder
/// and token it claims to hold the lease as.
trait LeaseGuarded {
    fn shard(&self) -> u32;
    fn holds(&self, lease: &LeaseInfo) -> bool;
}

impl LeaseGuarded for ClaimBatch {
    fn shard(&self) -> u32 {
        self.shard
    }
    fn holds(&self, lease: &LeaseInfo) -> bool {
        lease.holder == self.holder && lease.token == self.token
    }
}

impl LeaseGuarded for RecoverBatch {
    fn shard(&self) -> u32 {
        self.shard
    }
    fn holds(&self, lease: &LeaseInfo) -> bool {
        lease.holder == self.holder && lease.token == self.token
    }
}

impl Inner {
    /// Decides lease-guarded `batches` shard by shard in one
    /// [`update_shards`] step (lease key read and compared): a batch whose
    /// holder and token are not the shard's lease as read is `lost`, every
    /// other is `decide(state, batch, now, here)`, where `here` is the
    /// shard's set of this call's claim records (batches of one shard in
    /// one call count as one call, as in `claim.lua`). Answers in request
    /// order.
    async fn decide_under_lease<B, O>(
        &self,
        op: &'static str,
        batches: &[B],
        lost: O,
        mut decide: impl FnMut(&mut ShardState, &B, i64, &mut HashSet<String>) -> O,
    ) -> CoordResult<Vec<O>>
    where
        B: LeaseGuarded,
        O: Clone,
    {
        let groups = by_shard(batches, B::shard);
        let shards: Vec<u32> = groups.keys().copied().collect();
        let answers = update_shards(
            &self.etcd,
            &self.keys,
            op,
            &shards,
            true,
            |n, state, lease, now| {
                let mut here = HashSet::new();
                groups
                    .get(&n)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|&i| {
                        let batch = &batches[i];
                        let outcome = if lease.is_some_and(|l| batch.holds(l)) {
                            decide(state, batch, now, &mut here)
                        } else {
                            lost.clone()
                        };
                        (i, outcome)
                    })
                    .collect()
            },
        )
        .await?;
        Ok(in_order(batches.len(), answers, lost))
    }

    /// [`shardcron_coord::Coordinator::claim_fires`].
    pub(crate) async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        let retention = ms(retention);
        self.decide_under_lease(
            "claim fires",
            batches,
            BatchOutcome::LeaseLost,
            |state, batch, now, here| {
                BatchOutcome::Claimed(state.claim_checked_batch(batch, now, retention, here))
            },
        )
        .await
    }

    /// [`shardcron_coord::Coordinator::recover_fires`].
    pub(crate) async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        let retention = ms(retention);
        self.decide_under_lease(
            "recover fires",
            batches,
            RecoverOutcome::LeaseLost,
            |state, batch, now, _| RecoverOutcome::Recovered(state.recover(batch, now + retention)),
        )
        .await
    }

    /// [`shardcron_coord::Coordinator::hand_back_fires`].
    pub(crate) async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        let groups = by_shard(fires, |f| f.shard);
        let shards: Vec<u32> = groups.keys().copied().collect();
        let retention = ms(retention);
        let answers = update_shards(
            &self.etcd,
            &self.keys,
            "hand back fires",
            &shards,
            false,
            |n, state, _, now| {
                let mut moved = false;
                let out: Vec<(usize, bool)> = groups
                    .get(&n)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|&i| {
                        let (handed, wrote) = state.hand_back(holder, &fires[i], now + retention);
                        moved |= wrote;
                        (i, handed)
                    })
                    .collect();
                if moved {
                    // The shard's holder reloads on the version move and
                    // recovers the handed-back entries.
                    state.next_version();
                }
                out
            },
        )
        .await?;
        Ok(in_order(fires.len(), answers, false))
    }

    /// [`shardcron_coord::Coordinator::close_fires`].
    pub(crate) async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        if closes.is_empty() {
            return Ok(());
        }
        let groups = by_shard(closes, |c| c.shard);
        let shards: Vec<u32> = groups.keys().copied().collect();
        update_shards(
            &self.etcd,
            &self.keys,
            "close fires",
            &shards,
            false,
            |n, state, _, _| {
                for &i in groups.get(&n).map(Vec::as_slice).unwrap_or_default() {
                    state.close(&closes[i]);
                }
            },
        )
        .await?;
        Ok(())
    }

    /// [`shardcron_coord::Coordinator::open_fires`].
    pub(crate) async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        let states = read_states(&self.etcd, &self.keys, "open fires", shards, false).await?;
        Ok(shards
            .iter()
            .zip(states)
            .map(|(&n, ((state, _), _))| state.open_fires(n))
            .collect())
    }

    /// [`shardcron_coord::Coordinator::read_triggers`]: reads only; a
    /// trigger leaves the queue inside the claim of its fire.
    pub(crate) async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        let shards: Vec<u32> = leases.iter().map(|(n, _)| *n).collect();
        let states = read_states(&self.etcd, &self.keys, "read triggers", &shards, true).await?;
        let mut out = Vec::new();
        for (&(n, token), ((mut state, _), lease)) in leases.iter().zip(states) {
            let ours = lease
                .and_then(|l| l.info)
                .is_some_and(|l| l.holder == holder && l.token == token);
            if ours {
                out.extend(state.live_triggers().iter().map(|(job, at)| QueuedTrigger {
                    shard: n,
                    job_id: job.clone(),
                    at_ms: *at,
                }));
            }
        }
        Ok(out)
    }
}
