//! The new weighted placement as shipped: `shardcron_core::ShardMap::place`
//! (consistent hashing with bounded loads over the shards' *weights*,
//! heaviest shards first, at load bound ε).
//!
//! It is the only strategy here whose owners depend on the weights, which
//! is why [`Strategy::assign`] receives them: a job write changes one
//! shard's weight and may move shards, which the job-write scenario
//! measures.

use std::time::Instant;

use shardcron_core::{RingConfig, ShardMap, ShardWeights};

use super::{Assignment, Fleet, Keying, Strategy, UNOWNED};

/// `ShardMap::place` at one load bound.
#[derive(Clone, Copy, Debug)]
pub struct PlacedRing {
    config: RingConfig,
}

/// `permille` as a decimal fraction without trailing zeros: 50 → `0.05`.
pub fn permille_text(permille: u32) -> String {
    let text = format!("{:.3}", f64::from(permille) / 1000.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl PlacedRing {
    /// `ShardMap::place` over `shard_count` shards, `vnodes` per member and
    /// load bound ε = `load_bound_permille` / 1000.
    pub fn new(shard_count: u32, vnodes: u32, load_bound_permille: u32) -> Self {
        let mut config = RingConfig::new(shard_count, vnodes);
        config.load_bound_permille = load_bound_permille;
        Self { config }
    }
}

impl Strategy for PlacedRing {
    fn name(&self) -> String {
        format!(
            "place(e={} v={})",
            permille_text(self.config.load_bound_permille),
            self.config.vnodes
        )
    }

    fn family(&self) -> &'static str {
        "place"
    }

    fn vnodes(&self) -> Option<u32> {
        Some(self.config.vnodes)
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, weights: &[u64]) -> Assignment {
        // Building the sparse weights is what reading them from the store
        // does; it is not part of the placement's cost.
        let weights = shard_weights(weights);
        let start = Instant::now();
        let map = ShardMap::place(fleet.names(), &weights, self.config);
        let compute = start.elapsed();
        Assignment {
            owners: owners_of(&map, fleet),
            compute,
            state: None,
        }
    }
}

/// The simulator's dense per-shard weights as the core's sparse
/// [`ShardWeights`] (what reading them from the store yields).
pub(crate) fn shard_weights(weights: &[u64]) -> ShardWeights {
    ShardWeights::from_pairs(0, (0u32..).zip(weights.iter().copied()))
}

/// The owner of every shard of `map` as an index into `fleet`
/// ([`UNOWNED`] where the map has none).
pub(crate) fn owners_of(map: &ShardMap, fleet: &Fleet) -> Vec<u32> {
    (0..map.shard_count())
        .map(|shard| {
            map.owner(shard)
                .and_then(|owner| fleet.index_of(owner))
                .unwrap_or(UNOWNED)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_balance_by_weight() {
        assert_eq!(permille_text(50), "0.05");
        assert_eq!(permille_text(100), "0.1");
        assert_eq!(permille_text(0), "0");
        let strategy = PlacedRing::new(256, 40, 50);
        assert_eq!(strategy.name(), "place(e=0.05 v=40)");
        let fleet = Fleet::from_ids(&[0, 1, 2, 3]);
        let weights: Vec<u64> = (0..256u64).map(|s| 1 + s % 7).collect();
        let owners = strategy.assign(&fleet, &weights).owners;
        let mut loads = [0u64; 4];
        for (owner, weight) in owners.iter().zip(&weights) {
            loads[*owner as usize] += weight;
        }
        let total: u64 = weights.iter().sum();
        let max = loads.iter().copied().max().unwrap_or(0);
        assert!(max as f64 <= total as f64 / 4.0 * 1.05 + 7.0, "{loads:?}");
    }
}
