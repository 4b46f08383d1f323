//! The placement the live fleet must settle on.
//!
//! Workers place shards with `ShardMap::place` over the shard weights they
//! read from the store, so "settled" means every shard is held by its owner
//! in *that* placement, not on the plain ring. The benchmark registered
//! every job itself, so it computes the weights on its own — each spec's
//! `load_units`, summed per `shard_of` — instead of reading them back from
//! the store it is testing: a store that kept wrong weights then shows up
//! as a fleet that never settles.

use shardcron_core::{shard_of, JobSpec, RingConfig, ShardMap, ShardWeights};

use crate::error::BenchError;

/// The spec of benchmark job `job-<index>`: `schedule`, handler `count`.
pub fn job_spec(index: u32, schedule: &str) -> JobSpec {
    JobSpec::new(format!("job-{index}"), schedule, "count")
}

/// Shard weights of jobs `job-0 .. job-(jobs-1)` on `schedule` over
/// `shard_count` shards.
///
/// # Errors
///
/// A spec that does not validate (a bad `--every`).
pub fn shard_weights(
    jobs: u32,
    schedule: &str,
    shard_count: u32,
) -> Result<ShardWeights, BenchError> {
    let mut pairs = Vec::with_capacity(jobs as usize);
    for index in 0..jobs {
        let spec = job_spec(index, schedule);
        let units = spec
            .validate()
            .map_err(|e| BenchError::live("computing job weights", e))?
            .load_units();
        pairs.push((shard_of(&spec.id, shard_count), units));
    }
    Ok(ShardWeights::from_pairs(0, pairs))
}

/// The owners every worker should converge on for `live_nodes`.
pub fn expected_map(live_nodes: &[String], weights: &ShardWeights, ring: RingConfig) -> ShardMap {
    ShardMap::place(live_nodes, weights, ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_the_jobs_per_shard() {
        let weights = shard_weights(100, "@every 1s", 16).expect("valid specs");
        assert_eq!(weights.total(), 100 * 86_400_000);
        let per_shard = (0..100)
            .filter(|i| shard_of(&format!("job-{i}"), 16) == 3)
            .count();
        assert_eq!(weights.get(3), per_shard as u64 * 86_400_000);
        assert!(shard_weights(1, "not a schedule", 16).is_err());
        let nodes = vec!["bench-w0".to_owned(), "bench-w1".to_owned()];
        let map = expected_map(&nodes, &weights, RingConfig::new(16, 8));
        assert!((0..16).all(|s| map.owner(s).is_some()));
    }
}
