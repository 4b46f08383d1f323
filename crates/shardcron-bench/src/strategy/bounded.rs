//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads", 2018).
//!
//! Same ring as the shipped one (same virtual-node and shard-key hashes), but
//! every member has a capacity of `ceil((1 + ε) · S / N)` shards. Shards are
//! placed in shard order (the deterministic order every node can agree on);
//! a shard whose clockwise successor is full walks on clockwise to the next
//! member with room. No member ever exceeds the capacity, at the price of
//! extra movement: a membership change can shift which members are full and
//! so cascade to shards that would have stayed put on the plain ring.

use std::time::Instant;

use super::{build_ring, shard_key_hash, successor, Assignment, Fleet, Keying, Strategy, UNOWNED};

/// Bounded-load placement of `shard_count` shards.
#[derive(Clone, Copy, Debug)]
pub struct BoundedLoads {
    shard_count: u32,
    vnodes: u32,
    epsilon: f64,
}

/// The per-member capacity `ceil((1 + ε) · shards / members)`, never below
/// `ceil(shards / members)` so that every shard always fits.
pub fn capacity(shards: u32, members: usize, epsilon: f64) -> u32 {
    if members == 0 {
        return 0;
    }
    let members_u64 = members as u64;
    let floor_fit = u64::from(shards).div_ceil(members_u64);
    let bounded = ((1.0 + epsilon.max(0.0)) * f64::from(shards) / members as f64).ceil();
    // Saturating float-to-int conversion; a capacity above `shards` is moot.
    let bounded = if bounded.is_finite() {
        bounded as u64
    } else {
        u64::from(shards)
    };
    u32::try_from(bounded.max(floor_fit).min(u64::from(shards))).unwrap_or(shards)
}

impl BoundedLoads {
    /// Bounded loads over `shard_count` shards, `vnodes` per member, slack `epsilon`.
    pub fn new(shard_count: u32, vnodes: u32, epsilon: f64) -> Self {
        Self {
            shard_count,
            vnodes,
            epsilon,
        }
    }
}

impl Strategy for BoundedLoads {
    fn name(&self) -> String {
        format!("bounded(e={} v={})", self.epsilon, self.vnodes)
    }

    fn family(&self) -> &'static str {
        "bounded"
    }

    fn vnodes(&self) -> Option<u32> {
        Some(self.vnodes)
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        let ring = build_ring(fleet, self.vnodes);
        let mut owners = vec![UNOWNED; self.shard_count as usize];
        if !ring.is_empty() {
            let cap = capacity(self.shard_count, fleet.len(), self.epsilon);
            let mut loads = vec![0u32; fleet.len()];
            for (shard, owner) in (0u32..).zip(owners.iter_mut()) {
                let mut index = successor(&ring, shard_key_hash(shard));
                // Total capacity >= shard_count, so a member with room exists
                // and the walk ends within one lap of the ring.
                for _ in 0..ring.len() {
                    let member = ring[index].1;
                    let load = &mut loads[member as usize];
                    if *load < cap {
                        *load += 1;
                        *owner = member;
                        break;
                    }
                    index = (index + 1) % ring.len();
                }
            }
        }
        Assignment {
            owners,
            compute: start.elapsed(),
            state: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::ring::ShippedRing;

    #[test]
    fn never_exceeds_capacity_and_places_every_shard() {
        for (shards, nodes, epsilon) in [
            (1024, 3, 0.25),
            (1024, 50, 0.1),
            (4096, 7, 0.0),
            (100, 30, 0.25),
        ] {
            let fleet = Fleet::from_ids(&(0..nodes).collect::<Vec<_>>());
            let owners = BoundedLoads::new(shards, 40, epsilon)
                .assign(&fleet, &[])
                .owners;
            let cap = capacity(shards, fleet.len(), epsilon);
            let mut loads = vec![0u32; fleet.len()];
            for owner in owners {
                assert_ne!(owner, UNOWNED);
                loads[owner as usize] += 1;
            }
            assert!(loads.iter().all(|&l| l <= cap), "{loads:?} over {cap}");
            assert_eq!(loads.iter().sum::<u32>(), shards);
        }
    }

    #[test]
    fn unbounded_capacity_is_the_shipped_ring() {
        let fleet = Fleet::from_ids(&[0, 1, 2, 3, 4, 5]);
        let bounded = BoundedLoads::new(2048, 80, 1e9).assign(&fleet, &[]).owners;
        let shipped = ShippedRing::new(2048, 80).assign(&fleet, &[]).owners;
        assert_eq!(bounded, shipped);
    }

    #[test]
    fn capacity_formula() {
        assert_eq!(capacity(1024, 10, 0.25), 128);
        assert_eq!(capacity(1024, 3, 0.0), 342);
        assert_eq!(capacity(10, 0, 0.25), 0);
    }
}
