//! The CI seed set and the determinism check.
//!
//! `ci_seed_set` runs a fixed range of seeds totalling 3000 simulated minutes
//! on every available core (about a minute and a half of wall time on two
//! cores in a dev build, whose profile optimizes the crates it exercises) and fails if any seed breaks a
//! guarantee, printing one line per failing seed. `same_seed_same_trace`
//! runs one seed twice and requires identical event logs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use shardcron_sim::{replay, run_seed, SimConfig};

/// 200 seeds × 15 simulated minutes = 3000 simulated minutes.
const SEEDS: u64 = 200;
const MINUTES: f64 = 15.0;

/// The CI scenario: the default one on a smaller fleet and job set, with a
/// 1 s heartbeat (TTLs 6 s), so that 3000 simulated minutes fit in the time
/// budget of a debug build.
fn ci_config() -> SimConfig {
    SimConfig {
        minutes: MINUTES,
        ..SimConfig::ci()
    }
}

#[test]
fn ci_seed_set() {
    let cfg = ci_config();
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= SEEDS {
                    return;
                }
                if let Err(f) = run_seed(seed, &cfg) {
                    failures.lock().expect("lock").push(f);
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("lock");
    failures.sort_by_key(|f| f.seed);
    let mut by_check: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &failures {
        println!("{}", f.summary());
        for name in f.checks_seen() {
            *by_check.entry(name).or_default() += 1;
        }
    }
    println!(
        "seeds: {SEEDS}  simulated minutes: {}  failures: {}  failing seeds per check: {by_check:?}  wall: {:.1}s",
        SEEDS as f64 * MINUTES,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {SEEDS} seeds failed",
        failures.len()
    );
}

#[test]
fn same_seed_same_trace() {
    let cfg = SimConfig {
        minutes: 3.0,
        ..SimConfig::default()
    };
    let a = replay(7, &cfg);
    let b = replay(7, &cfg);
    assert!(!a.events.is_empty());
    assert_eq!(a.events.len(), b.events.len());
    assert!(
        a.events == b.events,
        "the same seed produced different traces"
    );
    let summary = |r: &shardcron_sim::SimOutcome| match r {
        Ok(stats) => format!("{stats:?}"),
        Err(f) => format!("{} {:?}", f.summary(), f.stats),
    };
    assert_eq!(summary(&a.outcome), summary(&b.outcome));
}

/// Seeds of the default scenario that once broke a guarantee, each with the
/// length it failed at and what it found, so a regression fails here.
const REGRESSIONS: &[(u64, f64, &str)] = &[(
    281,
    10.0,
    "a trigger whose instant was moved past a scheduled fire claimed ahead \
     waited in the ahead line, and a schedule change withdrew it as if it \
     were an instant of the schedule",
)];

#[test]
fn regression_seeds() {
    for &(seed, minutes, what) in REGRESSIONS {
        let cfg = SimConfig {
            minutes,
            ..SimConfig::default()
        };
        if let Err(f) = run_seed(seed, &cfg) {
            panic!("seed {seed} ({what}): {}", f.summary());
        }
    }
}
