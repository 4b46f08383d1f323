//! Membership-change scenarios and their ideal movement.
//!
//! Every event starts from (or returns to) the canonical fleet of `N` nodes
//! `node-0000 .. node-(N-1)`, so events are independent of each other and any
//! subset of the grid can be rerun alone with the same numbers. Which node
//! leaves in a random scale-in or a crash is chosen by a seeded stable hash,
//! never by a process-random generator.
//!
//! The *ideal* fraction of units that must move is the least any strategy can
//! move while staying balanced: adding `k` nodes to `N` takes `k / (N + k)` of
//! the units onto the new nodes; removing `k` of `N` must re-home their
//! `k / N` share.

use clap::ValueEnum;
use serde::Serialize;
use shardcron_core::stable_hash::stable_hash64;

use crate::strategy::node_name;

/// A kind of membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One node joins: `N -> N + 1` (the new node has the highest name).
    ScaleOut,
    /// One node, chosen by seeded hash, leaves: `N -> N - 1`.
    ScaleIn,
    /// The newest node (highest name) leaves: `N -> N - 1`; jump hash's best case.
    ScaleInLast,
    /// Each node in turn leaves and rejoins: two events per restarted node.
    RollingRestart,
    /// `k` nodes, chosen by seeded hash, disappear at once: `N -> N - k`.
    Crash,
    /// No membership change: jobs are put and deleted one at a time on the
    /// base fleet, placement recomputed after each (weighted part only).
    JobWrite,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 6] = [
        Scenario::ScaleOut,
        Scenario::ScaleIn,
        Scenario::ScaleInLast,
        Scenario::RollingRestart,
        Scenario::Crash,
        Scenario::JobWrite,
    ];

    /// Kebab-case name, as on the command line and in the outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::ScaleOut => "scale-out",
            Scenario::ScaleIn => "scale-in",
            Scenario::ScaleInLast => "scale-in-last",
            Scenario::RollingRestart => "rolling-restart",
            Scenario::Crash => "crash",
            Scenario::JobWrite => "job-write",
        }
    }
}

/// Which events to generate for every fleet size.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioConfig {
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Crash sizes `k` (each run where `k < N`).
    pub crash_k: Vec<u32>,
    /// At most this many nodes are restarted per fleet size in a rolling
    /// restart (evenly spaced by name); 0 restarts every node.
    pub restart_sample: u32,
    /// Seed of the victim choice.
    pub seed: u64,
}

/// One membership change.
#[derive(Clone, Debug)]
pub struct Event {
    /// The scenario it belongs to.
    pub scenario: Scenario,
    /// Position within the scenario for this fleet size.
    pub step: u32,
    /// Node ids before the change.
    pub before: Vec<u32>,
    /// Node ids after the change.
    pub after: Vec<u32>,
    /// Least fraction of units that must move.
    pub ideal_fraction: f64,
    /// Human-readable change, e.g. `-node-0007` or `+node-0010`.
    pub change: String,
}

/// The membership events of every configured scenario for a fleet of `n`
/// nodes ([`Scenario::JobWrite`] has none: its writes come from
/// [`crate::job_churn`]).
pub fn events_for(n: u32, config: &ScenarioConfig) -> Vec<Event> {
    let base: Vec<u32> = (0..n).collect();
    let mut events = Vec::new();
    for &scenario in &config.scenarios {
        match scenario {
            Scenario::ScaleOut => events.push(Event {
                scenario,
                step: 0,
                before: base.clone(),
                after: (0..=n).collect(),
                ideal_fraction: 1.0 / f64::from(n + 1),
                change: format!("+{}", node_name(n)),
            }),
            Scenario::ScaleIn | Scenario::ScaleInLast if n >= 2 => {
                let victim = if scenario == Scenario::ScaleIn {
                    pick(n, 1, "scale-in", config.seed)[0]
                } else {
                    n - 1
                };
                events.push(removal(scenario, 0, &base, &[victim]));
            }
            Scenario::RollingRestart if n >= 2 => {
                for (index, victim) in (0u32..).zip(restart_order(n, config.restart_sample)) {
                    let leave = removal(scenario, 2 * index, &base, &[victim]);
                    let rejoin = Event {
                        scenario,
                        step: 2 * index + 1,
                        before: leave.after.clone(),
                        after: base.clone(),
                        ideal_fraction: 1.0 / f64::from(n),
                        change: format!("+{}", node_name(victim)),
                    };
                    events.push(leave);
                    events.push(rejoin);
                }
            }
            Scenario::Crash => {
                for (index, &k) in (0u32..).zip(&config.crash_k) {
                    if k >= 1 && k < n {
                        let victims = pick(n, k, "crash", config.seed);
                        events.push(removal(scenario, index, &base, &victims));
                    }
                }
            }
            _ => {}
        }
    }
    events
}

/// The event removing `victims` from `base`.
fn removal(scenario: Scenario, step: u32, base: &[u32], victims: &[u32]) -> Event {
    let after: Vec<u32> = base
        .iter()
        .copied()
        .filter(|id| !victims.contains(id))
        .collect();
    let change = victims
        .iter()
        .map(|&id| format!("-{}", node_name(id)))
        .collect::<Vec<_>>()
        .join(" ");
    Event {
        scenario,
        step,
        ideal_fraction: victims.len() as f64 / base.len() as f64,
        before: base.to_vec(),
        after,
        change,
    }
}

/// `k` distinct node ids of `0..n`, chosen by a seeded stable hash.
fn pick(n: u32, k: u32, tag: &str, seed: u64) -> Vec<u32> {
    let mut ranked: Vec<(u64, u32)> = (0..n)
        .map(|id| {
            (
                stable_hash64(format!("{seed}:{tag}:{n}:{id}").as_bytes()),
                id,
            )
        })
        .collect();
    ranked.sort_unstable();
    let mut chosen: Vec<u32> = ranked
        .into_iter()
        .take(k as usize)
        .map(|(_, id)| id)
        .collect();
    chosen.sort_unstable();
    chosen
}

/// Nodes restarted in a rolling restart of `n` nodes: all of them, or
/// `sample` evenly spaced ones.
fn restart_order(n: u32, sample: u32) -> Vec<u32> {
    if sample == 0 || sample >= n {
        return (0..n).collect();
    }
    let mut chosen: Vec<u32> = (0..sample)
        .map(|i| u32::try_from(u64::from(i) * u64::from(n) / u64::from(sample)).unwrap_or(0))
        .collect();
    chosen.dedup();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ScenarioConfig {
        ScenarioConfig {
            scenarios: Scenario::ALL.to_vec(),
            crash_k: vec![2, 10],
            restart_sample: 4,
            seed: 1,
        }
    }

    #[test]
    fn events_and_ideals() {
        let events = events_for(8, &config());
        let count = |s: Scenario| events.iter().filter(|e| e.scenario == s).count();
        assert_eq!(count(Scenario::ScaleOut), 1);
        assert_eq!(count(Scenario::ScaleIn), 1);
        assert_eq!(count(Scenario::ScaleInLast), 1);
        assert_eq!(count(Scenario::RollingRestart), 8);
        assert_eq!(count(Scenario::Crash), 1, "k = 10 does not fit 8 nodes");
        for event in &events {
            let expected = match event.scenario {
                Scenario::ScaleOut => 1.0 / 9.0,
                Scenario::Crash => 2.0 / 8.0,
                _ => 1.0 / 8.0,
            };
            assert!((event.ideal_fraction - expected).abs() < 1e-12);
        }
        let last = events.iter().find(|e| e.scenario == Scenario::ScaleInLast);
        assert_eq!(last.map(|e| e.change.as_str()), Some("-node-0007"));
    }

    #[test]
    fn victim_choice_is_deterministic_and_distinct() {
        assert_eq!(pick(50, 5, "crash", 7), pick(50, 5, "crash", 7));
        let mut victims = pick(50, 5, "crash", 7);
        victims.dedup();
        assert_eq!(victims.len(), 5);
        assert_eq!(restart_order(10, 0).len(), 10);
        assert_eq!(restart_order(100, 4), vec![0, 25, 50, 75]);
    }
}
