//! The records of the weighted comparison and how one placement (or one
//! job write) becomes one.
//!
//! Kept apart from the run ([`crate::weighted`]) so the measurements —
//! load per member against the best reachable spread, load and shards that
//! changed owner — are defined in one place, whatever step produced them.

use serde::Serialize;

use crate::job_churn::WriteStep;
use crate::metrics::{ideal_max_over_mean, load_stats, member_loads, moved, LoadStats};
use crate::scenario::{Event, Scenario};
use crate::strategy::{Assignment, Fleet, Strategy};
use crate::weighted_workload::{JobSet, WorkloadKind, UNITS_PER_FIRE_PER_SECOND};

/// What a [`WeightedRecord`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// The base fleet, no change.
    Static,
    /// A membership change.
    Membership,
    /// One job put or delete on the base fleet.
    JobWrite,
    /// The timing pass (median compute time of several placements).
    Timing,
}

/// One strategy at one step of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct WeightedRecord {
    /// Population.
    pub workload: WorkloadKind,
    /// Shard count.
    pub shards: u32,
    /// Fleet size `N` of the grid the step belongs to (the base fleet).
    pub fleet: u32,
    /// Jobs after the step.
    pub jobs: u64,
    /// Strategy name.
    pub strategy: String,
    /// Strategy family.
    pub family: String,
    /// Virtual nodes per member, if the strategy has them.
    pub vnodes: Option<u32>,
    /// What the record describes.
    pub kind: StepKind,
    /// `static`, `timing` or the scenario name.
    pub scenario: String,
    /// Step within the scenario (write number for job writes).
    pub step: u32,
    /// The change: `-node-0007`, `+job-1234`, ... (empty for static).
    pub change: String,
    /// Members before.
    pub nodes_before: u32,
    /// Members after.
    pub nodes_after: u32,
    /// Shards whose owner changed (`None` for static and timing records).
    pub moved_shards: Option<u64>,
    /// `moved_shards / shards`.
    pub moved_fraction: Option<f64>,
    /// Least fraction that must move on a membership change.
    pub ideal_fraction: Option<f64>,
    /// `moved_fraction / ideal_fraction` (shard counts).
    pub moved_over_ideal: Option<f64>,
    /// Jobs in the shards that moved.
    pub moved_jobs: Option<u64>,
    /// Load units in the shards that moved ÷ total load units.
    pub load_moved_fraction: Option<f64>,
    /// `load_moved_fraction / ideal_fraction` (membership changes only).
    pub load_moved_over_ideal: Option<f64>,
    /// Load moved ÷ the load that had to move whatever the placement: the
    /// shards of members that left and the shards newcomers hold after the
    /// change (membership changes only; 1.0 = nothing else moved).
    pub load_moved_over_forced: Option<f64>,
    /// Shards per member after the step.
    pub shards_per_node: LoadStats,
    /// Jobs per member after the step.
    pub jobs_per_node: LoadStats,
    /// Load units per member after the step.
    pub load_per_node: LoadStats,
    /// Best reachable load max/mean after the step:
    /// `max(mean, heaviest shard) / mean`.
    pub ideal_max_over_mean: f64,
    /// Fires per second (× cost) of the busiest member.
    pub max_fires_per_s: f64,
    /// Mean fires per second (× cost) per member.
    pub mean_fires_per_s: f64,
    /// Time to compute the post-step placement, milliseconds (the median
    /// of the repetitions for timing records).
    pub compute_ms: f64,
}

/// A workload's jobs hashed into the shards, as the placements see them.
pub(crate) struct Population {
    pub(crate) kind: WorkloadKind,
    pub(crate) jobs: JobSet,
    pub(crate) weights: Vec<u64>,
    pub(crate) counts: Vec<u64>,
    pub(crate) total: u64,
}

impl Population {
    pub(crate) fn new(kind: WorkloadKind, count: u32, seed: u64, shards: u32) -> Population {
        let jobs = JobSet::new(kind, count, seed, shards);
        let weights = jobs.shard_weights();
        let total = weights.iter().fold(0u64, |sum, &w| sum.saturating_add(w));
        Population {
            kind,
            counts: jobs.jobs_per_shard(),
            jobs,
            weights,
            total,
        }
    }
}

/// One placement reduced to what the records need.
pub(crate) struct Placed {
    pub(crate) owner_ids: Vec<u32>,
    pub(crate) shards_per_node: LoadStats,
    pub(crate) jobs_per_node: LoadStats,
    pub(crate) load_per_node: LoadStats,
    pub(crate) compute_ms: f64,
}

/// Places `population` on `fleet` with `strategy` (with no previous
/// placement).
pub(crate) fn place(strategy: &dyn Strategy, fleet: &Fleet, population: &Population) -> Placed {
    measure(
        &strategy.assign(fleet, &population.weights),
        fleet,
        population,
    )
}

/// What the records need of `assignment`, a placement of `population` on
/// `fleet`.
pub(crate) fn measure(assignment: &Assignment, fleet: &Fleet, population: &Population) -> Placed {
    let owners = &assignment.owners;
    Placed {
        owner_ids: owners
            .iter()
            .map(|&o| fleet.ids().get(o as usize).copied().unwrap_or(u32::MAX))
            .collect(),
        shards_per_node: load_stats(&member_loads(owners, fleet.len(), None)),
        jobs_per_node: load_stats(&member_loads(owners, fleet.len(), Some(&population.counts))),
        load_per_node: load_stats(&member_loads(
            owners,
            fleet.len(),
            Some(&population.weights),
        )),
        compute_ms: assignment.compute.as_secs_f64() * 1e3,
    }
}

fn fires(units: f64) -> f64 {
    units / UNITS_PER_FIRE_PER_SECOND as f64
}

/// Load on the shards that must change owner in `event`: those whose owner
/// left and those a newcomer owns afterwards.
fn forced_load(event: &Event, before: &Placed, after: &Placed, weights: &[u64]) -> u64 {
    let left = |id: &u32| !event.after.contains(id);
    let joined = |id: &u32| !event.before.contains(id);
    before
        .owner_ids
        .iter()
        .zip(&after.owner_ids)
        .zip(weights)
        .filter(|((b, a), _)| left(b) || joined(a))
        .map(|(_, w)| *w)
        .fold(0u64, u64::saturating_add)
}

fn fraction(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Builds the records of one strategy on one population: the fields every
/// record shares, plus what each kind of step adds.
pub(crate) struct RecordBuilder<'a> {
    pub(crate) population: &'a Population,
    pub(crate) strategy: &'a dyn Strategy,
    pub(crate) shards: u32,
    pub(crate) fleet: u32,
}

impl RecordBuilder<'_> {
    /// A record of the shared fields, without a placement yet.
    fn record(&self, kind: StepKind, scenario: &str, nodes: (usize, usize)) -> WeightedRecord {
        let empty = load_stats(&[]);
        WeightedRecord {
            workload: self.population.kind,
            shards: self.shards,
            fleet: self.fleet,
            jobs: self.population.jobs.len() as u64,
            strategy: self.strategy.name(),
            family: self.strategy.family().to_owned(),
            vnodes: self.strategy.vnodes(),
            kind,
            scenario: scenario.to_owned(),
            step: 0,
            change: String::new(),
            nodes_before: u32::try_from(nodes.0).unwrap_or(u32::MAX),
            nodes_after: u32::try_from(nodes.1).unwrap_or(u32::MAX),
            moved_shards: None,
            moved_fraction: None,
            ideal_fraction: None,
            moved_over_ideal: None,
            moved_jobs: None,
            load_moved_fraction: None,
            load_moved_over_ideal: None,
            load_moved_over_forced: None,
            shards_per_node: empty,
            jobs_per_node: empty,
            load_per_node: empty,
            ideal_max_over_mean: ideal_max_over_mean(&self.population.weights, nodes.1),
            max_fires_per_s: 0.0,
            mean_fires_per_s: 0.0,
            compute_ms: 0.0,
        }
    }

    /// A record of `after`, the placement following a step of `kind`.
    pub(crate) fn placed(
        &self,
        kind: StepKind,
        scenario: &str,
        nodes: (usize, usize),
        after: &Placed,
    ) -> WeightedRecord {
        let mut record = self.record(kind, scenario, nodes);
        record.shards_per_node = after.shards_per_node;
        record.jobs_per_node = after.jobs_per_node;
        record.load_per_node = after.load_per_node;
        record.max_fires_per_s = fires(after.load_per_node.max as f64);
        record.mean_fires_per_s = fires(after.load_per_node.mean);
        record.compute_ms = after.compute_ms;
        record
    }

    /// The record of membership change `event` from `before` to `after`.
    pub(crate) fn membership(
        &self,
        event: &Event,
        before: &Placed,
        after: &Placed,
    ) -> WeightedRecord {
        let nodes = (event.before.len(), event.after.len());
        let mut record = self.placed(StepKind::Membership, event.scenario.as_str(), nodes, after);
        let shards = after.owner_ids.len() as u64;
        let moved_shards = moved(&before.owner_ids, &after.owner_ids, None);
        let moved_load = moved(
            &before.owner_ids,
            &after.owner_ids,
            Some(&self.population.weights),
        );
        let moved_fraction = fraction(moved_shards, shards);
        let load_moved_fraction = fraction(moved_load, self.population.total);
        record.step = event.step;
        record.change = event.change.clone();
        record.moved_shards = Some(moved_shards);
        record.moved_fraction = Some(moved_fraction);
        record.ideal_fraction = Some(event.ideal_fraction);
        record.moved_over_ideal = Some(moved_fraction / event.ideal_fraction);
        record.moved_jobs = Some(moved(
            &before.owner_ids,
            &after.owner_ids,
            Some(&self.population.counts),
        ));
        record.load_moved_fraction = Some(load_moved_fraction);
        record.load_moved_over_ideal = Some(load_moved_fraction / event.ideal_fraction);
        let forced = forced_load(event, before, after, &self.population.weights);
        record.load_moved_over_forced = (forced > 0).then(|| moved_load as f64 / forced as f64);
        record
    }

    /// The record of job write number `index` (`label`), after which
    /// `jobs` jobs exist, on the base fleet of `n` members.
    pub(crate) fn job_write(
        &self,
        n: usize,
        index: usize,
        label: &str,
        jobs: u64,
        step: &WriteStep,
    ) -> WeightedRecord {
        let mut record = self.record(StepKind::JobWrite, Scenario::JobWrite.as_str(), (n, n));
        record.jobs = jobs;
        record.step = u32::try_from(index).unwrap_or(u32::MAX);
        record.change = label.to_owned();
        record.moved_shards = Some(step.shards_moved);
        record.moved_fraction = Some(fraction(step.shards_moved, u64::from(self.shards)));
        record.moved_jobs = Some(step.jobs_moved);
        record.load_moved_fraction = Some(step.load_moved_fraction);
        record.shards_per_node = step.shards_per_node;
        record.jobs_per_node = step.jobs_per_node;
        record.load_per_node = step.load_per_node;
        record.ideal_max_over_mean = step.ideal_max_over_mean;
        record.max_fires_per_s = fires(step.load_per_node.max as f64);
        record.mean_fires_per_s = fires(step.load_per_node.mean);
        record.compute_ms = step.compute.as_secs_f64() * 1e3;
        record
    }
}
