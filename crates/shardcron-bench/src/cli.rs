//! Command-line interface (clap derive).
//!
//! Number lists accept single values, inclusive ranges and stepped ranges,
//! comma-separated: `3,5,10..12,100..500:100` is 3 5 10 11 12 100 200 300
//! 400 500. Values are sorted and deduplicated.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use shardcron_core::Delivery;

use crate::live::churn::{parse_churn, ChurnSpec};
use crate::scenario::Scenario;
use crate::weighted_workload::WorkloadKind;

/// Benchmarks for shardcron.
#[derive(Debug, Parser)]
#[command(name = "shardcron-bench", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate placement strategies through membership changes and job
    /// writes, counting jobs and on weighted workloads (no I/O). Narrow a
    /// run with --parts, --workload, --weighted-nodes, --strategies,
    /// --scenarios or --timing-reps 0.
    Sim(Box<SimArgs>),
    /// Benchmark in-process workers against a private redis-server.
    Live(LiveArgs),
    /// Run `live` and the BullMQ peer (benches/peers/bullmq) one after the
    /// other at each job rate and print them side by side.
    Peer(PeerArgs),
}

/// A sorted, deduplicated list of numbers parsed from `1,2,5..8,10..100:10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumList(pub Vec<u32>);

/// Parses a [`NumList`]; at most 100,000 values.
pub fn parse_num_list(text: &str) -> Result<NumList, String> {
    const MAX_VALUES: usize = 100_000;
    let mut values = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| {
            s.trim()
                .replace('_', "")
                .parse::<u32>()
                .map_err(|e| format!("{s:?} in {part:?}: {e}"))
        };
        match part.split_once("..") {
            None => values.push(number(part)?),
            Some((start, rest)) => {
                let (end, step) = match rest.split_once(':') {
                    Some((end, step)) => (end, number(step)?),
                    None => (rest, 1),
                };
                let (start, end) = (number(start)?, number(end.trim_start_matches('='))?);
                if step == 0 || start > end {
                    return Err(format!("range {part:?} is empty or has step 0"));
                }
                let mut value = start;
                while value <= end {
                    values.push(value);
                    if values.len() > MAX_VALUES {
                        return Err(format!("more than {MAX_VALUES} values"));
                    }
                    let Some(next) = value.checked_add(step) else {
                        break;
                    };
                    value = next;
                }
            }
        }
    }
    if values.is_empty() {
        return Err("empty list".to_owned());
    }
    values.sort_unstable();
    values.dedup();
    Ok(NumList(values))
}

/// A part of the `sim` run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The job-count grid and balance sweep (every job weighs the same).
    Count,
    /// Strategies on weighted workloads (fires/s × cost per node).
    Weighted,
}

/// Options of `sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Parts to run: `count` (job-count grid over --nodes/--shards and the
    /// balance sweep) and `weighted` (weighted workloads over
    /// --weighted-nodes at --weighted-shards, plus the timing pass).
    #[arg(long, value_delimiter = ',', default_value = "count,weighted")]
    pub parts: Vec<Part>,
    /// Fleet sizes N of the event grid (list or ranges, e.g. `3..10,50,100..500:100`).
    #[arg(long, default_value = "3,5,10,20,50,100,200", value_parser = parse_num_list)]
    pub nodes: NumList,
    /// Shard counts S.
    #[arg(long, default_value = "1024,65536", value_parser = parse_num_list)]
    pub shards: NumList,
    /// Number of jobs (ids `job-0` ..), at most 1,000,000.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub jobs: u32,
    /// Virtual nodes per member of the shipped ring in the event grid.
    #[arg(long, default_value = "40,80,160,320", value_parser = parse_num_list)]
    pub vnodes: NumList,
    /// Slack ε of consistent hashing with bounded loads (capacity ceil((1+ε)·S/N)).
    #[arg(long, default_value_t = 0.25)]
    pub epsilon: f64,
    /// Virtual nodes per member of the bounded-loads rings (`bounded`,
    /// `place`) in the job-count grid (`place` also in the balance sweep).
    #[arg(long, default_value_t = 160)]
    pub bounded_vnodes: u32,
    /// Load bounds ε of the weighted placements `place` (`ShardMap::place`)
    /// and `sticky` (`ShardMap::rebalance`), in thousandths: `20,50,100` is
    /// ε = 0.02, 0.05 and 0.10. One `place` strategy per value in both
    /// parts, one `sticky` per value in the weighted part.
    #[arg(long, default_value = "20,50,100", value_parser = parse_num_list)]
    pub load_bounds: NumList,
    /// Fleet sizes of the balance-vs-vnodes sweep.
    #[arg(long, default_value = "10,50", value_parser = parse_num_list)]
    pub balance_nodes: NumList,
    /// Virtual-node counts of the balance-vs-vnodes sweep.
    #[arg(long, default_value = "10,20,40,80,160,320,640", value_parser = parse_num_list)]
    pub sweep_vnodes: NumList,
    /// Fleets with different member names per balance-sweep point (averaged).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub trials: u32,
    /// Scenarios to replay (`job-write` runs in the weighted part only).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "scale-out,scale-in,scale-in-last,rolling-restart,crash,job-write"
    )]
    pub scenarios: Vec<Scenario>,
    /// Crash sizes k (nodes lost at once); each runs where k < N.
    #[arg(long, default_value = "3", value_parser = parse_num_list)]
    pub crash: NumList,
    /// Nodes restarted per fleet size in a rolling restart (evenly spaced); 0 = all.
    #[arg(long, default_value_t = 16)]
    pub restart_sample: u32,
    /// Strategy families: ring (ShardMap::compute), dcron, bounded (bounded
    /// by shard count), place (ShardMap::place, one per --load-bounds
    /// value), sticky (ShardMap::rebalance from the previous placement, one
    /// per --load-bounds value), rendezvous, maglev, jump. dcron places jobs
    /// and runs in the job-count part only; sticky is stateful and runs in
    /// the weighted part only.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ring,dcron,bounded,place,sticky,rendezvous,maglev,jump"
    )]
    pub strategies: Vec<String>,
    /// Seed of the choice of leaving / crashing nodes, of the mixed
    /// workloads' schedules and costs, and of the job writes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Weighted workloads: `uniform` (every job every second, cost 1),
    /// `mixed` (1 % every second, 9 % every 10 s, 30 % every minute, 40 %
    /// hourly, 20 % daily; cost Zipf over 1..=10), `few` (--few-jobs-per-node
    /// uniform jobs; also runs `few-mixed`), `few-mixed` (the mixed
    /// schedule with --few-jobs-per-node).
    #[arg(long, value_delimiter = ',', default_value = "uniform,mixed,few")]
    pub workload: Vec<WorkloadKind>,
    /// Fleet sizes N of the weighted part.
    #[arg(long, default_value = "2,5,10,20,50,100", value_parser = parse_num_list)]
    pub weighted_nodes: NumList,
    /// Shard count of the weighted part.
    #[arg(long, default_value_t = 1024)]
    pub weighted_shards: u32,
    /// Virtual nodes per member of the ring-based strategies (ring, place,
    /// bounded) in the weighted part.
    #[arg(long, default_value_t = 160)]
    pub weighted_vnodes: u32,
    /// Jobs per node of `uniform` and `mixed` (jobs = N × this).
    #[arg(long, default_value_t = 100)]
    pub jobs_per_node: u32,
    /// Jobs per node of `few` and `few-mixed`.
    #[arg(long, default_value_t = 8)]
    pub few_jobs_per_node: u32,
    /// Job writes of the `job-write` scenario, percent of the jobs (rounded
    /// up, at least one write per fleet size).
    #[arg(long, default_value_t = 1.0)]
    pub write_percent: f64,
    /// Shard count of the weighted part's timing pass.
    #[arg(long, default_value_t = 65_536)]
    pub timing_shards: u32,
    /// Fleet size of the weighted part's timing pass.
    #[arg(long, default_value_t = 100)]
    pub timing_nodes: u32,
    /// Placements per strategy and workload in the timing pass (the median
    /// is reported); 0 skips the pass.
    #[arg(long, default_value_t = 3)]
    pub timing_reps: u32,
    /// Output directory for sim.json, sim.csv, balance.csv and the SVG charts.
    #[arg(long, default_value = "target/shardcron-bench/sim")]
    pub out: PathBuf,
    /// Skip drawing the charts.
    #[arg(long)]
    pub no_charts: bool,
}

/// Parses a job delivery (`at_most_once`, `at_least_once`).
pub fn parse_delivery(text: &str) -> Result<Delivery, String> {
    match text {
        "at_most_once" => Ok(Delivery::AtMostOnce),
        "at_least_once" => Ok(Delivery::AtLeastOnce),
        other => Err(format!(
            "unknown delivery {other:?}: use at_most_once or at_least_once"
        )),
    }
}

/// Parses a humantime duration such as `30s` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))
}

/// Options of `live`.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    /// In-process workers, each with its own Redis connection.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Jobs to register (`job-0` ..), all on the same `@every` schedule.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub jobs: u32,
    /// Length of the measured window, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long the settled fleet runs before the window, e.g. `120s`,
    /// counted from when it has caught up with the fires due while the
    /// jobs were registered (that is waited for in any case): a
    /// window measured after 100 s finds every job's run-history ring full,
    /// as in a fleet that has been running, instead of growing it.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Period of every job (`@every <period>`), at least 1s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub every: Duration,
    /// A cron expression every job shares instead of `@every <period>`,
    /// e.g. `0 * * * * *`: all jobs due in the same second, once a minute
    /// (a burst). The window starts at its first fire at least 2 s plus the
    /// claim-ahead window away; Redis and CPU are counted from a second
    /// before its claims.
    #[arg(long, conflicts_with = "every")]
    pub schedule: Option<String>,
    /// Shard count of the namespace (160 virtual nodes).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub shards: u32,
    /// Membership changes during the window: `default`, or comma-separated
    /// `OFFSET:ACTION:WORKER` with ACTION `leave` (graceful), `crash` (task
    /// aborted) or `join`, offsets from the window start; initial workers
    /// are `w0 .. w(N-1)`. Example: `10s:leave:w2,18s:join:w2,25s:crash:w3`.
    #[arg(long, value_parser = parse_churn)]
    pub churn: Option<ChurnSpec>,
    /// Use `WorkerSettings::fast()` (250 ms heartbeat, 1.5 s TTLs) instead
    /// of the defaults (1 s heartbeat, 5 s TTLs).
    #[arg(long)]
    pub fast: bool,
    /// Delivery of every job: `at_most_once` (default) or `at_least_once`
    /// (each fire keeps an open entry from claim to terminal record).
    #[arg(long, default_value = "at_most_once", value_parser = parse_delivery)]
    pub delivery: Delivery,
    /// How long before its instant each fire is claimed (the workers'
    /// `claim_ahead`; default: the settings' own, 500 ms). `0s` claims each
    /// fire when it is due.
    #[arg(long, value_parser = parse_duration)]
    pub claim_ahead: Option<Duration>,
    /// The store the workers coordinate through, on a private server the
    /// run starts and removes: `redis` (redis-server on a free loopback
    /// port) or `postgres` (initdb and postgres in a temporary directory on
    /// a free loopback port, with `pg_stat_statements` and
    /// `track_functions=all`, so statements, transactions and function
    /// calls per fire can be counted; the binaries are taken from `PATH`,
    /// else the newest `/usr/lib/postgresql/*/bin`) or `etcd` (a one-member
    /// etcd in a temporary directory on free loopback ports, its gRPC
    /// requests, raft proposals and CPU read from its `/metrics`; the
    /// binary from `SHARDCRON_ETCD`, else `PATH`) or `redis-cluster` (a
    /// Redis Cluster of `--cluster-masters` masters with
    /// `--cluster-replicas` replicas each, on free loopback ports; commands
    /// are counted on the masters, CPU on every node).
    #[arg(long, value_enum, default_value_t = LiveStore::Redis)]
    pub store: LiveStore,
    /// With `--store redis-cluster`: masters of the private cluster.
    #[arg(long, default_value_t = 3)]
    pub cluster_masters: usize,
    /// With `--store redis-cluster`: replicas per master.
    #[arg(long, default_value_t = 0)]
    pub cluster_replicas: usize,
    /// With `--store redis-cluster`: the store's `min_replicas` (replicas
    /// that must have a claim or a lease acquisition before it counts,
    /// checked with `WAIT`); default: the store's own (1 with replicas,
    /// else 0).
    #[arg(long)]
    pub min_replicas: Option<u32>,
    /// With `--store etcd`: the workers' self-compaction interval in
    /// seconds (`0`: off, the store as it was before self-compaction;
    /// default: the store's own, 2 s). The private etcd runs with etcd's
    /// defaults: no auto-compaction, 2 GiB backend quota.
    #[arg(long)]
    pub etcd_compact_every: Option<f64>,
    /// The redis-server binary to start (default: `SHARDCRON_REDIS_SERVER`,
    /// else `redis-server` on `PATH`). Only with `--store redis`.
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// Output directory for live.json, live.csv (churn events), lateness.csv
    /// and lateness_over_time.svg.
    #[arg(long, default_value = "target/shardcron-bench/live")]
    pub out: PathBuf,
    /// Skip drawing the chart.
    #[arg(long)]
    pub no_charts: bool,
    /// Run the workers observed as `shardcron worker` observes itself: the
    /// daemon's log subscriber at its default `info` filter (to stderr;
    /// `RUST_LOG` overrides it) and its Prometheus recorder installed, so
    /// the figures include what every fire pays for its span and metrics.
    /// Without it the workers run as a library embedded with neither.
    #[arg(long)]
    pub observe: bool,
}

/// The store `live` runs its workers on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LiveStore {
    /// A private redis-server.
    Redis,
    /// A private PostgreSQL server.
    Postgres,
    /// A private one-member etcd.
    Etcd,
    /// A private Redis Cluster.
    RedisCluster,
}

impl LiveStore {
    /// The name used on the command line and in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveStore::Redis => "redis",
            LiveStore::Postgres => "postgres",
            LiveStore::Etcd => "etcd",
            LiveStore::RedisCluster => "redis-cluster",
        }
    }
}

/// Options of `peer`.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// Job rates to measure: J jobs firing every second, one point per
    /// value (list or ranges, e.g. `1000,5000,10000,20000`).
    #[arg(long, default_value = "1000,5000,10000,20000", value_parser = parse_num_list)]
    pub jobs: NumList,
    /// Workers of each system: in-process shardcron workers, BullMQ worker
    /// processes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Length of each measured window, whole seconds (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before each system's window, whole seconds: BullMQ's from
    /// its first fire, shardcron's from its fleet settling and catching up
    /// with the fires due while its jobs were registered (`live
    /// --warmup`). Both windows then measure the sustained rate rather
    /// than a fleet's first seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Concurrency of each BullMQ worker (run.js `--concurrency`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// The BullMQ peer's folder (with run.js and package.json); default
    /// `benches/peers/bullmq` of the workspace.
    #[arg(long)]
    pub bullmq_dir: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// The npm binary (only used for `npm ci` when node_modules is missing).
    #[arg(long, default_value = "npm")]
    pub npm: PathBuf,
    /// The redis-server binary both systems start (default:
    /// `SHARDCRON_REDIS_SERVER`, else `redis-server` on `PATH`).
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// Output directory for peer.md, peer.json and each run's own files.
    #[arg(long, default_value = "target/shardcron-bench/peer")]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_num_list("5,3,3").map(|l| l.0), Ok(vec![3, 5]));
        assert_eq!(parse_num_list("3..6").map(|l| l.0), Ok(vec![3, 4, 5, 6]));
        assert_eq!(parse_num_list("3..=4,10").map(|l| l.0), Ok(vec![3, 4, 10]));
        assert_eq!(
            parse_num_list("100..500:100,1_000").map(|l| l.0),
            Ok(vec![100, 200, 300, 400, 500, 1000])
        );
        assert!(parse_num_list("").is_err());
        assert!(parse_num_list("5..3").is_err());
        assert!(parse_num_list("1..9:0").is_err());
        assert!(parse_num_list("x").is_err());
    }

    #[test]
    fn live_churn_option() {
        let cli = Cli::try_parse_from([
            "shardcron-bench",
            "live",
            "--churn",
            "10s:leave:w2,18s:join:w2",
            "--fast",
        ]);
        let Ok(Cli {
            command: Command::Live(args),
        }) = cli
        else {
            panic!("live should parse");
        };
        assert!(args.fast);
        assert!(matches!(args.churn, Some(ChurnSpec::Events(ref e)) if e.len() == 2));
        assert!(
            Cli::try_parse_from(["shardcron-bench", "live", "--churn", "10s:boom:w1"]).is_err()
        );
    }

    #[test]
    fn sim_weighted_options() {
        let cli = Cli::try_parse_from([
            "shardcron-bench",
            "sim",
            "--parts",
            "weighted",
            "--workload",
            "mixed,few-mixed",
            "--load-bounds",
            "50",
        ]);
        let Ok(Cli {
            command: Command::Sim(args),
        }) = cli
        else {
            panic!("sim should parse");
        };
        assert_eq!(args.parts, vec![Part::Weighted]);
        assert_eq!(
            args.workload,
            vec![WorkloadKind::Mixed, WorkloadKind::FewMixed]
        );
        assert_eq!(args.load_bounds.0, vec![50]);
        assert_eq!(args.weighted_nodes.0, vec![2, 5, 10, 20, 50, 100]);
        assert!(args.scenarios.contains(&Scenario::JobWrite));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
