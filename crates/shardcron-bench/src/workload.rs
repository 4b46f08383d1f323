//! The simulated job population: `jobs` jobs with ids `job-0`, `job-1`, ...
//!
//! Jobs, not shards, are what a worker actually runs, so every shard-keyed
//! result is also weighted by how many jobs each shard holds (computed with
//! the real `shard_of`). The dcron-like ring needs the CRC32 of every job id
//! instead. Both are computed once up front; neither depends on membership.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use shardcron_core::shard_of;

use crate::strategy::dcron::dcron_hash;

/// Job counts per shard and job-name hashes for one simulation.
#[derive(Clone, Debug)]
pub struct Workload {
    jobs: u32,
    jobs_per_shard: BTreeMap<u32, Arc<Vec<u64>>>,
    job_hashes: Arc<Vec<u32>>,
}

impl Workload {
    /// Builds the workload of `jobs` jobs for every shard count in `shard_counts`.
    pub fn new(jobs: u32, shard_counts: &[u32]) -> Workload {
        let mut jobs_per_shard: BTreeMap<u32, Vec<u64>> = shard_counts
            .iter()
            .map(|&count| (count, vec![0u64; count as usize]))
            .collect();
        let mut job_hashes = Vec::with_capacity(jobs as usize);
        let mut id = String::with_capacity(16);
        for index in 0..jobs {
            id.clear();
            // Writing to a String cannot fail.
            let _ = write!(id, "job-{index}");
            job_hashes.push(dcron_hash(id.as_bytes()));
            for (&count, per_shard) in &mut jobs_per_shard {
                if let Some(slot) = per_shard.get_mut(shard_of(&id, count) as usize) {
                    *slot += 1;
                }
            }
        }
        Workload {
            jobs,
            jobs_per_shard: jobs_per_shard
                .into_iter()
                .map(|(count, per_shard)| (count, Arc::new(per_shard)))
                .collect(),
            job_hashes: Arc::new(job_hashes),
        }
    }

    /// Number of jobs.
    pub fn jobs(&self) -> u32 {
        self.jobs
    }

    /// Jobs in each shard for `shard_count` shards (empty if that count was
    /// not part of the workload).
    pub fn jobs_per_shard(&self, shard_count: u32) -> Arc<Vec<u64>> {
        self.jobs_per_shard
            .get(&shard_count)
            .cloned()
            .unwrap_or_default()
    }

    /// CRC32 of every job id, in job order.
    pub fn job_hashes(&self) -> Arc<Vec<u32>> {
        Arc::clone(&self.job_hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_lands_in_one_shard() {
        let workload = Workload::new(10_000, &[16, 1024]);
        assert_eq!(workload.jobs_per_shard(16).iter().sum::<u64>(), 10_000);
        assert_eq!(workload.jobs_per_shard(1024).iter().sum::<u64>(), 10_000);
        assert!(workload.jobs_per_shard(7).is_empty());
        assert_eq!(workload.job_hashes().len(), 10_000);
    }
}
