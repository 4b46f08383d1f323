//! `live`: in-process workers on a private redis-server, measured.
//!
//! The simulation answers *where* work goes; this answers *what it costs*
//! end to end: `--workers` real [`shardcron_runtime::Worker`]s, each on its
//! own [`RedisCoordinator`] connection, run `--jobs` jobs that all fire
//! `@every <period>` against a `redis-server` started by the test kit. A
//! counting handler records `(job, scheduled, started)`; once the fleet has
//! settled (every shard owned, every member seen) a window of `--duration`,
//! aligned to a period boundary, is measured:
//!
//! * fires/s and lateness p50/p99/max (handler start − `scheduled_ms`),
//! * Redis commands per fire (`INFO commandstats` deltas; heartbeats, lease
//!   renewals and job polls included — they are part of the cost),
//! * CPU seconds per 1,000 fires of this process (all workers, `getrusage`)
//!   and of redis-server (`INFO cpu`),
//! * duplicates and misses, which must both be 0 (exit code 1 otherwise).

pub mod audit;
mod fleet;
pub mod stats;

use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shardcron_core::{RingConfig, DEFAULT_VNODES};
use shardcron_testkit::RedisServer;

use crate::cli::LiveArgs;
use crate::error::BenchError;
use crate::report::write_file;
use audit::{audit, Audit, Recorder};
use fleet::{now_ms, Fleet};

/// Everything `live` measured (written to `live.json`).
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    /// Workers in the fleet.
    pub workers: u32,
    /// Jobs registered.
    pub jobs: u32,
    /// Period of every job, milliseconds.
    pub every_ms: i64,
    /// Shard count (160 virtual nodes).
    pub shards: u32,
    /// Time from starting the workers until every shard was owned, ms.
    pub settle_ms: u64,
    /// Measured window `[from_ms, to_ms)`, Unix ms.
    pub window: (i64, i64),
    /// Fire audit of the window.
    pub audit: Audit,
    /// Distinct fires per second in the window.
    pub fires_per_s: f64,
    /// Redis commands executed during the window (without `INFO`).
    pub redis_commands: u64,
    /// `redis_commands / fires`.
    pub commands_per_fire: f64,
    /// Commands per fire, by command.
    pub per_command_per_fire: BTreeMap<String, f64>,
    /// CPU seconds of this process (all workers) during the window.
    pub process_cpu_s: f64,
    /// `process_cpu_s` per 1,000 fires.
    pub process_cpu_s_per_1000_fires: f64,
    /// CPU seconds of redis-server during the window.
    pub redis_cpu_s: f64,
    /// `redis_cpu_s` per 1,000 fires.
    pub redis_cpu_s_per_1000_fires: f64,
    /// Fires the workers report having claimed over their whole run.
    pub claimed_total: u64,
    /// Claims the workers lost to another node over their whole run.
    pub claim_conflicts_total: u64,
}

/// Runs `live`; exit code 0 when the window had no duplicate and no missed
/// fire, 1 otherwise or on failure.
pub fn run(args: &LiveArgs) -> ExitCode {
    match measure(args) {
        Ok(report) => {
            print_report(&report);
            let clean = report.audit.duplicates == 0
                && report.audit.misses == 0
                && report.audit.unexpected == 0;
            if clean {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "shardcron-bench live: {} duplicates, {} misses, {} unexpected fires",
                    report.audit.duplicates, report.audit.misses, report.audit.unexpected
                );
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("shardcron-bench live: {error}");
            ExitCode::FAILURE
        }
    }
}

fn per_thousand(cpu_s: f64, fires: u64) -> f64 {
    if fires == 0 {
        0.0
    } else {
        cpu_s * 1000.0 / fires as f64
    }
}

/// Snapshot of the counters around the window.
struct Counters {
    commands: BTreeMap<String, u64>,
    redis_cpu_s: f64,
    process_cpu_s: f64,
}

fn counters(server: &RedisServer) -> Result<Counters, BenchError> {
    let commands = server
        .command(&["INFO", "commandstats"])
        .map_err(|e| BenchError::live("reading INFO commandstats", e))?;
    let cpu = server
        .command(&["INFO", "cpu"])
        .map_err(|e| BenchError::live("reading INFO cpu", e))?;
    Ok(Counters {
        commands: stats::parse_commandstats(&commands),
        redis_cpu_s: stats::parse_redis_cpu(&cpu),
        process_cpu_s: stats::process_cpu_seconds(),
    })
}

/// Starts everything, measures one window, stops everything.
///
/// # Errors
///
/// Redis, coordinator or worker setup failures, a fleet that does not
/// settle within a minute, or failure to write `live.json`.
pub fn measure(args: &LiveArgs) -> Result<LiveReport, BenchError> {
    let every_ms = i64::try_from(args.every.as_millis()).unwrap_or(i64::MAX);
    if args.every < Duration::from_secs(1) || args.every.subsec_nanos() % 1_000_000 != 0 {
        return Err(BenchError::InvalidArgs(
            "--every must be whole milliseconds, at least 1s".to_owned(),
        ));
    }
    let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
    let ring = RingConfig {
        shard_count: args.shards,
        vnodes: DEFAULT_VNODES,
    };
    let server = RedisServer::start().map_err(|e| BenchError::live("starting redis-server", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::live("building the tokio runtime", e))?;
    let recorder = Recorder::default();
    let schedule = format!("@every {}ms", every_ms);

    eprintln!(
        "registering {} jobs ({schedule}) on {}",
        args.jobs,
        server.url()
    );
    runtime.block_on(fleet::put_jobs(&server.url(), ring, args.jobs, &schedule))?;
    let fleet = runtime.block_on(Fleet::start(&server.url(), ring, args.workers, &recorder))?;
    let settle_ms =
        runtime.block_on(fleet.wait_settled(ring.shard_count, Duration::from_secs(60)))?;
    eprintln!(
        "{} workers own all {} shards after {settle_ms} ms",
        args.workers, ring.shard_count
    );

    // Start on a period boundary at least one period away.
    let from_ms = (now_ms().div_euclid(every_ms) + 2) * every_ms;
    let to_ms = from_ms.saturating_add(duration_ms);
    let wait = Duration::from_millis(u64::try_from(from_ms - now_ms()).unwrap_or(0));
    runtime.block_on(async { tokio::time::sleep(wait).await });
    let before = counters(&server)?;
    let progress = ProgressBar::new(args.duration.as_secs());
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len}s {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_prefix("live");
    runtime.block_on(async {
        while now_ms() < to_ms {
            let step = (to_ms - now_ms()).clamp(0, 1000);
            tokio::time::sleep(Duration::from_millis(u64::try_from(step).unwrap_or(0))).await;
            progress.set_position(u64::try_from((now_ms() - from_ms) / 1000).unwrap_or(0));
            progress.set_message(format!("{} fires recorded", recorder.len()));
        }
    });
    let after = counters(&server)?;
    progress.finish_and_clear();
    // Let runs of the window's last instants finish and be recorded.
    runtime.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    let reports = runtime.block_on(fleet.stop());
    drop(runtime);
    drop(server);

    let audit = audit(&recorder.snapshot(), args.jobs, every_ms, from_ms, to_ms);
    let deltas = stats::command_deltas(&before.commands, &after.commands);
    let redis_commands: u64 = deltas.values().sum();
    let fires = audit.fired.max(1);
    let process_cpu_s = after.process_cpu_s - before.process_cpu_s;
    let redis_cpu_s = after.redis_cpu_s - before.redis_cpu_s;
    let report = LiveReport {
        workers: args.workers,
        jobs: args.jobs,
        every_ms,
        shards: args.shards,
        settle_ms,
        window: (from_ms, to_ms),
        fires_per_s: audit.fired as f64 * 1000.0 / duration_ms.max(1) as f64,
        redis_commands,
        commands_per_fire: redis_commands as f64 / fires as f64,
        per_command_per_fire: deltas
            .iter()
            .map(|(name, &calls)| (name.clone(), calls as f64 / fires as f64))
            .collect(),
        process_cpu_s,
        process_cpu_s_per_1000_fires: per_thousand(process_cpu_s, audit.fired),
        redis_cpu_s,
        redis_cpu_s_per_1000_fires: per_thousand(redis_cpu_s, audit.fired),
        claimed_total: reports.iter().map(|r| r.claimed).sum(),
        claim_conflicts_total: reports.iter().map(|r| r.claim_conflicts).sum(),
        audit,
    };
    fs::create_dir_all(&args.out)
        .map_err(|e| BenchError::io("creating directory", &args.out, e))?;
    let path = args.out.join("live.json");
    write_file(&path, &serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", path.display());
    Ok(report)
}

fn print_report(r: &LiveReport) {
    let a = &r.audit;
    println!(
        "live: {} workers, {} jobs @every {} ms, {} shards, window {:.1} s (settled in {} ms)",
        r.workers,
        r.jobs,
        r.every_ms,
        r.shards,
        (r.window.1 - r.window.0) as f64 / 1000.0,
        r.settle_ms
    );
    println!("fires/s                    {:>12.1}", r.fires_per_s);
    println!(
        "fires expected / fired     {:>12} / {}",
        a.expected, a.fired
    );
    println!(
        "misses / duplicates / unexpected {:>6} / {} / {}",
        a.misses, a.duplicates, a.unexpected
    );
    println!(
        "lateness p50 / p99 / max   {:>8} / {} / {} ms",
        a.lateness.p50_ms, a.lateness.p99_ms, a.lateness.max_ms
    );
    println!(
        "redis commands per fire    {:>12.3}  ({} commands)",
        r.commands_per_fire, r.redis_commands
    );
    let mut top: Vec<(&String, &f64)> = r.per_command_per_fire.iter().collect();
    top.sort_by(|x, y| y.1.total_cmp(x.1));
    for (name, per_fire) in top.into_iter().take(6) {
        println!("  {name:<24} {per_fire:>12.3} per fire");
    }
    println!(
        "CPU s per 1000 fires       {:>12.4} workers (this process), {:.4} redis-server",
        r.process_cpu_s_per_1000_fires, r.redis_cpu_s_per_1000_fires
    );
    println!(
        "claimed / conflicts (whole run) {:>7} / {}",
        r.claimed_total, r.claim_conflicts_total
    );
}
