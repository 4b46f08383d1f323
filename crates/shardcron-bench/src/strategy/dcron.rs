//! A dcron-like ring, for comparison with the Go library many teams start from.
//!
//! dcron (`libi/dcron`) uses the groupcache-style ring: each node gets 50
//! virtual nodes at `crc32_ieee(itoa(i) + "_" + node_id)` (a position that
//! collides with an existing one is skipped, first come first served), and
//! a *job name* is hashed with the same CRC32 and owned by the first virtual
//! node at or after it (wrapping). There are no shards: every job is placed
//! on its own, so the units here are jobs.
//!
//! CRC32 is a checksum, not a hash: it is linear over GF(2), so similar
//! inputs such as `job-1`, `job-2`, ... and `0_node-0001`, `1_node-0001`, ...
//! land in structured rather than uniformly random positions. Measuring that
//! effect is the point of including it. Job-name hashes are computed once by
//! the workload and are not part of the timed computation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::{successor, Assignment, Fleet, Keying, Strategy};

/// dcron's default number of virtual nodes per member (`defaultReplicas`).
pub const DCRON_REPLICAS: u32 = 50;

/// dcron's hash: CRC32 (IEEE polynomial), as Go's `crc32.ChecksumIEEE`.
pub fn dcron_hash(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The dcron-like ring over precomputed job-name hashes.
#[derive(Clone, Debug)]
pub struct DcronRing {
    job_hashes: Arc<Vec<u32>>,
    replicas: u32,
}

impl DcronRing {
    /// A ring with `replicas` virtual nodes per member placing the jobs whose
    /// [`dcron_hash`]es are `job_hashes`.
    pub fn new(job_hashes: Arc<Vec<u32>>, replicas: u32) -> Self {
        Self {
            job_hashes,
            replicas: replicas.max(1),
        }
    }

    /// The ring points `(position, member index)`, sorted, as dcron builds them.
    pub fn points(&self, fleet: &Fleet) -> Vec<(u64, u32)> {
        let mut seen = HashSet::with_capacity(fleet.len() * self.replicas as usize);
        let mut points = Vec::with_capacity(fleet.len() * self.replicas as usize);
        for (member, name) in (0u32..).zip(fleet.names()) {
            for index in 0..self.replicas {
                let position = dcron_hash(format!("{index}_{name}").as_bytes());
                if seen.insert(position) {
                    points.push((u64::from(position), member));
                }
            }
        }
        points.sort_by_key(|&(position, _)| position);
        points
    }
}

impl Strategy for DcronRing {
    fn name(&self) -> String {
        format!("dcron(v={})", self.replicas)
    }

    fn family(&self) -> &'static str {
        "dcron"
    }

    fn vnodes(&self) -> Option<u32> {
        Some(self.replicas)
    }

    fn keying(&self) -> Keying {
        Keying::Job
    }

    fn assign(&self, fleet: &Fleet, _weights: &[u64]) -> Assignment {
        let start = Instant::now();
        let points = self.points(fleet);
        let owners = if points.is_empty() {
            vec![super::UNOWNED; self.job_hashes.len()]
        } else {
            self.job_hashes
                .iter()
                .map(|&hash| points[successor(&points, u64::from(hash))].1)
                .collect()
        };
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
    fn hash_is_crc32_ieee() {
        // The standard CRC-32 check value.
        assert_eq!(dcron_hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn removing_a_node_moves_only_its_jobs() {
        let hashes: Vec<u32> = (0..20_000)
            .map(|i| dcron_hash(format!("job-{i}").as_bytes()))
            .collect();
        let ring = DcronRing::new(Arc::new(hashes), DCRON_REPLICAS);
        let all = Fleet::from_ids(&[0, 1, 2, 3, 4]);
        let without = Fleet::from_ids(&[0, 1, 3, 4]);
        let before = ring.assign(&all, &[]).owners;
        let after = ring.assign(&without, &[]).owners;
        for (b, a) in before.iter().zip(&after) {
            let b_id = all.ids()[*b as usize];
            let a_id = without.ids()[*a as usize];
            assert!(b_id == a_id || b_id == 2, "job moved off a surviving node");
        }
    }
}
