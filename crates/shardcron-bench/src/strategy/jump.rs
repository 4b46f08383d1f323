//! Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent
//! Hash Algorithm", 2014) over the sorted member list.
//!
//! Jump hash maps a key to a *bucket number* in `0..N`. It is perfectly
//! balanced and minimal when buckets are added or removed at the END. Here
//! bucket `b` is the `b`-th member in name order, so a node joining with the
//! highest name is cheap — but when an arbitrary member leaves, every member
//! after it shifts down one bucket and most shards change owner. That is not
//! a bug of this implementation: jump hash needs stable bucket numbers, which
//! a fleet whose members come and go in any order does not have.

use std::time::Instant;

use super::{shard_key_hash, Assignment, Fleet, Keying, Strategy, UNOWNED};

/// The jump consistent hash of `key` into `0..buckets` (0 when `buckets == 0`).
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let scale = f64::from(1u32 << 31) / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * scale) as i64;
    }
    u32::try_from(bucket).unwrap_or(0)
}

/// Jump hash of `shard_count` shards onto the sorted member list.
#[derive(Clone, Copy, Debug)]
pub struct JumpHash {
    shard_count: u32,
}

impl JumpHash {
    /// Jump hash over `shard_count` shards.
    pub fn new(shard_count: u32) -> Self {
        Self { shard_count }
    }
}

impl Strategy for JumpHash {
    fn name(&self) -> String {
        "jump".to_owned()
    }

    fn family(&self) -> &'static str {
        "jump"
    }

    fn vnodes(&self) -> Option<u32> {
        None
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        let buckets = u32::try_from(fleet.len()).unwrap_or(u32::MAX);
        let owners = (0..self.shard_count)
            .map(|shard| {
                if buckets == 0 {
                    UNOWNED
                } else {
                    jump_hash(shard_key_hash(shard), buckets)
                }
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

    #[test]
    fn known_values() {
        // Reference vectors shared by the common Go implementations.
        assert_eq!(jump_hash(1, 1), 0);
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(jump_hash(0xDEAD_10CC, 1), 0);
        assert_eq!(jump_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_hash(256, 1024), 520);
        assert_eq!(jump_hash(7, 0), 0);
    }

    #[test]
    fn growing_by_one_bucket_moves_keys_only_to_it() {
        for key in 0..10_000u64 {
            let key = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let before = jump_hash(key, 9);
            let after = jump_hash(key, 10);
            assert!(before == after || after == 9);
        }
    }
}
