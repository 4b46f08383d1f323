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

use crate::load::LoadUnits;
use crate::stable_hash::{stable_hash64, ExplicitBytes, StableHashBuilder};

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
    /// Load bound ε of the weighted placement ([`ShardMap::place`]), in
    /// thousandths: no member carries more than `1 + ε` times the mean load
    /// unless a single shard outweighs that. Default 50 (5 %).
    #[serde(default = "default_load_bound")]
    pub load_bound_permille: u32,
}

impl RingConfig {
    /// Settings with `shard_count` shards and `vnodes` virtual nodes per
    /// member, and the default load bound.
    pub const fn new(shard_count: u32, vnodes: u32) -> Self {
        Self {
            shard_count,
            vnodes,
            load_bound_permille: crate::placement::DEFAULT_LOAD_BOUND_PERMILLE,
        }
    }
}

fn default_load_bound() -> u32 {
    crate::placement::DEFAULT_LOAD_BOUND_PERMILLE
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            shard_count: DEFAULT_SHARD_COUNT,
            vnodes: DEFAULT_VNODES,
            load_bound_permille: default_load_bound(),
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
pub(crate) fn shard_key(shard: u32) -> ExplicitBytes {
    let mut bytes = Vec::with_capacity(10);
    bytes.extend_from_slice(b"shard:");
    bytes.extend_from_slice(&shard.to_be_bytes());
    ExplicitBytes(bytes)
}

/// The ring as sorted `(position, member index)` points, `vnodes` per member
/// of the sorted, deduplicated `ids`: the same points, in the same order, as
/// the `hashring` ring [`ShardMap::compute`] builds (a stable sort of the
/// points inserted member by member), so walking it clockwise from a shard's
/// key starts at the member `hashring` returns.
pub(crate) fn sorted_ring_points(ids: &[&str], vnodes: u32) -> Vec<(u64, u32)> {
    let vnodes = vnodes.max(1);
    let mut points = Vec::with_capacity(ids.len().saturating_mul(vnodes as usize));
    for (member, id) in (0u32..).zip(ids.iter()) {
        for index in 0..vnodes {
            points.push((stable_hash64(&vnode_key(id, index).0), member));
        }
    }
    points.sort_by_key(|&(position, _)| position);
    points
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
    /// Shard weights the map was placed by ([`ShardMap::place`]); `None` for
    /// the plain ring, which ignores weights.
    weights: Option<Vec<LoadUnits>>,
}

/// Load statistics of a weighted [`ShardMap`]: load units per member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadBalance {
    /// Most load units carried by any one member.
    pub max: u128,
    /// Fewest load units carried by any one member.
    pub min: u128,
    /// Total load divided by the member count.
    pub mean: f64,
    /// `max / mean`; 1.0 is a perfect spread, 0.0 with no members or no load.
    pub max_over_mean: f64,
    /// The heaviest single shard: no placement can put less than this on
    /// the member that owns it.
    pub heaviest_shard: u128,
}

/// Member names sorted and deduplicated: every placement starts from this,
/// so the order a node lists its members in never matters.
pub(crate) fn sorted_ids<S: AsRef<str>>(members: &[S]) -> Vec<&str> {
    let mut ids: Vec<&str> = members.iter().map(AsRef::as_ref).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl ShardMap {
    /// Computes the owner of every shard for `members` under `config`.
    ///
    /// Member order and duplicates do not matter: the list is sorted and
    /// deduplicated first. With an empty member list every shard is unowned.
    pub fn compute<S: AsRef<str>>(members: &[S], config: RingConfig) -> ShardMap {
        let ids = sorted_ids(members);
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

        ShardMap::from_parts(config, members, owners, None)
    }

    pub(crate) fn from_parts(
        config: RingConfig,
        members: Vec<Arc<str>>,
        owners: Vec<Option<u32>>,
        weights: Option<Vec<LoadUnits>>,
    ) -> ShardMap {
        ShardMap {
            config,
            members,
            owners,
            weights,
        }
    }

    /// The name of the placement that produced this map, as status shows it:
    /// `bounded-load ring (e=0.050)` or `ring`.
    pub fn placement_name(&self) -> String {
        if self.weights.is_some() {
            format!(
                "bounded-load ring (e={:.3})",
                f64::from(self.config.load_bound_permille) / 1000.0
            )
        } else {
            "ring".to_owned()
        }
    }

    /// The weight of `shard` the map was placed by (0 for the plain ring).
    pub fn weight(&self, shard: u32) -> LoadUnits {
        self.weights
            .as_ref()
            .and_then(|weights| weights.get(shard as usize).copied())
            .unwrap_or(0)
    }

    /// Load units carried per member (all 0 for the plain ring).
    pub fn loads(&self) -> BTreeMap<String, u128> {
        let per_member = self.per_member_loads();
        self.members
            .iter()
            .zip(per_member)
            .map(|(id, load)| (id.to_string(), load))
            .collect()
    }

    /// Load statistics over the members.
    pub fn load_balance(&self) -> LoadBalance {
        let per_member = self.per_member_loads();
        let total: u128 = per_member.iter().sum();
        let heaviest_shard = self
            .weights
            .as_ref()
            .and_then(|weights| weights.iter().max().copied())
            .map_or(0, u128::from);
        let (Some(&max), Some(&min)) = (per_member.iter().max(), per_member.iter().min()) else {
            return LoadBalance {
                max: 0,
                min: 0,
                mean: 0.0,
                max_over_mean: 0.0,
                heaviest_shard,
            };
        };
        let mean = total as f64 / per_member.len() as f64;
        let max_over_mean = if mean > 0.0 { max as f64 / mean } else { 0.0 };
        LoadBalance {
            max,
            min,
            mean,
            max_over_mean,
            heaviest_shard,
        }
    }

    fn per_member_loads(&self) -> Vec<u128> {
        let mut loads = vec![0u128; self.members.len()];
        if let Some(weights) = &self.weights {
            for (owner, units) in self.owners.iter().zip(weights) {
                if let Some(load) = owner.and_then(|index| loads.get_mut(index as usize)) {
                    *load += u128::from(*units);
                }
            }
        }
        loads
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

    /// Every shard's owner as an index into `members` (sorted, deduplicated
    /// names), `None` where the owner is not among them or there is none.
    /// One name lookup per member of this map, not per shard.
    pub(crate) fn owners_among(&self, members: &[&str]) -> Vec<Option<u32>> {
        let translated: Vec<Option<u32>> = self
            .members
            .iter()
            .map(|name| {
                members
                    .binary_search(&name.as_ref())
                    .ok()
                    .and_then(|i| u32::try_from(i).ok())
            })
            .collect();
        self.owners
            .iter()
            .map(|owner| owner.and_then(|index| translated.get(index as usize).copied().flatten()))
            .collect()
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

    /// The owner of `shard` as an index into [`ShardMap::members`].
    pub(crate) fn owner_index(&self, shard: u32) -> Option<u32> {
        *self.owners.get(shard as usize)?
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
        let config = RingConfig::new(1, 4);
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
        let zero = RingConfig::new(64, 0);
        let one = RingConfig::new(64, 1);
        let a = ShardMap::compute(&["a", "b"], zero);
        let b = ShardMap::compute(&["a", "b"], one);
        assert_eq!(a.moved_between(&b), 0);
    }

    #[test]
    fn moved_between_counts_extra_shards() {
        let small = ShardMap::compute(&["a"], RingConfig::new(10, 8));
        let big = ShardMap::compute(&["a"], RingConfig::new(12, 8));
        assert_eq!(small.moved_between(&big), 2);
        assert_eq!(big.moved_between(&small), 2);
    }

    #[test]
    fn config_round_trips_through_serde() {
        let config = RingConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            r#"{"shard_count":1024,"vnodes":160,"load_bound_permille":50}"#
        );
        let old: RingConfig = serde_json::from_str(r#"{"shard_count":1024,"vnodes":160}"#).unwrap();
        assert_eq!(old, config);
        let back: RingConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}
