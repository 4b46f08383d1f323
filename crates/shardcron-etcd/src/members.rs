//! Ring settings, membership and placement inputs.
//!
//! A member is the key `e/member/<id>` (its info as JSON) attached to an
//! etcd lease of its own with the heartbeat's TTL: each heartbeat is one
//! keep-alive plus one transaction that re-asserts the ring settings and
//! writes the key, so a member whose heartbeats stop disappears when etcd
//! revokes its lease (in whole seconds, rounded up, at least etcd's minimum
//! TTL), and the watch reports the delete as `MemberLeft`. Membership is
//! only placement input; no exactly-once argument rests on its timing.
//!
//! The ring settings are one key compared by value in the heartbeat's
//! transaction; when absent (lost) the heartbeat writes them back with a
//! create-if-absent compare, when different it fails with `ConfigMismatch`
//! and registers nothing, exactly as `heartbeat.lua`.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use shardcron_coord::{
    CoordError, CoordResult, MemberInfo, Membership, PlacementInputs, StoredPlacement,
};
use shardcron_core::{PlacementRecord, RingConfig, ShardWeights};

use crate::client::{json, ms, now_ms, to_json, ttl_secs, unexpected};
use crate::coordinator::{EtcdLease, Inner};

/// Live shard weights: exact sums kept by every job write, and their version.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct LiveWeights {
    /// Shard → load units (absent: 0).
    pub(crate) live: BTreeMap<u32, u64>,
    /// Moves on every job write that changed a weight.
    pub(crate) version: u64,
}

impl LiveWeights {
    /// A job's weight change on its shard's sum (`Weights::apply` of the
    /// memory store).
    pub(crate) fn apply(&mut self, shard: u32, old: u64, new: u64) {
        if old == new {
            return;
        }
        let sum = self.live.entry(shard).or_default();
        *sum = sum.saturating_sub(old).saturating_add(new);
        if *sum == 0 {
            self.live.remove(&shard);
        }
        self.version += 1;
    }
}

/// The weights snapshot placement reads.
#[derive(Default, Serialize, Deserialize)]
struct Snapshot {
    weights: BTreeMap<u32, u64>,
    version: u64,
    at_ms: i64,
}

/// The stored placement.
#[derive(Serialize, Deserialize)]
struct Placement {
    version: u64,
    record: PlacementRecord,
}

impl Inner {
    /// The ring settings as stored.
    fn ring_json(&self) -> CoordResult<Vec<u8>> {
        to_json(&self.ring, "ring settings")
    }

    /// The `ConfigMismatch` for stored settings `stored`, if they differ.
    fn mismatch(&self, stored: &RingConfig) -> Option<CoordError> {
        let ring = &self.ring;
        let (field, s, g) = if stored.shard_count != ring.shard_count {
            ("shard_count", stored.shard_count, ring.shard_count)
        } else if stored.vnodes != ring.vnodes {
            ("vnodes", stored.vnodes, ring.vnodes)
        } else if stored.load_bound_permille != ring.load_bound_permille {
            (
                "load_bound_permille",
                stored.load_bound_permille,
                ring.load_bound_permille,
            )
        } else {
            return None;
        };
        Some(CoordError::ConfigMismatch {
            namespace: self.namespace.clone(),
            field: field.to_owned(),
            stored: s.to_string(),
            given: g.to_string(),
        })
    }

    /// Runs `ops` if the stored ring settings are ours; stores ours when
    /// none are stored; fails with `ConfigMismatch` (running nothing) when
    /// others are.
    async fn with_config(&self, op: &'static str, ops: Vec<TxnOp>) -> CoordResult<()> {
        let want = self.ring_json()?;
        let key = self.keys.config();
        for _ in 0..8 {
            let txn = Txn::new()
                .when([Compare::value(key.as_str(), CompareOp::Equal, want.clone())])
                .and_then(ops.clone())
                .or_else([TxnOp::get(key.as_str(), None)]);
            let reply = self.etcd.txn(op, txn).await?;
            if reply.succeeded() {
                return Ok(());
            }
            let stored = match reply.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(mut get)) => get.take_kvs().into_iter().next(),
                _ => return Err(unexpected(op)),
            };
            match stored {
                None => {
                    let create = Txn::new()
                        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.as_str(), want.clone(), None)]);
                    self.etcd.txn(op, create).await?;
                }
                Some(kv) => {
                    let stored: RingConfig = json(&kv, "ring settings")?;
                    if let Some(e) = self.mismatch(&stored) {
                        return Err(e);
                    }
                    // Same settings written differently: rewrite ours.
                    let fix = Txn::new()
                        .when([Compare::mod_revision(
                            key.as_str(),
                            CompareOp::Equal,
                            kv.mod_revision(),
                        )])
                        .and_then([TxnOp::put(key.as_str(), want.clone(), None)]);
                    self.etcd.txn(op, fix).await?;
                }
            }
        }
        Err(CoordError::Unreachable {
            url: self.etcd.url.clone(),
            message: format!("{op}: ring settings kept changing"),
        })
    }

    /// [`shardcron_coord::Coordinator::ensure_config`].
    pub(crate) async fn ensure_config(&self) -> CoordResult<()> {
        self.with_config("check ring settings", Vec::new()).await
    }

    /// [`shardcron_coord::Coordinator::heartbeat`].
    pub(crate) async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        const OP: &str = "heartbeat";
        let ttl = ttl_secs(ttl);
        let known = self
            .member_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&member.id)
            .copied();
        let mut lease = None;
        if let Some(l) = known.filter(|l| l.ttl == ttl) {
            if self.keep_alive_once(OP, l.id).await? > 0 {
                lease = Some(l);
            }
        }
        let lease = match lease {
            Some(l) => l,
            None => EtcdLease {
                id: self.grant(OP, ttl).await?,
                ttl,
            },
        };
        self.member_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member.id.clone(), lease);
        let info = to_json(member, "member info")?;
        let put = TxnOp::put(
            self.keys.member(&member.id),
            info,
            Some(PutOptions::new().with_lease(lease.id)),
        );
        self.with_config(OP, vec![put]).await?;
        if let Some(old) = known.filter(|l| l.id != lease.id) {
            self.revoke_quietly(old.id).await;
        }
        Ok(now_ms())
    }

    /// [`shardcron_coord::Coordinator::deregister`].
    pub(crate) async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        let mut client = self.etcd.client();
        self.etcd
            .call("deregister", client.delete(self.keys.member(node_id), None))
            .await?;
        let lease = self
            .member_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id);
        if let Some(l) = lease {
            self.revoke_quietly(l.id).await;
        }
        Ok(())
    }

    /// [`shardcron_coord::Coordinator::members`].
    pub(crate) async fn members(&self) -> CoordResult<Membership> {
        let kvs = self
            .etcd
            .range("members", &self.keys.member_prefix(), None, 0, false)
            .await?;
        let members = kvs
            .iter()
            .map(|kv| json::<MemberInfo>(kv, "member info"))
            .collect::<CoordResult<Vec<_>>>()?;
        Ok(Membership {
            server_ms: now_ms(),
            members,
        })
    }

    /// [`shardcron_coord::Coordinator::placement_inputs`].
    pub(crate) async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        const OP: &str = "placement inputs";
        let membership = self.members().await?;
        let names = [self.keys.load(), self.keys.placed(), self.keys.placement()];
        for _ in 0..crate::shards::MAX_ROUNDS {
            let kvs = self.etcd.get_many(OP, &names).await?;
            let [load, placed, placement] = <[_; 3]>::try_from(kvs).map_err(|_| unexpected(OP))?;
            let live: LiveWeights = match &load {
                Some(kv) => json(kv, "shard weights")?,
                None => LiveWeights::default(),
            };
            let mut snapshot: Snapshot = match &placed {
                Some(kv) => json(kv, "weights snapshot")?,
                None => Snapshot::default(),
            };
            let now = membership.server_ms;
            if live.version != snapshot.version && now - snapshot.at_ms >= ms(refresh) {
                snapshot = Snapshot {
                    weights: live.live.clone(),
                    version: live.version,
                    at_ms: now,
                };
                let rev = |kv: &Option<etcd_client::KeyValue>| {
                    kv.as_ref().map_or(0, |kv| kv.mod_revision())
                };
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(self.keys.load(), CompareOp::Equal, rev(&load)),
                        Compare::mod_revision(self.keys.placed(), CompareOp::Equal, rev(&placed)),
                    ])
                    .and_then([TxnOp::put(
                        self.keys.placed(),
                        to_json(&snapshot, "weights snapshot")?,
                        None,
                    )]);
                if !self.etcd.txn(OP, txn).await?.succeeded() {
                    continue;
                }
            }
            let weights = (known_weights != Some(snapshot.version)).then(|| {
                ShardWeights::from_pairs(
                    snapshot.version,
                    snapshot.weights.iter().map(|(s, w)| (*s, *w)),
                )
            });
            let placement = match &placement {
                Some(kv) => {
                    let stored: Placement = json(kv, "placement")?;
                    (known_placement != Some(stored.version) && known_placement != Some(u64::MAX))
                        .then_some(StoredPlacement {
                            version: stored.version,
                            record: stored.record,
                        })
                }
                None => None,
            };
            return Ok(PlacementInputs {
                membership,
                weights,
                placement,
            });
        }
        Err(CoordError::Unreachable {
            url: self.etcd.url.clone(),
            message: format!("{OP}: weights kept changing"),
        })
    }

    /// [`shardcron_coord::Coordinator::store_placement`].
    pub(crate) async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        const OP: &str = "store placement";
        let key = self.keys.placement();
        for _ in 0..crate::shards::MAX_ROUNDS {
            let current = self.etcd.get_many(OP, std::slice::from_ref(&key)).await?;
            let current = current.into_iter().next().flatten();
            let (version, revision) = match &current {
                Some(kv) => (
                    json::<Placement>(kv, "placement")?.version,
                    kv.mod_revision(),
                ),
                None => (0, 0),
            };
            if version != expected {
                return Ok(None);
            }
            let next = Placement {
                version: version + 1,
                record: record.clone(),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    revision,
                )])
                .and_then([TxnOp::put(key.as_str(), to_json(&next, "placement")?, None)]);
            if self.etcd.txn(OP, txn).await?.succeeded() {
                return Ok(Some(next.version));
            }
        }
        Ok(None)
    }
}
