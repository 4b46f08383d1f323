//! `shardcron demo`: a fleet of three workers in one process, audited.
//!
//! The demo shows the two promises of shardcron with nothing to set up: the
//! load spreads evenly over the workers (placement balances expected fires,
//! not shard counts; the summary gives the per-worker fire counts and their
//! max/mean, also over the time the whole fleet was up), and when one
//! leaves and rejoins its shards move without a fire being run twice or
//! skipped. By default the workers share one in-memory store (each with its
//! own coordinator, exactly like separate processes sharing Redis); with
//! `--redis URL` they use a real Redis in a throw-away namespace.
//!
//! Every fire is recorded by the handler that runs it (a Rust handler of the
//! demo, or the built-in `exec` handler wrapped by the same recorder), so the
//! closing audit compares what should have fired in the observation window
//! with what did: duplicates anywhere and misses in the window fail the demo.
//! The live output is sampled (one line per second, plus ownership changes)
//! so it stays readable at any job count.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Serialize;
use shardcron_coord::{Coordinator, MemoryStore};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_handlers::{ExecArgs, ExecHandler};
use shardcron_runtime::{
    FireContext, Handler, HandlerError, RunOutput, Worker, WorkerError, WorkerReport,
    WorkerSettings, WorkerStatus,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::args::DemoArgs;
use crate::connect::Target;
use crate::exit::CliError;

/// Node ids of the demo fleet.
pub const DEMO_NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
/// The node that leaves and rejoins.
pub const LEAVING_NODE: &str = "node-2";
/// Name of the demo's recording handler.
pub const DEMO_HANDLER: &str = "demo";
/// Fires scheduled this close to the end are not expected yet.
const END_MARGIN_MS: i64 = 1500;
/// How long the fleet may take to settle at start.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Fire ids listed in the summary per problem kind.
const LISTED: usize = 10;
/// Period of the demo's observation loop.
const TICK: Duration = Duration::from_millis(25);
/// A second's summary line is printed this long into the second, so that its
/// fires (which start a few ms after their time) are in it.
const LINE_DELAY_MS: i64 = 500;

/// What the demo runs and where.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Total run time, from start.
    pub duration: Duration,
    /// When [`LEAVING_NODE`] leaves gracefully, from start.
    pub leave_at: Duration,
    /// When it rejoins, from start.
    pub rejoin_at: Duration,
    /// Redis URL; `None` runs on an in-memory store.
    pub redis: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Worker settings.
    pub settings: WorkerSettings,
    /// Ring settings.
    pub ring: RingConfig,
}

impl DemoOptions {
    /// In-memory demo of `duration`: the node leaves after a third of it and
    /// rejoins at 60 %.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            leave_at: duration / 3,
            rejoin_at: duration.mul_f64(0.6),
            redis: None,
            namespace: format!("shardcron-demo-{}", std::process::id()),
            settings: WorkerSettings::fast(),
            ring: RingConfig::default(),
        }
    }
}

/// The closing audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DemoSummary {
    /// Jobs in the demo.
    pub jobs: usize,
    /// Observation window (scheduled times), Unix ms, inclusive.
    pub window_start_ms: i64,
    /// End of the observation window, Unix ms, inclusive.
    pub window_end_ms: i64,
    /// Fires scheduled in the window.
    pub expected: usize,
    /// Distinct expected fires that ran.
    pub seen: usize,
    /// Extra runs of a fire that had already run (anywhere in the demo).
    pub duplicates: usize,
    /// Expected fires that never ran.
    pub missed: usize,
    /// Runs in the window per node.
    pub per_node: BTreeMap<String, usize>,
    /// Runs per node of the fires scheduled while the whole fleet was up
    /// (before the leave, and after the rejoin's handoff): how evenly the
    /// placement spreads the load, without the leaving node's absence.
    pub full_fleet_per_node: BTreeMap<String, usize>,
    /// Scheduled-time spans (Unix ms, end exclusive) when the whole fleet
    /// was up.
    pub full_fleet_spans: Vec<(i64, i64)>,
    /// Time from the leave signal until the other two held every shard.
    pub leave_handoff: Option<Duration>,
    /// Time from the rejoin until all three held their shares.
    pub rejoin_handoff: Option<Duration>,
    /// Some duplicated fire ids.
    pub duplicate_fires: Vec<String>,
    /// Some missed fire ids.
    pub missed_fires: Vec<String>,
}

impl DemoSummary {
    /// The demo passes when no fire ran twice and none was missed.
    pub fn passed(&self) -> bool {
        self.duplicates == 0 && self.missed == 0
    }
}

/// `max / mean` of per-node counts over all [`DEMO_NODES`] (a node without
/// runs counts as 0); `None` when nothing ran.
pub fn max_over_mean(per_node: &BTreeMap<String, usize>) -> Option<f64> {
    let counts: Vec<usize> = DEMO_NODES
        .iter()
        .map(|n| per_node.get(*n).copied().unwrap_or(0))
        .collect();
    let total: usize = counts.iter().sum();
    let max = counts.iter().copied().max().unwrap_or(0);
    (total > 0).then(|| max as f64 * counts.len() as f64 / total as f64)
}

/// One observed run (first attempt of a fire).
#[derive(Clone, Debug)]
struct Seen {
    job: String,
    fire_id: String,
    scheduled_ms: i64,
    node: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Records each fire's first attempt, then runs the wrapped handler (if any).
struct Recorder {
    log: Log,
    inner: Option<Arc<dyn Handler>>,
}

#[async_trait]
impl Handler for Recorder {
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError> {
        if ctx.attempt == 1 {
            let seen = Seen {
                job: ctx.job_id.clone(),
                fire_id: ctx.fire_id.to_string(),
                scheduled_ms: ctx.scheduled_ms,
                node: ctx.node_id.clone(),
            };
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(seen);
        }
        match &self.inner {
            Some(inner) => inner.run(ctx).await,
            None => Ok(RunOutput::default()),
        }
    }

    fn validate_args(&self, args: &serde_json::Value) -> Result<(), String> {
        self.inner
            .as_ref()
            .map_or(Ok(()), |h| h.validate_args(args))
    }
}

/// The demo's jobs: 8 × `@every 1s`, 6 × `@every 2s`, 3 × `*/3 * * * * *`
/// on the demo's recording handler, and 3 × `@every 2s` running `true`
/// through `exec`.
pub fn demo_jobs() -> Vec<JobSpec> {
    let mut jobs = Vec::new();
    for i in 1..=8 {
        jobs.push(JobSpec::new(
            format!("every-1s-{i:02}"),
            "@every 1s",
            DEMO_HANDLER,
        ));
    }
    for i in 1..=6 {
        jobs.push(JobSpec::new(
            format!("every-2s-{i:02}"),
            "@every 2s",
            DEMO_HANDLER,
        ));
    }
    for i in 1..=3 {
        jobs.push(JobSpec::new(
            format!("cron-3s-{i:02}"),
            "*/3 * * * * *",
            DEMO_HANDLER,
        ));
    }
    for i in 1..=3 {
        let mut job = JobSpec::new(format!("exec-2s-{i:02}"), "@every 2s", "exec");
        job.args = ExecArgs::new("true").to_json();
        jobs.push(job);
    }
    jobs
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S%.3f").to_string())
}

fn clock_s(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S    ").to_string())
}

/// Writes a line; output errors (a closed pipe) do not stop the demo.
fn say(out: &mut (dyn Write + Send), line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

enum Backend {
    Memory(MemoryStore),
    Redis(String),
}

impl Backend {
    async fn coordinator(
        &self,
        namespace: &str,
        ring: RingConfig,
    ) -> Result<Arc<dyn Coordinator>, CliError> {
        Ok(match self {
            Self::Memory(store) => Arc::new(store.coordinator(namespace, ring)?),
            Self::Redis(url) => shardcron_store::open_store(url, namespace, ring).await?,
        })
    }
}

struct Member {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<WorkerReport, WorkerError>>,
    status: watch::Receiver<WorkerStatus>,
}

struct Fleet {
    backend: Backend,
    options: DemoOptions,
    log: Log,
    members: BTreeMap<String, Member>,
}

impl Fleet {
    async fn start(&mut self, node: &str) -> Result<(), CliError> {
        let coord = self
            .backend
            .coordinator(&self.options.namespace, self.options.ring)
            .await?;
        let exec: Arc<dyn Handler> = Arc::new(ExecHandler::new());
        let worker = Worker::builder(coord)
            .node_id(node)
            .settings(self.options.settings.clone())
            .handler_arc(
                DEMO_HANDLER,
                Arc::new(Recorder {
                    log: self.log.clone(),
                    inner: None,
                }),
            )
            .handler_arc(
                "exec",
                Arc::new(Recorder {
                    log: self.log.clone(),
                    inner: Some(exec),
                }),
            )
            .build()?;
        let status = worker.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        self.members.insert(
            node.to_owned(),
            Member {
                stop: Some(stop),
                task,
                status,
            },
        );
        Ok(())
    }

    /// Signals a graceful leave; the member's task is returned to await.
    fn leave(&mut self, node: &str) -> Option<JoinHandle<Result<WorkerReport, WorkerError>>> {
        let mut member = self.members.remove(node)?;
        if let Some(stop) = member.stop.take() {
            let _ = stop.send(());
        }
        Some(member.task)
    }

    /// Owned shards per live member.
    fn owned(&self) -> BTreeMap<String, usize> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.status.borrow().owned_shards))
            .collect()
    }

    /// Every live member ready, seeing exactly the live members, and every
    /// shard owned.
    fn settled(&self) -> bool {
        let n = self.members.len();
        let all_ready = self.members.values().all(|m| {
            let s = m.status.borrow();
            s.ready() && s.members.len() == n
        });
        all_ready && self.owned().values().sum::<usize>() == self.options.ring.shard_count as usize
    }

    async fn stop_all(&mut self) -> Vec<(String, Result<WorkerReport, String>)> {
        let nodes: Vec<String> = self.members.keys().cloned().collect();
        let tasks: Vec<(String, JoinHandle<_>)> = nodes
            .into_iter()
            .filter_map(|n| self.leave(&n).map(|t| (n, t)))
            .collect();
        let mut results = Vec::new();
        for (node, task) in tasks {
            let result = match task.await {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("worker task failed: {e}")),
            };
            results.push((node, result));
        }
        results
    }
}

/// Turns the fire log into one line per scheduled second: fires of that
/// second per node and one sample fire. Fires that arrive after their
/// second's line was printed (caught up after a handoff) are counted as late
/// in the next line.
struct SecondTicker {
    /// Last second printed.
    printed: i64,
    /// Log entries already looked at.
    scanned: usize,
    /// Fires of seconds not printed yet, by second.
    pending: BTreeMap<i64, Vec<Seen>>,
    /// Fires that arrived after their second was printed.
    late: usize,
}

impl SecondTicker {
    fn new(printed: i64) -> Self {
        Self {
            printed,
            scanned: 0,
            pending: BTreeMap::new(),
            late: 0,
        }
    }

    fn collect(&mut self, log: &Log) {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        for s in log.iter().skip(self.scanned) {
            let second = s.scheduled_ms.div_euclid(1000);
            if second <= self.printed {
                self.late += 1;
            } else {
                self.pending.entry(second).or_default().push(s.clone());
            }
        }
        self.scanned = log.len();
    }

    fn lines(&mut self, now_ms: i64) -> Vec<String> {
        let mut lines = Vec::new();
        while (self.printed + 1) * 1000 + LINE_DELAY_MS <= now_ms {
            self.printed += 1;
            let fires = self.pending.remove(&self.printed).unwrap_or_default();
            let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &fires {
                *per_node.entry(s.node.as_str()).or_default() += 1;
            }
            let split = per_node
                .iter()
                .map(|(n, c)| format!("{n} {c:>2}"))
                .collect::<Vec<_>>()
                .join("  ");
            let sample = fires.last().map_or_else(String::new, |s| {
                format!("   e.g. job {} fire {} on {}", s.job, s.fire_id, s.node)
            });
            let late = match std::mem::take(&mut self.late) {
                0 => String::new(),
                n => format!("   (+{n} earlier fire(s) caught up late)"),
            };
            lines.push(format!(
                "{}  fires {:>3}   {split}{sample}{late}",
                clock_s(self.printed * 1000),
                fires.len()
            ));
        }
        lines
    }
}

fn format_owned(owned: &BTreeMap<String, usize>) -> String {
    owned
        .iter()
        .map(|(n, c)| format!("{n} {c:>4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Runs the demo, writing live output to `out`, and returns the audit.
pub async fn run_demo(
    options: &DemoOptions,
    out: &mut (dyn Write + Send),
) -> Result<DemoSummary, CliError> {
    if options.leave_at >= options.rejoin_at || options.rejoin_at >= options.duration {
        return Err(CliError::config(format!(
            "the demo needs leave-at < rejoin-at < duration, got {:?} / {:?} / {:?}",
            options.leave_at, options.rejoin_at, options.duration
        )));
    }
    let backend = match &options.redis {
        Some(url) => Backend::Redis(url.clone()),
        None => Backend::Memory(MemoryStore::new()),
    };
    let jobs = demo_jobs();
    let where_ = match &options.redis {
        Some(url) => format!(
            "Redis {} (namespace {:?})",
            shardcron_coord::redact_url(url),
            options.namespace
        ),
        None => "one in-memory store (no Redis)".to_owned(),
    };
    say(
        out,
        &format!(
            "shardcron demo: {} workers on {where_}, {} jobs, {} shards, {}s; {LEAVING_NODE} leaves at {}s and rejoins at {}s (times UTC)",
            DEMO_NODES.len(),
            jobs.len(),
            options.ring.shard_count,
            options.duration.as_secs_f64(),
            options.leave_at.as_secs_f64(),
            options.rejoin_at.as_secs_f64(),
        ),
    );

    let admin = backend
        .coordinator(&options.namespace, options.ring)
        .await?;
    for job in &jobs {
        admin.put_job(job, None).await?;
    }
    let mut fleet = Fleet {
        backend,
        options: options.clone(),
        log: Arc::new(Mutex::new(Vec::new())),
        members: BTreeMap::new(),
    };
    let started = Instant::now();
    for node in DEMO_NODES {
        fleet.start(node).await?;
    }
    while !fleet.settled() {
        if started.elapsed() > SETTLE_LIMIT {
            fleet.stop_all().await;
            return Err(CliError::failure(format!(
                "the demo fleet did not settle within {SETTLE_LIMIT:?}: owned {:?}",
                fleet.owned()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settle = started.elapsed();
    // Fires from the next whole second on must all run exactly once.
    let window_start_ms = (now_ms() / 1000 + 1) * 1000;
    say(
        out,
        &format!(
            "{}  fleet settled in {} ms: {}",
            clock(now_ms()),
            settle.as_millis(),
            format_owned(&fleet.owned())
        ),
    );

    let mut summary = DemoSummary {
        jobs: jobs.len(),
        window_start_ms,
        ..DemoSummary::default()
    };
    let mut ticker = SecondTicker::new(window_start_ms / 1000 - 1);
    let mut last_owned = fleet.owned();
    let mut left = false;
    let mut rejoined = false;
    let mut leaving: Option<(Instant, JoinHandle<Result<WorkerReport, WorkerError>>)> = None;
    let mut leave_started: Option<Instant> = None;
    let mut rejoin_started: Option<Instant> = None;
    // Start of the current span with the whole fleet up (scheduled ms).
    let mut full_since: Option<i64> = Some(window_start_ms);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= options.duration {
            break;
        }
        if !left && elapsed >= options.leave_at {
            left = true;
            say(
                out,
                &format!(
                    "{}  {LEAVING_NODE} leaves (graceful shutdown)",
                    clock(now_ms())
                ),
            );
            let now = Instant::now();
            leave_started = Some(now);
            if let Some(since) = full_since.take() {
                summary.full_fleet_spans.push((since, now_ms()));
            }
            if let Some(task) = fleet.leave(LEAVING_NODE) {
                leaving = Some((now, task));
            }
        }
        if let Some((since, task)) = leaving.take() {
            if task.is_finished() {
                match task.await {
                    Ok(Ok(_)) => say(
                        out,
                        &format!(
                            "{}  {LEAVING_NODE} stopped after {} ms (released its leases)",
                            clock(now_ms()),
                            since.elapsed().as_millis()
                        ),
                    ),
                    Ok(Err(e)) => say(
                        out,
                        &format!(
                            "{}  {LEAVING_NODE} stopped with an error: {e}",
                            clock(now_ms())
                        ),
                    ),
                    Err(e) => say(
                        out,
                        &format!("{}  {LEAVING_NODE} task failed: {e}", clock(now_ms())),
                    ),
                }
            } else {
                leaving = Some((since, task));
            }
        }
        if !rejoined && elapsed >= options.rejoin_at && leaving.is_none() {
            rejoined = true;
            say(out, &format!("{}  {LEAVING_NODE} rejoins", clock(now_ms())));
            rejoin_started = Some(Instant::now());
            fleet.start(LEAVING_NODE).await?;
        }
        if leaving.is_none() && fleet.settled() {
            if let Some(since) = leave_started.take() {
                let took = since.elapsed();
                summary.leave_handoff = Some(took);
                say(
                    out,
                    &format!(
                        "{}  handoff after leave complete in {} ms",
                        clock(now_ms()),
                        took.as_millis()
                    ),
                );
            }
            if let Some(since) = rejoin_started.take() {
                let took = since.elapsed();
                summary.rejoin_handoff = Some(took);
                // From the next whole second on, all three run their shares.
                full_since = Some((now_ms() / 1000 + 1) * 1000);
                say(
                    out,
                    &format!(
                        "{}  handoff after rejoin complete in {} ms",
                        clock(now_ms()),
                        took.as_millis()
                    ),
                );
            }
        }
        let owned = fleet.owned();
        if owned != last_owned {
            say(
                out,
                &format!("{}  ownership: {}", clock(now_ms()), format_owned(&owned)),
            );
            last_owned = owned;
        }
        ticker.collect(&fleet.log);
        for line in ticker.lines(now_ms()) {
            say(out, &line);
        }
    }
    let end_ms = now_ms();
    let results = fleet.stop_all().await;
    if let Some((_, task)) = leaving.take() {
        let _ = task.await;
    }
    for (node, result) in &results {
        if let Err(e) = result {
            say(out, &format!("{node} stopped with an error: {e}"));
        }
    }
    summary.window_end_ms = end_ms - END_MARGIN_MS;
    if let Some(since) = full_since.take() {
        if since <= summary.window_end_ms {
            summary
                .full_fleet_spans
                .push((since, summary.window_end_ms + 1));
        }
    }
    if let Backend::Redis(_) = &fleet.backend {
        for job in &jobs {
            let _ = admin.delete_job(&job.id, None).await;
        }
    }

    audit(&jobs, &fleet.log, &mut summary)?;
    say(out, &render_summary(&summary));
    Ok(summary)
}

/// Fills in expected / seen / duplicates / missed / per-node counts.
fn audit(jobs: &[JobSpec], log: &Log, summary: &mut DemoSummary) -> Result<(), CliError> {
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for s in log.iter() {
        *runs.entry(s.fire_id.as_str()).or_default() += 1;
    }
    let mut duplicates: Vec<String> = runs
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(id, _)| (*id).to_owned())
        .collect();
    duplicates.sort();
    summary.duplicates = runs.values().map(|n| n.saturating_sub(1)).sum();
    summary.duplicate_fires = duplicates.into_iter().take(LISTED).collect();
    let (start, end) = (summary.window_start_ms, summary.window_end_ms);
    for s in log
        .iter()
        .filter(|s| s.scheduled_ms >= start && s.scheduled_ms <= end)
    {
        *summary.per_node.entry(s.node.clone()).or_default() += 1;
        let full_fleet = summary
            .full_fleet_spans
            .iter()
            .any(|&(from, to)| s.scheduled_ms >= from && s.scheduled_ms < to);
        if full_fleet {
            *summary
                .full_fleet_per_node
                .entry(s.node.clone())
                .or_default() += 1;
        }
    }
    let mut missed = Vec::new();
    for spec in jobs {
        let job = spec.validate()?;
        for at in job.fires_between(start - 1, end, 100_000) {
            summary.expected += 1;
            let id = shardcron_core::FireId::new(spec.id.clone(), at).to_string();
            if runs.contains_key(id.as_str()) {
                summary.seen += 1;
            } else {
                missed.push(id);
            }
        }
    }
    summary.missed = missed.len();
    summary.missed_fires = missed.into_iter().take(LISTED).collect();
    Ok(())
}

fn format_handoff(d: Option<Duration>) -> String {
    d.map_or_else(
        || "not measured".to_owned(),
        |d| format!("{} ms", d.as_millis()),
    )
}

/// `node-1 130, node-2 126, node-3 121 (max/mean 1.03)`.
fn format_split(per_node: &BTreeMap<String, usize>) -> String {
    let split = per_node
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    match max_over_mean(per_node) {
        Some(ratio) => format!("{split} (max/mean {ratio:.2})"),
        None => "no runs".to_owned(),
    }
}

/// The closing summary as text.
pub fn render_summary(s: &DemoSummary) -> String {
    let mut text = String::from("\nsummary\n");
    text.push_str(&format!(
        "  window      {} .. {} (scheduled times)\n",
        clock(s.window_start_ms),
        clock(s.window_end_ms)
    ));
    text.push_str(&format!("  jobs        {}\n", s.jobs));
    text.push_str(&format!("  expected    {}\n", s.expected));
    text.push_str(&format!("  seen        {}\n", s.seen));
    text.push_str(&format!("  duplicates  {}\n", s.duplicates));
    text.push_str(&format!("  missed      {}\n", s.missed));
    text.push_str(&format!("  per worker  {}\n", format_split(&s.per_node)));
    if !s.full_fleet_per_node.is_empty() {
        text.push_str(&format!(
            "  all {} up    {}\n",
            DEMO_NODES.len(),
            format_split(&s.full_fleet_per_node)
        ));
    }
    text.push_str(&format!(
        "  handoff     leave {}, rejoin {}\n",
        format_handoff(s.leave_handoff),
        format_handoff(s.rejoin_handoff)
    ));
    if !s.duplicate_fires.is_empty() {
        text.push_str(&format!("  duplicated  {}\n", s.duplicate_fires.join(", ")));
    }
    if !s.missed_fires.is_empty() {
        text.push_str(&format!("  missed ids  {}\n", s.missed_fires.join(", ")));
    }
    text.push_str(if s.passed() {
        "  result      OK: every fire ran exactly once\n"
    } else {
        "  result      FAILED\n"
    });
    text
}

/// Runs `shardcron demo` from the command line. Redis is used only when
/// `--redis` was given on the command line (not from the environment, so an
/// exported production URL is never used by accident); likewise a
/// `--namespace` given on the command line replaces the throw-away one.
pub async fn run_cli(
    target: &Target,
    redis_explicit: bool,
    namespace_explicit: bool,
    args: DemoArgs,
) -> Result<(), CliError> {
    let mut options = DemoOptions::new(args.duration);
    if let Some(at) = args.leave_at {
        options.leave_at = at;
    }
    if let Some(at) = args.rejoin_at {
        options.rejoin_at = at;
    }
    if redis_explicit {
        options.redis = Some(target.url.clone());
    }
    if namespace_explicit {
        options.namespace = target.namespace.clone();
    }
    let mut stdout = std::io::stdout();
    let summary = run_demo(&options, &mut stdout).await?;
    if summary.passed() {
        Ok(())
    } else {
        Err(CliError::failure(format!(
            "demo failed: {} duplicate and {} missed fire(s)",
            summary.duplicates, summary.missed
        )))
    }
}
