//! Command-line syntax (clap derive).
//!
//! Only the *shape* of the command line lives here: which flags exist, their
//! defaults and environment variables. Checking what the values mean (a cron
//! expression, a time zone, exactly one of `--exec`/`--http`) is left to the
//! same validation that job files and the config file go through, so a job
//! given by flags and one given in a file fail with the same message and the
//! same exit code (3). clap's own errors exit with 2.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::exit_codes_help;

/// Redis URL used when neither `--redis` nor `SHARDCRON_REDIS_URL` is given.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Namespace used when neither `--namespace` nor `SHARDCRON_NAMESPACE` is given.
pub const DEFAULT_NAMESPACE: &str = "shardcron";

/// `shardcron`: cron-scheduled jobs on a fleet of workers coordinated through
/// Redis or PostgreSQL; every fire runs exactly once.
#[derive(Debug, Parser)]
#[command(name = "shardcron", version, after_help = exit_codes_help())]
pub struct Cli {
    /// URL of the coordination store: redis://,
    /// rediss://...[?tls_ca=PATH&tls_cert=PATH&tls_key=PATH] (TLS),
    /// redis+cluster://host:port[,host:port...], rediss+cluster://...
    /// (TLS, same options),
    /// redis+sentinel://host:port[,host:port...]/<master-name>, postgres://,
    /// postgresql://, etcd:// or etcds:// (wins over --redis).
    #[arg(
        long,
        env = "SHARDCRON_STORE",
        global = true,
        help_heading = "Global options"
    )]
    pub store: Option<String>,

    /// Redis URL of the coordination store (an alias of --store, which
    /// wins when both are given).
    #[arg(long, env = "SHARDCRON_REDIS_URL", default_value = DEFAULT_REDIS_URL, global = true, help_heading = "Global options")]
    pub redis: String,

    /// Namespace (key prefix) shared by one fleet.
    #[arg(long, env = "SHARDCRON_NAMESPACE", default_value = DEFAULT_NAMESPACE, global = true, help_heading = "Global options")]
    pub namespace: String,

    /// Log line format on stderr (filter with RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Global options")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a worker until SIGTERM/SIGINT (then leave gracefully).
    Worker(WorkerArgs),
    /// Create, inspect, change and trigger jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Show members, shard ownership, balance and ongoing handoffs.
    Status(StatusArgs),
    /// Show recent runs.
    Runs(RunsArgs),
    /// Run an in-process fleet of three workers and audit every fire.
    Demo(DemoArgs),
}

/// `shardcron worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Node id, unique in the namespace [default: hostname-pid].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Config file (TOML) with `[worker]` settings and static `[[job]]`s.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz on this address (e.g.
    /// 0.0.0.0:9090), and the /v1 admin API too unless --api-listen is given.
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve the /v1 admin API on this address instead (e.g.
    /// 127.0.0.1:9091; put a TLS proxy in front to expose it).
    #[arg(long)]
    pub api_listen: Option<String>,
}

/// `shardcron job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Create or replace a job (from flags), or every job of a file.
    Put(Box<JobPutArgs>),
    /// Print a stored job as JSON.
    Get(JobIdArg),
    /// Remove a job.
    Rm(JobIdArg),
    /// Pause a job (it keeps its definition but does not fire).
    Pause(JobIdArg),
    /// Resume a paused job.
    Resume(JobIdArg),
    /// Queue an extra fire of a job now; prints the fire id.
    Trigger(JobIdArg),
    /// List jobs.
    Ls(JobLsArgs),
}

/// A job id argument.
#[derive(Debug, Args)]
pub struct JobIdArg {
    /// Job id.
    pub id: String,
}

/// `shardcron job put`.
#[derive(Debug, Args)]
pub struct JobPutArgs {
    /// Read jobs from a file: a JSON array or TOML `[[job]]` tables. Every
    /// entry is validated before any is written.
    #[arg(long, conflicts_with_all = [
        "id", "schedule", "exec", "http", "method", "header", "body", "tz",
        "timeout", "retries", "misfire", "overlap", "paused", "delivery", "placement", "cost",
    ])]
    pub file: Option<PathBuf>,
    /// Job id.
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    /// Cron expression (5 or 6 fields), `@hourly`-style macro or `@every 5s`.
    #[arg(long, required_unless_present = "file")]
    pub schedule: Option<String>,
    /// Run this shell command (handler `exec`).
    #[arg(long)]
    pub exec: Option<String>,
    /// Call this URL (handler `http`).
    #[arg(long)]
    pub http: Option<String>,
    /// HTTP method [default: POST with --body, GET otherwise].
    #[arg(long, requires = "http")]
    pub method: Option<String>,
    /// Extra HTTP header `NAME:VALUE` (repeatable).
    #[arg(long, requires = "http")]
    pub header: Vec<String>,
    /// HTTP request body.
    #[arg(long, requires = "http")]
    pub body: Option<String>,
    /// IANA time zone of the schedule [default: UTC].
    #[arg(long)]
    pub tz: Option<String>,
    /// Longest one attempt may run (e.g. 30s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Retries after a failed attempt.
    #[arg(long)]
    pub retries: Option<u32>,
    /// What to do with missed fires.
    #[arg(long, value_enum)]
    pub misfire: Option<MisfireArg>,
    /// What to do when the previous run is still in flight.
    #[arg(long, value_enum)]
    pub overlap: Option<OverlapArg>,
    /// Store the job paused.
    #[arg(long)]
    pub paused: bool,
    /// Whether a fire claimed by a node that dies is lost (`at_most_once`,
    /// the default) or run again by the shard's next owner within the
    /// misfire grace, with the same fire id (`at_least_once`; the handler
    /// must be idempotent).
    #[arg(long, value_enum)]
    pub delivery: Option<DeliveryArg>,
    /// Where the job's fires run: `sharded` (default) spreads jobs over the
    /// fleet, `leader` runs them all on the one elected leader (a standby
    /// takes over when it leaves or dies), `broadcast` runs every fire on
    /// every live member (fire id `job@ms/node`).
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    /// Relative cost of one run (a positive number up to 10000, default
    /// 1): placement balances fires per day times cost over the workers.
    #[arg(long, allow_negative_numbers = true)]
    pub cost: Option<f64>,
    /// Opt-in per-job metrics label (`job_label` on fire metrics); none by
    /// default so metric cardinality stays bounded.
    #[arg(long)]
    pub metrics_label: Option<String>,
}

/// `--misfire` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum MisfireArg {
    /// Run every missed fire within the grace period.
    CatchUp,
    /// Run the latest missed fire once.
    RunOnce,
    /// Run none of them.
    Skip,
}

/// `--overlap` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum OverlapArg {
    /// Skip the new fire.
    Skip,
    /// Run both.
    Allow,
    /// Keep one pending fire.
    QueueOne,
}

/// `--placement` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PlacementArg {
    /// On the node the ring gives the job's shard to.
    Sharded,
    /// On the fleet's elected leader.
    Leader,
    /// On every live member.
    Broadcast,
}

impl PlacementArg {
    /// The placement name as in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sharded => "sharded",
            Self::Leader => "leader",
            Self::Broadcast => "broadcast",
        }
    }
}

/// `--delivery` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum DeliveryArg {
    /// A fire never starts twice; one claimed by a node that dies is lost.
    AtMostOnce,
    /// A fire claimed by a node that dies runs again on the next owner.
    AtLeastOnce,
}

impl DeliveryArg {
    /// The delivery name as in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtMostOnce => "at_most_once",
            Self::AtLeastOnce => "at_least_once",
        }
    }
}

impl MisfireArg {
    /// The policy name as in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CatchUp => "catch_up",
            Self::RunOnce => "run_once",
            Self::Skip => "skip",
        }
    }
}

impl OverlapArg {
    /// The policy name as in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Allow => "allow",
            Self::QueueOne => "queue_one",
        }
    }
}

/// `shardcron job ls`.
#[derive(Debug, Args)]
pub struct JobLsArgs {
    /// Only ids starting with this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Print a JSON array of stored jobs instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `shardcron status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `shardcron runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Most runs to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `shardcron demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the demo runs.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// When one worker leaves [default: a third of --duration].
    #[arg(long, value_parser = parse_duration)]
    pub leave_at: Option<Duration>,
    /// When it rejoins [default: 60% of --duration].
    #[arg(long, value_parser = parse_duration)]
    pub rejoin_at: Option<Duration>,
}

/// Parses a humantime duration (`30s`, `1m 30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_ends_with_exit_codes() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(
            help.contains("4  store unreachable (Redis or PostgreSQL)"),
            "{help}"
        );
    }

    #[test]
    fn job_put_needs_id_and_schedule_unless_file() {
        assert!(Cli::try_parse_from(["shardcron", "job", "put", "--exec", "true"]).is_err());
        assert!(Cli::try_parse_from(["shardcron", "job", "put", "--file", "jobs.json"]).is_ok());
        let err = Cli::try_parse_from(["shardcron", "job", "put", "--file", "f", "--id", "x"])
            .expect_err("file conflicts with flags");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn store_is_a_global_flag_beside_the_redis_alias() {
        let cli = Cli::try_parse_from([
            "shardcron",
            "--redis",
            "redis://h:1",
            "status",
            "--store",
            "postgres://u@h/db",
        ])
        .expect("parse");
        assert_eq!(cli.store.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(cli.redis, "redis://h:1");
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "shardcron",
            "status",
            "--redis",
            "redis://h:1",
            "--namespace",
            "ns",
            "--log-format",
            "json",
        ])
        .expect("parse");
        assert_eq!(cli.redis, "redis://h:1");
        assert_eq!(cli.namespace, "ns");
        assert_eq!(cli.log_format, LogFormat::Json);
    }
}
