//! Weighted job populations for the weighted comparison of `sim`.
//!
//! Placement should even out *work*, not shard counts: a shard holding an
//! every-second job weighs 86,400 times one holding a daily job, and with
//! few jobs per node most shards are empty. The populations here exercise
//! exactly that. A job's weight is what `shardcron_core::Job::load_units`
//! gives its schedule and cost (expected fires per day × cost × 1000); it is
//! taken from the class table below rather than by parsing a schedule per
//! job, which keeps millions of draws cheap, and a test pins the table to
//! the core's `load_units`.
//!
//! * `uniform`: every job fires every second at cost 1.
//! * `mixed`: 1 % every second, 9 % every 10 s, 30 % every minute, 40 %
//!   hourly, 20 % daily, each with a cost drawn from a Zipf distribution
//!   over 1..=10 (cost `k` with probability ∝ 1/k).
//! * `few` / `few-mixed`: the same two schedules with few jobs per node,
//!   where most shards are empty and a single job can outweigh a node's
//!   fair share.
//!
//! Job `i` is `job-i`; its shard comes from the real `shard_of`. The draws
//! of job `i` depend only on `(seed, i)`, not on how many jobs exist, so a
//! fleet size's population is a prefix of a larger one's and a job created
//! by a write gets the same weight in every strategy's replay.

use clap::ValueEnum;
use serde::Serialize;
use shardcron_core::shard_of;
use shardcron_core::stable_hash::stable_hash64;

use crate::rng::SplitMix64;

/// Load units of one fire per second at cost 1 (86,400 fires a day × 1000).
pub const UNITS_PER_FIRE_PER_SECOND: u64 = 86_400_000;

/// Largest cost the Zipf draw yields.
pub const MAX_COST: u32 = 10;

/// A job population.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Every job every second at cost 1; `--jobs-per-node` jobs per node.
    Uniform,
    /// The mixed schedule table with Zipf costs; `--jobs-per-node` per node.
    Mixed,
    /// Like `uniform` with `--few-jobs-per-node` jobs per node (with `--workload`,
    /// `few` also selects `few-mixed`).
    Few,
    /// Like `mixed` with `--few-jobs-per-node` jobs per node.
    FewMixed,
}

impl WorkloadKind {
    /// Kebab-case name, as on the command line and in the outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::Mixed => "mixed",
            WorkloadKind::Few => "few",
            WorkloadKind::FewMixed => "few-mixed",
        }
    }

    /// Whether jobs draw their schedule and cost from the mixed table.
    pub fn is_mixed(self) -> bool {
        matches!(self, WorkloadKind::Mixed | WorkloadKind::FewMixed)
    }

    /// Whether the population is one of the few-jobs-per-node ones.
    pub fn is_few(self) -> bool {
        matches!(self, WorkloadKind::Few | WorkloadKind::FewMixed)
    }
}

/// One schedule of the mixed table.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleClass {
    /// The schedule as a job spec would write it.
    pub schedule: &'static str,
    /// Share of the jobs, percent.
    pub percent: u64,
    /// Load units of one such job at cost 1.
    pub units: u64,
}

/// The mixed schedule table; percentages add up to 100.
pub const MIXED_CLASSES: [ScheduleClass; 5] = [
    ScheduleClass {
        schedule: "@every 1s",
        percent: 1,
        units: 86_400_000,
    },
    ScheduleClass {
        schedule: "@every 10s",
        percent: 9,
        units: 8_640_000,
    },
    ScheduleClass {
        schedule: "* * * * *",
        percent: 30,
        units: 1_440_000,
    },
    ScheduleClass {
        schedule: "@hourly",
        percent: 40,
        units: 24_000,
    },
    ScheduleClass {
        schedule: "@daily",
        percent: 20,
        units: 1_000,
    },
];

/// The class a uniform percentile draw `0..100` falls in.
fn class_of(percentile: u64) -> &'static ScheduleClass {
    let mut upper = 0;
    for class in &MIXED_CLASSES {
        upper += class.percent;
        if percentile < upper {
            return class;
        }
    }
    &MIXED_CLASSES[MIXED_CLASSES.len() - 1]
}

/// The Zipf (exponent 1) cost over `1..=MAX_COST` for a uniform draw
/// `u ∈ [0, 1)`: the smallest `k` with `H_k / H_MAX_COST > u`.
pub fn zipf_cost(u: f64) -> u32 {
    let harmonic: f64 = (1..=MAX_COST).map(|k| 1.0 / f64::from(k)).sum();
    let mut cumulative = 0.0;
    for k in 1..=MAX_COST {
        cumulative += 1.0 / f64::from(k) / harmonic;
        if u < cumulative {
            return k;
        }
    }
    MAX_COST
}

/// The schedule class and cost of mixed job `index` under `seed`.
pub fn mixed_draw(seed: u64, index: u32) -> (&'static ScheduleClass, u32) {
    let mut key = [0u8; 18];
    key[..6].copy_from_slice(b"mixed:");
    key[6..14].copy_from_slice(&seed.to_be_bytes());
    key[14..].copy_from_slice(&index.to_be_bytes());
    let mut rng = SplitMix64::new(stable_hash64(&key));
    let class = class_of(rng.below(100));
    (class, zipf_cost(rng.next_f64()))
}

/// Load units of job `index` of a `kind` population under `seed`.
pub fn job_weight(kind: WorkloadKind, seed: u64, index: u32) -> u64 {
    if kind.is_mixed() {
        let (class, cost) = mixed_draw(seed, index);
        class.units * u64::from(cost)
    } else {
        UNITS_PER_FIRE_PER_SECOND
    }
}

/// One job of a [`JobSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimJob {
    /// `i` of `job-i`.
    pub index: u32,
    /// `shard_of("job-i", shard_count)`.
    pub shard: u32,
    /// Load units.
    pub weight: u64,
}

/// The jobs of one population, hashed into `shard_count` shards.
#[derive(Clone, Debug)]
pub struct JobSet {
    kind: WorkloadKind,
    seed: u64,
    shard_count: u32,
    jobs: Vec<SimJob>,
    next_index: u32,
}

impl JobSet {
    /// Jobs `job-0 .. job-(count-1)` of population `kind`.
    pub fn new(kind: WorkloadKind, count: u32, seed: u64, shard_count: u32) -> JobSet {
        let mut set = JobSet {
            kind,
            seed,
            shard_count,
            jobs: Vec::with_capacity(count as usize),
            next_index: 0,
        };
        for _ in 0..count {
            let job = set.fresh();
            set.jobs.push(job);
        }
        set
    }

    /// A new job with the next unused id (not yet part of the set).
    pub fn fresh(&mut self) -> SimJob {
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        SimJob {
            index,
            shard: shard_of(&format!("job-{index}"), self.shard_count),
            weight: job_weight(self.kind, self.seed, index),
        }
    }

    /// The population kind.
    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    /// Shard count the jobs were hashed into.
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The jobs, in creation order.
    pub fn jobs(&self) -> &[SimJob] {
        &self.jobs
    }

    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Load units per shard (dense, `shard_count` entries).
    pub fn shard_weights(&self) -> Vec<u64> {
        let mut weights = vec![0u64; self.shard_count as usize];
        for job in &self.jobs {
            if let Some(slot) = weights.get_mut(job.shard as usize) {
                *slot = slot.saturating_add(job.weight);
            }
        }
        weights
    }

    /// Jobs per shard (dense, `shard_count` entries).
    pub fn jobs_per_shard(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.shard_count as usize];
        for job in &self.jobs {
            if let Some(slot) = counts.get_mut(job.shard as usize) {
                *slot += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcron_core::JobSpec;

    #[test]
    fn class_table_matches_the_cores_load_units() {
        assert_eq!(MIXED_CLASSES.iter().map(|c| c.percent).sum::<u64>(), 100);
        for class in &MIXED_CLASSES {
            for cost in [1u32, 3, 10] {
                let mut spec = JobSpec::new("j", class.schedule, "noop");
                spec.cost = Some(f64::from(cost));
                let units = spec.validate().expect("valid spec").load_units();
                assert_eq!(units, class.units * u64::from(cost), "{}", class.schedule);
            }
        }
    }

    #[test]
    fn mixed_proportions_over_a_large_sample() {
        const SAMPLE: u32 = 200_000;
        let mut per_class = [0u32; 5];
        let mut per_cost = [0u32; MAX_COST as usize];
        for index in 0..SAMPLE {
            let (class, cost) = mixed_draw(42, index);
            let slot = MIXED_CLASSES
                .iter()
                .position(|c| c.schedule == class.schedule)
                .expect("a table class");
            per_class[slot] += 1;
            per_cost[cost as usize - 1] += 1;
        }
        for (class, &count) in MIXED_CLASSES.iter().zip(&per_class) {
            let share = f64::from(count) / f64::from(SAMPLE) * 100.0;
            assert!(
                (share - class.percent as f64).abs() < 0.4,
                "{}: {share:.2} % instead of {} %",
                class.schedule,
                class.percent
            );
        }
        let harmonic: f64 = (1..=MAX_COST).map(|k| 1.0 / f64::from(k)).sum();
        for (k, &count) in (1..=MAX_COST).zip(&per_cost) {
            let expected = 1.0 / f64::from(k) / harmonic;
            let share = f64::from(count) / f64::from(SAMPLE);
            assert!(
                (share - expected).abs() < 0.005,
                "cost {k}: {share:.4} instead of {expected:.4}"
            );
        }
    }

    #[test]
    fn zipf_edges() {
        assert_eq!(zipf_cost(0.0), 1);
        assert_eq!(zipf_cost(0.3), 1);
        assert_eq!(zipf_cost(0.35), 2);
        assert_eq!(zipf_cost(0.999_999), MAX_COST);
    }

    #[test]
    fn populations_are_prefixes_and_weights_add_up() {
        let small = JobSet::new(WorkloadKind::Mixed, 100, 1, 64);
        let large = JobSet::new(WorkloadKind::Mixed, 1000, 1, 64);
        assert_eq!(small.jobs(), &large.jobs()[..100]);
        let total: u64 = small.jobs().iter().map(|j| j.weight).sum();
        assert_eq!(small.shard_weights().iter().sum::<u64>(), total);
        assert_eq!(small.jobs_per_shard().iter().sum::<u64>(), 100);
        let uniform = JobSet::new(WorkloadKind::Few, 16, 1, 64);
        assert!(uniform
            .jobs()
            .iter()
            .all(|j| j.weight == UNITS_PER_FIRE_PER_SECOND));
    }
}
