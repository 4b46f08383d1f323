//! Running claimed fires: the node-wide concurrency limit, timeouts, panics,
//! retries, cancellation and the per-job overlap policy.
//!
//! The scheduler only claims; this module decides *when* a claimed fire starts
//! (overlap policy) and turns whatever happens to it into exactly one
//! [`RunRecord`]: a claimed fire either runs or gets a record saying why it
//! did not, never nothing. A handler's panic is caught around its future
//! (`catch_unwind`) and recorded as `panicked` instead of taking the node
//! down; the handler runs inside its fire's run task, so a fire released
//! with thousands of others at one instant starts when its own task is
//! polled, not behind a second task per fire.
//!
//! The overlap decision needs to know which runs are still going, so finished
//! runs are reaped (all of them, without waiting) before any fire is
//! dispatched: a run that ended is never mistaken for one in flight. Fires are
//! counted per shard from dispatch until they end, so the node can hand a
//! shard off only when none of its fires is running or waiting. The waiting
//! line is bounded by [`Executor::capacity`]: the node claims no more than
//! fits, and what it does not claim stays due, to run late or be counted by
//! the job's misfire policy.
//!
//! A fire claimed ahead of its instant waits in the ahead line
//! ([`crate::ahead`]), counted for its shard like a running fire (a shard is
//! not handed off under it). The node's loop asks
//! [`Executor::next_ahead_at`] when to wake and calls
//! [`Executor::release_due`].

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use futures::FutureExt;
use shardcron_coord::{CloseFire, RunOutcome, RunRecord, StartedFire};
use shardcron_core::{FireId, Job, OverlapPolicy};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument};

use crate::ahead::{AheadLine, AheadRevision};
use crate::clock::ServerClock;
use crate::fire_metrics::FireMetrics;
use crate::handler::{FireContext, HandlerError, HandlerRegistry};
use crate::lease_watch::LeaseGuard;
use crate::metrics as m;
use crate::recorder::{FireEnd, Note, UnwrittenCloses};
use crate::run_set::{BoxedRun, RunSet, GROUP, GROUP_FROM};

/// How long a cancelled or timed-out handler gets to observe its
/// cancellation before it is dropped.
const CANCEL_REAP: Duration = Duration::from_secs(3);

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
    /// The shard's lease as this fire sees it: the fire starts only while
    /// it is live, and its handler is cancelled when it ends.
    pub lease: LeaseGuard,
    /// A late fire run by catch-up: it waits for the job's previous run
    /// instead of being skipped by the overlap policy.
    pub catch_up: bool,
    /// Version of the job under which the fire was claimed.
    pub version: u64,
    /// Deliveries of the fire so far, this one included: 1 for a fire this
    /// node claimed, one more for each recovery.
    pub delivery: u32,
    /// The fire has an open entry in the store (delivery `at_least_once`):
    /// its end closes the entry, or abandons it for recovery when the fire
    /// is given up without a terminal state.
    pub tracked: bool,
    /// A manual trigger, not an instant of the job's schedule: a schedule
    /// change does not withdraw it (its instant may be ahead of the
    /// store's time when a scheduled fire was claimed ahead, see
    /// `trigger.lua`).
    pub trigger: bool,
}

impl ClaimedFire {
    /// The delivery whose open entry this fire's end changes, if tracked.
    pub fn open_delivery(&self) -> Option<u32> {
        self.tracked.then_some(self.delivery)
    }
}

/// What a fire's end does to its open entry, if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryChange {
    /// A terminal state: the entry is removed.
    Close,
    /// Given up without a terminal state (its lease ended before it could
    /// start or finish, the node stopped): the entry stays, marked for the
    /// shard's lease holder to recover.
    Abandon,
}

/// Where fires' ends go: the recorder, with the open-entry change of a
/// tracked fire counted until it is written.
#[derive(Clone, Debug)]
pub struct EndSink {
    node_id: String,
    holder: String,
    /// The shard of `broadcast` jobs, whose fires are named after this
    /// node too (`job@ms/node`).
    broadcast_shard: u32,
    /// Whether starts are reported (the store keeps a state per fire).
    report_starts: bool,
    tx: mpsc::UnboundedSender<Note>,
    unwritten: Arc<UnwrittenCloses>,
}

impl EndSink {
    /// A sink for the node `node_id`, holder `holder` (`node/instance`);
    /// starts are reported only with `report_starts`.
    pub fn new(
        node_id: String,
        holder: String,
        report_starts: bool,
        tx: mpsc::UnboundedSender<Note>,
        unwritten: Arc<UnwrittenCloses>,
    ) -> Self {
        Self {
            node_id,
            holder,
            broadcast_shard: u32::MAX,
            report_starts,
            tx,
            unwritten,
        }
    }

    /// Names `broadcast_shard` as the shard of broadcast jobs, whose fire
    /// ids name this node.
    pub fn with_broadcast_shard(mut self, broadcast_shard: u32) -> Self {
        self.broadcast_shard = broadcast_shard;
        self
    }

    /// The id of the fire of `job_id` at `scheduled_ms` claimed in `shard`:
    /// `job@ms`, or `job@ms/node` for a broadcast job's (every member runs
    /// it, each under its own name).
    pub fn fire_id(&self, job_id: &str, scheduled_ms: i64, shard: u32) -> FireId {
        if shard == self.broadcast_shard {
            FireId::broadcast(job_id, scheduled_ms, self.node_id.as_str())
        } else {
            FireId::new(job_id, scheduled_ms)
        }
    }

    /// Sends `record`, with `change` applied to the open entry of the
    /// fire's delivery `open_delivery` when the fire is tracked.
    fn send(&self, record: RunRecord, open_delivery: Option<u32>, change: EntryChange) {
        let open_entry = open_delivery.map(|delivery| CloseFire {
            shard: record.shard,
            job_id: record.job_id.clone(),
            scheduled_ms: record.scheduled_ms,
            holder: self.holder.clone(),
            token: record.fencing_token,
            delivery,
            abandon: change == EntryChange::Abandon,
        });
        if let Some(close) = &open_entry {
            if change == EntryChange::Abandon {
                m::fire_abandoned();
            }
            self.unwritten.add(close.shard);
        }
        if self
            .tx
            .send(Note::Ended(FireEnd { record, open_entry }))
            .is_err()
        {
            debug!("recorder gone; record not written");
        }
    }

    /// Reports that `fire`'s handler started at `started_ms` (stores that
    /// keep a state per fire move it to `running`).
    fn started(&self, fire: &ClaimedFire, started_ms: i64) {
        if !self.report_starts {
            return;
        }
        let start = StartedFire {
            shard: fire.shard,
            job_id: fire.job.id().to_owned(),
            scheduled_ms: fire.scheduled_ms,
            holder: self.holder.clone(),
            token: fire.token,
            started_ms,
        };
        if self.tx.send(Note::Started(start)).is_err() {
            debug!("recorder gone; start not reported");
        }
    }
}

/// What a finished run task reports back.
struct Finished {
    job: Arc<Job>,
    shard: u32,
}

/// A job as a map key, by its id, without copying the id: the job's `Arc`
/// (a start would otherwise allocate a copy of the id, and its end free it).
#[derive(Clone, Debug)]
struct JobKey(Arc<Job>);

impl Borrow<str> for JobKey {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

impl Hash for JobKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id().hash(state);
    }
}

impl PartialEq for JobKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for JobKey {}

/// Starts claimed fires per overlap policy and tracks what is in flight.
pub struct Executor {
    concurrency: usize,
    permits: Arc<Semaphore>,
    clock: ServerClock,
    sink: EndSink,
    running: HashMap<JobKey, usize>,
    queued: HashMap<String, ClaimedFire>,
    backlog: HashMap<String, VecDeque<ClaimedFire>>,
    backlog_len: usize,
    catching_up: HashSet<String>,
    per_shard: HashMap<u32, usize>,
    /// Fires claimed before their instant.
    ahead: AheadLine,
    tasks: RunSet<Finished>,
    /// While a release of at least [`GROUP_FROM`] fires dispatches: the
    /// runs it has started since its last group was spawned
    /// ([`RunSet::spawn_group`]).
    releasing: Option<Vec<(Finished, BoxedRun)>>,
    hard_stop: CancellationToken,
    /// What every run task shares, built once: a fire's task takes one
    /// reference count instead of cloning each part.
    run_task: Arc<RunTask>,
}

impl Executor {
    /// An executor for `node_id` running at most `concurrency` fires at once,
    /// sending their ends to `sink`.
    pub fn new(
        node_id: String,
        handlers: HandlerRegistry,
        concurrency: usize,
        clock: ServerClock,
        sink: EndSink,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(concurrency));
        let hard_stop = CancellationToken::new();
        let run_task = Arc::new(RunTask {
            node_id,
            handlers,
            permits: permits.clone(),
            clock: clock.clone(),
            sink: sink.clone(),
            hard_stop: hard_stop.clone(),
            metrics: FireMetrics::register(),
        });
        Self {
            concurrency,
            permits,
            clock,
            sink,
            running: HashMap::new(),
            queued: HashMap::new(),
            backlog: HashMap::new(),
            backlog_len: 0,
            catching_up: HashSet::new(),
            per_shard: HashMap::new(),
            ahead: AheadLine::default(),
            tasks: RunSet::new(),
            releasing: None,
            hard_stop,
            run_task,
        }
    }

    /// Run tasks in flight (running or waiting for a permit).
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Claimed fires not yet holding a permit: waiting for one, queued
    /// behind a running fire of their job, or in a catch-up line.
    pub fn waiting(&self) -> usize {
        let holding = self.concurrency - self.permits.available_permits();
        self.tasks.len().saturating_sub(holding) + self.queued.len() + self.backlog_len
    }

    /// Whether a fire waits for a run of its job to end (overlap queue or
    /// catch-up line).
    pub fn has_fires_behind_runs(&self) -> bool {
        !self.queued.is_empty() || self.backlog_len > 0
    }

    /// How many more fires may be claimed now: the waiting line holds at
    /// most as many fires as the node runs at once.
    pub fn capacity(&self) -> usize {
        (self.concurrency * 2)
            .saturating_sub(self.tasks.len() + self.queued.len() + self.backlog_len)
    }

    /// Whether any fire of `shard` is running or waiting.
    pub fn shard_busy(&self, shard: u32) -> bool {
        self.per_shard.get(&shard).is_some_and(|&n| n > 0)
    }

    /// Whether any fire is running, waiting, or claimed ahead.
    pub fn is_idle(&self) -> bool {
        self.tasks.is_empty()
            && self.queued.is_empty()
            && self.backlog_len == 0
            && self.ahead.is_empty()
    }

    /// Fires claimed ahead of their instant, not dispatched yet.
    pub fn claimed_ahead(&self) -> usize {
        self.ahead.len()
    }

    /// How many more fires may be claimed ahead now.
    pub fn ahead_room(&self) -> usize {
        self.ahead.room()
    }

    /// When the earliest fire claimed ahead comes due (`None`: none waits).
    pub fn next_ahead_at(&self) -> Option<tokio::time::Instant> {
        let at = self.ahead.next_instant()?;
        let wait = (at - self.clock.earliest_now_ms()).max(0) as u64;
        Some(tokio::time::Instant::now() + Duration::from_millis(wait))
    }

    /// Dispatches every fire claimed ahead whose instant has come, in order
    /// of instants, per overlap policy (one withdrawn since its claim ends
    /// `cancelled`); returns how many.
    pub fn release_due(&mut self) -> usize {
        let now = self.clock.earliest_now_ms();
        let mut released = 0;
        let due = self.ahead.take_due(now);
        let grouped = due.len() >= GROUP_FROM;
        for waiting in due {
            if released == 0 {
                // Overlap decisions must see every run that has ended.
                self.reap_finished();
                if grouped {
                    self.releasing = Some(Vec::with_capacity(GROUP));
                }
            }
            released += 1;
            self.count_out(waiting.fire.shard);
            match waiting.withdrawn {
                Some(why) => self.record_not_run(&waiting.fire, RunOutcome::Cancelled, why),
                None => self.dispatch_at(waiting.fire, now),
            }
        }
        if let Some(rest) = self.releasing.take() {
            self.tasks.spawn_group(rest);
        }
        released
    }

    /// Applies a reload of `shard`'s jobs to its fires claimed ahead (see
    /// [`AheadLine::revise`]).
    pub fn revise_ahead(&mut self, shard: u32, revise: impl Fn(&ClaimedFire) -> AheadRevision) {
        self.ahead.revise(shard, revise);
    }

    /// Starts at once every fire claimed ahead (of `shard`, or of every
    /// shard) whose lease has ended (lost, or its runs cancelled by a
    /// handoff or a stop): the start check finds the lease gone and records
    /// it `cancelled`, abandoning a tracked fire's entry for recovery,
    /// instead of leaving it until its instant.
    pub fn start_ended_ahead(&mut self, shard: Option<u32>) {
        let stopping = self.hard_stop.is_cancelled();
        for fire in self
            .ahead
            .take_ended(shard, |f| stopping || !f.lease.is_live())
        {
            // Still counted for its shard from when it was claimed.
            self.start(fire);
        }
    }

    fn count_in(&mut self, shard: u32) {
        *self.per_shard.entry(shard).or_default() += 1;
    }

    fn count_out(&mut self, shard: u32) {
        if let Some(n) = self.per_shard.get_mut(&shard) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_shard.remove(&shard);
            }
        }
    }

    /// Starts `fire` now, queues it or skips it, per the job's overlap policy.
    /// Catch-up fires of a busy job wait in a backlog and run one after the
    /// other: they are missed fires being made up, not overlapping ones. Call
    /// [`Executor::reap_finished`] first so the decision sees every run that
    /// has ended.
    ///
    /// A fire whose instant has not come yet waits in the ahead line and is
    /// dispatched by [`Executor::release_due`] when it does: when even the
    /// earliest reading the store's clock can have now
    /// ([`ServerClock::earliest_now_ms`]) has reached it, so no fire starts
    /// before its instant.
    pub fn dispatch(&mut self, fire: ClaimedFire) {
        let now = self.clock.earliest_now_ms();
        self.dispatch_at(fire, now);
    }

    /// [`Executor::dispatch`] with the earliest server time `now` read by
    /// the caller: a release reads the clock once for all the fires it
    /// dispatches.
    fn dispatch_at(&mut self, fire: ClaimedFire, now: i64) {
        if fire.scheduled_ms > now && !self.hard_stop.is_cancelled() {
            self.count_in(fire.shard);
            self.ahead.push(fire);
            return;
        }
        let busy = self.running.get(fire.job.id()).copied().unwrap_or(0) > 0;
        if fire.catch_up && !self.catching_up.contains(fire.job.id()) {
            self.catching_up.insert(fire.job.id().to_owned());
        }
        if !busy {
            self.count_in(fire.shard);
            self.start(fire);
            return;
        }
        let job_id = fire.job.id().to_owned();
        match fire.job.spec.overlap {
            OverlapPolicy::Allow => {
                self.count_in(fire.shard);
                self.start(fire);
            }
            // While a job makes up missed fires, new ones join the line.
            _ if self.catching_up.contains(&job_id) => {
                self.count_in(fire.shard);
                self.backlog_len += 1;
                self.backlog.entry(job_id).or_default().push_back(fire);
            }
            OverlapPolicy::Skip => self.record_not_run(
                &fire,
                RunOutcome::SkippedOverlap,
                "previous run still in flight",
            ),
            OverlapPolicy::QueueOne => {
                self.count_in(fire.shard);
                if let Some(replaced) = self.queued.insert(job_id, fire) {
                    self.count_out(replaced.shard);
                    self.record_not_run(
                        &replaced,
                        RunOutcome::SkippedOverlap,
                        "replaced by a newer queued fire",
                    );
                }
            }
        }
    }

    /// Records a fire that was claimed (or decided) but not run, a terminal
    /// state by policy (skipped, misfired).
    pub fn record_not_run(&self, fire: &ClaimedFire, outcome: RunOutcome, why: &str) {
        send_record(
            &self.sink,
            RecordFields {
                job_id: fire.job.id(),
                scheduled_ms: fire.scheduled_ms,
                shard: fire.shard,
                token: fire.token,
                job_label: fire.job.spec.metrics_label.as_deref(),
                open_delivery: fire.open_delivery(),
            },
            self.clock.now_ms(),
            outcome,
            why,
            EntryChange::Close,
        );
    }

    /// Records a claimed fire this node will not run (its job is gone, or
    /// its claim could not be resolved), with `change` to its open entry.
    pub fn record_lost(
        &self,
        fields: RecordFields<'_>,
        reason: &'static str,
        why: &str,
        change: EntryChange,
    ) {
        m::fire_lost(reason);
        send_record(
            &self.sink,
            fields,
            self.clock.now_ms(),
            RunOutcome::Cancelled,
            why,
            change,
        );
    }

    fn start(&mut self, fire: ClaimedFire) {
        match self.running.get_mut(fire.job.id()) {
            Some(n) => *n += 1,
            None => {
                self.running.insert(JobKey(fire.job.clone()), 1);
            }
        }
        let run = self.run_task.clone();
        let fire_id = self
            .sink
            .fire_id(fire.job.id(), fire.scheduled_ms, fire.shard);
        // The node is named once, by the `worker` span this one is made
        // under: a subscriber formats a span's fields when the span is
        // made, which every fire pays for.
        let span = info_span!(
            "fire",
            job = %fire.job.id(),
            fire = %fire_id,
            shard = fire.shard,
            token = fire.token,
            delivery = fire.delivery
        );
        let finished = Finished {
            job: fire.job.clone(),
            shard: fire.shard,
        };
        // The run's future (816 bytes in a release build: the handler's
        // context, its timeout, the stop signal) is made and boxed when
        // the task is first polled, not here. A release spawns every fire
        // due at its instant before the first of them runs: boxed here,
        // that memory was taken once per fire released (about 80 MB for
        // 100,000 at once, pages a node's first burst had never touched),
        // where made at the first poll a run that ends at once frees it
        // for the next one (docs/BENCHMARKS.md §4x). What waits in the
        // task cell is this block: the fire and its name, 152 bytes.
        let run = async move { Box::pin(run.run(fire, fire_id)).await };
        let run = run.instrument(span);
        match &mut self.releasing {
            Some(runs) => {
                runs.push((finished, Box::pin(run)));
                if runs.len() == GROUP {
                    let full = std::mem::replace(runs, Vec::with_capacity(GROUP));
                    self.tasks.spawn_group(full);
                }
            }
            None => self.tasks.spawn(finished, run),
        }
        self.run_task.metrics.in_flight_add(1.0);
    }

    fn finished(&mut self, done: Finished) -> u32 {
        let Finished { job, shard } = done;
        let job_id = job.id();
        self.run_task.metrics.in_flight_add(-1.0);
        self.count_out(shard);
        if let Some(n) = self.running.get_mut(job_id) {
            *n -= 1;
            if *n > 0 {
                return shard;
            }
            self.running.remove(job_id);
        }
        // The job has no run left. Most often no fire waits behind one
        // (no overlap queue, no catch-up line): nothing more to look up.
        if self.queued.is_empty() && self.backlog.is_empty() && self.catching_up.is_empty() {
            return shard;
        }
        let backlogged = self.next_backlogged(job_id);
        if backlogged.is_none() {
            self.catching_up.remove(job_id);
        }
        if let Some(next) = backlogged.or_else(|| self.queued.remove(job_id)) {
            self.start(next);
        }
        shard
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
                self.backlog_len -= 1;
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
            self.count_out(fire.shard);
            self.record_not_run(
                fire,
                RunOutcome::Misfired,
                "waited in the catch-up line beyond the misfire grace",
            );
        }
        next
    }

    /// Reaps every run that has already finished, without waiting; returns
    /// the shards whose runs ended.
    pub fn reap_finished(&mut self) -> Vec<u32> {
        let mut shards = Vec::new();
        while let Some(done) = self.tasks.try_reap() {
            shards.push(self.finished(done));
        }
        shards
    }

    /// Waits for the next run to finish (pending forever when none is in
    /// flight); returns its shard.
    pub async fn next_finished(&mut self) -> Option<u32> {
        let done = self.tasks.reap().await;
        Some(self.finished(done))
    }

    /// Cancels every run of the node (shutdown past its drain deadline);
    /// waiting fires then end as cancelled without starting.
    pub fn stop_all(&mut self) {
        self.hard_stop.cancel();
        self.start_ended_ahead(None);
    }

    /// Drops every run task at once (the last step of a shutdown whose runs
    /// ignored cancellation); returns how many were dropped.
    pub fn abort_all(&mut self) -> usize {
        self.tasks.abort_all()
    }
}

/// The identity of a fire in a run record.
#[derive(Clone, Copy, Debug)]
pub struct RecordFields<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Shard of the job.
    pub shard: u32,
    /// Fencing token of the claim (0 if never claimed).
    pub token: u64,
    /// The job's opt-in metrics label.
    pub job_label: Option<&'a str>,
    /// For a tracked (`at_least_once`) fire, the delivery whose open entry
    /// this record ends.
    pub open_delivery: Option<u32>,
}

fn send_record(
    sink: &EndSink,
    fields: RecordFields<'_>,
    now_ms: i64,
    outcome: RunOutcome,
    why: &str,
    change: EntryChange,
) {
    m::fire_outcome(outcome, fields.job_label);
    let record = RunRecord {
        job_id: fields.job_id.to_owned(),
        fire_id: sink
            .fire_id(fields.job_id, fields.scheduled_ms, fields.shard)
            .text(),
        node_id: sink.node_id.clone(),
        shard: fields.shard,
        fencing_token: fields.token,
        scheduled_ms: fields.scheduled_ms,
        started_ms: now_ms,
        finished_ms: now_ms,
        attempts: 0,
        outcome,
        error: Some(why.to_owned()),
        detail: None,
    };
    sink.send(record, fields.open_delivery, change);
}

/// Everything one run needs, detached from the executor.
struct RunTask {
    node_id: String,
    handlers: HandlerRegistry,
    permits: Arc<Semaphore>,
    clock: ServerClock,
    sink: EndSink,
    hard_stop: CancellationToken,
    metrics: FireMetrics,
}

enum Attempt {
    Ok(Option<String>),
    Failed(HandlerError),
    TimedOut(Duration),
    Panicked(String),
    Cancelled,
}

impl RunTask {
    /// Runs the fire, if its lease still stands when it gets a permit. A
    /// claimed fire whose shard lease ended before it could start (validity
    /// lapsed in a pause or an outage, a handoff gave up waiting, the node
    /// stopped) is not started: another node may own the shard by now and run
    /// the job's next fire, so starting it would let two handlers of one job
    /// run at once. It is recorded as `cancelled` and counted in
    /// `shardcron_fires_lost_total`, never dropped silently.
    async fn run(self: Arc<Self>, fire: ClaimedFire, fire_id: FireId) {
        let job = fire.job.clone();
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let stopped = self.hard_stop.is_cancelled();
        if stopped || !fire.lease.is_live() {
            let (reason, why) = if stopped {
                (
                    "shutdown",
                    "the node stopped before the claimed fire could start",
                )
            } else {
                (
                    "lease_ended_before_start",
                    "the shard's lease ended before the claimed fire could start",
                )
            };
            m::fire_lost(reason);
            debug!(reason, "claimed fire not started");
            let now = self.clock.now_ms();
            self.finish(
                &fire,
                &fire_id,
                (now, 0),
                (RunOutcome::Cancelled, Some(why.to_owned()), None),
            );
            return;
        }
        let cancel = StopSignal {
            node: &self.hard_stop,
            lease: fire.lease.runs_token(),
        };
        let began = tokio::time::Instant::now();
        let started_ms = self.clock.ms_at(began);
        self.metrics.lateness(
            started_ms - fire.scheduled_ms,
            job.spec.metrics_label.as_deref(),
        );
        let Some(handler) = self.handlers.get(&job.spec.handler).cloned() else {
            self.finish(
                &fire,
                &fire_id,
                (started_ms, 0),
                (
                    RunOutcome::UnknownHandler,
                    Some(format!(
                        "no handler named {:?} on node {}",
                        job.spec.handler, self.node_id
                    )),
                    None,
                ),
            );
            return;
        };
        self.sink.started(&fire, started_ms);
        let mut attempt = 1u32;
        // Attempt numbers never repeat for one fire id: a recovered delivery
        // starts above every attempt an earlier delivery could have made.
        let first_attempt = fire
            .delivery
            .saturating_sub(1)
            .saturating_mul(job.spec.retry.max_retries.saturating_add(1));
        let verdict = loop {
            // Cancelled by this task when it sees the stop signal (the
            // handler's token is its own, so no task per run links them).
            let attempt_cancel = CancellationToken::new();
            let ctx = FireContext {
                job_id: job.id().to_owned(),
                fire_id: fire_id.clone(),
                scheduled_ms: fire.scheduled_ms,
                shard: fire.shard,
                fencing_token: fire.token,
                attempt: first_attempt.saturating_add(attempt),
                delivery: fire.delivery,
                node_id: self.node_id.clone(),
                args: job.spec.args.clone(),
                timeout: job.spec.timeout,
                cancel: attempt_cancel.clone(),
            };
            // The handler runs inside this task, not a task of its own: a
            // fire starts when its run task is first polled, not after every
            // other fire released at the same instant (a spawned handler
            // would queue behind them). A panic is caught here instead.
            let mut task = std::pin::pin!(AssertUnwindSafe(handler.run(ctx)).catch_unwind());
            let limit = job.spec.timeout;
            let result = tokio::select! {
                biased;
                ended = &mut task => match ended {
                    Ok(Ok(out)) => Attempt::Ok(out.detail),
                    Ok(Err(e)) => Attempt::Failed(e),
                    Err(payload) => Attempt::Panicked(panic_message(payload.as_ref())),
                },
                () = sleep_or_forever(limit) => Attempt::TimedOut(limit.unwrap_or_default()),
                () = cancel.cancelled() => Attempt::Cancelled,
            };
            if !matches!(
                result,
                Attempt::Ok(_) | Attempt::Failed(_) | Attempt::Panicked(_)
            ) {
                // Give the handler a moment to observe cancellation, then
                // drop it.
                attempt_cancel.cancel();
                let _ = tokio::time::timeout(CANCEL_REAP, &mut task).await;
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
                    Some(cancel_reason(&self.hard_stop)),
                    None,
                ),
            };
        };
        self.metrics.run_duration(began.elapsed());
        self.finish(&fire, &fire_id, (started_ms, attempt), verdict);
    }

    /// Sends the record of `fire` (named `fire_id`), started at
    /// `started_ms` after `attempts` attempts, ended with `verdict`
    /// (outcome, error, detail).
    fn finish(
        &self,
        fire: &ClaimedFire,
        fire_id: &FireId,
        (started_ms, attempts): (i64, u32),
        (outcome, error, detail): (RunOutcome, Option<String>, Option<String>),
    ) {
        self.metrics
            .outcome(outcome, fire.job.spec.metrics_label.as_deref());
        if outcome != RunOutcome::Succeeded {
            debug!(outcome = outcome.as_str(), error = ?error, "run did not succeed");
        }
        let record = RunRecord {
            job_id: fire.job.id().to_owned(),
            fire_id: fire_id.text(),
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
        };
        // Every cancellation of a run task comes from its lease (lost, or
        // a handoff that gave up) or from the node stopping: the fire did
        // not reach a terminal state, so a tracked one is left for recovery.
        let change = if outcome == RunOutcome::Cancelled {
            EntryChange::Abandon
        } else {
            EntryChange::Close
        };
        self.sink.send(record, fire.open_delivery(), change);
    }
}

fn cancel_reason(hard_stop: &CancellationToken) -> String {
    if hard_stop.is_cancelled() {
        "cancelled: the node stopped".to_owned()
    } else {
        "cancelled: the shard's lease was lost or handed off".to_owned()
    }
}

async fn sleep_or_forever(limit: Option<Duration>) {
    match limit {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// What stops a run: the node stopping, or the shard's lease ending (lost,
/// or a handoff that gave up waiting). Borrowed, not cloned: every clone and
/// drop of a token takes a lock shared by every fire of the node (or of the
/// shard), thousands of times at the top of a busy second.
struct StopSignal<'a> {
    node: &'a CancellationToken,
    lease: &'a CancellationToken,
}

impl StopSignal<'_> {
    /// Resolves when either source is cancelled.
    async fn cancelled(&self) {
        tokio::select! {
            () = self.node.cancelled() => {}
            () = self.lease.cancelled() => {}
        }
    }

    fn is_cancelled(&self) -> bool {
        self.node.is_cancelled() || self.lease.is_cancelled()
    }
}
