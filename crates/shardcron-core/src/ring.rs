//! The consistent-hash ring that maps shards to members.
//!
//! Every node computes the full `shard -> owner` map locally from the member
//! list it sees; there is no leader and no stored assignment. For that to work
//! the map must be a pure function of the *set* of members and the
//! [`RingConfig`]: member order and duplicates are irrelevant, and the hash is
//! the project's [stable hash](crate::stable_hash), so two nodes that agree on
//! the membership agree on every owner.
//!
//! Consistent hashing (with [`RingConfig::vnodes`] virtual nodes per member)
//! keeps membership changes cheap: when a member leaves, only the shards it
//! owned move; when one joins, shards only move *to* it. The virtual nodes keep
//! the load reasonably even (see [`ShardMap::balance`]).
//!
//! Hash inputs are explicit byte strings fed through
//! [`crate::stable_hash::ExplicitBytes`]:
//!
//! * virtual node `i` of member `m`: `m.as_bytes() ++ b"#" ++ (i as u32).to_be_bytes()`
//! * lookup key of shard `s`: `b"shard:" ++ (s as u32).to_be_bytes()`
//!
//! A shard is owned by the first virtual node clockwise from its key (the
//! `hashring` crate's lookup: a binary search, wrapping past the end).
//! An exact 64-bit collision between two virtual-node hashes is resolved
//! deterministically (by insertion order of the sorted members), so it never
//! breaks agreement, only — with probability ~2^-50 — the minimal-movement
//! property for that one point.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashring::HashRing;
use serde::{Deserialize, Serialize};

use crate::stable_hash::{ExplicitBytes, StableHashBuilder};

/// Default number of shards jobs are hashed into.
pub const DEFAULT_SHARD_COUNT: u32 = 1024;

/// Default number of virtual nodes each member places on the ring.
pub const DEFAULT_VNODES: u32 = 160;

/// Parameters of the ring. Every node of a fleet must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingConfig {
    /// Number of shards (`0..shard_count`). Should be well above the member
    /// count so load spreads evenly. A value of 0 yields an empty map.
    pub shard_count: u32,
    /// Virtual nodes per member. More means better balance and a slower
    /// [`ShardMap::compute`]. A value of 0 is treated as 1 (a member with no
    /// point on the ring could never own anything).
    pub vnodes: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            shard_count: DEFAULT_SHARD_COUNT,
            vnodes: DEFAULT_VNODES,
        }
    }
}

/// A virtual node on the ring: the member it stands for (index into the sorted
/// member list) plus the explicit bytes its ring position is hashed from.
#[derive(Debug, Clone)]
struct VNode {
    member: u32,
    key: ExplicitBytes,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Only the explicit bytes decide the position; the index is payload.
        self.key.hash(state);
    }
}

/// Bytes hashed for virtual node `index` of `member`.
fn vnode_key(member: &str, index: u32) -> ExplicitBytes {
    let mut bytes = Vec::with_capacity(member.len() + 5);
    bytes.extend_from_slice(member.as_bytes());
    bytes.push(b'#');
    bytes.extend_from_slice(&index.to_be_bytes());
    ExplicitBytes(bytes)
}

/// Bytes hashed to find the owner of `shard`.
fn shard_key(shard: u32) -> ExplicitBytes {
    let mut bytes = Vec::with_capacity(10);
    bytes.extend_from_slice(b"shard:");
    bytes.extend_from_slice(&shard.to_be_bytes());
    ExplicitBytes(bytes)
}

/// Load statistics of a [`ShardMap`]: shards owned per member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    /// Most shards owned by any one member.
    pub max: u32,
    /// Fewest shards owned by any one member.
    pub min: u32,
    /// `shard_count / member_count`.
    pub mean: f64,
    /// `max / mean`; 1.0 is a perfect spread. 0.0 when there are no members.
    pub max_over_mean: f64,
}

/// The owner of every shard, computed from a member set and a [`RingConfig`].
///
/// Two maps compare equal when they were computed from the same member set
/// with the same config.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardMap {
    config: RingConfig,
    /// Sorted, deduplicated member ids.
    members: Vec<Arc<str>>,
    /// `owners[shard]` is an index into `members`; `None` only when there are
    /// no members.
    owners: Vec<Option<u32>>,
}

impl ShardMap {
    /// Computes the owner of every shard for `members` under `config`.
    ///
    /// Member order and duplicates do not matter: the list is sorted and
    /// deduplicated first. With an empty member list every shard is unowned.
    pub fn compute<S: AsRef<str>>(members: &[S], config: RingConfig) -> ShardMap {
        let mut ids: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
        ids.sort_unstable();
        ids.dedup();
        let members: Vec<Arc<str>> = ids.iter().map(|id| Arc::from(*id)).collect();

        let vnodes = config.vnodes.max(1);
        let mut ring: HashRing<VNode, StableHashBuilder> = HashRing::with_hasher(StableHashBuilder);
        let mut points = Vec::with_capacity(members.len().saturating_mul(vnodes as usize));
        // Member indexes fit in u32: a fleet has far fewer than 2^32 members,
        // and `zip` with a u32 range stops rather than wraps if it ever did not.
        for (member, id) in (0u32..).zip(ids.iter()) {
            for index in 0..vnodes {
                points.push(VNode {
                    member,
                    key: vnode_key(id, index),
                });
            }
        }
        ring.batch_add(points);

        let owners = (0..config.shard_count)
            .map(|shard| ring.get(&shard_key(shard)).map(|vnode| vnode.member))
            .collect();

        ShardMap {
            config,
            members,
            owners,
        }
    }

    /// The config this map was computed with.
    pub fn config(&self) -> RingConfig {
        self.config
    }

    /// Number of shards in the map.
    pub fn shard_count(&self) -> u32 {
        self.config.shard_count
    }

    /// The owner of `shard`, or `None` if there are no members or `shard` is
    /// out of range.
    pub fn owner(&self, shard: u32) -> Option<&str> {
        let index = (*self.owners.get(shard as usize)?)?;
        self.members.get(index as usize).map(AsRef::as_ref)
    }

    /// The shards owned by `member`, ascending. Empty if it is not a member.
    pub fn shards_of(&self, member: &str) -> Vec<u32> {
        let Some(index) = self.member_index(member) else {
            return Vec::new();
        };
        (0u32..)
            .zip(self.owners.iter())
            .filter(|(_, owner)| **owner == Some(index))
            .map(|(shard, _)| shard)
            .collect()
    }

    /// The members, sorted and deduplicated.
    pub fn members(&self) -> &[Arc<str>] {
        &self.members
    }

    /// Whether `member` is part of this map's member set.
    pub fn contains_member(&self, member: &str) -> bool {
        self.member_index(member).is_some()
    }

    /// Shards owned per member; members owning no shard are included with 0.
    pub fn counts(&self) -> BTreeMap<String, u32> {
        let per_member = self.per_member_counts();
        self.members
            .iter()
            .zip(per_member)
            .map(|(id, count)| (id.to_string(), count))
            .collect()
    }

    /// Number of shards whose owner differs between `self` and `other`.
    ///
    /// Owners are compared by member id. If the shard counts differ, shards
    /// present in only one of the maps count as moved.
    pub fn moved_between(&self, other: &ShardMap) -> u32 {
        let shards = self.shard_count().max(other.shard_count());
        let moved = (0..shards)
            .filter(|&shard| self.owner(shard) != other.owner(shard))
            .count();
        // At most `shards`, which is a u32.
        u32::try_from(moved).unwrap_or(u32::MAX)
    }

    /// Load statistics over the members. All zero when there are no members.
    pub fn balance(&self) -> Balance {
        let per_member = self.per_member_counts();
        let (Some(&max), Some(&min)) = (per_member.iter().max(), per_member.iter().min()) else {
            return Balance {
                max: 0,
                min: 0,
                mean: 0.0,
                max_over_mean: 0.0,
            };
        };
        let mean = f64::from(self.shard_count()) / per_member.len() as f64;
        let max_over_mean = if mean > 0.0 {
            f64::from(max) / mean
        } else {
            0.0
        };
        Balance {
            max,
            min,
            mean,
            max_over_mean,
        }
    }

    fn member_index(&self, member: &str) -> Option<u32> {
        let index = self
            .members
            .binary_search_by(|probe| probe.as_ref().cmp(member))
            .ok()?;
        u32::try_from(index).ok()
    }

    fn per_member_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.members.len()];
        for owner in self.owners.iter().flatten() {
            if let Some(count) = counts.get_mut(*owner as usize) {
                *count += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stable_hash::stable_hash64;
    use std::hash::BuildHasher;

    #[test]
    fn key_layout_is_explicit() {
        assert_eq!(
            vnode_key("node-a", 1).0,
            b"node-a#\x00\x00\x00\x01".to_vec()
        );
        assert_eq!(shard_key(258).0, b"shard:\x00\x00\x01\x02".to_vec());
        let vnode = VNode {
            member: 9,
            key: vnode_key("m", 3),
        };
        assert_eq!(
            StableHashBuilder.hash_one(&vnode),
            stable_hash64(b"m#\x00\x00\x00\x03")
        );
    }

    #[test]
    fn empty_members_own_nothing() {
        let map = ShardMap::compute::<&str>(&[], RingConfig::default());
        assert_eq!(map.shard_count(), DEFAULT_SHARD_COUNT);
        assert!((0..map.shard_count()).all(|s| map.owner(s).is_none()));
        assert!(map.counts().is_empty());
        assert_eq!(map.balance().max_over_mean, 0.0);
    }

    #[test]
    fn single_member_owns_everything() {
        let map = ShardMap::compute(&["solo"], RingConfig::default());
        assert_eq!(map.shards_of("solo").len(), DEFAULT_SHARD_COUNT as usize);
        let balance = map.balance();
        assert_eq!((balance.max, balance.min), (1024, 1024));
        assert_eq!(balance.max_over_mean, 1.0);
    }

    #[test]
    fn counts_include_idle_members_and_sum_to_shard_count() {
        let config = RingConfig {
            shard_count: 1,
            vnodes: 4,
        };
        let map = ShardMap::compute(&["a", "b", "c"], config);
        let counts = map.counts();
        assert_eq!(counts.len(), 3);
        assert_eq!(counts.values().sum::<u32>(), 1);
        assert_eq!(map.balance().min, 0);
    }

    #[test]
    fn owner_out_of_range_is_none() {
        let map = ShardMap::compute(&["a"], RingConfig::default());
        assert_eq!(map.owner(DEFAULT_SHARD_COUNT), None);
        assert!(map.shards_of("not-a-member").is_empty());
    }

    #[test]
    fn zero_vnodes_behaves_like_one() {
        let zero = RingConfig {
            shard_count: 64,
            vnodes: 0,
        };
        let one = RingConfig {
            shard_count: 64,
            vnodes: 1,
        };
        let a = ShardMap::compute(&["a", "b"], zero);
        let b = ShardMap::compute(&["a", "b"], one);
        assert_eq!(a.moved_between(&b), 0);
    }

    #[test]
    fn moved_between_counts_extra_shards() {
        let small = ShardMap::compute(
            &["a"],
            RingConfig {
                shard_count: 10,
                vnodes: 8,
            },
        );
        let big = ShardMap::compute(
            &["a"],
            RingConfig {
                shard_count: 12,
                vnodes: 8,
            },
        );
        assert_eq!(small.moved_between(&big), 2);
        assert_eq!(big.moved_between(&small), 2);
    }

    #[test]
    fn config_round_trips_through_serde() {
        let config = RingConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"shard_count":1024,"vnodes":160}"#);
        let back: RingConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}
