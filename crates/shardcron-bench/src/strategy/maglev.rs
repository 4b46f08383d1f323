//! Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI '16), over shards.
//!
//! Why it is in the comparison: Maglev is the usual answer when ring
//! consistent hashing balances too poorly. Every member gets a pseudo-random
//! permutation of a lookup table of prime size `M` — `offset = h1(name) % M`,
//! `skip = h2(name) % (M - 1) + 1`, entry `j` of the permutation is
//! `(offset + j · skip) % M` — and members take turns claiming the next free
//! entry of their permutation until the table is full. So every member owns
//! `⌊M/N⌋` or `⌈M/N⌉` entries (near-perfect balance by *entry count*), and a
//! membership change moves a little more than the minimum (the paper's
//! "minimal disruption" is best effort). Shard `s` is owned by
//! `table[hash(shard key) % M]`. Like every hash-only strategy it cannot see
//! shard weights.
//!
//! `M` is the first prime ≥ `max(65537, 100 · N)`, as the paper recommends
//! (`M ≫ N`, ≥ 100 N keeps the entry imbalance within ~1 %).

use std::time::Instant;

use shardcron_core::stable_hash::stable_hash64;

use super::{shard_key_hash, Assignment, Fleet, Keying, Strategy, UNOWNED};

/// Smallest lookup-table size used.
pub const MIN_TABLE_SIZE: u64 = 65_537;

/// Whether `n` is prime (trial division; `n` is at most a few million here).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut divisor = 3u64;
    while divisor.saturating_mul(divisor) <= n {
        if n % divisor == 0 {
            return false;
        }
        divisor += 2;
    }
    true
}

/// The first prime at or above `n`.
pub fn next_prime(n: u64) -> u64 {
    let mut candidate = n.max(2);
    while !is_prime(candidate) {
        candidate += 1;
    }
    candidate
}

/// The lookup-table size for `members` members: the first prime
/// `≥ max(65537, 100 · members)`.
pub fn table_size(members: usize) -> u64 {
    next_prime(MIN_TABLE_SIZE.max((members as u64).saturating_mul(100)))
}

fn member_hash(name: &str, purpose: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(name.len() + purpose.len());
    bytes.extend_from_slice(name.as_bytes());
    bytes.extend_from_slice(purpose);
    stable_hash64(&bytes)
}

/// The Maglev lookup table of size `size` (must be prime) for `names`:
/// entry `e` holds the index into `names` of its owner. Empty when `names`
/// is empty or `size < 2`.
pub fn lookup_table(names: &[String], size: u64) -> Vec<u32> {
    if names.is_empty() || size < 2 {
        return Vec::new();
    }
    let permutations: Vec<(u64, u64)> = names
        .iter()
        .map(|name| {
            let offset = member_hash(name, b"#maglev-offset") % size;
            let skip = member_hash(name, b"#maglev-skip") % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut table = vec![UNOWNED; usize::try_from(size).unwrap_or(usize::MAX)];
    let mut filled = 0usize;
    // With a prime size every permutation visits every entry, so each
    // member's walk finds a free entry while the table is not full.
    while filled < table.len() {
        for (member, (&(offset, skip), cursor)) in
            (0u32..).zip(permutations.iter().zip(next.iter_mut()))
        {
            loop {
                let entry = ((offset + *cursor * skip) % size) as usize;
                *cursor += 1;
                if table[entry] == UNOWNED {
                    table[entry] = member;
                    break;
                }
            }
            filled += 1;
            if filled == table.len() {
                break;
            }
        }
    }
    table
}

/// Maglev hashing of `shard_count` shards.
#[derive(Clone, Copy, Debug)]
pub struct Maglev {
    shard_count: u32,
}

impl Maglev {
    /// Maglev over `shard_count` shards.
    pub fn new(shard_count: u32) -> Self {
        Self { shard_count }
    }
}

impl Strategy for Maglev {
    fn name(&self) -> String {
        "maglev".to_owned()
    }

    fn family(&self) -> &'static str {
        "maglev"
    }

    fn vnodes(&self) -> Option<u32> {
        None
    }

    fn keying(&self) -> Keying {
        Keying::Shard
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        let size = table_size(fleet.len());
        let table = lookup_table(fleet.names(), size);
        let owners = (0..self.shard_count)
            .map(|shard| {
                let entry = (shard_key_hash(shard) % size) as usize;
                table.get(entry).copied().unwrap_or(UNOWNED)
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
    fn primes() {
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(65_538), 65_539);
        assert_eq!(table_size(10), 65_537);
        assert_eq!(table_size(1000), 100_003);
        assert!(!is_prime(1) && is_prime(2) && !is_prime(65_541));
    }

    #[test]
    fn every_member_gets_its_share_of_the_table() {
        for members in [3usize, 10, 100, 700] {
            let fleet = Fleet::from_ids(&(0..members as u32).collect::<Vec<_>>());
            let size = table_size(members);
            assert!(size >= 100 * members as u64);
            let table = lookup_table(fleet.names(), size);
            assert_eq!(table.len() as u64, size);
            let mut counts = vec![0u64; members];
            for &owner in &table {
                counts[owner as usize] += 1;
            }
            let fair = size as f64 / members as f64;
            for (member, &count) in counts.iter().enumerate() {
                let off = (count as f64 - fair).abs() / fair;
                assert!(
                    off < 0.02,
                    "N={members}: member {member} has {count} of {size}"
                );
            }
        }
    }

    #[test]
    fn removing_a_member_moves_its_entries_and_few_others() {
        let all = Fleet::from_ids(&(0..20).collect::<Vec<_>>());
        let without = Fleet::from_ids(&(0..20).filter(|&i| i != 7).collect::<Vec<_>>());
        let size = table_size(20);
        let before = lookup_table(all.names(), size);
        let after = lookup_table(without.names(), size);
        let (mut of_removed, mut others_moved, mut others) = (0u64, 0u64, 0u64);
        for (&b, &a) in before.iter().zip(&after) {
            let (b_id, a_id) = (all.ids()[b as usize], without.ids()[a as usize]);
            if b_id == 7 {
                of_removed += 1;
                assert_ne!(a_id, 7);
            } else {
                others += 1;
                others_moved += u64::from(a_id != b_id);
            }
        }
        assert!(of_removed > 0);
        let disruption = others_moved as f64 / others as f64;
        assert!(
            disruption < 0.05,
            "{:.2} % of the surviving members' entries moved",
            disruption * 100.0
        );
    }

    #[test]
    fn shards_follow_the_table() {
        let fleet = Fleet::from_ids(&[0, 1, 2, 3]);
        let owners = Maglev::new(4096).assign(&fleet, &[]).owners;
        assert_eq!(owners.len(), 4096);
        let mut counts = [0u32; 4];
        for &owner in &owners {
            counts[owner as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1150).contains(&c)),
            "{counts:?}"
        );
        assert!(Maglev::new(8)
            .assign(&Fleet::from_ids(&[]), &[])
            .owners
            .iter()
            .all(|&o| o == UNOWNED));
    }
}
