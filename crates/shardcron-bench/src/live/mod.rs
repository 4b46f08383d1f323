//! `live`: in-process workers on a private redis-server (or, with `--store
//! postgres`, a private PostgreSQL server; with `--store etcd`, a private
//! etcd), measured — in steady state or through a scripted churn timeline.
//!
//! The simulation answers *where* work goes; this answers *what it costs*
//! end to end and *whether it stays correct* while the fleet changes:
//! `--workers` real [`shardcron_runtime::Worker`]s, each on its own
//! [`RedisCoordinator`](shardcron_coord::RedisCoordinator) connection, run
//! `--jobs` jobs that all fire `@every <period>` against a `redis-server`
//! started by the test kit. A counting handler records `(job, scheduled,
//! started, worker)`; once the fleet has settled (every shard held by its
//! owner in the expected placement: `ShardMap::place` over the running
//! workers and the weights of the jobs the benchmark registered, see
//! [`weights`]) and has caught up with the fires due while the jobs were
//! registered (`phases`), a window of `--duration`, aligned to a period
//! boundary, is measured:
//!
//! * fires/s and lateness p50/p99/max (handler start − `scheduled_ms`),
//!   overall and per second of the window (`lateness_over_time.svg`),
//! * fires per node: the runs each worker did, and the busiest against the
//!   mean ([`per_node`]),
//! * Redis commands per fire (`INFO commandstats` deltas; heartbeats, lease
//!   renewals and job polls included — they are part of the cost),
//! * CPU seconds per 1,000 fires of this process (all workers, `getrusage`)
//!   and of redis-server (`INFO cpu`),
//! * on PostgreSQL instead of the Redis figures: statements (one round trip
//!   each), transactions and server-side function calls per fire, and the
//!   server's CPU seconds per 1,000 fires ([`pg`]),
//! * on etcd instead: gRPC requests (one round trip each) and raft
//!   proposals per fire, by method, and etcd's CPU seconds per 1,000 fires
//!   (its `/metrics`, [`etcd`]),
//! * with `--churn`, per event: the time until every shard is held by its
//!   expected owner again (handoff after a leave or join, takeover after a
//!   crash) and how many fires were late meanwhile,
//! * duplicates and misses: every expected fire must have run exactly once,
//!   except fires a crashed worker had claimed but not started (counted as
//!   lost with the crash, as the test suite does). Exit code 1 otherwise.
//!
//! The modules: [`churn`] parses the timeline, `fleet` runs the workers,
//! `driver` plays the timeline and times settling, [`settle`] confirms it in
//! Redis, `phases` waits out the catch-up before the window and the tail
//! after it, [`mod@audit`], [`claims`], [`timeline`], [`per_node`] and `results`
//! judge the recorded fires, [`output`], `files` and `chart` write the
//! results.

pub mod audit;
mod chart;
pub mod churn;
pub mod claims;
mod driver;
pub mod etcd;
mod files;
mod fleet;
pub mod output;
pub mod per_node;
pub mod pg;
mod phases;
mod results;
pub mod settle;
pub mod stats;
pub mod timeline;
pub mod weights;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use shardcron_core::{RingConfig, DEFAULT_VNODES};
use shardcron_runtime::WorkerSettings;
use shardcron_testkit::{RedisCluster, RedisServer};

use crate::cli::{LiveArgs, LiveStore};
use crate::error::BenchError;
use audit::Recorder;
use churn::{initial_name, ChurnEvent};
use driver::Driver;
use etcd::{EtcdCounters, EtcdStore};
use fleet::{now_ms, Fleet};
pub use output::{EventReport, LiveReport};
use pg::{PgCounters, PgStore};

/// Runs `live` and prints its results; exit code 0 when every fire of the
/// window ran exactly once (fires lost with a crash excepted), 1 otherwise
/// or on failure, 2 for invalid arguments.
pub fn run(args: &LiveArgs) -> ExitCode {
    match measure(args) {
        Ok(report) => {
            print!("{}", output::summary_text(&report));
            print!("{}", output::churn_table(&report.churn));
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "shardcron-bench live: {} duplicates, {} unexplained misses, {} unexpected fires",
                    report.audit.duplicates, report.unexplained_misses, report.audit.unexpected
                );
                for example in &report.unexplained_examples {
                    eprintln!("  missed {example}");
                }
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("shardcron-bench live: {error}");
            match error {
                BenchError::InvalidArgs(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
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

/// Installs what `shardcron worker` installs to observe itself
/// ([`shardcron_cli::observe::as_a_worker`]). Once per process: both parts
/// are global.
fn observe_as_the_daemon(runtime: &tokio::runtime::Runtime) -> Result<(), BenchError> {
    // The recorder's upkeep task is spawned on the fleet's runtime.
    let _in_runtime = runtime.enter();
    shardcron_cli::observe::as_a_worker("bench", fleet::NAMESPACE)
        .map(drop)
        .map_err(|e| BenchError::live("installing the metrics recorder", e))
}

/// Snapshot of the counters around the window.
struct Counters {
    commands: BTreeMap<String, u64>,
    redis_cpu_s: f64,
    process_cpu_s: f64,
}

/// A cluster's counters: commands summed over the masters (what the
/// workers sent; a replica's count would be the masters' again), CPU over
/// every node (replicas spend CPU applying the stream).
fn cluster_counters(cluster: &RedisCluster) -> Result<Counters, BenchError> {
    let mut total = Counters {
        commands: BTreeMap::new(),
        redis_cpu_s: 0.0,
        process_cpu_s: stats::process_cpu_seconds(),
    };
    let masters: Vec<u16> = cluster.masters().iter().map(RedisServer::port).collect();
    for node in cluster.nodes() {
        let one = counters(node)?;
        total.redis_cpu_s += one.redis_cpu_s;
        if masters.contains(&node.port()) {
            for (command, calls) in one.commands {
                *total.commands.entry(command).or_default() += calls;
            }
        }
    }
    Ok(total)
}

/// Keys in the Redis database.
fn key_count(server: &RedisServer) -> Result<i64, BenchError> {
    let reply = server
        .command(&["DBSIZE"])
        .map_err(|e| BenchError::live("reading DBSIZE", e))?;
    reply
        .trim()
        .parse()
        .map_err(|e| BenchError::live("reading DBSIZE", format!("{reply:?}: {e}")))
}

/// Redis `used_memory`, bytes.
fn used_memory(server: &RedisServer) -> Result<u64, BenchError> {
    let info = server
        .command(&["INFO", "memory"])
        .map_err(|e| BenchError::live("reading INFO memory", e))?;
    Ok(stats::parse_info_u64(&info, "used_memory").unwrap_or(0))
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

pub(crate) fn bar(len: u64, prefix: &'static str, template: &str) -> ProgressBar {
    let progress = ProgressBar::new(len);
    progress.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_prefix(prefix);
    progress
}

/// The private server of the run.
enum StoreServer {
    Redis(RedisServer),
    Cluster(RedisCluster),
    Postgres(PgStore),
    Etcd(EtcdStore),
}

impl StoreServer {
    fn start(args: &LiveArgs) -> Result<StoreServer, BenchError> {
        match args.store {
            LiveStore::Redis => {
                let mut builder = RedisServer::builder();
                if let Some(binary) = &args.redis_server {
                    builder = builder.binary(binary);
                }
                let server = builder
                    .start()
                    .map_err(|e| BenchError::live("starting redis-server", e))?;
                Ok(StoreServer::Redis(server))
            }
            LiveStore::RedisCluster => {
                let cluster = RedisCluster::start(args.cluster_masters, args.cluster_replicas)
                    .map_err(|e| BenchError::live("starting the Redis Cluster", e))?;
                if let Some(min) = args.min_replicas {
                    cluster.set_url_options(&format!("min_replicas={min}"));
                }
                Ok(StoreServer::Cluster(cluster))
            }
            LiveStore::Postgres => Ok(StoreServer::Postgres(PgStore::start()?)),
            LiveStore::Etcd => Ok(StoreServer::Etcd(EtcdStore::start(
                args.etcd_compact_every,
            )?)),
        }
    }

    /// URL of the workers' connections.
    fn url(&self) -> String {
        match self {
            StoreServer::Redis(server) => server.url(),
            StoreServer::Cluster(cluster) => cluster.url(),
            StoreServer::Postgres(store) => store.url(),
            StoreServer::Etcd(store) => store.url(),
        }
    }

    /// URL of the benchmark's own lease reads.
    fn verifier_url(&self) -> String {
        match self {
            StoreServer::Redis(server) => server.url(),
            StoreServer::Cluster(cluster) => cluster.url(),
            StoreServer::Postgres(store) => store.verifier_url(),
            StoreServer::Etcd(store) => store.url(),
        }
    }

    /// Bytes the store holds (Redis `used_memory`, `pg_database_size`,
    /// etcd's database bytes in use).
    fn memory(&self) -> Result<u64, BenchError> {
        match self {
            StoreServer::Redis(server) => used_memory(server),
            StoreServer::Cluster(cluster) => cluster
                .masters()
                .iter()
                .try_fold(0, |sum, m| Ok(sum + used_memory(m)?)),
            StoreServer::Postgres(store) => store.db_size(),
            StoreServer::Etcd(store) => store.db_size(),
        }
    }

    /// Keys in Redis or etcd (0 on PostgreSQL).
    fn key_count(&self) -> Result<i64, BenchError> {
        match self {
            StoreServer::Redis(server) => key_count(server),
            StoreServer::Cluster(cluster) => cluster
                .masters()
                .iter()
                .try_fold(0, |sum, m| Ok(sum + key_count(m)?)),
            StoreServer::Postgres(_) => Ok(0),
            StoreServer::Etcd(store) => store.key_count(),
        }
    }

    fn counters(&self) -> Result<WindowCounters, BenchError> {
        match self {
            StoreServer::Redis(server) => Ok(WindowCounters::Redis(counters(server)?)),
            StoreServer::Cluster(cluster) => Ok(WindowCounters::Redis(cluster_counters(cluster)?)),
            StoreServer::Postgres(store) => Ok(WindowCounters::Postgres(
                store.counters()?,
                stats::process_cpu_seconds(),
            )),
            StoreServer::Etcd(store) => Ok(WindowCounters::Etcd(
                store.counters()?,
                stats::process_cpu_seconds(),
            )),
        }
    }
}

/// Counters around the window, by store.
enum WindowCounters {
    Redis(Counters),
    /// The server's counters and this process's CPU seconds.
    Postgres(PgCounters, f64),
    /// etcd's counters and this process's CPU seconds.
    Etcd(EtcdCounters, f64),
}

/// Checked arguments of one run.
struct Plan {
    every_ms: i64,
    /// The schedule every job shares (`@every <every_ms>ms` or `--schedule`).
    schedule: String,
    /// A job on that schedule, for its fire instants.
    job: shardcron_core::Job,
    duration_ms: i64,
    ring: RingConfig,
    settings: WorkerSettings,
    events: Vec<ChurnEvent>,
}

fn plan(args: &LiveArgs) -> Result<Plan, BenchError> {
    if args.every < Duration::from_secs(1) || args.every.subsec_nanos() % 1_000_000 != 0 {
        return Err(BenchError::InvalidArgs(
            "--every must be whole milliseconds, at least 1s".to_owned(),
        ));
    }
    if args.store != LiveStore::RedisCluster && args.min_replicas.is_some() {
        return Err(BenchError::InvalidArgs(
            "--min-replicas is only for --store redis-cluster".to_owned(),
        ));
    }
    if args.store == LiveStore::RedisCluster && args.cluster_masters < 3 {
        return Err(BenchError::InvalidArgs(format!(
            "--cluster-masters must be at least 3 (Redis Cluster's minimum), got {}",
            args.cluster_masters
        )));
    }
    let events = match &args.churn {
        Some(spec) => churn::resolve(spec, args.workers, args.duration)
            .map_err(|e| BenchError::InvalidArgs(format!("--churn: {e}")))?,
        None => Vec::new(),
    };
    let every_ms = i64::try_from(args.every.as_millis()).unwrap_or(i64::MAX);
    let schedule = args
        .schedule
        .clone()
        .unwrap_or_else(|| format!("@every {every_ms}ms"));
    let job = weights::job_spec(0, &schedule)
        .validate()
        .map_err(|e| BenchError::InvalidArgs(format!("--schedule: {e}")))?;
    Ok(Plan {
        every_ms,
        schedule,
        job,
        duration_ms: i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX),
        ring: RingConfig::new(args.shards, DEFAULT_VNODES),
        settings: {
            let mut settings = if args.fast {
                WorkerSettings::fast()
            } else {
                WorkerSettings::default()
            };
            if let Some(ahead) = args.claim_ahead {
                settings.claim_ahead = ahead;
            }
            settings
                .validate()
                .map_err(|e| BenchError::InvalidArgs(format!("--claim-ahead: {e}")))?;
            settings
        },
        events,
    })
}

/// Starts everything, measures one window (playing the churn timeline, if
/// any), stops everything, audits the fires and writes the output files.
///
/// # Errors
///
/// Invalid arguments, Redis, coordinator or worker setup failures, a fleet
/// that does not settle within a minute, or failure to write an output file.
pub fn measure(args: &LiveArgs) -> Result<LiveReport, BenchError> {
    let plan = plan(args)?;
    let ring = plan.ring;
    let server = StoreServer::start(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BenchError::live("building the tokio runtime", e))?;
    if args.observe {
        observe_as_the_daemon(&runtime)?;
    }
    // Room for the window and the minute of settling around it, at most
    // 16 M runs (384 MB of address space, touched only as runs come in).
    let run_ms = plan.duration_ms + millis(args.warmup) as i64 + 60_000;
    let fires_expected = u64::from(args.jobs)
        .saturating_mul(u64::try_from(run_ms / plan.every_ms.max(1000)).unwrap_or(0));
    let recorder = Recorder::with_capacity(fires_expected.min(16_000_000) as usize);
    let schedule = plan.schedule.clone();
    let url = server.url();
    let store_version = match &server {
        StoreServer::Redis(_) | StoreServer::Cluster(_) => None,
        StoreServer::Postgres(store) => Some(store.version.clone()),
        StoreServer::Etcd(store) => Some(store.version.clone()),
    };

    let weights = weights::shard_weights(args.jobs, &schedule, ring.shard_count)?;
    eprintln!("registering {} jobs ({schedule}) on {url}", args.jobs);
    let memory_before = server.memory()?;
    runtime.block_on(fleet::put_jobs(
        &url,
        ring,
        args.jobs,
        &schedule,
        args.delivery,
    ))?;
    let memory_after = server.memory()?;
    let redis_bytes_per_job =
        memory_after.saturating_sub(memory_before) as f64 / f64::from(args.jobs);
    let rss_before = stats::process_rss_bytes();
    let mut fleet = Fleet::new(&url, ring, weights, plan.settings.clone(), &recorder);
    for index in 0..args.workers {
        runtime.block_on(fleet.join(&initial_name(index)))?;
    }
    let settle_ms = runtime.block_on(fleet.wait_settled(Duration::from_secs(60)))?;
    let rss_after = stats::process_rss_bytes();
    let worker_rss_mib_per_10k_jobs = rss_before.zip(rss_after).map(|(before, after)| {
        after.saturating_sub(before) as f64 / 1_048_576.0 * 10_000.0 / f64::from(args.jobs)
    });
    let verifier = runtime.block_on(fleet::connect(&server.verifier_url(), ring))?;
    let mut driver = Driver::new(fleet, verifier);
    runtime.block_on(driver.confirm_settled(Duration::from_secs(30)))?;
    eprintln!(
        "{} workers hold all {} shards after {settle_ms} ms{}",
        args.workers,
        ring.shard_count,
        if plan.events.is_empty() {
            String::new()
        } else {
            format!("; churn: {} events", plan.events.len())
        }
    );

    // Warm up (and measure) only once the fleet runs on time: it first
    // works off the fires due while the jobs were registered (see
    // `phases`).
    let caught_up = runtime.block_on(phases::wait_caught_up(&recorder, Duration::from_secs(60)));
    match caught_up {
        Ok(ms) => eprintln!("caught up with the fires due since registration after {ms} ms"),
        Err(ms) => eprintln!("still catching up after {ms} ms: measuring anyway"),
    }

    // Start on a period boundary at least one period away (`--schedule`:
    // at its first fire at least 2 s away).
    let warmup_ms = millis(args.warmup) as i64;
    let from_ms = match &args.schedule {
        None => ((now_ms() + warmup_ms).div_euclid(plan.every_ms) + 2) * plan.every_ms,
        Some(_) => plan
            .job
            .next_after(now_ms() + warmup_ms + 2000 + millis(plan.settings.claim_ahead) as i64)
            .ok_or_else(|| {
                BenchError::InvalidArgs("--schedule: the schedule never fires".to_owned())
            })?,
    };
    let to_ms = from_ms.saturating_add(plan.duration_ms);
    let instants = plan.job.fires_between(from_ms - 1, to_ms - 1, 10_000_000);
    // A burst's fires are claimed up to `claim_ahead` before its first
    // instant: with `--schedule`, Redis and CPU are counted from a second
    // before that, so the claims are part of the figures per fire.
    let count_from_ms = match &args.schedule {
        None => from_ms,
        Some(_) => {
            from_ms - i64::try_from(plan.settings.claim_ahead.as_millis()).unwrap_or(0) - 1000
        }
    };
    let wait = Duration::from_millis(u64::try_from(count_from_ms - now_ms()).unwrap_or(0));
    runtime.block_on(async { tokio::time::sleep(wait).await });
    let before = server.counters()?;
    let window_memory_before = server.memory()?;
    let window_keys_before = server.key_count()?;
    let reads_before = driver.verify_reads();
    // Every worker that is part of the fleet at some point of the window.
    let window_workers: BTreeSet<String> = driver
        .worker_names()
        .into_iter()
        .chain(plan.events.iter().map(|e| e.worker.clone()))
        .collect();
    let progress = bar(
        args.duration.as_secs(),
        "live",
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len}s {msg}",
    );
    runtime.block_on(driver.run_window(&plan.events, from_ms, to_ms, &progress, &recorder))?;
    let after = server.counters()?;
    let window_memory_after = server.memory()?;
    let window_keys_after = server.key_count()?;
    let reads_in_window = driver.verify_reads() - reads_before;
    progress.finish_and_clear();
    // Events still settling are followed past the window (not measured).
    runtime.block_on(driver.finish(Duration::from_secs(60)));
    // Let runs of the window's last instants finish and be recorded: at
    // overload fires run late, so wait until no more of them start (3 s
    // without a start of one of the window's instants, 90 s at most).
    runtime.block_on(phases::wait_for_the_tail(&recorder, to_ms));
    let (fleet, timings) = driver.into_parts();
    let workers_at_end = fleet.names();
    let reports = runtime.block_on(fleet.stop());
    drop(runtime);

    let fires = recorder.snapshot();
    let fires_per_node =
        per_node::fires_per_node(&fires, &recorder.workers(), &window_workers, from_ms, to_ms);
    let audit = audit::audit_at(&fires, args.jobs, &instants, from_ms, to_ms);
    let missing = audit::missing_at(&fires, args.jobs, &instants, from_ms, to_ms);
    let (attribution, recorded_not_run) = match &server {
        StoreServer::Redis(redis) => {
            let mut attribution =
                results::attribute_misses(redis, ring.shard_count, &missing, &timings)?;
            let recorded = results::explain_by_records(redis, &mut attribution)?;
            (attribution, recorded)
        }
        // A cluster's claim records are spread over its masters: misses are
        // reported, not looked up (no crash explains them).
        StoreServer::Cluster(_) => (
            claims::attribute(
                &missing,
                timings.len(),
                &results::crashes(&timings),
                |_, _| None,
            ),
            results::RecordedMisses::new(),
        ),
        StoreServer::Postgres(store) => {
            store.attribute_misses(&missing, timings.len(), &results::crashes(&timings))?
        }
        StoreServer::Etcd(store) => {
            store.attribute_misses(ring, &missing, timings.len(), &results::crashes(&timings))?
        }
    };
    let db_file_end = match &server {
        StoreServer::Etcd(store) => store.db_file_size()?,
        _ => 0,
    };
    drop(server);

    let fired = audit.fired.max(1);
    let store_figures = match (&before, &after) {
        (WindowCounters::Redis(before), WindowCounters::Redis(after)) => {
            let mut deltas = stats::command_deltas(&before.commands, &after.commands);
            let bench_gets_excluded = reads_in_window * u64::from(ring.shard_count);
            if let Some(gets) = deltas.get_mut("get") {
                *gets = gets.saturating_sub(bench_gets_excluded);
            }
            deltas.retain(|_, calls| *calls > 0);
            StoreFigures {
                redis_commands: deltas.values().sum(),
                bench_gets_excluded,
                deltas,
                process_cpu_s: after.process_cpu_s - before.process_cpu_s,
                redis_cpu_s: after.redis_cpu_s - before.redis_cpu_s,
                postgres: None,
                etcd: None,
            }
        }
        (
            WindowCounters::Postgres(before, cpu_before),
            WindowCounters::Postgres(after, cpu_after),
        ) => {
            let version = match &store_version {
                Some(version) => version.as_str(),
                None => "",
            };
            let mut report = before.report(after, audit.fired, version);
            report.db_bytes_per_job = redis_bytes_per_job;
            report.db_growth_bytes = i64::try_from(window_memory_after).unwrap_or(i64::MAX)
                - i64::try_from(window_memory_before).unwrap_or(i64::MAX);
            StoreFigures {
                redis_commands: 0,
                bench_gets_excluded: 0,
                deltas: BTreeMap::new(),
                process_cpu_s: cpu_after - cpu_before,
                redis_cpu_s: 0.0,
                postgres: Some(report),
                etcd: None,
            }
        }
        (WindowCounters::Etcd(before, cpu_before), WindowCounters::Etcd(after, cpu_after)) => {
            let version = store_version.as_deref().unwrap_or("");
            let mut report = before.report(after, audit.fired, version, reads_in_window);
            report.db_bytes_per_job = redis_bytes_per_job;
            report.db_file_bytes_end = db_file_end;
            report.db_growth_bytes = i64::try_from(window_memory_after).unwrap_or(i64::MAX)
                - i64::try_from(window_memory_before).unwrap_or(i64::MAX);
            StoreFigures {
                redis_commands: 0,
                bench_gets_excluded: 0,
                deltas: BTreeMap::new(),
                process_cpu_s: cpu_after - cpu_before,
                redis_cpu_s: 0.0,
                postgres: None,
                etcd: Some(report),
            }
        }
        _ => {
            return Err(BenchError::live(
                "reading the store's counters",
                "counters of two different stores",
            ))
        }
    };
    let StoreFigures {
        redis_commands,
        bench_gets_excluded,
        deltas,
        process_cpu_s,
        redis_cpu_s,
        postgres,
        etcd,
    } = store_figures;
    let on_redis = postgres.is_none() && etcd.is_none();
    let churn = results::event_reports(&timings, &attribution, &fires, from_ms, to_ms);
    let report = LiveReport {
        workers: args.workers,
        workers_at_end,
        jobs: args.jobs,
        every_ms: plan.every_ms,
        schedule: plan.schedule.clone(),
        shards: args.shards,
        settings: if args.fast { "fast" } else { "default" },
        heartbeat_ms: millis(plan.settings.heartbeat),
        claim_ahead_ms: millis(plan.settings.claim_ahead),
        observed: args.observe,
        redis_bytes_per_job: if on_redis { redis_bytes_per_job } else { 0.0 },
        redis_memory_growth_bytes: if on_redis {
            i64::try_from(window_memory_after).unwrap_or(i64::MAX)
                - i64::try_from(window_memory_before).unwrap_or(i64::MAX)
        } else {
            0
        },
        redis_key_growth: window_keys_after - window_keys_before,
        worker_rss_mib_per_10k_jobs,
        ttl_ms: (
            millis(plan.settings.lease_ttl),
            millis(plan.settings.member_ttl),
        ),
        settle_ms,
        caught_up_ms: caught_up.ok(),
        warmup_ms: millis(args.warmup),
        window: (from_ms, to_ms),
        lost_with_crash: attribution.lost_per_event.iter().sum(),
        recorded_not_run,
        unexplained_misses: attribution.unexplained.len() as u64,
        unexplained_examples: attribution
            .unexplained
            .iter()
            .take(10)
            .map(|(job, at, claim)| {
                format!(
                    "job-{job}@{at} (claim: {})",
                    claim.as_deref().unwrap_or("none")
                )
            })
            .collect(),
        fires_per_s: audit.fired as f64 * 1000.0 / plan.duration_ms.max(1) as f64,
        fires_per_node,
        redis_commands,
        bench_gets_excluded,
        commands_per_fire: redis_commands as f64 / fired as f64,
        per_command_per_fire: deltas
            .iter()
            .map(|(name, &calls)| (name.clone(), calls as f64 / fired as f64))
            .collect(),
        process_cpu_s,
        process_cpu_s_per_1000_fires: per_thousand(process_cpu_s, audit.fired),
        redis_cpu_s,
        redis_cpu_s_per_1000_fires: per_thousand(redis_cpu_s, audit.fired),
        claimed_total: reports.iter().map(|r| r.claimed).sum(),
        claim_conflicts_total: reports.iter().map(|r| r.claim_conflicts).sum(),
        claim_pauses_total: reports.iter().map(|r| r.claim_pauses).sum(),
        overloads_total: reports.iter().map(|r| r.overloads).sum(),
        churn,
        lateness_per_second: timeline::per_second(&fires, from_ms, to_ms),
        audit,
        postgres,
        etcd,
    };
    files::write_outputs(args, &report)?;
    Ok(report)
}

/// The store's share of the report.
struct StoreFigures {
    redis_commands: u64,
    bench_gets_excluded: u64,
    deltas: BTreeMap<String, u64>,
    process_cpu_s: f64,
    redis_cpu_s: f64,
    postgres: Option<pg::PgReport>,
    etcd: Option<etcd::EtcdReport>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
