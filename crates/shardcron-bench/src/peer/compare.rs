//! The pure half of `peer`: one system's figures at one job rate
//! ([`SystemRun`], from a [`LiveReport`] or from the JSON that BullMQ's
//! `run.js` writes), the side-by-side [`Point`]s with their ratios, the
//! sustained rate of each system and the markdown table.
//!
//! Nothing here starts a process or touches a file, so the parsing, the
//! ratios and the table are unit-tested without Redis or Node.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::live::LiveReport;

/// Lateness p99 below which a point counts as sustained, ms.
pub const SUSTAINED_P99_MS: i64 = 1000;

/// What one system did at one job rate: the figures the table compares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemRun {
    /// `shardcron <version>` or `BullMQ <version>`.
    pub system: String,
    /// Jobs, each firing every second.
    pub jobs: u32,
    /// Workers (shardcron: in-process workers; BullMQ: worker processes).
    pub workers: u32,
    /// Length of the measured window, s.
    pub duration_s: f64,
    /// Fires due in the window.
    pub expected: u64,
    /// Distinct fires that ran.
    pub fired: u64,
    /// Fires due that never ran.
    pub misses: u64,
    /// Extra runs of a fire that already ran.
    pub duplicates: u64,
    /// Runs at an instant the schedule does not have.
    pub unexpected: u64,
    /// Lateness (start − scheduled) median, ms; `None` without runs.
    pub lateness_p50_ms: Option<i64>,
    /// Lateness 99th percentile, ms.
    pub lateness_p99_ms: Option<i64>,
    /// Largest lateness, ms.
    pub lateness_max_ms: Option<i64>,
    /// Distinct fires per second of the window.
    pub fires_per_s: f64,
    /// Redis commands per fire (`INFO commandstats`, script-internal calls
    /// included).
    pub commands_per_fire: f64,
    /// redis-server CPU seconds per 1,000 fires (`INFO cpu`).
    pub redis_cpu_s_per_1000_fires: f64,
    /// Worker CPU seconds per 1,000 fires (shardcron: the bench process;
    /// BullMQ: the sum over its worker processes), when known.
    pub worker_cpu_s_per_1000_fires: Option<f64>,
    /// The system's own full report.
    pub report: PathBuf,
}

impl SystemRun {
    /// Figures of a `live` run whose files went to `report`.
    pub fn from_live(report: &LiveReport, path: PathBuf) -> Self {
        let a = &report.audit;
        let ran = a.fired + a.duplicates + a.unexpected > 0;
        let some = |ms: i64| ran.then_some(ms);
        Self {
            system: format!("shardcron {}", env!("CARGO_PKG_VERSION")),
            jobs: report.jobs,
            workers: report.workers,
            duration_s: (report.window.1 - report.window.0) as f64 / 1000.0,
            expected: a.expected,
            fired: a.fired,
            misses: a.misses,
            duplicates: a.duplicates,
            unexpected: a.unexpected,
            lateness_p50_ms: some(a.lateness.p50_ms),
            lateness_p99_ms: some(a.lateness.p99_ms),
            lateness_max_ms: some(a.lateness.max_ms),
            fires_per_s: report.fires_per_s,
            commands_per_fire: report.commands_per_fire,
            redis_cpu_s_per_1000_fires: report.redis_cpu_s_per_1000_fires,
            worker_cpu_s_per_1000_fires: Some(report.process_cpu_s_per_1000_fires),
            report: path,
        }
    }

    /// True when the point counts as sustained: every due fire ran exactly
    /// once (no miss, duplicate or off-schedule run) and lateness p99 stayed
    /// below [`SUSTAINED_P99_MS`].
    pub fn sustained(&self) -> bool {
        self.misses == 0
            && self.duplicates == 0
            && self.unexpected == 0
            && self.fired > 0
            && self
                .lateness_p99_ms
                .is_some_and(|p99| p99 < SUSTAINED_P99_MS)
    }
}

/// The part of run.js's JSON report that `peer` reads (the report has more:
/// per-second lateness, per-command counts, the tail, the producer).
#[derive(Debug, Deserialize)]
struct RunJsReport {
    peer: String,
    bullmq: String,
    node: String,
    redis: String,
    jobs: u32,
    workers: u32,
    duration_s: f64,
    expected: u64,
    fired: u64,
    misses: u64,
    duplicates: u64,
    unexpected: u64,
    lateness: RunJsLateness,
    fires_per_s: f64,
    commands_per_fire: f64,
    redis_cpu_s_per_1000_fires: f64,
    worker_cpu_s_per_1000_fires: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RunJsLateness {
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// Versions of the peer's software, as run.js reported them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerVersions {
    /// BullMQ package version.
    pub bullmq: String,
    /// `process.version` of Node.js.
    pub node: String,
    /// `redis-server --version`.
    pub redis: String,
}

/// What a run of `run.js` was asked for, checked against what it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requested {
    /// `--jobs`.
    pub jobs: u32,
    /// `--workers`.
    pub workers: u32,
    /// `--duration`, s.
    pub duration_s: u64,
}

/// Parses the JSON report run.js wrote to `origin` (`text`) into the
/// compared figures and the versions it ran with.
///
/// # Errors
///
/// [`BenchError::PeerOutput`] when the text is not run.js's JSON report,
/// a field is missing or of the wrong type, or the run is not the one
/// `requested`.
pub fn parse_bullmq_report(
    text: &str,
    origin: &str,
    requested: Requested,
) -> Result<(SystemRun, PeerVersions), BenchError> {
    let fail = |message: String| BenchError::PeerOutput {
        origin: origin.to_owned(),
        message,
    };
    let r: RunJsReport =
        serde_json::from_str(text).map_err(|e| fail(format!("not run.js's JSON report ({e})")))?;
    if r.peer != "bullmq" {
        return Err(fail(format!("peer is {:?}, expected \"bullmq\"", r.peer)));
    }
    if r.jobs != requested.jobs
        || r.workers != requested.workers
        || r.duration_s != requested.duration_s as f64
    {
        return Err(fail(format!(
            "it reports jobs {} workers {} duration {} s; asked for {} / {} / {} s",
            r.jobs,
            r.workers,
            r.duration_s,
            requested.jobs,
            requested.workers,
            requested.duration_s
        )));
    }
    let numbers = [
        r.fires_per_s,
        r.commands_per_fire,
        r.redis_cpu_s_per_1000_fires,
    ];
    if numbers.iter().any(|x| !x.is_finite()) {
        return Err(fail("a figure is not a finite number".to_owned()));
    }
    let ms = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| x.round() as i64);
    let run = SystemRun {
        system: format!("BullMQ {}", r.bullmq),
        jobs: r.jobs,
        workers: r.workers,
        duration_s: r.duration_s,
        expected: r.expected,
        fired: r.fired,
        misses: r.misses,
        duplicates: r.duplicates,
        unexpected: r.unexpected,
        lateness_p50_ms: ms(r.lateness.p50_ms),
        lateness_p99_ms: ms(r.lateness.p99_ms),
        lateness_max_ms: ms(r.lateness.max_ms),
        fires_per_s: r.fires_per_s,
        commands_per_fire: r.commands_per_fire,
        redis_cpu_s_per_1000_fires: r.redis_cpu_s_per_1000_fires,
        worker_cpu_s_per_1000_fires: r.worker_cpu_s_per_1000_fires.filter(|x| x.is_finite()),
        report: PathBuf::from(origin),
    };
    let versions = PeerVersions {
        bullmq: r.bullmq,
        node: r.node,
        redis: r.redis,
    };
    Ok((run, versions))
}

/// One system's result at one point: its figures, or why it has none.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The run completed and was audited.
    Measured(SystemRun),
    /// The run failed before it had results.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl Outcome {
    /// The figures, if the run completed.
    pub fn run(&self) -> Option<&SystemRun> {
        match self {
            Self::Measured(run) => Some(run),
            Self::Failed { .. } => None,
        }
    }
}

/// BullMQ ÷ shardcron for the figures where lower is better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// Lateness p99.
    pub lateness_p99: Option<f64>,
    /// Redis commands per fire.
    pub commands_per_fire: Option<f64>,
    /// redis-server CPU per 1,000 fires.
    pub redis_cpu: Option<f64>,
}

/// `numerator / denominator` when both are finite and the denominator is
/// above zero.
pub fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (numerator.is_finite() && denominator.is_finite() && denominator > 0.0)
        .then(|| numerator / denominator)
}

impl Ratios {
    /// The ratios of `bullmq` over `shardcron`.
    pub fn of(shardcron: &SystemRun, bullmq: &SystemRun) -> Self {
        let p99 = |r: &SystemRun| r.lateness_p99_ms.map(|v| v as f64);
        Self {
            lateness_p99: p99(bullmq)
                .zip(p99(shardcron))
                .and_then(|(b, s)| ratio(b, s)),
            commands_per_fire: ratio(bullmq.commands_per_fire, shardcron.commands_per_fire),
            redis_cpu: ratio(
                bullmq.redis_cpu_s_per_1000_fires,
                shardcron.redis_cpu_s_per_1000_fires,
            ),
        }
    }
}

/// Both systems at one job rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Jobs, each firing every second (= fires due per second).
    pub jobs: u32,
    /// shardcron's run.
    pub shardcron: Outcome,
    /// BullMQ's run.
    pub bullmq: Outcome,
    /// BullMQ ÷ shardcron (empty unless both were measured).
    pub ratios: Ratios,
    /// The machine's 1-minute load average just before each run, when
    /// known: the runs share the machine with whatever else runs on it.
    pub load_before: LoadBefore,
}

/// 1-minute load averages (`/proc/loadavg`) before the two runs of a point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LoadBefore {
    /// Before shardcron's run.
    pub shardcron: Option<f64>,
    /// Before BullMQ's run.
    pub bullmq: Option<f64>,
}

/// The 1-minute load average of a `/proc/loadavg` line.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The version of a `redis-server --version` line (`Redis server
/// v=7.0.15 sha=…` → `7.0.15`); the trimmed line when it has none.
pub fn redis_version(line: &str) -> String {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .unwrap_or(line.trim())
        .to_owned()
}

impl Point {
    /// A point with its ratios computed.
    pub fn new(jobs: u32, shardcron: Outcome, bullmq: Outcome) -> Self {
        let ratios = match (shardcron.run(), bullmq.run()) {
            (Some(s), Some(b)) => Ratios::of(s, b),
            _ => Ratios::default(),
        };
        Self {
            jobs,
            shardcron,
            bullmq,
            ratios,
            load_before: LoadBefore::default(),
        }
    }
}

/// The highest rate a system sustained among the points measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SustainedRate {
    /// Jobs of that point.
    pub jobs: u32,
    /// Fires per second measured there.
    pub fires_per_s: f64,
    /// It is the largest point measured, so the system may sustain more:
    /// the rate is a lower bound.
    pub lower_bound: bool,
}

/// How far the ratio of two sustained rates can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Both rates are below the largest point: the ratio as measured.
    Exact,
    /// Only shardcron's rate is a lower bound: the true ratio is at least this.
    AtLeast,
    /// Only BullMQ's rate is a lower bound: the true ratio is at most this.
    AtMost,
    /// Both sustained the largest point: no ratio can be told.
    Undetermined,
}

/// The sustained rates of both systems and their ratio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sustained {
    /// shardcron's highest sustained point, if any.
    pub shardcron: Option<SustainedRate>,
    /// BullMQ's.
    pub bullmq: Option<SustainedRate>,
    /// shardcron ÷ BullMQ fires/s, when both sustained a point.
    pub ratio: Option<f64>,
    /// How to read the ratio.
    pub bound: Option<Bound>,
}

/// The highest sustained rate (see [`SystemRun::sustained`]) of the runs
/// `pick` selects from `points`.
pub fn sustained_rate(
    points: &[Point],
    pick: impl Fn(&Point) -> &Outcome,
) -> Option<SustainedRate> {
    let largest = points.iter().map(|p| p.jobs).max()?;
    points
        .iter()
        .filter_map(|p| pick(p).run().filter(|r| r.sustained()).map(|r| (p.jobs, r)))
        .max_by_key(|(jobs, _)| *jobs)
        .map(|(jobs, run)| SustainedRate {
            jobs,
            fires_per_s: run.fires_per_s,
            lower_bound: jobs == largest,
        })
}

/// Both systems' sustained rates and their ratio.
pub fn sustained(points: &[Point]) -> Sustained {
    let shardcron = sustained_rate(points, |p| &p.shardcron);
    let bullmq = sustained_rate(points, |p| &p.bullmq);
    let (ratio, bound) = match (shardcron, bullmq) {
        (Some(s), Some(b)) => {
            let bound = match (s.lower_bound, b.lower_bound) {
                (false, false) => Bound::Exact,
                (true, false) => Bound::AtLeast,
                (false, true) => Bound::AtMost,
                (true, true) => Bound::Undetermined,
            };
            (ratio(s.fires_per_s, b.fires_per_s), Some(bound))
        }
        _ => (None, None),
    };
    Sustained {
        shardcron,
        bullmq,
        ratio,
        bound,
    }
}

/// How the runs were set up, for the table's heading and `peer.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Setup {
    /// Workers of each system.
    pub workers: u32,
    /// Measured window, s.
    pub duration_s: u64,
    /// Warm-up before each window (both systems), s.
    pub warmup_s: u64,
    /// Concurrency per BullMQ worker.
    pub concurrency: u32,
    /// The redis-server binary both systems ran.
    pub redis_server: PathBuf,
    /// Its version (`7.0.15`).
    pub redis_version: String,
    /// Cores of the machine (both systems share them, one run at a time).
    pub cores: usize,
    /// `node --version`.
    pub node_version: String,
    /// The BullMQ version run.js reported (empty until one run reported).
    pub bullmq_version: String,
    /// shardcron's crate version.
    pub shardcron_version: String,
}

/// Everything `peer` measured (`peer.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// How the runs were set up.
    pub setup: Setup,
    /// One point per job rate, in the order measured.
    pub points: Vec<Point>,
    /// Sustained rates among the points.
    pub sustained: Sustained,
}

impl Comparison {
    /// The comparison of `points`.
    pub fn new(setup: Setup, points: Vec<Point>) -> Self {
        let sustained = sustained(&points);
        Self {
            setup,
            points,
            sustained,
        }
    }

    /// True when every run of every point completed.
    pub fn complete(&self) -> bool {
        self.points
            .iter()
            .all(|p| p.shardcron.run().is_some() && p.bullmq.run().is_some())
    }
}

fn ms(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn lateness_cell(outcome: &Outcome) -> String {
    match outcome.run() {
        Some(r) => format!("{}/{} ms", ms(r.lateness_p50_ms), ms(r.lateness_p99_ms)),
        None => "failed".to_owned(),
    }
}

fn pair(point: &Point, cell: impl Fn(&SystemRun) -> String) -> String {
    let side = |o: &Outcome| o.run().map_or_else(|| "failed".to_owned(), &cell);
    format!("{} / {}", side(&point.shardcron), side(&point.bullmq))
}

/// A ratio as `×3.4` (two decimals below 1), `n/a` when there is none.
pub fn times(value: Option<f64>) -> String {
    match value {
        Some(v) if v < 1.0 => format!("×{v:.2}"),
        Some(v) => format!("×{v:.1}"),
        None => "n/a".to_owned(),
    }
}

fn rate_text(rate: Option<SustainedRate>) -> String {
    match rate {
        Some(r) if r.lower_bound => format!(
            "≥ {:.0} fires/s (J={}, the largest point measured)",
            r.fires_per_s, r.jobs
        ),
        Some(r) => format!("{:.0} fires/s (J={})", r.fires_per_s, r.jobs),
        None => "none of the points measured".to_owned(),
    }
}

/// The sustained-rate lines under the table.
pub fn sustained_text(s: &Sustained) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Sustained fires/s with lateness p99 < {} s and 0 misses (and no duplicate), among the points measured:",
        SUSTAINED_P99_MS / 1000
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "* shardcron: {}", rate_text(s.shardcron));
    let _ = writeln!(out, "* BullMQ: {}", rate_text(s.bullmq));
    let ratio = match (s.ratio, s.bound) {
        (_, Some(Bound::Undetermined)) => {
            "not determined: both sustained the largest point measured".to_owned()
        }
        (Some(r), Some(Bound::AtLeast)) => format!("≥ {r:.1}"),
        (Some(r), Some(Bound::AtMost)) => format!("≤ {r:.1}"),
        (Some(r), _) => format!("{r:.1}"),
        (None, _) => "n/a (a system sustained none of the points)".to_owned(),
    };
    let _ = writeln!(out, "* ratio shardcron ÷ BullMQ: {ratio}");
    out
}

/// The markdown table (with a heading line, the table, the footnotes for
/// failed runs and the sustained rates): stdout and `peer.md`.
pub fn markdown(c: &Comparison) -> String {
    let s = &c.setup;
    let mut out = String::new();
    let bullmq = if s.bullmq_version.is_empty() {
        "BullMQ".to_owned()
    } else {
        format!("BullMQ {}", s.bullmq_version)
    };
    let _ = writeln!(
        out,
        "Peer comparison: shardcron {} vs {bullmq}, {} workers each, every job firing every second, \
         {} s window per run; one run at a time, each on its own redis-server {}; \
         Node {}, BullMQ `--aligned`, concurrency {}; each window after a {} s warm-up; {} cores.",
        s.shardcron_version,
        s.workers,
        s.duration_s,
        s.redis_version,
        s.node_version,
        s.concurrency,
        s.warmup_s,
        s.cores
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| J jobs/s | shardcron lateness p50/p99 | BullMQ lateness p50/p99 | misses+dups (sc / BullMQ) \
         | Redis cmds/fire (sc / BullMQ) | Redis CPU s per 1k fires (sc / BullMQ) | ratios |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
    for p in &c.points {
        let ratios = if p.shardcron.run().is_some() && p.bullmq.run().is_some() {
            format!(
                "p99 {}, cmds {}, CPU {}",
                times(p.ratios.lateness_p99),
                times(p.ratios.commands_per_fire),
                times(p.ratios.redis_cpu)
            )
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            p.jobs,
            lateness_cell(&p.shardcron),
            lateness_cell(&p.bullmq),
            pair(p, |r| format!(
                "{}+{}",
                r.misses,
                r.duplicates + r.unexpected
            )),
            pair(p, |r| format!("{:.1}", r.commands_per_fire)),
            pair(p, |r| format!("{:.3}", r.redis_cpu_s_per_1000_fires)),
            ratios
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Ratios are BullMQ ÷ shardcron (above 1: BullMQ is later or costs more). \
         Duplicates include runs off the schedule's instants."
    );
    let load = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
    let loads: Vec<String> = c
        .points
        .iter()
        .filter(|p| p.load_before.shardcron.is_some() || p.load_before.bullmq.is_some())
        .map(|p| {
            format!(
                "J={} {} / {}",
                p.jobs,
                load(p.load_before.shardcron),
                load(p.load_before.bullmq)
            )
        })
        .collect();
    if !loads.is_empty() {
        let _ = writeln!(
            out,
            "1-minute load average before each run (sc / BullMQ): {}.",
            loads.join(", ")
        );
    }
    for p in &c.points {
        for (name, outcome) in [("shardcron", &p.shardcron), ("BullMQ", &p.bullmq)] {
            if let Outcome::Failed { error } = outcome {
                let _ = writeln!(out, "\n{name} at J={} failed: {error}", p.jobs);
            }
        }
    }
    let _ = writeln!(out);
    out.push_str(&sustained_text(&c.sustained));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTED: Requested = Requested {
        jobs: 1000,
        workers: 4,
        duration_s: 30,
    };

    /// A trimmed report as run.js writes it (extra fields are ignored).
    fn runjs_json(p99: &str, misses: u64) -> String {
        format!(
            r#"{{
  "peer": "bullmq", "bullmq": "6.7.6", "ioredis": "6.1.0", "node": "v20.20.2",
  "redis": "Redis server v=7.0.15", "jobs": 1000, "every_ms": 1000, "workers": 4,
  "concurrency": 100, "aligned": true, "duration_s": 30,
  "tail": {{ "complete": true, "after_window_ms": 812, "lowest_next_ms": 1 }},
  "expected": 30000, "fired": {fired}, "misses": {misses}, "duplicates": 0, "unexpected": 0,
  "lateness": {{ "p50_ms": 170, "p99_ms": {p99}, "max_ms": 269, "min_ms": 3 }},
  "per_second": [],
  "fires_per_s": {fps}, "redis_commands": 1342500, "commands_per_fire": 44.75,
  "per_command_per_fire": {{ "xadd": 5 }}, "redis_cpu_s": 3.18,
  "redis_cpu_s_per_1000_fires": 0.106, "worker_cpu_s": 4.8,
  "worker_cpu_s_per_1000_fires": 0.16, "clean": true
}}"#,
            fired = 30000 - misses,
            fps = (30000 - misses) as f64 / 30.0,
        )
    }

    fn run(system: &str, jobs: u32, p99: i64, misses: u64, cmds: f64, cpu: f64) -> SystemRun {
        SystemRun {
            system: system.to_owned(),
            jobs,
            workers: 4,
            duration_s: 30.0,
            expected: u64::from(jobs) * 30,
            fired: u64::from(jobs) * 30 - misses,
            misses,
            duplicates: 0,
            unexpected: 0,
            lateness_p50_ms: Some(p99 / 2),
            lateness_p99_ms: Some(p99),
            lateness_max_ms: Some(p99 + 10),
            fires_per_s: (u64::from(jobs) * 30 - misses) as f64 / 30.0,
            commands_per_fire: cmds,
            redis_cpu_s_per_1000_fires: cpu,
            worker_cpu_s_per_1000_fires: None,
            report: PathBuf::from("r.json"),
        }
    }

    #[test]
    fn parses_runjs_report() {
        let (r, versions) =
            parse_bullmq_report(&runjs_json("253", 0), "b.json", REQUESTED).unwrap();
        assert_eq!(r.system, "BullMQ 6.7.6");
        assert_eq!(
            (r.jobs, r.workers, r.expected, r.fired),
            (1000, 4, 30000, 30000)
        );
        assert_eq!(
            (r.lateness_p50_ms, r.lateness_p99_ms, r.lateness_max_ms),
            (Some(170), Some(253), Some(269))
        );
        assert!((r.commands_per_fire - 44.75).abs() < 1e-9);
        assert!((r.redis_cpu_s_per_1000_fires - 0.106).abs() < 1e-9);
        assert_eq!(r.worker_cpu_s_per_1000_fires, Some(0.16));
        assert!(r.sustained());
        assert_eq!(versions.bullmq, "6.7.6");
        assert_eq!(versions.node, "v20.20.2");
        // No run in the window: run.js writes null percentiles.
        let (r, _) = parse_bullmq_report(&runjs_json("null", 30000), "b.json", REQUESTED).unwrap();
        assert_eq!(r.lateness_p99_ms, None);
        assert!(!r.sustained());
    }

    #[test]
    fn rejects_what_is_not_runjs_report() {
        let err = |text: &str, requested| {
            parse_bullmq_report(text, "out/b.json", requested)
                .unwrap_err()
                .to_string()
        };
        let e = err("| bullmq 6.7.6 | 1000 jobs/s |", REQUESTED);
        assert!(
            e.starts_with("cannot parse out/b.json: not run.js's JSON report"),
            "{e}"
        );
        let e = err(
            &runjs_json("253", 0).replace("\"fired\"", "\"ran\""),
            REQUESTED,
        );
        assert!(e.contains("missing field `fired`"), "{e}");
        let e = err(&runjs_json("\"x\"", 0), REQUESTED);
        assert!(e.contains("invalid type"), "{e}");
        let e = err(
            &runjs_json("253", 0),
            Requested {
                jobs: 5000,
                ..REQUESTED
            },
        );
        assert!(e.contains("asked for 5000 / 4 / 30 s"), "{e}");
        let e = err(
            &runjs_json("253", 0).replace("\"bullmq\",", "\"other\","),
            REQUESTED,
        );
        assert!(e.contains("expected \"bullmq\""), "{e}");
    }

    #[test]
    fn versions_and_load() {
        assert_eq!(
            redis_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
            "7.0.15"
        );
        assert_eq!(redis_version(" custom build \n"), "custom build");
        assert_eq!(parse_loadavg("2.73 2.84 1.79 3/512 30927\n"), Some(2.73));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn ratios_are_bullmq_over_shardcron() {
        let s = run("sc", 1000, 20, 0, 10.0, 0.05);
        let b = run("b", 1000, 250, 0, 45.0, 0.1);
        let r = Ratios::of(&s, &b);
        assert_eq!(r.lateness_p99, Some(12.5));
        assert_eq!(r.commands_per_fire, Some(4.5));
        assert!((r.redis_cpu.unwrap() - 2.0).abs() < 1e-9);
        // A zero denominator has no ratio.
        let zero = run("sc", 1000, 0, 0, 0.0, 0.0);
        assert_eq!(Ratios::of(&zero, &b), Ratios::default());
        assert_eq!(ratio(1.0, f64::NAN), None);
        assert_eq!(times(Some(12.54)), "×12.5");
        assert_eq!(times(Some(0.456)), "×0.46");
        assert_eq!(times(None), "n/a");
        // A failed side leaves the ratios empty.
        let p = Point::new(
            1000,
            Outcome::Failed {
                error: "boom".to_owned(),
            },
            Outcome::Measured(b),
        );
        assert_eq!(p.ratios, Ratios::default());
    }

    fn points(sc: &[(u32, i64, u64)], bm: &[(u32, i64, u64)]) -> Vec<Point> {
        sc.iter()
            .zip(bm)
            .map(|(&(j, p99, m), &(_, bp99, bmiss))| {
                Point::new(
                    j,
                    Outcome::Measured(run("sc", j, p99, m, 10.0, 0.05)),
                    Outcome::Measured(run("b", j, bp99, bmiss, 45.0, 0.1)),
                )
            })
            .collect()
    }

    #[test]
    fn sustained_rates_and_their_bounds() {
        // shardcron holds every point, BullMQ up to 5000: at least 4x.
        let p = points(
            &[(1000, 10, 0), (5000, 20, 0), (20000, 90, 0)],
            &[(1000, 250, 0), (5000, 700, 0), (20000, 4000, 300)],
        );
        let s = sustained(&p);
        assert_eq!(
            s.shardcron.map(|r| (r.jobs, r.lower_bound)),
            Some((20000, true))
        );
        assert_eq!(
            s.bullmq.map(|r| (r.jobs, r.lower_bound)),
            Some((5000, false))
        );
        assert_eq!(s.ratio, Some(4.0));
        assert_eq!(s.bound, Some(Bound::AtLeast));
        assert!(sustained_text(&s).contains("* ratio shardcron ÷ BullMQ: ≥ 4.0"));
        // p99 at 1 s does not count, nor does a single miss.
        let p = points(
            &[(1000, 10, 0), (5000, 20, 1)],
            &[(1000, 999, 0), (5000, 1000, 0)],
        );
        let s = sustained(&p);
        assert_eq!(s.shardcron.map(|r| r.jobs), Some(1000));
        assert_eq!(s.bullmq.map(|r| r.jobs), Some(1000));
        assert_eq!((s.ratio, s.bound), (Some(1.0), Some(Bound::Exact)));
        // Both hold the largest point: no ratio can be told.
        let p = points(&[(1000, 10, 0)], &[(1000, 300, 0)]);
        assert_eq!(sustained(&p).bound, Some(Bound::Undetermined));
        assert!(sustained_text(&sustained(&p)).contains("not determined"));
        // BullMQ holds none.
        let p = points(&[(1000, 10, 0)], &[(1000, 3000, 0)]);
        let s = sustained(&p);
        assert_eq!((s.bullmq, s.ratio, s.bound), (None, None, None));
        assert!(sustained_text(&s).contains("* BullMQ: none of the points measured"));
        assert_eq!(sustained(&[]).shardcron, None);
    }

    #[test]
    fn markdown_table() {
        let mut p = points(
            &[(1000, 12, 0), (5000, 30, 0)],
            &[(1000, 250, 0), (5000, 700, 40)],
        );
        p[0].load_before = LoadBefore {
            shardcron: Some(0.42),
            bullmq: None,
        };
        p.push(Point::new(
            20000,
            Outcome::Measured(run("sc", 20000, 80, 0, 9.0, 0.04)),
            Outcome::Failed {
                error: "run.js exited with exit status: 1 without a result".to_owned(),
            },
        ));
        let c = Comparison::new(
            Setup {
                workers: 4,
                duration_s: 30,
                bullmq_version: "6.7.6".to_owned(),
                ..Setup::default()
            },
            p,
        );
        assert!(!c.complete());
        let text = markdown(&c);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("vs BullMQ 6.7.6, 4 workers each"),
            "{text}"
        );
        assert!(lines[2].starts_with("| J jobs/s | shardcron lateness p50/p99 |"));
        assert_eq!(lines[3], "| --- | --- | --- | --- | --- | --- | --- |");
        assert_eq!(
            lines[4],
            "| 1000 | 6/12 ms | 125/250 ms | 0+0 / 0+0 | 10.0 / 45.0 | 0.050 / 0.100 | p99 ×20.8, cmds ×4.5, CPU ×2.0 |"
        );
        assert!(
            lines[5].starts_with("| 5000 | 15/30 ms | 350/700 ms | 0+0 / 40+0 |"),
            "{text}"
        );
        assert_eq!(
            lines[6],
            "| 20000 | 40/80 ms | failed | 0+0 / failed | 9.0 / failed | 0.040 / failed | - |"
        );
        assert!(text.contains("BullMQ at J=20000 failed: run.js exited"));
        assert!(text.contains("before each run (sc / BullMQ): J=1000 0.4 / ?."));
        assert!(text.contains("* shardcron: ≥ 20000 fires/s (J=20000, the largest point measured)"));
        assert!(text.contains("* BullMQ: 1000 fires/s (J=1000)"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["points"][2]["bullmq"]["status"], "failed");
        assert_eq!(json["points"][0]["bullmq"]["status"], "measured");
        assert_eq!(json["points"][0]["bullmq"]["misses"], 0);
        assert_eq!(json["sustained"]["bound"], "at_least");
    }
}
