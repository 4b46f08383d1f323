//! Read, decide, compare-and-set: how every per-shard step is atomic.
//!
//! etcd has no server-side scripts, so a step that Redis runs as one Lua
//! script is done here as: read the shard's state document (and, for a
//! lease-guarded step, its lease key) in one linearizable read; decide with
//! the very code the in-memory store runs ([`ShardState`], the rules of
//! `claim.lua`, `recover.lua`, `close.lua`, `hand_back.lua`, …); then write
//! the new document in a transaction whose compares are the mod revisions
//! of everything read. etcd applies a transaction only if no compared key
//! changed since the read, so the write happens exactly as if the decision
//! had been taken inside the store at the moment of the write; if anything
//! changed (another node's write, the lease key expiring, being deleted or
//! re-created) nothing is written and the step is decided again on a fresh
//! read. A decision that writes nothing (every fire refused, a lost lease)
//! needs no commit: it rests on a linearizable read, a state the store was
//! in after the request was sent.
//!
//! The shards of one call are independent (each its own compares, nested
//! in one outer transaction), so one shard's conflict never blocks another
//! and a call costs one read and one write round trip when nothing
//! conflicts.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use shardcron_coord::{CoordError, CoordResult, LeaseInfo, ShardState};

use crate::client::{json, now_ms, text, to_json, Etcd};
use crate::keys::Keys;

/// How often a step is decided again after conflicts before giving up
/// (as `Unreachable`: nothing was written, the caller retries later).
pub(crate) const MAX_ROUNDS: usize = 64;

/// A random pause after conflict round `round` (0-based) of a write that
/// every writer of the namespace contends on (a job write moves the one
/// live-weights key): up to 1, 2, 4 … 32 ms, so concurrent writers spread
/// out instead of retrying in lockstep, where with eight of them one could
/// lose all [`MAX_ROUNDS`] rounds.
pub(crate) async fn contended_pause(round: usize) {
    use std::hash::{BuildHasher, Hasher};
    let ceiling_us = 1000u64 << round.min(5);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(round);
    let pause_us = hasher.finish() % ceiling_us;
    tokio::time::sleep(std::time::Duration::from_micros(pause_us)).await;
}

/// A shard's lease as read: its holder and token (if held) and the key's
/// mod revision (0: absent).
pub(crate) struct ReadLease {
    pub(crate) info: Option<LeaseInfo>,
    pub(crate) lease_id: i64,
    pub(crate) mod_revision: i64,
}

/// Parses `holder|token`.
pub(crate) fn parse_lease(value: &str) -> Option<LeaseInfo> {
    let (holder, token) = value.rsplit_once('|')?;
    Some(LeaseInfo {
        holder: holder.to_owned(),
        token: token.parse().ok()?,
    })
}

/// A lease key as read (`None`: absent).
fn lease_of(n: u32, kv: Option<etcd_client::KeyValue>) -> CoordResult<ReadLease> {
    match kv {
        None => Ok(ReadLease {
            info: None,
            lease_id: 0,
            mod_revision: 0,
        }),
        Some(kv) => {
            let value = text(&kv, &format!("lease of shard {n}"))?;
            let info = parse_lease(value)
                .ok_or_else(|| crate::error::corrupt(format!("lease of shard {n}"), value))?;
            Ok(ReadLease {
                info: Some(info),
                lease_id: kv.lease(),
                mod_revision: kv.mod_revision(),
            })
        }
    }
}

/// A state document as read (`None`: absent, an empty shard), with its mod
/// revision (0: absent).
pub(crate) fn state_of(
    n: u32,
    kv: Option<etcd_client::KeyValue>,
) -> CoordResult<(ShardState, i64)> {
    match kv {
        None => Ok((ShardState::default(), 0)),
        Some(kv) => Ok((
            json(&kv, &format!("state of shard {n}"))?,
            kv.mod_revision(),
        )),
    }
}

/// Reads the lease keys of `shards`.
pub(crate) async fn read_leases(
    etcd: &Etcd,
    keys: &Keys,
    op: &'static str,
    shards: &[u32],
) -> CoordResult<Vec<ReadLease>> {
    let names: Vec<String> = shards.iter().map(|&n| keys.lease(n)).collect();
    let kvs = etcd.get_many(op, &names).await?;
    kvs.into_iter()
        .zip(shards)
        .map(|(kv, &n)| lease_of(n, kv))
        .collect()
}

/// Reads shards' state documents and, with `leases`, their lease keys, in
/// one read per [`crate::client::MAX_OPS`] keys.
pub(crate) async fn read_states(
    etcd: &Etcd,
    keys: &Keys,
    op: &'static str,
    shards: &[u32],
    leases: bool,
) -> CoordResult<Vec<((ShardState, i64), Option<ReadLease>)>> {
    let mut names: Vec<String> = Vec::with_capacity(shards.len() * 2);
    for &n in shards {
        names.push(keys.shard(n));
        if leases {
            names.push(keys.lease(n));
        }
    }
    let mut kvs = etcd.get_many(op, &names).await?.into_iter();
    let mut out = Vec::with_capacity(shards.len());
    for &n in shards {
        let state = state_of(n, kvs.next().flatten())?;
        let lease = if leases {
            Some(lease_of(n, kvs.next().flatten())?)
        } else {
            None
        };
        out.push((state, lease));
    }
    Ok(out)
}

/// Decides a step on each of `shards` (distinct) and writes every state
/// the decision changed by compare-and-set, deciding again on conflict.
/// `guarded`: the lease key is read and compared too, and passed to
/// `decide` (a lease-guarded step); otherwise `decide` gets `None`.
/// `decide(shard, state, lease, now)` runs on a fresh read each round and
/// returns the shard's answer; the answers of the round that committed (or
/// wrote nothing) are returned, by shard.
pub(crate) async fn update_shards<T>(
    etcd: &Etcd,
    keys: &Keys,
    op: &'static str,
    shards: &[u32],
    guarded: bool,
    mut decide: impl FnMut(u32, &mut ShardState, Option<&LeaseInfo>, i64) -> T,
) -> CoordResult<BTreeMap<u32, T>> {
    let mut done = BTreeMap::new();
    let mut pending: Vec<u32> = shards.to_vec();
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            return Ok(done);
        }
        let states = read_states(etcd, keys, op, &pending, guarded).await?;
        let now = now_ms();
        let mut writes = Vec::new();
        let mut answers = Vec::new();
        for (&n, ((mut state, revision), lease)) in pending.iter().zip(states) {
            let lease = lease.as_ref();
            let before = to_json(&state, "shard state")?;
            let version = state.version();
            let answer = decide(n, &mut state, lease.and_then(|l| l.info.as_ref()), now);
            let after = to_json(&state, "shard state")?;
            if after == before {
                done.insert(n, answer);
                continue;
            }
            let mut compares = vec![Compare::mod_revision(
                keys.shard(n),
                CompareOp::Equal,
                revision,
            )];
            if let Some(l) = lease {
                compares.push(Compare::mod_revision(
                    keys.lease(n),
                    CompareOp::Equal,
                    l.mod_revision,
                ));
            }
            let size = after.len();
            let mut ops = vec![TxnOp::put(keys.shard(n), after, None::<PutOptions>)];
            if state.version() != version {
                ops.push(TxnOp::put(
                    keys.ver(n),
                    state.version().to_string(),
                    None::<PutOptions>,
                ));
            }
            writes.push((Txn::new().when(compares).and_then(ops), size));
            answers.push((n, answer));
        }
        let applied = etcd.txns_sized(op, writes).await?;
        pending.clear();
        for ((n, answer), ok) in answers.into_iter().zip(applied) {
            if ok {
                done.insert(n, answer);
            } else {
                pending.push(n);
            }
        }
    }
    if pending.is_empty() {
        return Ok(done);
    }
    Err(CoordError::Unreachable {
        url: etcd.url.clone(),
        message: format!("{op}: still conflicting after {MAX_ROUNDS} rounds; nothing written"),
    })
}
