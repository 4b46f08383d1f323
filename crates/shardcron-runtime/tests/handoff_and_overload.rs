//! Handoffs and overload, audited from outside on the in-memory store.
//!
//! - A handoff must never let the new owner start a job while the old
//!   owner's run of the same job goes on ("no split brain").
//! - Overload must never drop a claimed fire: each one runs, or has a run
//!   record saying why not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardcron_coord::{Coordinator, MemoryStore, RunOutcome};
use shardcron_core::{FireId, JobSpec, RingConfig};
use shardcron_runtime::{FireContext, FnHandler, RunOutput, Worker, WorkerReport, WorkerSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const RING: RingConfig = RingConfig::new(64, 40);

/// One handler run as seen by the handler: node, job, fire, start, end, and
/// whether it saw its cancellation signal.
#[derive(Clone, Debug)]
struct Span {
    node: String,
    job: String,
    fire: String,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    cancelled: bool,
}

type Spans = Arc<Mutex<Vec<Span>>>;

/// A handler that works for `args.ms` milliseconds, or until cancelled.
fn working_handler(
    spans: Spans,
) -> FnHandler<impl Fn(FireContext) -> futures_like::BoxFut + Send + Sync + 'static> {
    FnHandler(move |ctx: FireContext| {
        let spans = spans.clone();
        Box::pin(async move {
            let ms = ctx.args.get("ms").and_then(|v| v.as_u64()).unwrap_or(0);
            let start = tokio::time::Instant::now();
            let cancelled = tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => false,
                () = ctx.cancel.cancelled() => true,
            };
            spans.lock().expect("spans").push(Span {
                node: ctx.node_id.clone(),
                job: ctx.job_id.clone(),
                fire: ctx.fire_id.to_string(),
                start,
                end: tokio::time::Instant::now(),
                cancelled,
            });
            Ok(RunOutput::default())
        }) as futures_like::BoxFut
    })
}

mod futures_like {
    use shardcron_runtime::{HandlerError, RunOutput};
    pub type BoxFut = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<RunOutput, HandlerError>> + Send>,
    >;
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<WorkerReport>,
}

fn start(store: &MemoryStore, node: &str, settings: WorkerSettings, spans: Spans) -> Running {
    let coord = Arc::new(store.coordinator("t", RING).expect("coord"));
    let worker = Worker::builder(coord)
        .node_id(node)
        .settings(settings)
        .handler("work", working_handler(spans))
        .build()
        .expect("worker");
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("run")
    });
    Running { stop, task }
}

async fn stop(r: Running) -> WorkerReport {
    let _ = r.stop.send(());
    r.task.await.expect("join")
}

fn job(id: &str, schedule: &str, ms: u64) -> JobSpec {
    let mut spec = JobSpec::new(id, schedule, "work");
    spec.args = serde_json::json!({ "ms": ms });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_never_lets_two_runs_of_one_job_overlap() {
    let store = MemoryStore::new();
    let admin = store.coordinator("t", RING).expect("coord");
    // Runs longer than the period (overlap `skip`): there is always a run in
    // flight, but each job's shard has a short idle moment every 2 s.
    for i in 0..30 {
        admin
            .put_job(&job(&format!("busy-{i:02}"), "@every 1s", 1500), None)
            .await
            .expect("put");
    }
    // And one job whose shard is never idle: its handoff must give up
    // waiting, cancel the run (the handler sees it), then release.
    admin
        .put_job(&job("endless", "@every 1s", 60_000), None)
        .await
        .expect("put");
    let spans: Spans = Arc::default();
    let settings = WorkerSettings::fast();
    let a = start(&store, "a", settings.clone(), spans.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = start(&store, "b", settings.clone(), spans.clone());
    let c = start(&store, "c", settings.clone(), spans.clone());
    tokio::time::sleep(Duration::from_secs(9)).await;
    stop(c).await;
    stop(b).await;
    stop(a).await;
    let spans = spans.lock().expect("spans").clone();
    let mut by_job: BTreeMap<&str, Vec<&Span>> = BTreeMap::new();
    for s in &spans {
        by_job.entry(s.job.as_str()).or_default().push(s);
    }
    let mut overlaps = Vec::new();
    for (job, runs) in &mut by_job {
        runs.sort_by_key(|s| s.start);
        for w in runs.windows(2) {
            if w[1].start < w[0].end {
                overlaps.push(format!(
                    "{job}: {} on {} [{:?}] overlaps {} on {}",
                    w[1].fire,
                    w[1].node,
                    w[1].start - w[0].start,
                    w[0].fire,
                    w[0].node
                ));
            }
        }
    }
    assert!(
        overlaps.is_empty(),
        "two runs of one job at once: {overlaps:#?}"
    );
    let nodes: BTreeSet<&str> = spans.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        3,
        "the jobs spread over the new members: {nodes:?}"
    );
    let endless: Vec<&Span> = spans.iter().filter(|s| s.job == "endless").collect();
    assert!(
        endless.iter().any(|s| s.cancelled),
        "a run that outlived its shard's handoff saw cancellation: {endless:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_never_drops_a_claimed_fire() {
    let store = MemoryStore::new();
    let admin = store.coordinator("t", RING).expect("coord");
    // 3,000 every-second no-op jobs on one node with 4 run slots: far more
    // fires than the node can start while its loop is this busy.
    for i in 0..3000 {
        admin
            .put_job(&job(&format!("j{i:04}"), "@every 1s", 0), None)
            .await
            .expect("put");
    }
    let spans: Spans = Arc::default();
    let settings = WorkerSettings {
        concurrency: 4,
        ..WorkerSettings::fast()
    };
    let a = start(&store, "a", settings, spans.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let report = stop(a).await;
    let started: BTreeSet<String> = spans
        .lock()
        .expect("spans")
        .iter()
        .map(|s| s.fire.clone())
        .collect();
    let runs = admin.recent_runs(None, 10_000).await.expect("runs");
    let recorded: BTreeMap<String, RunOutcome> = runs
        .iter()
        .map(|r| (r.fire_id.clone(), r.outcome))
        .collect();
    let claimed = store.claimed_fires();
    assert!(
        claimed.len() > 1000,
        "the node claimed fires: {}",
        claimed.len()
    );
    let mut silent = Vec::new();
    for (job, at, _) in &claimed {
        let fire = FireId::new(job, *at).to_string();
        if !started.contains(&fire) && !recorded.contains_key(&fire) {
            silent.push(fire);
        }
    }
    assert!(
        silent.is_empty(),
        "{} of {} claimed fires neither ran nor have a record, e.g. {:?}",
        silent.len(),
        claimed.len(),
        &silent[..silent.len().min(5)]
    );
    let skipped: Vec<&String> = recorded
        .iter()
        .filter(|(_, o)| **o == RunOutcome::SkippedOverlap)
        .map(|(f, _)| f)
        .collect();
    assert!(
        skipped.is_empty(),
        "no-op runs never overlap the next fire a second later, yet {} fires were skipped as overlapping (a stale view of finished runs), e.g. {:?}",
        skipped.len(),
        &skipped[..skipped.len().min(5)]
    );
    println!(
        "overload: claimed {} (report {}), started {}, records {}",
        claimed.len(),
        report.claimed,
        started.len(),
        runs.len()
    );
}

/// Runs one node with `concurrency` run slots for 6 s over 40 every-second
/// jobs whose runs take `ms`; returns its report and the runs it started.
async fn forty_every_second(ms: u64, concurrency: usize) -> (WorkerReport, usize) {
    let store = MemoryStore::new();
    let admin = store.coordinator("t", RING).expect("coord");
    for i in 0..40 {
        admin
            .put_job(&job(&format!("j{i:02}"), "@every 1s", ms), None)
            .await
            .expect("put");
    }
    let spans: Spans = Arc::default();
    let settings = WorkerSettings {
        concurrency,
        ..WorkerSettings::fast()
    };
    let a = start(&store, "a", settings, spans.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let report = stop(a).await;
    let started = spans.lock().expect("spans").len();
    (report, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_many_fires_claimed_ahead_is_not_overload() {
    // 40 fires claimed ahead come due at each second on a node with 4 run
    // slots (a waiting line of 8): each release fills the line, and it
    // drains in 0.5 s, well within the on-time tolerance. Claiming pauses
    // meanwhile, but the node is keeping up: no overload is declared.
    let (report, started) = forty_every_second(50, 4).await;
    println!(
        "release: claimed {}, started {started}, claim pauses {}, overloads {}",
        report.claimed, report.claim_pauses, report.overloads
    );
    assert!(
        report.claim_pauses >= 1,
        "each release of 40 fires fills a waiting line of 8: {report:?}"
    );
    assert_eq!(
        report.overloads, 0,
        "a line that drains within the on-time tolerance is not overload: {report:?}"
    );
    assert!(
        started as u64 >= report.claimed.saturating_sub(40),
        "the fires claimed ran ({started} of {})",
        report.claimed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_stays_full_is_overload() {
    // 40 fires a second of 400 ms runs on 2 run slots: 16 slot-seconds of
    // work arrive each second, so the waiting line never drains.
    let (report, _) = forty_every_second(400, 2).await;
    println!(
        "persistent: claimed {}, claim pauses {}, overloads {}",
        report.claimed, report.claim_pauses, report.overloads
    );
    assert!(
        report.overloads >= 1,
        "a line full for longer than the on-time tolerance is overload: {report:?}"
    );
}
