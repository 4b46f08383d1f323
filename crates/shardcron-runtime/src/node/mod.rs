//! The node state machine: membership, ring, leases, timers and claims.
//!
//! One task owns all of a node's state and reacts to a few things: the
//! heartbeat tick (register, list members, recompute the ring, hand off,
//! renew and acquire leases), the timer heap (claim due fires per shard in one
//! round trip and dispatch them), namespace events (react at once to joins,
//! leaves, released leases and job changes) and finished runs. Keeping it in
//! one task means there are no locks: a shard is never released while a claim
//! for it is in flight.
//!
//! The steps live in their own modules, one job each: [`control`] (heartbeat,
//! ring, leases, handoffs), [`loading`] (jobs, triggers, version polls),
//! [`firing`] (claims and their outcomes), [`pending`] (claims whose outcome
//! is not known yet), [`hand_back`] (those of shards this node cannot claim
//! any more), [`recovery`] (`at_least_once` fires of dead or
//! abandoning holders), [`election`] (the leader shard's lease, run for
//! by every node), [`broadcast_jobs`] (jobs every member runs, without claims)
//! and [`shutdown`] (leaving gracefully).

mod broadcast_jobs;
mod control;
mod election;
mod firing;
mod hand_back;
mod loading;
mod pending;
mod placement;
mod recovery;
mod shutdown;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use shardcron_coord::{CoordError, CoordEvent, Coordinator, MemberInfo, StoredPlacement};
use shardcron_core::{broadcast_shard, leader_shard, RingConfig, ShardWeights};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, ServerClock};
use crate::executor::{EndSink, Executor};
use crate::fire_metrics::FireMetrics;
use crate::handler::HandlerRegistry;
use crate::lease_watch::LeaseWatch;
use crate::metrics as m;
use crate::recorder::{spawn_recorder, Note, UnwrittenCloses};
use crate::settings::WorkerSettings;
use crate::status::{WorkerReport, WorkerStatus};
use crate::timetable::Timetable;

use pending::PendingClaims;
use recovery::Recovery;

/// A shard whose lease this node holds.
struct Held {
    token: u64,
    version: u64,
    watch: LeaseWatch,
    /// Set once the ring no longer gives the shard to this node.
    handoff: Option<Handoff>,
}

/// A shard being handed to another node: served until its runs allow a
/// clean release, or until `handoff_timeout`.
struct Handoff {
    since: Instant,
    /// The wait was given up: nothing more is claimed for the shard and its
    /// runs were cancelled; the lease goes as soon as they have ended.
    gave_up: bool,
}

impl Held {
    /// Whether fires may be claimed under this lease now.
    fn claimable(&self) -> bool {
        self.watch.is_valid() && !self.handoff.as_ref().is_some_and(|h| h.gave_up)
    }
}

pub(crate) struct Node {
    coord: Arc<dyn Coordinator>,
    info: MemberInfo,
    holder: String,
    settings: WorkerSettings,
    ring: RingConfig,
    clock: ServerClock,
    status: Arc<watch::Sender<WorkerStatus>>,
    members: Vec<String>,
    /// The shard weights the placement was last computed with (`None`
    /// until the store has been read once).
    weights: Option<ShardWeights>,
    /// The stored placement as last read or written.
    stored_placement: Option<StoredPlacement>,
    /// A placement this node computed is not stored yet (an error, or a
    /// member view seen only once): try again next heartbeat even if no
    /// input changed.
    placement_unstored: bool,
    desired: BTreeSet<u32>,
    desired_since: HashMap<u32, Instant>,
    held: BTreeMap<u32, Held>,
    /// Whether a held shard may be in handoff: set wherever a handoff
    /// starts, recomputed by each control step. Saves the per-shard scans
    /// of every loop turn when none is, which is most of them (during a
    /// burst the loop turns once per finished run).
    handoffs: bool,
    timetable: Timetable,
    executor: Executor,
    /// Handles of the series the loop and the claim step record per turn
    /// and per fire.
    metrics: FireMetrics,
    records: Option<mpsc::UnboundedSender<Note>>,
    recorder: tokio::task::JoinHandle<()>,
    /// Open-entry changes of tracked fires not yet written, per shard: a
    /// shard is released only once its are.
    unwritten: Arc<UnwrittenCloses>,
    /// Which holders are alive, and which shards to scan for open fires.
    recovery: Recovery,
    reload: BTreeSet<u32>,
    pending: PendingClaims,
    /// Per job, the cursor to go back to because a claim was refused as the
    /// job changed: after the reload the fires from there on are decided
    /// again under the new version instead of being lost.
    refused: HashMap<String, i64>,
    next_attempt: u64,
    control_at: Instant,
    retry_at: Option<Instant>,
    /// When the last claim step ran: steps that claim ahead are at least
    /// [`Node::claim_tick`] apart, so fires coming due close together are
    /// claimed in one round trip.
    last_claim: Instant,
    /// When the status is next published from the loop.
    status_at: Instant,
    /// The store said a fire was not due yet: this node's idea of the time
    /// is off. Nothing is claimed until the next heartbeat resamples it.
    clock_suspect: bool,
    /// Since when the waiting line has been full: claiming pauses while it
    /// is (see [`Node::update_overload`]).
    line_full_since: Option<Instant>,
    /// Whether the node has declared itself overloaded: its line has stayed
    /// full for longer than `on_time_tolerance`.
    overloaded: bool,
    reachable: bool,
    registered: bool,
    /// Stored jobs that could not be decoded, per owned shard.
    unreadable: BTreeMap<u32, Vec<shardcron_coord::UnreadableJob>>,
    /// Jobs (id, version) whose timing has been warned about.
    warned: HashSet<(String, u64)>,
    fatal: Option<CoordError>,
    report: WorkerReport,
    /// The shard of `leader` jobs: every node runs for its lease.
    leader_shard: u32,
    /// Since when this node leads (server ms), while it does.
    leading_since: Option<i64>,
    /// `broadcast` jobs: loaded by every node, run without claims.
    broadcast: broadcast_jobs::BroadcastJobs,
}

/// A process instance id: start time and pid, so two incarnations of one
/// node id never share a holder string.
pub(crate) fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", (nanos as u64) ^ ((std::process::id() as u64) << 40))
}

impl Node {
    pub(crate) fn new(
        instance: String,
        coord: Arc<dyn Coordinator>,
        info: MemberInfo,
        handlers: HandlerRegistry,
        settings: WorkerSettings,
        clock: Arc<dyn Clock>,
        status: Arc<watch::Sender<WorkerStatus>>,
    ) -> Self {
        let clock = ServerClock::new(clock);
        let holder = format!("{}/{}", info.id, instance);
        let ring = coord.ring_config();
        let (records, rx) = mpsc::unbounded_channel();
        let unwritten = Arc::new(UnwrittenCloses::default());
        let recorder = spawn_recorder(coord.clone(), unwritten.clone(), rx);
        let executor = Executor::new(
            info.id.clone(),
            handlers,
            settings.concurrency,
            clock.clone(),
            EndSink::new(
                info.id.clone(),
                holder.clone(),
                coord.keeps_fire_states(),
                records.clone(),
                unwritten.clone(),
            )
            .with_broadcast_shard(broadcast_shard(ring.shard_count)),
        );
        Self {
            recovery: Recovery::new(&holder),
            holder,
            ring,
            coord,
            info,
            settings,
            clock,
            status,
            members: Vec::new(),
            weights: None,
            stored_placement: None,
            placement_unstored: false,
            desired: BTreeSet::new(),
            desired_since: HashMap::new(),
            held: BTreeMap::new(),
            handoffs: false,
            timetable: Timetable::new(),
            executor,
            metrics: FireMetrics::register(),
            records: Some(records),
            recorder,
            unwritten,
            reload: BTreeSet::new(),
            pending: PendingClaims::default(),
            refused: HashMap::new(),
            next_attempt: 0,
            control_at: Instant::now(),
            retry_at: None,
            last_claim: Instant::now(),
            status_at: Instant::now(),
            clock_suspect: false,
            line_full_since: None,
            overloaded: false,
            reachable: true,
            registered: false,
            unreadable: BTreeMap::new(),
            warned: HashSet::new(),
            fatal: None,
            report: WorkerReport::default(),
            leader_shard: leader_shard(ring.shard_count),
            leading_since: None,
            broadcast: broadcast_jobs::BroadcastJobs::new(broadcast_shard(ring.shard_count)),
        }
    }

    /// Runs until `shutdown` resolves or a fatal error; then leaves
    /// gracefully. Returns the fatal error, if any, with the report.
    pub(crate) async fn run<F: Future<Output = ()> + Send>(
        mut self,
        shutdown: F,
    ) -> (WorkerReport, Option<CoordError>) {
        tokio::pin!(shutdown);
        let mut events = self.coord.subscribe();
        let mut poll_at = Instant::now() + self.settings.poll_interval;
        info!(node = %self.info.id, holder = %self.holder, "worker starting");
        // Every node reports whether it leads, so the dashboard shows the
        // followers too.
        gauge!(m::LEADER).set(0.0);
        // And whether it is overloaded, and how often claiming paused, so the
        // overload alert and panels see every node, not only troubled ones.
        gauge!(m::OVERLOADED).set(0.0);
        counter!(m::CLAIM_PAUSES_TOTAL).increment(0);
        loop {
            self.reap_finished();
            self.update_overload();
            let fire_at = self.next_claim_at();
            let ahead_at = self.executor.next_ahead_at();
            let overload_at = self.overload_due_at();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = sleep_until_opt(ahead_at) => {
                    self.executor.release_due();
                }
                () = tokio::time::sleep_until(self.control_at) => {
                    self.control_at = Instant::now() + self.settings.heartbeat;
                    self.control_step().await;
                    self.status_at = Instant::now();
                }
                () = sleep_until_opt(fire_at) => self.fire_step().await,
                () = sleep_until_opt(self.retry_at) => self.fire_step().await,
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event, &mut poll_at),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.control_at = Instant::now();
                        poll_at = Instant::now();
                    }
                    Err(broadcast::error::RecvError::Closed) => events = self.coord.subscribe(),
                },
                _ = self.executor.next_finished(), if self.finishes_matter() => {}
                () = sleep_until_opt(overload_at) => {}
                () = self.unwritten.written_changed() => {}
                () = tokio::time::sleep_until(poll_at) => {
                    let next = if self.poll_versions().await {
                        self.settings.poll_interval
                    } else {
                        self.settings.heartbeat
                    };
                    poll_at = Instant::now() + next;
                }
            }
            if self.fatal.is_some() {
                break;
            }
            if !self.reload.is_empty() {
                self.reload_shards().await;
            }
            if self.broadcast.is_stale() && self.registered {
                self.load_broadcast().await;
            }
            self.release_idle_handoffs().await;
            if Instant::now() >= self.status_at {
                self.publish_status();
                self.status_at = Instant::now() + STATUS_EVERY;
            }
        }
        let fatal = self.fatal.take();
        (self.shutdown().await, fatal)
    }

    fn on_event(&mut self, event: CoordEvent, poll_at: &mut Instant) {
        debug!(?event, "event");
        match event {
            CoordEvent::MemberJoined(id) | CoordEvent::MemberLeft(id) => {
                if id != self.info.id || !self.members.contains(&id) {
                    self.control_at = Instant::now();
                }
            }
            CoordEvent::LeaseReleased(shard) => {
                if self.wants(shard) && !self.held.contains_key(&shard) {
                    self.control_at = Instant::now();
                }
            }
            CoordEvent::JobsChanged(shard) => {
                if self.held.contains_key(&shard) {
                    self.reload.insert(shard);
                } else if shard == self.broadcast.shard() {
                    self.broadcast.mark_stale();
                }
            }
            CoordEvent::Resync => {
                self.control_at = Instant::now();
                *poll_at = Instant::now();
            }
        }
    }

    /// Awaits `call`, a store round trip, while still starting the fires
    /// claimed ahead whose instant comes meanwhile. The loop waits on the
    /// store for as long as a round trip takes (up to the request timeout
    /// when the store is unreachable); a fire claimed ahead whose lease is
    /// still valid at its instant must start then, not when the store
    /// answers, as a fire claimed at its instant would have. `call` must
    /// not borrow the node (clone what it needs).
    pub(super) async fn store<T>(&mut self, call: impl Future<Output = T>) -> T {
        let mut call = std::pin::pin!(call);
        loop {
            let at = self.executor.next_ahead_at();
            tokio::select! {
                biased;
                out = &mut call => return out,
                () = sleep_until_opt(at) => {
                    self.executor.release_due();
                }
            }
        }
    }

    /// Whether the loop must wake as soon as a run ends: a fire waits
    /// behind it (overlap queue, catch-up line), a shard waits for its runs
    /// to end before its release, or claiming paused for room. Otherwise
    /// finished runs are reaped at the next turn of the loop (every claim
    /// step reaps before it dispatches), so a burst of thousands of short
    /// runs does not turn the loop once per run.
    fn finishes_matter(&self) -> bool {
        self.line_full_since.is_some() || self.executor.has_fires_behind_runs() || self.handoffs
    }

    /// Reaps every finished run, so overlap decisions and handoffs see
    /// facts, and dispatches the fires claimed ahead that have come due.
    fn reap_finished(&mut self) {
        self.executor.reap_finished();
        self.executor.release_due();
    }

    /// The shortest time between two claim steps that claim ahead: a
    /// quarter of the window, at most 20 ms (none without a window).
    fn claim_tick(&self) -> Duration {
        (self.settings.claim_ahead / 4).min(Duration::from_millis(20))
    }

    /// When the next claim step is due: `claim_ahead` before the earliest
    /// due fire, and not before a tick after the last step.
    fn next_claim_at(&mut self) -> Option<Instant> {
        if self.clock_suspect || self.line_full_since.is_some() {
            return None;
        }
        let ahead_ms = self.settings.claim_ahead.as_millis() as i64;
        let due = self.timetable.next_due()?;
        let wait = (due - ahead_ms - self.clock.now_ms()).max(0) as u64;
        let at = Instant::now() + Duration::from_millis(wait);
        Some(at.max(self.last_claim + self.claim_tick()))
    }

    /// Pauses claiming while the waiting line is full, and declares the
    /// node overloaded only when the line stays full for longer than
    /// `on_time_tolerance`.
    ///
    /// A full line alone is not overload: fires claimed ahead for one
    /// instant are all released at that instant, and more than the line
    /// holds (`2 × concurrency`) is normal for a large fleet at the top of a
    /// minute. They drain in as long as their runs take, and claiming waits
    /// meanwhile (counted in `shardcron_claim_pauses_total`). A line still
    /// full after the on-time tolerance means fires start later than the
    /// node's own idea of "on time" because it has too few run slots: that
    /// is overload, reported once per change of state (log, gauge, report).
    fn update_overload(&mut self) {
        self.metrics
            .line(self.executor.waiting(), self.executor.claimed_ahead());
        let full = self.executor.capacity() == 0;
        match (full, self.line_full_since) {
            (true, None) => {
                self.line_full_since = Some(Instant::now());
                self.report.claim_pauses += 1;
                counter!(m::CLAIM_PAUSES_TOTAL).increment(1);
                debug!(
                    waiting = self.executor.waiting(),
                    "waiting line full: claiming pauses"
                );
            }
            (false, Some(_)) => self.line_full_since = None,
            _ => {}
        }
        let overloaded = self
            .line_full_since
            .is_some_and(|since| since.elapsed() >= self.settings.on_time_tolerance);
        if overloaded != self.overloaded {
            self.overloaded = overloaded;
            gauge!(m::OVERLOADED).set(if overloaded { 1.0 } else { 0.0 });
            if overloaded {
                self.report.overloads += 1;
                warn!(
                    waiting = self.executor.waiting(),
                    concurrency = self.settings.concurrency,
                    full_for_ms = self.settings.on_time_tolerance.as_millis() as u64,
                    "overloaded: waiting line full for longer than the on-time tolerance; new fires stay unclaimed and will run late or count as misfires by policy"
                );
            } else {
                info!("no longer overloaded: claiming again");
            }
        }
    }

    /// When a full waiting line becomes overload, while it is full and the
    /// node has not declared it yet: the loop wakes then even if no run
    /// ends (runs that never end are the likeliest cause).
    fn overload_due_at(&self) -> Option<Instant> {
        match self.line_full_since {
            Some(since) if !self.overloaded => Some(since + self.settings.on_time_tolerance),
            _ => None,
        }
    }

    fn coord_result<T>(
        &mut self,
        op: &'static str,
        started: Instant,
        r: Result<T, CoordError>,
    ) -> Option<T> {
        m::round_trip(op, started.elapsed(), r.is_ok());
        match r {
            Ok(v) => {
                if !self.reachable {
                    info!(op, "store reachable again");
                    self.reachable = true;
                }
                Some(v)
            }
            Err(e) if e.is_unreachable() => {
                if self.reachable {
                    warn!(op, error = %e, "store unreachable; leases lapse locally, fires resume on reconnect");
                    self.reachable = false;
                }
                None
            }
            Err(e) => {
                warn!(op, error = %e, "coordination error");
                None
            }
        }
    }

    /// Publishes the node's status if it changed. Runs after every loop
    /// turn (one per finished run, too), so it compares in place and clones
    /// the member list only when that changed.
    fn publish_status(&self) {
        let owned_jobs = self.timetable.len();
        gauge!(m::SHARDS_OWNED).set(self.held.len() as f64);
        gauge!(m::JOBS_OWNED).set(owned_jobs as f64);
        let owned_shards = self
            .held
            .keys()
            .filter(|s| self.desired.contains(s))
            .count();
        let in_flight = self.executor.in_flight();
        self.status.send_if_modified(|s| {
            let mut changed = false;
            if s.members != self.members {
                s.members.clone_from(&self.members);
                changed = true;
            }
            changed |= replace_if_changed(&mut s.registered, self.registered);
            changed |= replace_if_changed(&mut s.desired_shards, self.desired.len());
            changed |= replace_if_changed(&mut s.owned_shards, owned_shards);
            changed |= replace_if_changed(&mut s.owned_jobs, owned_jobs);
            changed |= replace_if_changed(&mut s.in_flight, in_flight);
            changed |= replace_if_changed(&mut s.stopping, false);
            changed |= replace_if_changed(&mut s.leader, self.leading_since.is_some());
            if s.node_id != self.info.id {
                s.node_id.clone_from(&self.info.id);
                changed = true;
            }
            changed
        });
    }
}

/// Sets `slot` to `value` if they differ; returns whether it changed.
fn replace_if_changed<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// How often the loop publishes its status (at most; the heartbeat step
/// publishes at once).
const STATUS_EVERY: Duration = Duration::from_millis(100);

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
