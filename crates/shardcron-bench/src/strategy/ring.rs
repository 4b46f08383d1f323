//! The ring as shipped: `shardcron_core::ShardMap` (the `hashring` crate over
//! XXH3 with `vnodes` virtual nodes per member).

use std::time::Instant;

use shardcron_core::{RingConfig, ShardMap};

use super::{Assignment, Fleet, Keying, Strategy, UNOWNED};

/// `ShardMap::compute` with a given number of virtual nodes.
#[derive(Clone, Copy, Debug)]
pub struct ShippedRing {
    config: RingConfig,
}

impl ShippedRing {
    /// The shipped ring over `shard_count` shards with `vnodes` per member.
    pub fn new(shard_count: u32, vnodes: u32) -> Self {
        Self {
            config: RingConfig::new(shard_count, vnodes),
        }
    }
}

impl Strategy for ShippedRing {
    fn name(&self) -> String {
        format!("ring(v={})", self.config.vnodes)
    }

    fn family(&self) -> &'static str {
        "ring"
    }

    fn vnodes(&self) -> Option<u32> {
        Some(self.config.vnodes)
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        let map = ShardMap::compute(fleet.names(), self.config);
        let compute = start.elapsed();
        let owners = (0..self.config.shard_count)
            .map(|shard| {
                map.owner(shard)
                    .and_then(|owner| fleet.index_of(owner))
                    .unwrap_or(UNOWNED)
            })
            .collect();
        Assignment {
            owners,
            compute,
            state: None,
        }
    }
}
