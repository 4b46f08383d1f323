//! Running claimed fires: the node-wide concurrency limit, timeouts, panics,
//! retries, cancellation and the per-job overlap policy.
//!
//! The scheduler only claims; this module decides *when* a claimed fire starts
//! (overlap policy) and turns whatever the handler does into exactly one
//! [`RunRecord`]. Each attempt runs in its own task so a panic is caught as a
//! `JoinError` and recorded as a failure instead of taking the node down.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcron_coord::{RunOutcome, RunRecord};
use shardcron_core::{FireId, Job, OverlapPolicy};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::clock::ServerClock;
use crate::handler::{FireContext, HandlerError, HandlerRegistry};
use crate::metrics as m;

/// A claimed fire waiting to run.
#[derive(Clone, Debug)]
pub struct ClaimedFire {
    /// The job (as loaded when claimed).
    pub job: Arc<Job>,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Shard of the job.
    pub shard: u32,
    /// Fencing token of the claim.
    pub token: u64,
    /// Trips when the shard's lease is lost.
    pub cancel: CancellationToken,
    /// A late fire run by catch-up: it waits for the job's previous run
    /// instead of being skipped by the overlap policy.
    pub catch_up: bool,
    /// Version of the job under which the fire was claimed.
    pub version: u64,
}

/// Starts claimed fires per overlap policy and tracks what is in flight.
pub struct Executor {
    node_id: String,
    handlers: HandlerRegistry,
    permits: Arc<Semaphore>,
    clock: ServerClock,
    records: mpsc::UnboundedSender<RunRecord>,
    running: HashMap<String, usize>,
    queued: HashMap<String, ClaimedFire>,
    backlog: HashMap<String, VecDeque<ClaimedFire>>,
    catching_up: HashSet<String>,
    tasks: JoinSet<String>,
    hard_stop: CancellationToken,
}

impl Executor {
    /// An executor for `node_id` running at most `concurrency` fires at once.
    pub fn new(
        node_id: String,
        handlers: HandlerRegistry,
        concurrency: usize,
        clock: ServerClock,
        records: mpsc::UnboundedSender<RunRecord>,
    ) -> Self {
        Self {
            node_id,
            handlers,
            permits: Arc::new(Semaphore::new(concurrency)),
            clock,
            records,
            running: HashMap::new(),
            queued: HashMap::new(),
            backlog: HashMap::new(),
            catching_up: HashSet::new(),
            tasks: JoinSet::new(),
            hard_stop: CancellationToken::new(),
        }
    }

    /// Runs in flight.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Starts `fire` now, queues it or skips it, per the job's overlap policy.
    /// Catch-up fires of a busy job wait in a backlog and run one after the
    /// other: they are missed fires being made up, not overlapping ones.
    pub fn dispatch(&mut self, fire: ClaimedFire) {
        let job_id = fire.job.id().to_owned();
        let busy = self.running.get(&job_id).copied().unwrap_or(0) > 0;
        if fire.catch_up {
            self.catching_up.insert(job_id.clone());
        }
        if !busy {
            self.start(fire);
            return;
        }
        match fire.job.spec.overlap {
            OverlapPolicy::Allow => self.start(fire),
            // While a job makes up missed fires, new ones join the line.
            _ if self.catching_up.contains(&job_id) => {
                self.backlog.entry(job_id).or_default().push_back(fire)
            }
            OverlapPolicy::Skip => self.record_not_run(
                &fire,
                RunOutcome::SkippedOverlap,
                "previous run still in flight",
            ),
            OverlapPolicy::QueueOne => {
                if let Some(replaced) = self.queued.insert(job_id, fire) {
                    self.record_not_run(
                        &replaced,
                        RunOutcome::SkippedOverlap,
                        "replaced by a newer queued fire",
                    );
                }
            }
        }
    }

    /// Records a fire that was claimed (or decided) but not run.
    pub fn record_not_run(&self, fire: &ClaimedFire, outcome: RunOutcome, why: &str) {
        let now = self.clock.now_ms();
        m::fire_outcome(outcome, fire.job.spec.metrics_label.as_deref());
        let _ = self.records.send(RunRecord {
            job_id: fire.job.id().to_owned(),
            fire_id: FireId::new(fire.job.id(), fire.scheduled_ms).to_string(),
            node_id: self.node_id.clone(),
            shard: fire.shard,
            fencing_token: fire.token,
            scheduled_ms: fire.scheduled_ms,
            started_ms: now,
            finished_ms: now,
            attempts: 0,
            outcome,
            error: Some(why.to_owned()),
            detail: None,
        });
    }

    fn start(&mut self, fire: ClaimedFire) {
        *self.running.entry(fire.job.id().to_owned()).or_default() += 1;
        m::in_flight_add(1.0);
        let run = RunTask {
            node_id: self.node_id.clone(),
            handlers: self.handlers.clone(),
            permits: self.permits.clone(),
            clock: self.clock.clone(),
            records: self.records.clone(),
            hard_stop: self.hard_stop.clone(),
        };
        let span = info_span!(
            "fire",
            job = %fire.job.id(),
            fire = %FireId::new(fire.job.id(), fire.scheduled_ms),
            shard = fire.shard,
            node = %self.node_id,
            token = fire.token
        );
        self.tasks.spawn(
            async move {
                let job_id = fire.job.id().to_owned();
                run.run(fire).await;
                job_id
            }
            .instrument(span),
        );
    }

    fn finished(&mut self, job_id: String) {
        m::in_flight_add(-1.0);
        if let Some(n) = self.running.get_mut(&job_id) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(&job_id);
            }
        }
        if !self.running.contains_key(&job_id) {
            let backlogged = self.next_backlogged(&job_id);
            if backlogged.is_none() {
                self.catching_up.remove(&job_id);
            }
            if let Some(next) = backlogged.or_else(|| self.queued.remove(&job_id)) {
                self.start(next);
            }
        }
    }

    /// The next backlogged fire of a job still within its misfire grace; older
    /// ones are recorded as misfired, so a job slower than its period cannot
    /// build an unbounded backlog.
    fn next_backlogged(&mut self, job_id: &str) -> Option<ClaimedFire> {
        let now = self.clock.now_ms();
        let mut next = None;
        let mut expired = Vec::new();
        if let Some(line) = self.backlog.get_mut(job_id) {
            while let Some(fire) = line.pop_front() {
                let grace_ms = fire.job.spec.misfire_grace.as_millis() as i64;
                if now - fire.scheduled_ms > grace_ms {
                    expired.push(fire);
                } else {
                    next = Some(fire);
                    break;
                }
            }
            if line.is_empty() {
                self.backlog.remove(job_id);
            }
        }
        for fire in &expired {
            self.record_not_run(
                fire,
                RunOutcome::Misfired,
                "waited in the catch-up line beyond the misfire grace",
            );
        }
        next
    }

    /// Waits for the next run to finish (pending forever when none is in flight).
    pub async fn next_finished(&mut self) {
        match self.tasks.join_next().await {
            Some(Ok(job_id)) => self.finished(job_id),
            Some(Err(e)) => warn!(error = %e, "run task failed outside the handler"),
            None => std::future::pending::<()>().await,
        }
    }

    /// Waits until every run (including claimed fires still queued behind a
    /// running one) has finished or `deadline` passes, then cancels what is
    /// left. Returns the number of runs cancelled or never started.
    pub async fn drain(&mut self, deadline: Duration) -> usize {
        let until = tokio::time::Instant::now() + deadline;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(until, self.tasks.join_next()).await {
                Ok(Some(Ok(job_id))) => self.finished(job_id),
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let waiting: Vec<ClaimedFire> = self
            .queued
            .drain()
            .map(|(_, f)| f)
            .chain(self.backlog.drain().flat_map(|(_, fires)| fires))
            .collect();
        for fire in &waiting {
            self.record_not_run(
                fire,
                RunOutcome::Cancelled,
                "node shut down before the waiting fire started",
            );
        }
        let left = self.tasks.len() + waiting.len();
        if !self.tasks.is_empty() {
            warn!(left, "drain deadline passed; cancelling in-flight runs");
            self.hard_stop.cancel();
            while let Ok(Some(result)) =
                tokio::time::timeout(Duration::from_secs(5), self.tasks.join_next()).await
            {
                if let Ok(job_id) = result {
                    self.finished(job_id);
                }
            }
            self.tasks.abort_all();
        }
        left
    }
}

/// Everything one run needs, detached from the executor.
struct RunTask {
    node_id: String,
    handlers: HandlerRegistry,
    permits: Arc<Semaphore>,
    clock: ServerClock,
    records: mpsc::UnboundedSender<RunRecord>,
    hard_stop: CancellationToken,
}

enum Attempt {
    Ok(Option<String>),
    Failed(HandlerError),
    TimedOut(Duration),
    Panicked(String),
    Cancelled,
}

impl RunTask {
    /// Runs the fire. A fire whose claim succeeded runs even if the shard's
    /// lease was lost before it could start: the claim already made it this
    /// node's alone (nobody else can run it), and its fencing token tells
    /// downstream systems that it is stale. Only a lease lost while the
    /// handler runs cancels it.
    async fn run(self, fire: ClaimedFire) {
        let job = fire.job.clone();
        let fire_id = FireId::new(job.id(), fire.scheduled_ms);
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let cancel = CancellationToken::new();
        let mut sources = vec![self.hard_stop.clone()];
        if fire.cancel.is_cancelled() {
            debug!("the lease was lost after the claim; running the claimed fire anyway");
        } else {
            sources.push(fire.cancel.clone());
        }
        let _link = LinkedCancel::new(&sources, cancel.clone());
        let started_ms = self.clock.now_ms();
        m::lateness(
            started_ms - fire.scheduled_ms,
            job.spec.metrics_label.as_deref(),
        );
        let Some(handler) = self.handlers.get(&job.spec.handler).cloned() else {
            self.finish(
                &fire,
                started_ms,
                0,
                RunOutcome::UnknownHandler,
                Some(format!(
                    "no handler named {:?} on node {}",
                    job.spec.handler, self.node_id
                )),
                None,
            );
            return;
        };
        let began = Instant::now();
        let mut attempt = 1u32;
        let (outcome, error, detail) = loop {
            let attempt_cancel = cancel.child_token();
            let ctx = FireContext {
                job_id: job.id().to_owned(),
                fire_id: fire_id.clone(),
                scheduled_ms: fire.scheduled_ms,
                shard: fire.shard,
                fencing_token: fire.token,
                attempt,
                node_id: self.node_id.clone(),
                args: job.spec.args.clone(),
                timeout: job.spec.timeout,
                cancel: attempt_cancel.clone(),
            };
            let handler = handler.clone();
            let mut task = tokio::spawn(async move { handler.run(ctx).await });
            let limit = job.spec.timeout;
            let result = tokio::select! {
                biased;
                joined = &mut task => match joined {
                    Ok(Ok(out)) => Attempt::Ok(out.detail),
                    Ok(Err(e)) => Attempt::Failed(e),
                    Err(e) if e.is_panic() => Attempt::Panicked(panic_message(e)),
                    Err(e) => Attempt::Panicked(e.to_string()),
                },
                () = sleep_or_forever(limit) => Attempt::TimedOut(limit.unwrap_or_default()),
                () = cancel.cancelled() => Attempt::Cancelled,
            };
            if !matches!(
                result,
                Attempt::Ok(_) | Attempt::Failed(_) | Attempt::Panicked(_)
            ) {
                // Give the handler a moment to observe cancellation, then drop it.
                cancel_and_reap(&attempt_cancel, task).await;
            }
            let retryable = match &result {
                Attempt::Ok(_) | Attempt::Cancelled => false,
                Attempt::Failed(e) => e.retryable,
                Attempt::TimedOut(_) | Attempt::Panicked(_) => true,
            };
            if retryable && attempt <= job.spec.retry.max_retries && !cancel.is_cancelled() {
                attempt += 1;
                let delay = job.spec.retry.delay_before(attempt);
                debug!(attempt, ?delay, "retrying");
                tokio::select! {
                    biased;
                    () = tokio::time::sleep(delay) => continue,
                    () = cancel.cancelled() => break (RunOutcome::Cancelled, Some("cancelled while waiting to retry".to_owned()), None),
                }
            }
            break match result {
                Attempt::Ok(detail) => (RunOutcome::Succeeded, None, detail),
                Attempt::Failed(e) => (RunOutcome::Failed, Some(e.message), e.detail),
                Attempt::TimedOut(d) => (
                    RunOutcome::TimedOut,
                    Some(format!("timed out after {d:?}")),
                    None,
                ),
                Attempt::Panicked(msg) => (
                    RunOutcome::Panicked,
                    Some(format!("handler panicked: {msg}")),
                    None,
                ),
                Attempt::Cancelled => (
                    RunOutcome::Cancelled,
                    Some(cancel_reason(&fire.cancel)),
                    None,
                ),
            };
        };
        m::run_duration(began.elapsed());
        self.finish(&fire, started_ms, attempt, outcome, error, detail);
    }

    fn finish(
        &self,
        fire: &ClaimedFire,
        started_ms: i64,
        attempts: u32,
        outcome: RunOutcome,
        error: Option<String>,
        detail: Option<String>,
    ) {
        m::fire_outcome(outcome, fire.job.spec.metrics_label.as_deref());
        if outcome != RunOutcome::Succeeded {
            debug!(outcome = outcome.as_str(), error = ?error, "run did not succeed");
        }
        let _ = self.records.send(RunRecord {
            job_id: fire.job.id().to_owned(),
            fire_id: FireId::new(fire.job.id(), fire.scheduled_ms).to_string(),
            node_id: self.node_id.clone(),
            shard: fire.shard,
            fencing_token: fire.token,
            scheduled_ms: fire.scheduled_ms,
            started_ms,
            finished_ms: self.clock.now_ms(),
            attempts,
            outcome,
            error,
            detail,
        });
    }
}

fn cancel_reason(shard_cancel: &CancellationToken) -> String {
    if shard_cancel.is_cancelled() {
        "cancelled: the shard's lease was lost".to_owned()
    } else {
        "cancelled: the node stopped".to_owned()
    }
}

async fn sleep_or_forever(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Trips the attempt's token so the handler can clean up, waits briefly, then
/// aborts the attempt's task.
async fn cancel_and_reap(
    attempt_cancel: &CancellationToken,
    mut task: tokio::task::JoinHandle<Result<crate::handler::RunOutput, HandlerError>>,
) {
    attempt_cancel.cancel();
    if tokio::time::timeout(Duration::from_secs(3), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// Cancels `target` when any of `sources` is cancelled, for as long as it lives.
struct LinkedCancel {
    task: tokio::task::JoinHandle<()>,
}

impl LinkedCancel {
    fn new(sources: &[CancellationToken], target: CancellationToken) -> Self {
        let sources: Vec<CancellationToken> = sources.to_vec();
        let task = tokio::spawn(async move {
            let waits = sources.iter().map(|s| Box::pin(s.cancelled()));
            futures::future::select_all(waits).await;
            target.cancel();
        });
        Self { task }
    }
}

impl Drop for LinkedCancel {
    fn drop(&mut self) {
        self.task.abort();
    }
}
