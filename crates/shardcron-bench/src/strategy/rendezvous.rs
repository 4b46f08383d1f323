//! Rendezvous (highest-random-weight) hashing, Thaler & Ravishankar 1996.
//!
//! Shard `s` goes to the member with the largest
//! `stable_hash64(member ++ b"#shard:" ++ be32(s))` (ties: the smaller name).
//! Balance is that of S independent uniform draws and movement is exactly
//! minimal, with no virtual nodes to tune; the price is O(S · N) hashes per
//! recomputation instead of O(N · v · log + S · log).

use std::time::Instant;

use shardcron_core::stable_hash::stable_hash64;

use super::{Assignment, Fleet, Keying, Strategy, UNOWNED};

/// Rendezvous hashing of `shard_count` shards.
#[derive(Clone, Copy, Debug)]
pub struct Rendezvous {
    shard_count: u32,
}

impl Rendezvous {
    /// Rendezvous hashing over `shard_count` shards.
    pub fn new(shard_count: u32) -> Self {
        Self { shard_count }
    }
}

impl Strategy for Rendezvous {
    fn name(&self) -> String {
        "rendezvous".to_owned()
    }

    fn family(&self) -> &'static str {
        "rendezvous"
    }

    fn vnodes(&self) -> Option<u32> {
        None
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        // One buffer per member; only the trailing 4 shard bytes change.
        let mut buffers: Vec<Vec<u8>> = fleet
            .names()
            .iter()
            .map(|name| {
                let mut bytes = Vec::with_capacity(name.len() + 11);
                bytes.extend_from_slice(name.as_bytes());
                bytes.extend_from_slice(b"#shard:\0\0\0\0");
                bytes
            })
            .collect();
        let owners = (0..self.shard_count)
            .map(|shard| {
                let mut best: Option<(u64, u32)> = None;
                for (member, bytes) in (0u32..).zip(buffers.iter_mut()) {
                    let tail = bytes.len() - 4;
                    bytes[tail..].copy_from_slice(&shard.to_be_bytes());
                    let weight = stable_hash64(bytes);
                    if best.is_none_or(|(top, _)| weight > top) {
                        best = Some((weight, member));
                    }
                }
                best.map_or(UNOWNED, |(_, member)| member)
            })
            .collect();
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

    fn ids_of(fleet: &Fleet, owners: &[u32]) -> Vec<u32> {
        owners.iter().map(|&o| fleet.ids()[o as usize]).collect()
    }

    #[test]
    fn removal_moves_only_the_removed_nodes_shards() {
        let strategy = Rendezvous::new(4096);
        let all = Fleet::from_ids(&(0..12).collect::<Vec<_>>());
        let without = Fleet::from_ids(&(0..12).filter(|&i| i != 5).collect::<Vec<_>>());
        let before = ids_of(&all, &strategy.assign(&all, &[]).owners);
        let after = ids_of(&without, &strategy.assign(&without, &[]).owners);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*b, 5, "a shard of a surviving node moved");
                moved += 1;
            }
        }
        assert_eq!(moved, before.iter().filter(|&&b| b == 5).count());
    }

    #[test]
    fn addition_moves_shards_only_to_the_new_node() {
        let strategy = Rendezvous::new(4096);
        let small = Fleet::from_ids(&[0, 1, 2, 3]);
        let big = Fleet::from_ids(&[0, 1, 2, 3, 4]);
        let before = ids_of(&small, &strategy.assign(&small, &[]).owners);
        let after = ids_of(&big, &strategy.assign(&big, &[]).owners);
        assert!(before.iter().zip(&after).all(|(b, a)| b == a || *a == 4));
    }
}
