//! The weighted comparison of `sim`: placement strategies on weighted
//! workloads.
//!
//! Why a second grid: the job-count grid ([`crate::sim`]) asks whether
//! shards and jobs spread evenly, but what sizes a node is *work* — fires
//! per second times their cost. Here the membership scenarios and the
//! job-write scenario run on the populations of
//! [`crate::weighted_workload`], whose size scales with the fleet
//! (`jobs = N × jobs per node`). Every step reports the busiest member's
//! load against the mean and against the best any placement could reach
//! (shards are indivisible: [`crate::metrics::ideal_max_over_mean`]), the
//! load that changed owner against the ideal fraction, and, for job writes,
//! the shards moved per write ([`crate::job_churn`]). A timing pass places one large
//! configuration (default S = 65,536, N = 100) a few times per strategy:
//! the figure the weighted placement is held to (≤ 20 ms in release). For
//! the stateful `sticky` strategy the timed step is what a node pays on a
//! membership change: one `rebalance` after one departure (the scale-in
//! victim) from the base fleet's bootstrapped placement.
//!
//! Every scenario starts from the base fleet of `N` nodes and the
//! workload's jobs, so any subset can be rerun alone with the same numbers.
//! Within a scenario, an event that starts where the previous one ended (a
//! rolling restart's leave and rejoin, and the next node's leave) starts
//! from that event's placement: it makes no difference to the stateless
//! strategies, and it is what a stateful one ([`Strategy::stateful`]) must
//! do. Job writes are chained write after write the same way.

use std::collections::HashMap;
use std::rc::Rc;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::job_churn::{plan_writes, replay, write_count};
use crate::scenario::{events_for, Event, Scenario, ScenarioConfig};
use crate::strategy::bounded::BoundedLoads;
use crate::strategy::jump::JumpHash;
use crate::strategy::maglev::Maglev;
use crate::strategy::place::PlacedRing;
use crate::strategy::rendezvous::Rendezvous;
use crate::strategy::ring::ShippedRing;
use crate::strategy::sticky::StickyRing;
use crate::strategy::{Assignment, Fleet, Strategy};
use crate::weighted_record::{
    measure, place, Placed, Population, RecordBuilder, StepKind, WeightedRecord,
};
use crate::weighted_workload::WorkloadKind;

/// Strategy families of the weighted comparison (the job-keyed dcron ring
/// places jobs, not shards, and is left to the job-count grid).
pub const WEIGHTED_FAMILIES: [&str; 7] = [
    "ring",
    "place",
    "sticky",
    "rendezvous",
    "maglev",
    "bounded",
    "jump",
];

/// Everything the weighted comparison is parameterised by (echoed into
/// `sim.json`).
#[derive(Clone, Debug, Serialize)]
pub struct WeightedConfig {
    /// Populations to run.
    pub workloads: Vec<WorkloadKind>,
    /// Fleet sizes `N`.
    pub nodes: Vec<u32>,
    /// Shard count `S`.
    pub shards: u32,
    /// Virtual nodes per member of every ring-based strategy.
    pub vnodes: u32,
    /// Load bounds ε of `ShardMap::place` and `ShardMap::rebalance`
    /// (`sticky`), in thousandths.
    pub load_bounds: Vec<u32>,
    /// Slack ε of the count-bounded ring (`bounded`).
    pub epsilon: f64,
    /// Jobs per node of `uniform` and `mixed`.
    pub jobs_per_node: u32,
    /// Jobs per node of `few` and `few-mixed`.
    pub few_jobs_per_node: u32,
    /// Writes of the job-write scenario, percent of the jobs.
    pub write_percent: f64,
    /// Shard count of the timing pass.
    pub timing_shards: u32,
    /// Fleet size of the timing pass.
    pub timing_nodes: u32,
    /// Placements per strategy in the timing pass (0 skips it).
    pub timing_reps: u32,
    /// Strategy families to include.
    pub families: Vec<String>,
    /// Which scenarios to replay (and the seed of every random choice).
    pub scenarios: ScenarioConfig,
}

impl WeightedConfig {
    /// Jobs per node of population `kind`.
    pub fn per_node(&self, kind: WorkloadKind) -> u32 {
        if kind.is_few() {
            self.few_jobs_per_node
        } else {
            self.jobs_per_node
        }
    }

    /// Whether the job-write scenario is selected.
    pub fn job_writes(&self) -> bool {
        self.scenarios.scenarios.contains(&Scenario::JobWrite)
    }
}

/// Everything the weighted comparison measured.
#[derive(Clone, Debug, Serialize)]
pub struct WeightedResults {
    /// The configuration.
    pub config: WeightedConfig,
    /// One record per strategy and step.
    pub records: Vec<WeightedRecord>,
}

/// The strategies compared at shard count `shards`, in report order.
pub fn strategies(config: &WeightedConfig, shards: u32) -> Vec<Box<dyn Strategy>> {
    let wants = |family: &str| config.families.iter().any(|f| f == family);
    let mut list: Vec<Box<dyn Strategy>> = Vec::new();
    if wants("ring") {
        list.push(Box::new(ShippedRing::new(shards, config.vnodes)));
    }
    if wants("place") {
        for &permille in &config.load_bounds {
            list.push(Box::new(PlacedRing::new(shards, config.vnodes, permille)));
        }
    }
    if wants("sticky") {
        for &permille in &config.load_bounds {
            list.push(Box::new(StickyRing::new(shards, config.vnodes, permille)));
        }
    }
    if wants("rendezvous") {
        list.push(Box::new(Rendezvous::new(shards)));
    }
    if wants("maglev") {
        list.push(Box::new(Maglev::new(shards)));
    }
    if wants("bounded") {
        list.push(Box::new(BoundedLoads::new(
            shards,
            config.vnodes,
            config.epsilon,
        )));
    }
    if wants("jump") {
        list.push(Box::new(JumpHash::new(shards)));
    }
    list
}

/// Progress ticks of [`run`]: one per (workload, fleet size, strategy) and
/// one per (workload, strategy) of the timing pass.
pub fn planned_work(config: &WeightedConfig) -> u64 {
    let count = strategies(config, 1).len() as u64;
    let workloads = config.workloads.len() as u64;
    let timing = u64::from(config.timing_reps > 0);
    workloads * count * (config.nodes.len() as u64 + timing)
}

/// One placement of a strategy during [`run_one`]: the fleet (node ids), the
/// assignment (which carries a stateful strategy's state) and its measures.
struct Stage {
    ids: Vec<u32>,
    assignment: Assignment,
    placed: Placed,
}

/// The placements one strategy goes through in the membership scenarios.
struct Timeline<'a> {
    strategy: &'a dyn Strategy,
    population: &'a Population,
    /// The base fleet's placement (bootstrapped: no previous placement).
    base: Rc<Stage>,
    /// The previous event's scenario and resulting placement.
    last: Option<(Scenario, Rc<Stage>)>,
    /// Placements of a stateless strategy by fleet (they depend on nothing
    /// else); never used for a stateful one.
    cache: HashMap<Vec<u32>, Rc<Stage>>,
}

impl<'a> Timeline<'a> {
    fn new(strategy: &'a dyn Strategy, population: &'a Population, ids: &[u32]) -> Self {
        let fleet = Fleet::from_ids(ids);
        let assignment = strategy.assign(&fleet, &population.weights);
        let base = Rc::new(Stage {
            ids: fleet.ids().to_vec(),
            placed: measure(&assignment, &fleet, population),
            assignment,
        });
        let mut cache = HashMap::new();
        if !strategy.stateful() {
            cache.insert(base.ids.clone(), Rc::clone(&base));
        }
        Timeline {
            strategy,
            population,
            base,
            last: None,
            cache,
        }
    }

    /// The placement of fleet `ids` reached from `from`.
    fn step(&mut self, from: &Stage, ids: &[u32]) -> Rc<Stage> {
        let stateful = self.strategy.stateful();
        if !stateful {
            if let Some(hit) = self.cache.get(ids) {
                return Rc::clone(hit);
            }
        }
        let fleet = Fleet::from_ids(ids);
        let assignment = self
            .strategy
            .follow(&from.assignment, &fleet, &self.population.weights);
        let stage = Rc::new(Stage {
            ids: fleet.ids().to_vec(),
            placed: measure(&assignment, &fleet, self.population),
            assignment,
        });
        if !stateful {
            self.cache.insert(stage.ids.clone(), Rc::clone(&stage));
        }
        stage
    }

    /// The placements before and after `event`. Before is the previous
    /// event's result when that belongs to the same scenario and ended on
    /// `event.before`; else the base fleet's placement (or, for an event
    /// that starts from another fleet, the step from the base to it).
    fn event(&mut self, event: &Event) -> (Rc<Stage>, Rc<Stage>) {
        let chained = match &self.last {
            Some((scenario, stage)) if *scenario == event.scenario && stage.ids == event.before => {
                Some(Rc::clone(stage))
            }
            _ => None,
        };
        let before = match chained {
            Some(stage) => stage,
            None if self.base.ids == event.before => Rc::clone(&self.base),
            None => {
                let base = Rc::clone(&self.base);
                self.step(&base, &event.before)
            }
        };
        let after = self.step(&before, &event.after);
        self.last = Some((event.scenario, Rc::clone(&after)));
        (before, after)
    }
}

/// Records of one strategy on one population and fleet size.
fn run_one(
    config: &WeightedConfig,
    strategy: &dyn Strategy,
    population: &Population,
    n: u32,
    events: &[Event],
) -> Vec<WeightedRecord> {
    let base = RecordBuilder {
        population,
        strategy,
        shards: config.shards,
        fleet: n,
    };
    let ids: Vec<u32> = (0..n).collect();
    let mut timeline = Timeline::new(strategy, population, &ids);
    let mut records = vec![base.placed(
        StepKind::Static,
        "static",
        (ids.len(), ids.len()),
        &timeline.base.placed,
    )];
    for event in events {
        let (before, after) = timeline.event(event);
        records.push(base.membership(event, &before.placed, &after.placed));
    }
    if config.job_writes() {
        let count = write_count(population.jobs.len(), config.write_percent);
        let writes = plan_writes(&population.jobs, count, config.scenarios.seed);
        let fleet = Fleet::from_ids(&ids);
        let steps = replay(
            strategy,
            &fleet,
            &population.weights,
            &population.counts,
            &writes,
        );
        let mut jobs = population.jobs.len() as u64;
        for (index, (write, step)) in writes.iter().zip(&steps).enumerate() {
            jobs = if write.put {
                jobs + 1
            } else {
                jobs.saturating_sub(1)
            };
            records.push(base.job_write(ids.len(), index, &write.label, jobs, step));
        }
    }
    records
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The membership change the timing pass times a stateful strategy on:
/// the scale-in victim leaving the base fleet of `n` (none below 2 nodes).
fn timing_departure(n: u32, seed: u64) -> Option<Event> {
    let scale_in = ScenarioConfig {
        scenarios: vec![Scenario::ScaleIn],
        crash_k: Vec::new(),
        restart_sample: 0,
        seed,
    };
    events_for(n, &scale_in).into_iter().next()
}

/// The timing pass for one population: every stateless strategy places the
/// base fleet of `timing_nodes` over `timing_shards` shards `timing_reps`
/// times; a stateful one bootstraps that fleet once (untimed) and then
/// computes the step after one departure `timing_reps` times.
fn run_timing(
    config: &WeightedConfig,
    kind: WorkloadKind,
    progress: &ProgressBar,
) -> Vec<WeightedRecord> {
    let n = config.timing_nodes;
    let population = Population::new(
        kind,
        n.saturating_mul(config.per_node(kind)),
        config.scenarios.seed,
        config.timing_shards,
    );
    let fleet = Fleet::from_ids(&(0..n).collect::<Vec<_>>());
    let departure = timing_departure(n, config.scenarios.seed);
    let mut records = Vec::new();
    for strategy in strategies(config, config.timing_shards) {
        progress.set_message(format!("{} timing {}", kind.as_str(), strategy.name()));
        // A stateful strategy: from the bootstrapped base to the fleet
        // without the victim (the same fleet if there is none).
        let step = strategy.stateful().then(|| {
            let previous = strategy.assign(&fleet, &population.weights);
            let (to, change) = match &departure {
                Some(event) => (Fleet::from_ids(&event.after), event.change.clone()),
                None => (fleet.clone(), String::new()),
            };
            (previous, to, change)
        });
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..config.timing_reps.max(1) {
            let placed = match &step {
                Some((previous, to, _)) => measure(
                    &strategy.follow(previous, to, &population.weights),
                    to,
                    &population,
                ),
                None => place(strategy.as_ref(), &fleet, &population),
            };
            times.push(placed.compute_ms);
            last = Some(placed);
        }
        if let Some(mut placed) = last {
            placed.compute_ms = median(times);
            let base = RecordBuilder {
                population: &population,
                strategy: strategy.as_ref(),
                shards: config.timing_shards,
                fleet: n,
            };
            let after = step.as_ref().map_or(fleet.len(), |(_, to, _)| to.len());
            let mut record = base.placed(StepKind::Timing, "timing", (fleet.len(), after), &placed);
            if let Some((_, _, change)) = step {
                record.change = change;
            }
            records.push(record);
        }
        progress.inc(1);
    }
    records
}

/// Runs the weighted comparison, ticking `progress` as [`planned_work`] says.
pub fn run(config: &WeightedConfig, progress: &ProgressBar) -> Vec<WeightedRecord> {
    let mut records = Vec::new();
    let list = strategies(config, config.shards);
    for &kind in &config.workloads {
        for &n in &config.nodes {
            progress.set_message(format!("{} N={n}", kind.as_str()));
            let population = Population::new(
                kind,
                n.saturating_mul(config.per_node(kind)),
                config.scenarios.seed,
                config.shards,
            );
            let events = events_for(n, &config.scenarios);
            for strategy in &list {
                records.extend(run_one(config, strategy.as_ref(), &population, n, &events));
                progress.inc(1);
            }
        }
        if config.timing_reps > 0 {
            records.extend(run_timing(config, kind, progress));
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn small_config() -> WeightedConfig {
        WeightedConfig {
            workloads: vec![WorkloadKind::Uniform, WorkloadKind::FewMixed],
            nodes: vec![2, 5],
            shards: 128,
            vnodes: 16,
            load_bounds: vec![50],
            epsilon: 0.25,
            jobs_per_node: 50,
            few_jobs_per_node: 8,
            write_percent: 5.0,
            timing_shards: 256,
            timing_nodes: 4,
            timing_reps: 2,
            families: WEIGHTED_FAMILIES.iter().map(|f| (*f).to_owned()).collect(),
            scenarios: ScenarioConfig {
                scenarios: Scenario::ALL.to_vec(),
                crash_k: vec![2],
                restart_sample: 0,
                seed: 3,
            },
        }
    }

    #[test]
    fn stateful_steps_chain_within_a_scenario() {
        let population = Population::new(WorkloadKind::Mixed, 200, 1, 128);
        let strategy = StickyRing::new(128, 16, 50);
        let scenarios = ScenarioConfig {
            scenarios: vec![Scenario::RollingRestart, Scenario::Crash],
            crash_k: vec![1, 2],
            restart_sample: 0,
            seed: 1,
        };
        let events = events_for(4, &scenarios);
        assert_eq!(events.len(), 8 + 2);
        let mut timeline = Timeline::new(&strategy, &population, &[0, 1, 2, 3]);
        let base = Rc::clone(&timeline.base);
        let mut previous: Option<Rc<Stage>> = None;
        for event in &events {
            let (before, after) = timeline.event(event);
            let chained = event.scenario == Scenario::RollingRestart && event.step > 0;
            let expected = match (&previous, chained) {
                (Some(stage), true) => stage,
                _ => &base,
            };
            assert!(Rc::ptr_eq(&before, expected), "{event:?}");
            assert_eq!(after.ids, event.after);
            previous = Some(after);
        }
        // A step to the same fleet and weights moves nothing.
        let again = timeline.step(&base, &base.ids);
        assert!(
            !Rc::ptr_eq(&again, &base),
            "a stateful strategy is not cached"
        );
        assert_eq!(again.assignment.owners, base.assignment.owners);
    }

    #[test]
    fn sticky_timing_times_one_departure() {
        let config = WeightedConfig {
            workloads: vec![WorkloadKind::Mixed],
            nodes: vec![3],
            families: vec!["sticky".to_owned()],
            ..small_config()
        };
        let records = run(&config, &ProgressBar::hidden());
        let timing: Vec<&WeightedRecord> = records
            .iter()
            .filter(|r| r.kind == StepKind::Timing)
            .collect();
        assert_eq!(timing.len(), 1);
        assert_eq!(timing[0].strategy, "sticky(e=0.05 v=16)");
        assert_eq!((timing[0].nodes_before, timing[0].nodes_after), (4, 3));
        assert!(timing[0].change.starts_with("-node-"));
    }

    #[test]
    fn runs_every_step_of_every_strategy() {
        let config = small_config();
        let records = run(&config, &ProgressBar::hidden());
        let count = strategies(&config, 1).len();
        assert_eq!(count, 7);
        let timing = records
            .iter()
            .filter(|r| r.kind == StepKind::Timing)
            .count();
        assert_eq!(timing, 2 * count);
        // Hash-only strategies never move on a job write.
        for record in records.iter().filter(|r| r.kind == StepKind::JobWrite) {
            if record.family != "place" && record.family != "sticky" {
                assert_eq!(record.moved_shards, Some(0), "{}", record.strategy);
            }
        }
        for record in &records {
            assert!(
                record.load_per_node.max_over_mean + 1e-9 >= record.ideal_max_over_mean
                    || record.load_per_node.mean == 0.0,
                "{} beat the ideal",
                record.strategy
            );
            // What had to move did move: nothing moves less than that.
            if let Some(over_forced) = record.load_moved_over_forced {
                assert!(over_forced >= 1.0 - 1e-9, "{}", record.strategy);
            }
        }
        assert!(records
            .iter()
            .any(|r| r.kind == StepKind::Membership && r.load_moved_over_forced.is_some()));
        // Uniform N=5: 250 jobs, 5 % → 13 writes per strategy.
        let writes = records
            .iter()
            .filter(|r| {
                r.kind == StepKind::JobWrite
                    && r.workload == WorkloadKind::Uniform
                    && r.nodes_after == 5
                    && r.strategy == "jump"
            })
            .count();
        assert_eq!(writes, 13);
        assert_eq!(planned_work(&config), 2 * 7 * 3);
    }
}
