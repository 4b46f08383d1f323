//! The job-write scenario: how much placement moves when jobs come and go.
//!
//! Why it matters: jobs are written far more often than nodes join or
//! leave. A hash-only strategy never moves a shard on a job write, but a
//! placement that balances *weights* ([`crate::strategy::place`],
//! [`crate::strategy::sticky`]) may: one
//! `put` changes one shard's weight, which can change which members are
//! full and so re-home other shards — each move a lease hand-over. This
//! module plans a seeded sequence of writes on a fixed fleet (puts of new
//! ids alternating with deletes of random existing jobs, one at a time) and
//! replays it through a strategy, recomputing the placement after every
//! write (a stateful strategy from its placement before the write) and
//! counting the shards, jobs and load that changed owner.

use std::time::Duration;

use shardcron_core::stable_hash::stable_hash64;

use crate::metrics::{ideal_max_over_mean, load_stats, member_loads, LoadStats};
use crate::rng::SplitMix64;
use crate::strategy::{Fleet, Strategy};
use crate::weighted_workload::JobSet;

/// One job write: a put of a new job or a delete of an existing one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobWrite {
    /// `+job-<i>` for a put, `-job-<i>` for a delete.
    pub label: String,
    /// The job's shard.
    pub shard: u32,
    /// True for a put, false for a delete.
    pub put: bool,
    /// The job's load units (added by a put, removed by a delete).
    pub units: u64,
}

/// What one write did to the placement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WriteStep {
    /// Shards whose owner changed.
    pub shards_moved: u64,
    /// Jobs in those shards (after the write).
    pub jobs_moved: u64,
    /// Load units in those shards (after the write).
    pub load_moved: u64,
    /// Total load units after the write.
    pub total_load: u64,
    /// `load_moved / total_load` (0 without load).
    pub load_moved_fraction: f64,
    /// Shards per member after the write.
    pub shards_per_node: LoadStats,
    /// Jobs per member after the write.
    pub jobs_per_node: LoadStats,
    /// Load per member after the write.
    pub load_per_node: LoadStats,
    /// Best reachable load max/mean after the write.
    pub ideal_max_over_mean: f64,
    /// Time to recompute the placement.
    pub compute: Duration,
}

/// Writes replayed for a population of `jobs` jobs: `percent` % of them,
/// rounded up, at least one.
pub fn write_count(jobs: usize, percent: f64) -> usize {
    let count = (jobs as f64 * percent.max(0.0) / 100.0).ceil();
    if count.is_finite() && count >= 1.0 {
        count as usize
    } else {
        1
    }
}

/// `count` writes on `jobs`: a put of the next new id, then a delete of a
/// job chosen by a generator seeded from `seed` and the population, and so
/// on alternately (a delete on an empty population becomes a put).
pub fn plan_writes(jobs: &JobSet, count: usize, seed: u64) -> Vec<JobWrite> {
    let mut population = jobs.clone();
    let mut live = jobs.jobs().to_vec();
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(b"writes:");
    key.extend_from_slice(jobs.kind().as_str().as_bytes());
    key.extend_from_slice(&seed.to_be_bytes());
    key.extend_from_slice(&(jobs.len() as u64).to_be_bytes());
    let mut rng = SplitMix64::new(stable_hash64(&key));
    let mut writes = Vec::with_capacity(count);
    for index in 0..count {
        if index % 2 == 0 || live.is_empty() {
            let job = population.fresh();
            live.push(job);
            writes.push(JobWrite {
                label: format!("+job-{}", job.index),
                shard: job.shard,
                put: true,
                units: job.weight,
            });
        } else {
            let victim = usize::try_from(rng.below(live.len() as u64)).unwrap_or(0);
            let job = live.swap_remove(victim);
            writes.push(JobWrite {
                label: format!("-job-{}", job.index),
                shard: job.shard,
                put: false,
                units: job.weight,
            });
        }
    }
    writes
}

/// Replays `writes` through `strategy` on `fleet`, starting from shard
/// weights `weights` and jobs per shard `jobs_per_shard`; one step per write.
///
/// Each write's placement follows from the previous write's
/// ([`Strategy::follow`]), so a stateful strategy is chained write after
/// write from its placement of the starting weights.
pub fn replay(
    strategy: &dyn Strategy,
    fleet: &Fleet,
    weights: &[u64],
    jobs_per_shard: &[u64],
    writes: &[JobWrite],
) -> Vec<WriteStep> {
    let mut weights = weights.to_vec();
    let mut counts = jobs_per_shard.to_vec();
    let mut current = strategy.assign(fleet, &weights);
    let mut steps = Vec::with_capacity(writes.len());
    for write in writes {
        let shard = write.shard as usize;
        if let (Some(weight), Some(count)) = (weights.get_mut(shard), counts.get_mut(shard)) {
            if write.put {
                *weight = weight.saturating_add(write.units);
                *count += 1;
            } else {
                *weight = weight.saturating_sub(write.units);
                *count = count.saturating_sub(1);
            }
        }
        let next = strategy.follow(&current, fleet, &weights);
        let (mut shards_moved, mut jobs_moved, mut load_moved) = (0u64, 0u64, 0u64);
        for (unit, (before, after)) in current.owners.iter().zip(&next.owners).enumerate() {
            if before != after {
                shards_moved += 1;
                jobs_moved += counts.get(unit).copied().unwrap_or(0);
                load_moved = load_moved.saturating_add(weights.get(unit).copied().unwrap_or(0));
            }
        }
        let total_load = weights.iter().fold(0u64, |sum, &w| sum.saturating_add(w));
        steps.push(WriteStep {
            shards_moved,
            jobs_moved,
            load_moved,
            total_load,
            load_moved_fraction: if total_load > 0 {
                load_moved as f64 / total_load as f64
            } else {
                0.0
            },
            shards_per_node: load_stats(&member_loads(&next.owners, fleet.len(), None)),
            jobs_per_node: load_stats(&member_loads(&next.owners, fleet.len(), Some(&counts))),
            load_per_node: load_stats(&member_loads(&next.owners, fleet.len(), Some(&weights))),
            ideal_max_over_mean: ideal_max_over_mean(&weights, fleet.len()),
            compute: next.compute,
        });
        current = next;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Assignment, Keying};
    use crate::weighted_workload::WorkloadKind;

    /// Member 0 gets the heaviest shard (lowest number on ties), member 1
    /// everything else: a weight-dependent toy whose moves are easy to
    /// check by hand.
    struct HeaviestToFirst;

    impl Strategy for HeaviestToFirst {
        fn name(&self) -> String {
            "heaviest-to-first".to_owned()
        }
        fn family(&self) -> &'static str {
            "toy"
        }
        fn vnodes(&self) -> Option<u32> {
            None
        }
        fn keying(&self) -> Keying {
            Keying::Shard
        }
        fn assign(&self, _fleet: &Fleet, weights: &[u64]) -> Assignment {
            let heaviest = (0..weights.len())
                .max_by_key(|&s| (weights[s], std::cmp::Reverse(s)))
                .unwrap_or(0);
            Assignment {
                owners: (0..weights.len())
                    .map(|s| u32::from(s != heaviest))
                    .collect(),
                compute: Duration::ZERO,
                state: None,
            }
        }
    }

    fn write(put: bool, shard: u32, units: u64) -> JobWrite {
        JobWrite {
            label: format!("{}{shard}", if put { "+" } else { "-" }),
            shard,
            put,
            units,
        }
    }

    #[test]
    fn hand_checked_moves() {
        let fleet = Fleet::from_ids(&[0, 1]);
        // Shard 0 (5 units, 1 job) is the heaviest and sits on member 0.
        let weights = [5, 3, 0, 0];
        let jobs = [1, 1, 0, 0];
        let writes = [
            // Shard 1 becomes 7 > 5: shards 0 and 1 swap owners; all 12
            // units (3 jobs) move.
            write(true, 1, 4),
            // Back to 5 vs 3: they swap again, all 8 units move.
            write(false, 1, 4),
            // A light job on shard 3 moves nothing.
            write(true, 3, 1),
        ];
        let steps = replay(&HeaviestToFirst, &fleet, &weights, &jobs, &writes);
        let summary: Vec<(u64, u64, u64, u64)> = steps
            .iter()
            .map(|s| (s.shards_moved, s.jobs_moved, s.load_moved, s.total_load))
            .collect();
        assert_eq!(summary, vec![(2, 3, 12, 12), (2, 2, 8, 8), (0, 0, 0, 9)]);
        assert!((steps[0].load_moved_fraction - 1.0).abs() < 1e-12);
        assert_eq!(steps[2].load_moved_fraction, 0.0);
        // After the last write member 0 carries 5 of 9 units.
        assert_eq!(steps[2].load_per_node.max, 5);
    }

    #[test]
    fn writes_alternate_and_are_seeded() {
        let jobs = JobSet::new(WorkloadKind::Mixed, 500, 3, 256);
        assert_eq!(write_count(jobs.len(), 1.0), 5);
        assert_eq!(write_count(16, 1.0), 1);
        let writes = plan_writes(&jobs, 6, 9);
        assert_eq!(writes, plan_writes(&jobs, 6, 9));
        assert_ne!(writes, plan_writes(&jobs, 6, 10));
        let puts: Vec<bool> = writes.iter().map(|w| w.put).collect();
        assert_eq!(puts, vec![true, false, true, false, true, false]);
        assert_eq!(writes[0].label, "+job-500");
        assert_eq!(writes[2].label, "+job-501");
        // Deletes name existing jobs, with their weight and shard.
        for delete in writes.iter().filter(|w| !w.put) {
            let index: u32 = delete
                .label
                .trim_start_matches("-job-")
                .parse()
                .expect("id");
            if let Some(job) = jobs.jobs().iter().find(|j| j.index == index) {
                assert_eq!((job.shard, job.weight), (delete.shard, delete.units));
            }
        }
    }
}
