//! Placement strategies compared by the simulator.
//!
//! Almost every strategy is a pure function from a [`Fleet`] (a member set)
//! and the units' weights to an owner for every *unit*. The exception is
//! [`sticky`] (`ShardMap::rebalance`): it is *stateful*, its placement after
//! a change starts from its placement before it, so callers chain its steps
//! through [`Strategy::follow`] (which stateless strategies answer with
//! [`Strategy::assign`]). Only the weighted placements ([`place`],
//! [`sticky`]) look at the weights; the others ignore them, which is
//! exactly what the weighted comparison exposes. For the shard-keyed strategies a unit is a shard
//! (jobs reach shards through `shardcron_core::shard_of`, which never changes
//! with membership); the dcron-like ring places *jobs* directly, the way dcron
//! does, so its units are jobs.
//!
//! Hash inputs mirror the shipped ring where they can (shard key
//! `b"shard:" ++ be32(s)`, virtual node `member ++ b"#" ++ be32(i)`, both via
//! [`stable_hash64`]), so differences between strategies come from the
//! algorithm rather than from a different hash.

pub mod bounded;
pub mod dcron;
pub mod jump;
pub mod maglev;
pub mod place;
pub mod rendezvous;
pub mod ring;
pub mod sticky;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use shardcron_core::stable_hash::stable_hash64;
use shardcron_core::ShardMap;

/// Owner value of a unit that has no owner (only possible with no members).
pub const UNOWNED: u32 = u32::MAX;

/// What a strategy places on members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keying {
    /// Shards: `job -> shard` is fixed, the strategy maps `shard -> member`.
    Shard,
    /// Jobs: the strategy maps `job -> member` directly (dcron).
    Job,
}

/// A member set: names sorted ascending, each with a stable numeric id.
///
/// Names are `node-NNNN` (zero-padded), so name order equals id order and a
/// newly added node (highest id) sorts last — the one case jump hash handles
/// without reshuffling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    ids: Vec<u32>,
    names: Vec<String>,
}

impl Fleet {
    /// The fleet of the given node ids (order and duplicates are irrelevant).
    pub fn from_ids(ids: &[u32]) -> Fleet {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let names = ids.iter().map(|&id| node_name(id)).collect();
        Fleet { ids, names }
    }

    /// Node ids, ascending (same order as [`Fleet::names`]).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Member names, ascending.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the fleet has no members.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Index of `name` in [`Fleet::names`].
    pub fn index_of(&self, name: &str) -> Option<u32> {
        let index = self
            .names
            .binary_search_by(|probe| probe.as_str().cmp(name))
            .ok()?;
        u32::try_from(index).ok()
    }
}

/// The member name of node `id`: `node-0007`.
pub fn node_name(id: u32) -> String {
    format!("node-{id:04}")
}

/// Owners computed by one strategy for one fleet.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// `owners[unit]` is an index into the fleet, or [`UNOWNED`].
    pub owners: Vec<u32>,
    /// Time spent in the placement algorithm proper (what a node pays on
    /// every membership change); conversions for the simulator are excluded.
    pub compute: Duration,
    /// What a stateful strategy continues from on its next step (its core
    /// placement); `None` for stateless strategies.
    pub state: Option<Arc<ShardMap>>,
}

/// A placement strategy under test.
pub trait Strategy: Send + Sync {
    /// Display name, unique within a run (e.g. `ring(v=160)`).
    fn name(&self) -> String;
    /// Strategy family (`ring`, `dcron`, `bounded`, `place`, `sticky`,
    /// `rendezvous`, `maglev`, `jump`).
    fn family(&self) -> &'static str;
    /// Virtual nodes per member, for strategies that have them.
    fn vnodes(&self) -> Option<u32>;
    /// What the strategy places.
    fn keying(&self) -> Keying;
    /// Computes the owner of every unit for `fleet`; `weights[unit]` is the
    /// unit's load (load units of a shard, or jobs per shard in the
    /// job-count grid; missing entries weigh 0). Strategies that do not
    /// balance by weight ignore it. For a stateful strategy this is the
    /// placement with no previous one (a bootstrapping fleet).
    fn assign(&self, fleet: &Fleet, weights: &[u64]) -> Assignment;
    /// Whether the placement after a change depends on the placement
    /// before it; if so, every step must go through [`Strategy::follow`]
    /// from the strategy's own previous assignment, never be recomputed
    /// from the fleet alone (or cached by fleet).
    fn stateful(&self) -> bool {
        false
    }
    /// The placement after a change of members, weights or both, to `fleet`
    /// and `weights`, starting from `previous`: this strategy's assignment
    /// before the change. Stateless strategies ignore `previous` (the
    /// default is [`Strategy::assign`]).
    fn follow(&self, previous: &Assignment, fleet: &Fleet, weights: &[u64]) -> Assignment {
        let _ = previous;
        self.assign(fleet, weights)
    }
}

/// Hash of shard `s`'s lookup key, as in the shipped ring:
/// `stable_hash64(b"shard:" ++ be32(s))`.
pub fn shard_key_hash(shard: u32) -> u64 {
    let mut bytes = [0u8; 10];
    bytes[..6].copy_from_slice(b"shard:");
    bytes[6..].copy_from_slice(&shard.to_be_bytes());
    stable_hash64(&bytes)
}

/// Ring position of virtual node `index` of `member`, as in the shipped ring:
/// `stable_hash64(member ++ b"#" ++ be32(index))`.
pub fn vnode_hash(member: &str, index: u32) -> u64 {
    let mut bytes = Vec::with_capacity(member.len() + 5);
    bytes.extend_from_slice(member.as_bytes());
    bytes.push(b'#');
    bytes.extend_from_slice(&index.to_be_bytes());
    stable_hash64(&bytes)
}

/// Sorted ring of `(position, member index)` points, `vnodes` per member.
///
/// The sort is stable and members are inserted in name order, so equal
/// positions resolve exactly as in the `hashring` crate the core uses.
pub fn build_ring(fleet: &Fleet, vnodes: u32) -> Vec<(u64, u32)> {
    let vnodes = vnodes.max(1);
    let mut points = Vec::with_capacity(fleet.len() * vnodes as usize);
    for (member, name) in (0u32..).zip(fleet.names()) {
        for index in 0..vnodes {
            points.push((vnode_hash(name, index), member));
        }
    }
    points.sort_by_key(|&(position, _)| position);
    points
}

/// Index of the first ring point at or after `key`, wrapping to 0.
pub fn successor(ring: &[(u64, u32)], key: u64) -> usize {
    let index = ring.partition_point(|&(position, _)| position < key);
    if index == ring.len() {
        0
    } else {
        index
    }
}
