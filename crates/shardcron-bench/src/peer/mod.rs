//! `peer`: shardcron and BullMQ side by side, measured in one run.
//!
//! `docs/BENCHMARKS.md` compares shardcron with a plain Redis job queue
//! doing the same job (J jobs firing every second, each fire run exactly
//! once by K workers). Figures taken days apart, on a machine whose load
//! changed in between, compare badly, so this command takes both in one
//! go: for each J of `--jobs` it runs `live` (as a library call, no churn,
//! default worker settings) and then BullMQ's `run.js` from
//! `benches/peers/bullmq` (`--aligned`, so both see every job due at the
//! same whole seconds). Each run has its own private redis-server, started
//! from the same binary, and the runs go one after the other so they never
//! compete for the cores.
//!
//! Both harnesses audit with the same rules (expected fires in the window,
//! misses, duplicates, lateness = start − scheduled by nearest rank) and
//! count Redis work the same way (`INFO commandstats` deltas including
//! script-internal calls, `INFO cpu`), so the table can put them in one
//! row: lateness, misses and duplicates, commands and redis-server CPU per
//! fire, BullMQ ÷ shardcron ratios, and the highest rate each system
//! sustained (p99 < 1 s, no miss) among the points.
//!
//! Exit codes: 0 every run completed (misses are results, not failures),
//! 1 a run failed or run.js's report could not be parsed (what was measured
//! so far is written), 2 invalid arguments, 3 a prerequisite is missing
//! (node, npm, the BullMQ folder or its packages, redis-server).
//!
//! [`compare`] holds the pure part (parsing, ratios, table), [`bullmq`]
//! the Node.js side.

pub mod bullmq;
pub mod compare;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args as _, FromArgMatches as _};
use shardcron_testkit::REDIS_SERVER_ENV;

use crate::cli::{LiveArgs, PeerArgs};
use crate::error::BenchError;
use crate::report::write_file;
use compare::{Comparison, Outcome, Point, Requested, Setup, SystemRun};

/// Exit code when a prerequisite is missing.
pub const EXIT_MISSING: u8 = 3;

/// Runs `peer`, prints the table on stdout; see the module docs for the
/// exit codes.
pub fn run(args: &PeerArgs) -> ExitCode {
    match measure(args) {
        Ok(comparison) => {
            print!("{}", compare::markdown(&comparison));
            if comparison.complete() {
                ExitCode::SUCCESS
            } else {
                eprintln!("shardcron-bench peer: some runs failed (see the table)");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("shardcron-bench peer: {error}");
            match error {
                BenchError::InvalidArgs(_) => ExitCode::from(2),
                BenchError::Missing { .. } => ExitCode::from(EXIT_MISSING),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Whole seconds of `d`, at least `min`.
fn whole_seconds(d: Duration, option: &str, min: u64) -> Result<u64, BenchError> {
    if d.subsec_nanos() != 0 || d.as_secs() < min {
        return Err(BenchError::InvalidArgs(format!(
            "{option} must be whole seconds, at least {min}s"
        )));
    }
    Ok(d.as_secs())
}

/// The redis-server both systems start: `--redis-server`, else
/// `SHARDCRON_REDIS_SERVER`, else `redis-server` on `PATH` (as the test
/// kit resolves it), made absolute.
fn resolve_redis_server(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    let missing = |what: String| {
        BenchError::Missing {
        what,
        hint: format!(
            "install it (apt-get install redis-server), set {REDIS_SERVER_ENV} or pass --redis-server PATH"
        ),
    }
    };
    let named = explicit.map(Path::to_owned).or_else(|| {
        std::env::var_os(REDIS_SERVER_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let found = match named {
        Some(path) if path.components().count() > 1 => path.is_file().then_some(path),
        Some(name) => on_path(&name),
        None => on_path(Path::new("redis-server")),
    };
    let path = found.ok_or_else(|| missing("redis-server (not found)".to_owned()))?;
    std::path::absolute(&path).map_err(|e| BenchError::io("resolving", &path, e))
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn first_line_of(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// The `live` options of one point, parsed like the command line so every
/// other option keeps `live`'s default.
fn live_args(
    args: &PeerArgs,
    jobs: u32,
    redis_server: &Path,
    out: &Path,
) -> Result<LiveArgs, BenchError> {
    let argv: Vec<OsString> = vec![
        "live".into(),
        "--workers".into(),
        args.workers.to_string().into(),
        "--jobs".into(),
        jobs.to_string().into(),
        "--duration".into(),
        format!("{}s", args.duration.as_secs()).into(),
        // The same warm-up as BullMQ's: both windows measure the sustained
        // rate, not the catch-up of a fleet's first seconds.
        "--warmup".into(),
        format!("{}s", args.warmup.as_secs()).into(),
        "--redis-server".into(),
        redis_server.into(),
        "--out".into(),
        out.into(),
        "--no-charts".into(),
    ];
    let invalid = |e: clap::Error| BenchError::InvalidArgs(format!("live at J={jobs}: {e}"));
    let matches = LiveArgs::augment_args(clap::Command::new("live"))
        .try_get_matches_from(argv)
        .map_err(invalid)?;
    LiveArgs::from_arg_matches(&matches).map_err(invalid)
}

/// Checks the prerequisites, runs both systems at every point (writing
/// `peer.md` and `peer.json` after each) and returns the comparison.
///
/// # Errors
///
/// Invalid arguments, a missing prerequisite ([`BenchError::Missing`]),
/// run.js's report that cannot be parsed, or a file that cannot be
/// written. A run that fails on its own is recorded in the comparison
/// instead.
pub fn measure(args: &PeerArgs) -> Result<Comparison, BenchError> {
    let duration_s = whole_seconds(args.duration, "--duration", 1)?;
    let warmup_s = whole_seconds(args.warmup, "--warmup", 0)?;
    let redis_server = resolve_redis_server(args.redis_server.as_deref())?;
    let out =
        std::path::absolute(&args.out).map_err(|e| BenchError::io("resolving", &args.out, e))?;
    let plans = args
        .jobs
        .0
        .iter()
        .map(|&jobs| {
            let dir = out.join(format!("shardcron-j{jobs}"));
            live_args(args, jobs, &redis_server, &dir).map(|live| (jobs, live))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = std::env::current_dir().map_err(|e| BenchError::io("reading", ".", e))?;
    let dir = bullmq::find_dir(args.bullmq_dir.as_deref(), &cwd)?;
    let node_version = bullmq::check_node(&args.node)?;
    bullmq::ensure_packages(&dir, &args.npm)?;
    std::fs::create_dir_all(&out).map_err(|e| BenchError::io("creating directory", &out, e))?;

    let mut setup = Setup {
        workers: args.workers,
        duration_s,
        warmup_s,
        concurrency: args.concurrency,
        redis_version: compare::redis_version(&first_line_of(&redis_server)),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        redis_server: redis_server.clone(),
        node_version,
        bullmq_version: String::new(),
        shardcron_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    eprintln!(
        "peer: J = {:?}, {} workers, {duration_s} s windows; redis-server {}; BullMQ from {}",
        args.jobs.0,
        args.workers,
        setup.redis_version,
        dir.display()
    );
    let mut points = Vec::new();
    for (jobs, live) in plans {
        eprintln!("peer: J={jobs}: shardcron");
        let load_sc = load_average();
        let shardcron = match crate::live::measure(&live) {
            Ok(report) => {
                eprint!("{}", crate::live::output::summary_text(&report));
                Outcome::Measured(SystemRun::from_live(&report, live.out.join("live.json")))
            }
            Err(error) => {
                eprintln!("peer: shardcron at J={jobs} failed: {error}");
                Outcome::Failed {
                    error: error.to_string(),
                }
            }
        };
        eprintln!("peer: J={jobs}: BullMQ");
        let load_bm = load_average();
        let report = out.join(format!("bullmq-j{jobs}.json"));
        let invocation = bullmq::Invocation {
            node: &args.node,
            dir: &dir,
            redis_server: &redis_server,
            requested: Requested {
                jobs,
                workers: args.workers,
                duration_s,
            },
            warmup_s,
            concurrency: args.concurrency,
            out: &report,
        };
        let bullmq = match bullmq::run_point(&invocation) {
            Ok(Ok((run, versions))) => {
                setup.bullmq_version = versions.bullmq;
                Outcome::Measured(run)
            }
            Ok(Err(error)) => {
                eprintln!("peer: BullMQ at J={jobs} failed: {error}");
                Outcome::Failed { error }
            }
            Err(error) => {
                // Keep what was measured, this point's shardcron run
                // included, before stopping.
                let failed = Outcome::Failed {
                    error: error.to_string(),
                };
                points.push(Point::new(jobs, shardcron, failed));
                write_results(&out, &Comparison::new(setup, points))?;
                return Err(error);
            }
        };
        let mut point = Point::new(jobs, shardcron, bullmq);
        point.load_before = compare::LoadBefore {
            shardcron: load_sc,
            bullmq: load_bm,
        };
        points.push(point);
        write_results(&out, &Comparison::new(setup.clone(), points.clone()))?;
    }
    let comparison = Comparison::new(setup, points);
    eprintln!(
        "wrote {} and {}",
        out.join("peer.md").display(),
        out.join("peer.json").display()
    );
    Ok(comparison)
}

/// The machine's 1-minute load average, where `/proc/loadavg` exists.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(compare::parse_loadavg)
}

/// Writes `peer.md` (the table) and `peer.json` (everything).
fn write_results(out: &Path, comparison: &Comparison) -> Result<(), BenchError> {
    write_file(&out.join("peer.md"), &compare::markdown(comparison))?;
    write_file(
        &out.join("peer.json"),
        &serde_json::to_string_pretty(comparison)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command as Sub};
    use clap::Parser as _;

    fn peer(extra: &[&str]) -> PeerArgs {
        let argv = ["shardcron-bench", "peer"].iter().chain(extra);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Sub::Peer(args),
            }) => args,
            other => panic!("peer should parse: {other:?}"),
        }
    }

    #[test]
    fn options_and_live_args() {
        let args = peer(&[]);
        assert_eq!(args.jobs.0, vec![1000, 5000, 10_000, 20_000]);
        assert_eq!((args.workers, args.duration.as_secs()), (4, 30));
        let args = peer(&["--jobs", "5000,1000", "--workers", "2", "--duration", "20s"]);
        assert_eq!(args.jobs.0, vec![1000, 5000]);
        let live = live_args(
            &args,
            5000,
            Path::new("/r/redis-server"),
            Path::new("/o/sc"),
        )
        .unwrap();
        assert_eq!((live.workers, live.jobs), (2, 5000));
        assert_eq!(live.duration, Duration::from_secs(20));
        assert_eq!(live.warmup, Duration::from_secs(10), "BullMQ's warm-up");
        assert_eq!(live.every, Duration::from_secs(1));
        assert_eq!(
            live.redis_server.as_deref(),
            Some(Path::new("/r/redis-server"))
        );
        assert!(live.no_charts && live.churn.is_none() && !live.fast);
        // live's own limits apply.
        let e = live_args(&args, 300_000, Path::new("r"), Path::new("o")).unwrap_err();
        assert!(matches!(e, BenchError::InvalidArgs(_)), "{e}");
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(
            whole_seconds(Duration::from_secs(30), "--duration", 1).unwrap(),
            30
        );
        assert!(whole_seconds(Duration::from_millis(1500), "--duration", 1).is_err());
        assert!(whole_seconds(Duration::ZERO, "--duration", 1).is_err());
        assert_eq!(whole_seconds(Duration::ZERO, "--warmup", 0).unwrap(), 0);
    }

    #[test]
    fn missing_redis_server_is_named() {
        let e = resolve_redis_server(Some(Path::new("/nonexistent/redis-server"))).unwrap_err();
        assert!(matches!(e, BenchError::Missing { .. }));
        assert!(e.to_string().starts_with("missing redis-server"), "{e}");
    }
}
