//! `shardcron-sim`: runs seeds of the fault-injection simulator.
//!
//! `--seeds N [--from S] [--minutes M]` runs seeds `S..S+N` and prints one
//! line per failing seed and a summary; `--replay SEED [--trace]` runs one
//! seed again and prints every violation with its trace (or, with `--trace`
//! and no violation, the whole event log). Exit status 1 on any failure.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use shardcron_sim::{replay, run_seed, SimConfig};

/// Deterministic fault-injection simulator for shardcron.
#[derive(Parser, Debug)]
#[command(name = "shardcron-sim")]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Simulated minutes per seed.
    #[arg(long)]
    minutes: Option<f64>,
    /// Fleet size (default: 3 to 5, drawn per seed).
    #[arg(long)]
    nodes: Option<usize>,
    /// Job count (default: 20 to 60, drawn per seed).
    #[arg(long)]
    jobs: Option<usize>,
    /// Heartbeat in ms (TTLs scale with it: 8 heartbeats, drift margin 1.6).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Run this one seed again and explain its failures.
    #[arg(long)]
    replay: Option<u64>,
    /// With --replay: print traces (and the whole log if the seed passes).
    #[arg(long)]
    trace: bool,
    /// Start from the CI scenario (the seed set `cargo test` runs) instead
    /// of the default one.
    #[arg(long)]
    ci: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // SHARDCRON_SIM_LOG=debug (an env filter) prints the workers' own logs.
    if let Ok(filter) = std::env::var("SHARDCRON_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(VirtualTime)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let mut cfg = if args.ci {
        SimConfig::ci()
    } else {
        SimConfig::default()
    };
    if let Some(m) = args.minutes {
        cfg.minutes = m;
    }
    if let Some(n) = args.nodes {
        cfg.nodes = (n, n);
    }
    if let Some(n) = args.jobs {
        cfg.jobs = (n, n);
    }
    if let Some(ms) = args.heartbeat_ms {
        cfg.settings = shardcron_sim::settings_with_heartbeat(ms);
    }
    if let Some(seed) = args.replay {
        return replay_one(seed, &cfg, args.trace);
    }
    let started = Instant::now();
    let mut failures = 0u64;
    for seed in args.from..args.from + args.seeds {
        if let Err(f) = run_seed(seed, &cfg) {
            failures += 1;
            println!("{}", f.summary());
        }
    }
    println!(
        "seeds: {}  simulated minutes: {}  failures: {}  wall: {:.1}s",
        args.seeds,
        args.seeds as f64 * cfg.minutes,
        failures,
        started.elapsed().as_secs_f64()
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn replay_one(seed: u64, cfg: &SimConfig, trace: bool) -> ExitCode {
    let run = replay(seed, cfg);
    match run.outcome {
        Ok(stats) => {
            if trace {
                for line in &run.events {
                    println!("{line}");
                }
            }
            println!("seed {seed}: ok {stats:?}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!("{}", f.summary());
            println!("stats: {:?}", f.stats);
            for v in &f.violations {
                println!();
                println!(
                    "== {}: {} (+{} more like it)",
                    v.check.name(),
                    v.message,
                    v.more
                );
                if trace {
                    for line in &v.trace {
                        println!("   {line}");
                    }
                }
            }
            if trace {
                println!();
                println!("== the whole log");
                for line in &run.events {
                    println!("{line}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Log timestamps in simulated seconds (since the first line), to match the
/// event log of `--trace`.
struct VirtualTime;

impl tracing_subscriber::fmt::time::FormatTime for VirtualTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        let now = tokio::time::Instant::now();
        let start = *START.get_or_init(|| now);
        write!(w, "[{:>9.3}s]", now.duration_since(start).as_secs_f64())
    }
}
