//! Weighted placement: which member owns each shard, balancing *work*.
//!
//! The plain ring ([`ShardMap::compute`]) balances shard counts, but a shard
//! holding an every-second job weighs 86,400 times one holding a daily job,
//! and with few jobs most shards are empty. [`ShardMap::place`] balances the
//! shards' stored weights ([`crate::load`]) instead, and still needs no
//! leader and no message between nodes: it is a pure function of the sorted
//! member set, the weights and the [`RingConfig`], so every node that read
//! the same weights computes the same owners. Nodes that read different
//! weight versions for a moment merely disagree for a moment; leases and
//! claims stay the arbiters, exactly as during a membership change.
//!
//! # Algorithm: consistent hashing with bounded loads, heavy shards first
//!
//! Mirrokni, Thorup and Zadimoghaddam's bounded-load consistent hashing,
//! weighted, on the same ring as [`ShardMap::compute`] (same virtual nodes,
//! same shard keys, the ring of the `hashring` crate):
//!
//! 1. **Weighted shards.** Every member may carry at most
//!    `cap = max(ceil(W / N), floor(W · (1 + ε) / N))` load units, where `W`
//!    is the total weight and `ε` is [`RingConfig::load_bound_permille`] / 1000.
//!    Shards are taken heaviest first (by weight class, four classes per
//!    doubling, so small weight changes do not reorder them; shard number
//!    breaks ties) and each goes to the first member clockwise from its ring
//!    position that still has room for it. A shard that fits nowhere (it
//!    alone outweighs what is left anywhere, e.g. one job heavier than the
//!    mean) goes to the least-loaded member.
//! 2. **Empty shards** (weight 0) still need an owner that leases them; they
//!    are spread by count, with the same bounded walk over a capacity of
//!    `max(ceil(E / N), floor(E · (1 + ε) / N))` empty shards.
//!
//! Heaviest-first is first-fit-decreasing packing: the light shards placed
//! last fill the gaps the heavy ones left, which is what keeps the busiest
//! member within `1 + ε` of the mean even with a handful of jobs per member.
//! Walking the ring keeps the placement sticky: a shard only leaves its
//! ring successor when that member is full, so a membership change or one
//! job write moves few shards (docs/BENCHMARKS.md has the measurements,
//! `shardcron-bench sim` reproduces them).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::load::LoadUnits;
use crate::ring::{shard_key, sorted_ids, sorted_ring_points, RingConfig, ShardMap};
use crate::stable_hash::stable_hash64;

/// Default [`RingConfig::load_bound_permille`]: members carry at most 5 %
/// more than the mean load.
pub const DEFAULT_LOAD_BOUND_PERMILLE: u32 = 50;

/// The stored weight of every non-empty shard, in [`LoadUnits`].
///
/// Shards absent from the map weigh 0. The version is the store's counter
/// of weight changes; nodes reread weights only when it moves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardWeights {
    /// Store version the weights were read at (0 for weights not from a store).
    pub version: u64,
    weights: BTreeMap<u32, LoadUnits>,
}

impl ShardWeights {
    /// Weights from `(shard, units)` pairs; zero weights are dropped and
    /// repeated shards add up.
    pub fn from_pairs(version: u64, pairs: impl IntoIterator<Item = (u32, LoadUnits)>) -> Self {
        let mut weights = BTreeMap::new();
        for (shard, units) in pairs {
            if units > 0 {
                let entry: &mut LoadUnits = weights.entry(shard).or_default();
                *entry = entry.saturating_add(units);
            }
        }
        Self { version, weights }
    }

    /// The weight of `shard` (0 if empty).
    pub fn get(&self, shard: u32) -> LoadUnits {
        self.weights.get(&shard).copied().unwrap_or(0)
    }

    /// Non-empty shards and their weights, by shard number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, LoadUnits)> + '_ {
        self.weights.iter().map(|(shard, units)| (*shard, *units))
    }

    /// Sum of all weights.
    pub fn total(&self) -> u128 {
        self.weights.values().map(|units| u128::from(*units)).sum()
    }

    /// Number of non-empty shards.
    pub fn non_empty(&self) -> usize {
        self.weights.len()
    }

    /// Whether every shard is empty.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Dense weights of shards `0..shard_count` (shards beyond it are ignored).
    pub(crate) fn dense(&self, shard_count: u32) -> Vec<LoadUnits> {
        let mut dense = vec![0; shard_count as usize];
        for (shard, units) in self.iter() {
            if let Some(slot) = dense.get_mut(shard as usize) {
                *slot = units;
            }
        }
        dense
    }
}

/// Heaviest-first order key of a weight: four classes per doubling, so a
/// small change of weight rarely changes the order shards are placed in.
fn weight_class(units: LoadUnits) -> u32 {
    if units == 0 {
        return 0;
    }
    let top = 63 - units.leading_zeros();
    let quarter = if top >= 2 {
        ((units >> (top - 2)) & 0b11) as u32
    } else {
        ((units << (2 - top)) & 0b11) as u32
    };
    top * 4 + quarter + 1
}

/// `max(ceil(total / n), floor(total · (1000 + permille) / (1000 · n)))`.
pub(crate) fn capacity(total: u128, members: usize, permille: u32) -> u128 {
    granular_capacity(total, members, permille, 1)
}

/// [`capacity`] for items whose weights are all multiples of `granule`:
/// the even split rounds up to a whole granule, because no placement can
/// give the busiest member less (800 equal jobs on 99 members put 9 on
/// some member, whatever ε says).
pub(crate) fn granular_capacity(total: u128, members: usize, permille: u32, granule: u128) -> u128 {
    let n = members.max(1) as u128;
    let granule = granule.max(1);
    let fit = total.div_ceil(n * granule) * granule;
    let bounded = total.saturating_mul(1000 + u128::from(permille)) / (1000 * n);
    fit.max(bounded)
}

/// The greatest common divisor of the positive `weights` (1 when none):
/// the unit in which a placement of these weights can be even.
pub fn weight_granule(weights: impl IntoIterator<Item = u128>) -> u128 {
    let gcd = |mut a: u128, mut b: u128| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    weights.into_iter().filter(|w| *w > 0).fold(0, gcd).max(1)
}

/// The ring, walked clockwise: sorted `(position, member)` points.
struct Walker<'a> {
    points: &'a [(u64, u32)],
}

impl Walker<'_> {
    /// Index of the first point at or after `key` (wrapping).
    fn home(&self, key: u64) -> usize {
        let index = self.points.partition_point(|&(position, _)| position < key);
        if index == self.points.len() {
            0
        } else {
            index
        }
    }

    /// The first member clockwise from point `start` that `fits`.
    fn first_fit(&self, start: usize, mut fits: impl FnMut(u32) -> bool) -> Option<u32> {
        let len = self.points.len();
        (0..len)
            .map(|step| self.points[(start + step) % len].1)
            .find(|&member| fits(member))
    }
}

/// The first member clockwise from ring point `start` that `fits`.
pub(crate) fn first_fit_walk(
    points: &[(u64, u32)],
    start: usize,
    fits: impl FnMut(u32) -> bool,
) -> Option<u32> {
    Walker { points }.first_fit(start, fits)
}

/// The ring point `shard`'s key lands on.
pub(crate) fn shard_home(points: &[(u64, u32)], shard: u32) -> usize {
    Walker { points }.home(stable_hash64(&shard_key(shard).0))
}

/// The ring point each shard's key lands on, for shards `0..shard_count`.
pub(crate) fn shard_homes(points: &[(u64, u32)], shard_count: u32) -> Vec<usize> {
    (0..shard_count)
        .map(|shard| shard_home(points, shard))
        .collect()
}

/// Index of the least-loaded member (lowest index on ties).
pub(crate) fn least_loaded(loads: &[u128]) -> u32 {
    let mut best = 0usize;
    for (index, load) in loads.iter().enumerate() {
        if *load < loads[best] {
            best = index;
        }
    }
    u32::try_from(best).unwrap_or(0)
}

/// Owners (member indexes) of shards `0..weights.len()` under the bounded-load
/// walk described in the module docs. `members` must be non-zero.
pub(crate) fn bounded_owners(
    points: &[(u64, u32)],
    members: usize,
    weights: &[LoadUnits],
    permille: u32,
) -> Vec<u32> {
    let walker = Walker { points };
    let homes = shard_homes(points, u32::try_from(weights.len()).unwrap_or(u32::MAX));
    let mut owners = vec![0u32; weights.len()];

    // 1. Weighted shards, heaviest class first.
    let mut heavy: Vec<(u32, LoadUnits)> = (0u32..)
        .zip(weights.iter().copied())
        .filter(|(_, units)| *units > 0)
        .collect();
    heavy.sort_by_key(|&(shard, units)| (std::cmp::Reverse(weight_class(units)), shard));
    let total: u128 = heavy.iter().map(|(_, units)| u128::from(*units)).sum();
    let cap = capacity(total, members, permille);
    let mut loads = vec![0u128; members];
    for (shard, units) in heavy {
        let units = u128::from(units);
        let home = homes[shard as usize];
        let owner = walker
            .first_fit(home, |member| loads[member as usize] + units <= cap)
            .unwrap_or_else(|| least_loaded(&loads));
        loads[owner as usize] += units;
        owners[shard as usize] = owner;
    }

    // 2. Empty shards, spread by count.
    let empty: Vec<u32> = (0u32..)
        .zip(weights)
        .filter(|(_, units)| **units == 0)
        .map(|(shard, _)| shard)
        .collect();
    let cap = capacity(empty.len() as u128, members, permille);
    let mut counts = vec![0u128; members];
    for shard in empty {
        let home = homes[shard as usize];
        let owner = walker
            .first_fit(home, |member| counts[member as usize] < cap)
            .unwrap_or_else(|| least_loaded(&counts));
        counts[owner as usize] += 1;
        owners[shard as usize] = owner;
    }
    owners
}

impl ShardMap {
    /// Computes the owner of every shard for `members`, balancing the shards'
    /// `weights` as described in the [module docs](self).
    ///
    /// Like [`ShardMap::compute`], member order and duplicates do not matter.
    pub fn place<S: AsRef<str>>(
        members: &[S],
        weights: &ShardWeights,
        config: RingConfig,
    ) -> ShardMap {
        let ids = sorted_ids(members);
        let dense = weights.dense(config.shard_count);
        let owners = if ids.is_empty() {
            vec![None; dense.len()]
        } else {
            let points = sorted_ring_points(&ids, config.vnodes);
            bounded_owners(&points, ids.len(), &dense, config.load_bound_permille)
                .into_iter()
                .map(Some)
                .collect()
        };
        let members: Vec<Arc<str>> = ids.iter().map(|id| Arc::from(*id)).collect();
        ShardMap::from_parts(config, members, owners, Some(dense))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_classes_are_monotonic_with_four_per_doubling() {
        let mut last = 0;
        for units in 1..5000u64 {
            let class = weight_class(units);
            assert!(class >= last, "class of {units} went down");
            last = class;
        }
        assert_eq!(weight_class(0), 0);
        assert_eq!(weight_class(1024) + 4, weight_class(2048));
        assert_eq!(weight_class(1024), weight_class(1100));
    }

    #[test]
    fn capacity_never_below_an_even_split() {
        assert_eq!(capacity(800, 100, 50), 8);
        assert_eq!(capacity(801, 100, 50), 9);
        assert_eq!(capacity(10_000, 100, 50), 105);
        assert_eq!(capacity(0, 3, 50), 0);
    }
}
