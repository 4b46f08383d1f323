//! The job-count part of the `sim` run: every strategy through every event
//! of the grid, plus a static balance sweep over virtual-node counts. Every
//! job weighs the same here (the weighted placement balances jobs per
//! shard); weighted workloads are [`crate::weighted`]'s.
//!
//! Per `(shard count, fleet size)` the owners of each distinct fleet are
//! computed once per strategy and cached, so a rolling restart's "rejoin"
//! event reuses the base fleet's map. The job-keyed dcron ring does not
//! depend on the shard count and runs once (its records have no shard count).

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::metrics::{load_stats, member_loads, moved, LoadStats};
use crate::scenario::{events_for, Scenario, ScenarioConfig};
use crate::strategy::bounded::BoundedLoads;
use crate::strategy::dcron::{DcronRing, DCRON_REPLICAS};
use crate::strategy::jump::JumpHash;
use crate::strategy::maglev::Maglev;
use crate::strategy::place::PlacedRing;
use crate::strategy::rendezvous::Rendezvous;
use crate::strategy::ring::ShippedRing;
use crate::strategy::{Fleet, Keying, Strategy};
use crate::weighted::WeightedResults;
use crate::workload::Workload;

/// Node ids of balance-sweep trial `t` start at `t * TRIAL_ID_STRIDE`, so
/// each trial is a fleet with different member names.
pub const TRIAL_ID_STRIDE: u32 = 10_000;

/// Strategy families that can be selected with `--strategies`.
pub const FAMILIES: [&str; 8] = [
    "ring",
    "dcron",
    "bounded",
    "place",
    "sticky",
    "rendezvous",
    "maglev",
    "jump",
];

/// Everything a `sim` run is parameterised by (echoed into `sim.json`).
#[derive(Clone, Debug, Serialize)]
pub struct SimConfig {
    /// Fleet sizes `N` of the event grid.
    pub nodes: Vec<u32>,
    /// Shard counts `S`.
    pub shards: Vec<u32>,
    /// Number of jobs (`job-0 ..`).
    pub jobs: u32,
    /// Virtual-node counts of the shipped ring in the event grid.
    pub vnodes: Vec<u32>,
    /// Slack ε of bounded loads.
    pub epsilon: f64,
    /// Virtual nodes of the bounded-loads rings (`bounded`, `place`) in the
    /// event grid (`place` also in the sweep).
    pub bounded_vnodes: u32,
    /// Load bounds ε of `place` (`ShardMap::place`), in thousandths.
    pub load_bounds: Vec<u32>,
    /// Fleet sizes of the balance sweep.
    pub balance_nodes: Vec<u32>,
    /// Virtual-node counts of the balance sweep.
    pub sweep_vnodes: Vec<u32>,
    /// Fleets (different member names) measured per balance-sweep point.
    pub trials: u32,
    /// Strategy families to include.
    pub families: Vec<String>,
    /// Which membership changes to replay.
    pub scenarios: ScenarioConfig,
}

/// One strategy through one event.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Shard count, `None` for the job-keyed dcron ring.
    pub shards: Option<u32>,
    /// Strategy name.
    pub strategy: String,
    /// Strategy family.
    pub family: String,
    /// Virtual nodes per member, if the strategy has them.
    pub vnodes: Option<u32>,
    /// What the strategy places.
    pub keying: Keying,
    /// Scenario of the event.
    pub scenario: Scenario,
    /// Step within the scenario.
    pub step: u32,
    /// The membership change.
    pub change: String,
    /// Members before.
    pub nodes_before: u32,
    /// Members after.
    pub nodes_after: u32,
    /// Units placed (shards, or jobs for dcron).
    pub units: u64,
    /// Units whose owner changed.
    pub moved_units: u64,
    /// `moved_units / units`.
    pub moved_fraction: f64,
    /// Least fraction that must move.
    pub ideal_fraction: f64,
    /// `moved_fraction / ideal_fraction`; 1.0 is optimal.
    pub moved_over_ideal: f64,
    /// Jobs whose owner changed.
    pub moved_jobs: u64,
    /// Shards per member after the change (`None` for dcron).
    pub shards_per_node: Option<LoadStats>,
    /// Jobs per member after the change.
    pub jobs_per_node: LoadStats,
    /// Time to compute the post-change placement, milliseconds.
    pub compute_ms: f64,
}

/// One strategy on one static fleet (the balance sweep).
#[derive(Clone, Debug, Serialize)]
pub struct BalanceRecord {
    /// Shard count, `None` for the job-keyed dcron ring.
    pub shards: Option<u32>,
    /// Fleet size.
    pub nodes: u32,
    /// Trial number: trial `t` uses node ids `t * 10_000 ..`.
    pub trial: u32,
    /// Strategy name.
    pub strategy: String,
    /// Strategy family.
    pub family: String,
    /// Virtual nodes per member, if the strategy has them.
    pub vnodes: Option<u32>,
    /// Shards per member (`None` for dcron).
    pub shards_per_node: Option<LoadStats>,
    /// Jobs per member.
    pub jobs_per_node: LoadStats,
    /// Time to compute the placement, milliseconds.
    pub compute_ms: f64,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct SimResults {
    /// The configuration.
    pub config: SimConfig,
    /// Event grid records.
    pub events: Vec<EventRecord>,
    /// Balance sweep records.
    pub balance: Vec<BalanceRecord>,
    /// The weighted comparison, when it ran.
    pub weighted: Option<WeightedResults>,
}

/// A placement of one strategy for one fleet, reduced to what the metrics need.
struct Placed {
    owner_ids: Vec<u32>,
    shards_per_node: Option<LoadStats>,
    jobs_per_node: LoadStats,
    compute_ms: f64,
}

/// A strategy together with the per-shard job weights of its shard count.
struct Contender {
    strategy: Box<dyn Strategy>,
    shards: Option<u32>,
    weights: Arc<Vec<u64>>,
}

impl Contender {
    fn place(&self, fleet: &Fleet) -> Placed {
        let assignment = self.strategy.assign(fleet, &self.weights);
        let owner_ids = assignment
            .owners
            .iter()
            .map(|&o| fleet.ids().get(o as usize).copied().unwrap_or(u32::MAX))
            .collect();
        let (shards_per_node, jobs_per_node) = match self.strategy.keying() {
            Keying::Shard => (
                Some(load_stats(&member_loads(
                    &assignment.owners,
                    fleet.len(),
                    None,
                ))),
                load_stats(&member_loads(
                    &assignment.owners,
                    fleet.len(),
                    Some(&self.weights),
                )),
            ),
            Keying::Job => (
                None,
                load_stats(&member_loads(&assignment.owners, fleet.len(), None)),
            ),
        };
        Placed {
            owner_ids,
            shards_per_node,
            jobs_per_node,
            compute_ms: assignment.compute.as_secs_f64() * 1e3,
        }
    }

    fn job_weights(&self) -> Option<&[u64]> {
        match self.strategy.keying() {
            Keying::Shard => Some(&self.weights),
            Keying::Job => None,
        }
    }
}

/// Strategies of the event grid for shard count `shards`; the job-keyed
/// dcron ring only when `include_job_keyed`.
fn contenders(
    config: &SimConfig,
    workload: &Workload,
    shards: u32,
    vnodes: &[u32],
    bounded_vnodes: &[u32],
    include_job_keyed: bool,
) -> Vec<Contender> {
    let wants = |family: &str| config.families.iter().any(|f| f == family);
    let weights = workload.jobs_per_shard(shards);
    let mut strategies: Vec<Box<dyn Strategy>> = Vec::new();
    if wants("ring") {
        for &v in vnodes {
            strategies.push(Box::new(ShippedRing::new(shards, v)));
        }
    }
    if wants("bounded") {
        for &v in bounded_vnodes {
            strategies.push(Box::new(BoundedLoads::new(shards, v, config.epsilon)));
        }
    }
    if wants("place") {
        for &permille in &config.load_bounds {
            strategies.push(Box::new(PlacedRing::new(
                shards,
                config.bounded_vnodes,
                permille,
            )));
        }
    }
    if wants("rendezvous") {
        strategies.push(Box::new(Rendezvous::new(shards)));
    }
    if wants("maglev") {
        strategies.push(Box::new(Maglev::new(shards)));
    }
    if wants("jump") {
        strategies.push(Box::new(JumpHash::new(shards)));
    }
    if wants("dcron") && include_job_keyed {
        strategies.push(Box::new(DcronRing::new(
            workload.job_hashes(),
            DCRON_REPLICAS,
        )));
    }
    strategies
        .into_iter()
        .map(|strategy| {
            let keyed_by_shard = strategy.keying() == Keying::Shard;
            Contender {
                strategy,
                shards: keyed_by_shard.then_some(shards),
                weights: Arc::clone(&weights),
            }
        })
        .collect()
}

/// Number of `place` strategies per shard count (one per load bound).
fn placed_count(config: &SimConfig) -> usize {
    if config.families.iter().any(|f| f == "place") {
        config.load_bounds.len()
    } else {
        0
    }
}

/// Number of `(event, strategy)` pairs the event grid will evaluate.
pub fn planned_event_work(config: &SimConfig) -> u64 {
    let wants = |family: &str| config.families.iter().any(|f| f == family);
    let per_shard_count = (if wants("ring") {
        config.vnodes.len()
    } else {
        0
    }) + usize::from(wants("bounded"))
        + placed_count(config)
        + usize::from(wants("rendezvous"))
        + usize::from(wants("maglev"))
        + usize::from(wants("jump"));
    let strategies = (per_shard_count * config.shards.len() + usize::from(wants("dcron"))) as u64;
    let events: u64 = config
        .nodes
        .iter()
        .map(|&n| events_for(n, &config.scenarios).len() as u64)
        .sum();
    events * strategies
}

/// Runs the event grid, ticking `progress` once per `(event, strategy)`.
pub fn run_events(
    config: &SimConfig,
    workload: &Workload,
    progress: &ProgressBar,
) -> Vec<EventRecord> {
    let mut records = Vec::new();
    for (index, &shards) in config.shards.iter().enumerate() {
        let contenders = contenders(
            config,
            workload,
            shards,
            &config.vnodes,
            &[config.bounded_vnodes],
            index == 0,
        );
        for &n in &config.nodes {
            progress.set_message(format!("S={shards} N={n}"));
            let events = events_for(n, &config.scenarios);
            for contender in &contenders {
                let mut cache: HashMap<Vec<u32>, Rc<Placed>> = HashMap::new();
                let mut placed = |ids: &[u32]| -> Rc<Placed> {
                    Rc::clone(
                        cache
                            .entry(ids.to_vec())
                            .or_insert_with(|| Rc::new(contender.place(&Fleet::from_ids(ids)))),
                    )
                };
                for event in &events {
                    let before = placed(&event.before);
                    let after = placed(&event.after);
                    records.push(record(contender, event, &before, &after));
                    progress.inc(1);
                }
            }
        }
    }
    records
}

fn record(
    contender: &Contender,
    event: &crate::scenario::Event,
    before: &Placed,
    after: &Placed,
) -> EventRecord {
    let units = after.owner_ids.len() as u64;
    let moved_units = moved(&before.owner_ids, &after.owner_ids, None);
    let moved_fraction = if units > 0 {
        moved_units as f64 / units as f64
    } else {
        0.0
    };
    let strategy = &contender.strategy;
    EventRecord {
        shards: contender.shards,
        strategy: strategy.name(),
        family: strategy.family().to_owned(),
        vnodes: strategy.vnodes(),
        keying: strategy.keying(),
        scenario: event.scenario,
        step: event.step,
        change: event.change.clone(),
        nodes_before: u32::try_from(event.before.len()).unwrap_or(u32::MAX),
        nodes_after: u32::try_from(event.after.len()).unwrap_or(u32::MAX),
        units,
        moved_units,
        moved_fraction,
        ideal_fraction: event.ideal_fraction,
        moved_over_ideal: moved_fraction / event.ideal_fraction,
        moved_jobs: moved(&before.owner_ids, &after.owner_ids, contender.job_weights()),
        shards_per_node: after.shards_per_node,
        jobs_per_node: after.jobs_per_node,
        compute_ms: after.compute_ms,
    }
}

/// Runs the balance sweep: every strategy on static fleets of
/// `config.balance_nodes` members, the shipped and count-bounded rings at
/// every `config.sweep_vnodes` count (`place` only at `bounded_vnodes`).
pub fn run_balance(
    config: &SimConfig,
    workload: &Workload,
    progress: &ProgressBar,
) -> Vec<BalanceRecord> {
    let mut records = Vec::new();
    for (index, &shards) in config.shards.iter().enumerate() {
        let contenders = contenders(
            config,
            workload,
            shards,
            &config.sweep_vnodes,
            &config.sweep_vnodes,
            index == 0,
        );
        for (&n, trial) in config
            .balance_nodes
            .iter()
            .flat_map(|n| (0..config.trials.max(1)).map(move |t| (n, t)))
        {
            let first = trial.saturating_mul(TRIAL_ID_STRIDE);
            let fleet = Fleet::from_ids(&(first..first.saturating_add(n)).collect::<Vec<_>>());
            for contender in &contenders {
                let placed = contender.place(&fleet);
                records.push(BalanceRecord {
                    shards: contender.shards,
                    nodes: n,
                    trial,
                    strategy: contender.strategy.name(),
                    family: contender.strategy.family().to_owned(),
                    vnodes: contender.strategy.vnodes(),
                    shards_per_node: placed.shards_per_node,
                    jobs_per_node: placed.jobs_per_node,
                    compute_ms: placed.compute_ms,
                });
                progress.inc(1);
            }
        }
    }
    records
}

/// Number of placements the balance sweep will compute.
pub fn planned_balance_work(config: &SimConfig) -> u64 {
    let wants = |family: &str| config.families.iter().any(|f| f == family);
    let vnode_bearing = usize::from(wants("ring")) + usize::from(wants("bounded"));
    let flat = usize::from(wants("rendezvous"))
        + usize::from(wants("jump"))
        + usize::from(wants("maglev"))
        + placed_count(config);
    let per_shard_count = vnode_bearing * config.sweep_vnodes.len() + flat;
    let strategies = per_shard_count * config.shards.len() + usize::from(wants("dcron"));
    (strategies * config.balance_nodes.len()) as u64 * u64::from(config.trials.max(1))
}

/// Distinct strategy names in the order they first appear in `records`.
pub fn strategy_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for name in names {
        if seen.insert(name.to_owned()) {
            order.push(name.to_owned());
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_config() -> SimConfig {
        SimConfig {
            nodes: vec![3, 5],
            shards: vec![64, 256],
            jobs: 2_000,
            vnodes: vec![8, 16],
            epsilon: 0.25,
            bounded_vnodes: 16,
            load_bounds: vec![50, 100],
            balance_nodes: vec![4],
            sweep_vnodes: vec![4, 8],
            trials: 2,
            families: FAMILIES.iter().map(|f| (*f).to_owned()).collect(),
            scenarios: ScenarioConfig {
                scenarios: Scenario::ALL.to_vec(),
                crash_k: vec![2],
                restart_sample: 0,
                seed: 3,
            },
        }
    }

    #[test]
    fn grid_runs_every_planned_pair() {
        let config = small_config();
        let workload = Workload::new(config.jobs, &config.shards);
        let events = run_events(&config, &workload, &ProgressBar::hidden());
        assert_eq!(events.len() as u64, planned_event_work(&config));
        let balance = run_balance(&config, &workload, &ProgressBar::hidden());
        assert_eq!(balance.len() as u64, planned_balance_work(&config));
        // dcron runs once, not per shard count.
        assert!(events
            .iter()
            .filter(|e| e.family == "dcron")
            .all(|e| e.shards.is_none()));
        // Rendezvous is minimal: a removal moves exactly the victim's shards,
        // which is at least one and never all of them.
        for event in events.iter().filter(|e| e.family == "rendezvous") {
            assert!(event.moved_units > 0 && event.moved_units < event.units);
        }
    }
}
