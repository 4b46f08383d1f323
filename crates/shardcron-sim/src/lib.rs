//! A deterministic fault-injection simulator for the shardcron protocol.
//!
//! Real workers (`shardcron_runtime::Worker`) run in one process on one
//! shared `MemoryStore`, under tokio's paused clock on a current-thread
//! runtime: simulated minutes take milliseconds, and a run is a pure function
//! of its seed. Faults are injected where the protocol meets the network, at
//! the `Coordinator` boundary ([`faulty`]); the scenario ([`world`]) adds
//! clock steps, pauses, leaves, crashes and admin edits; checkers
//! ([`checks`]) then judge the recorded history against the guarantees. A
//! failing seed replays exactly, with a trace of the events that touch the
//! offending job, shard and fire.

#![warn(missing_docs)]

pub mod checks;
pub mod faulty;
mod handler;
mod history;
mod jobs;
pub mod time;
pub mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shardcron_runtime::WorkerSettings;

pub use checks::{Check, CheckStats, Violation};
pub use faulty::FaultRates;

use history::History;
use time::SimTime;

/// Wall time one simulated minute may take before the seed counts as a
/// livelock (a debug build needs well under a second).
const WALL_LIMIT_PER_SIM_MINUTE: Duration = Duration::from_secs(20);

/// What one run simulates.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Simulated duration, minutes.
    pub minutes: f64,
    /// Fleet size range (inclusive), drawn per seed.
    pub nodes: (usize, usize),
    /// Job count range (inclusive), drawn per seed.
    pub jobs: (usize, usize),
    /// Shards in the namespace.
    pub shards: u32,
    /// Mean time between two random timeline actions.
    pub action_gap: Duration,
    /// Fault probabilities at the coordinator boundary.
    pub faults: FaultRates,
    /// Settings of every worker.
    pub settings: WorkerSettings,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            minutes: 15.0,
            nodes: (3, 5),
            jobs: (20, 60),
            shards: 16,
            action_gap: Duration::from_secs(3),
            faults: FaultRates::default(),
            settings: settings_with_heartbeat(250),
        }
    }
}

/// `WorkerSettings::fast()`-like timings scaled to a heartbeat of
/// `heartbeat_ms`: TTLs of 6 heartbeats, a drift margin of 1.2 heartbeats
/// (250 ms gives exactly `fast()`, with a smaller concurrency limit).
pub fn settings_with_heartbeat(heartbeat_ms: u64) -> WorkerSettings {
    let hb = heartbeat_ms.max(1);
    WorkerSettings {
        heartbeat: Duration::from_millis(hb),
        member_ttl: Duration::from_millis(hb * 6),
        lease_ttl: Duration::from_millis(hb * 6),
        drift_margin: Duration::from_millis(hb * 6 / 5),
        poll_interval: Duration::from_millis(hb * 8),
        concurrency: 64,
        // Longer than every job's misfire grace (at most 60 s), as required;
        // short enough that the store's claim keys stay few.
        claim_retention: Duration::from_secs(120),
        ..WorkerSettings::fast()
    }
}

impl SimConfig {
    /// The CI scenario: the default one on a smaller fleet and job set, with
    /// a 1 s heartbeat (TTLs 6 s), so that the CI seed set (3000 simulated
    /// minutes) fits the time budget of a debug build.
    pub fn ci() -> Self {
        Self {
            minutes: 15.0,
            nodes: (3, 3),
            jobs: (20, 24),
            settings: settings_with_heartbeat(1000),
            ..Self::default()
        }
    }
}

/// Counts from one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// The seed.
    pub seed: u64,
    /// Simulated time, ms.
    pub simulated_ms: i64,
    /// Fleet size.
    pub nodes: usize,
    /// Jobs created at the start.
    pub jobs: usize,
    /// Events in the history.
    pub events: usize,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Checker counts (fires started, required, excused by reason).
    pub checks: CheckStats,
}

/// A run that broke at least one guarantee.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed that reproduces it.
    pub seed: u64,
    /// What broke, first instant first.
    pub violations: Vec<Violation>,
    /// Counts of the run.
    pub stats: SimStats,
}

/// Stats of a clean run, or the failure.
pub type SimOutcome = Result<SimStats, Box<SimFailure>>;

/// A run with its complete event log.
pub struct Replay {
    /// The outcome.
    pub outcome: SimOutcome,
    /// Every event of the run, one line each.
    pub events: Vec<String>,
}

/// Runs one seed and checks it.
pub fn run_seed(seed: u64, cfg: &SimConfig) -> SimOutcome {
    replay(seed, cfg).outcome
}

/// Runs one seed and keeps the full event log (same run as [`run_seed`]).
pub fn replay(seed: u64, cfg: &SimConfig) -> Replay {
    let setup = |message: String| {
        let stats = SimStats {
            seed,
            ..SimStats::default()
        };
        Replay {
            outcome: Err(Box::new(SimFailure {
                seed,
                violations: vec![Violation {
                    check: Check::Setup,
                    message,
                    job: None,
                    at: 0,
                    more: 0,
                    trace: Vec::new(),
                }],
                stats,
            })),
            events: Vec::new(),
        }
    };
    // The scenario runs on its own thread so that a livelock (a task that
    // never lets virtual time advance) is reported as a failure of its seed
    // instead of hanging the search.
    let (tx, rx) = std::sync::mpsc::channel();
    let run_cfg = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot build the runtime: {e}")));
                    return;
                }
            };
            let result = rt.block_on(async {
                let time = SimTime::start_now();
                let history = Arc::new(History::new(time));
                let info = world::run(seed, &run_cfg, time, history.clone()).await;
                (info, history.take())
            });
            let _ = tx.send(Ok(result));
        });
    if let Err(e) = spawned {
        return setup(format!("cannot start the scenario thread: {e}"));
    }
    let limit = WALL_LIMIT_PER_SIM_MINUTE.mul_f64(cfg.minutes.max(1.0));
    let (info, observed) = match rx.recv_timeout(limit) {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return setup(e),
        Err(_) => {
            return setup(format!(
                "livelock: the scenario made no progress in {limit:?} of wall time (virtual time stopped advancing)"
            ))
        }
    };
    let info = match info {
        Ok(info) => info,
        Err(e) => return setup(e),
    };
    let (violations, checks) = checks::check_all(&observed, &info, cfg.shards);
    let stats = SimStats {
        seed,
        simulated_ms: info.end_ms - time::EPOCH_MS,
        nodes: info.nodes,
        jobs: info.jobs,
        events: observed.events.len(),
        faults: observed
            .faults
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        checks,
    };
    let events = observed.events.iter().map(history::Event::line).collect();
    let outcome = if violations.is_empty() {
        Ok(stats)
    } else {
        Err(Box::new(SimFailure {
            seed,
            violations,
            stats,
        }))
    };
    Replay { outcome, events }
}

impl SimFailure {
    /// One line: the seed, the first violation and how many more.
    pub fn summary(&self) -> String {
        let total: usize = self.violations.iter().map(|v| 1 + v.more).sum();
        match self.violations.first() {
            Some(v) => format!(
                "seed {}: {} — {} ({} violation(s): {})",
                self.seed,
                v.check.name(),
                v.message,
                total,
                self.checks_seen().join(", ")
            ),
            None => format!("seed {}: failed", self.seed),
        }
    }

    /// Names of the checks that failed, sorted, each once.
    pub fn checks_seen(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.violations.iter().map(|v| v.check.name()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}
