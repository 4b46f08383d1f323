//! The node state machine: membership, ring, leases, timers and claims.
//!
//! One task owns all of a node's state and reacts to four things: the
//! heartbeat tick (register, list members, recompute the ring, release, renew
//! and acquire leases), the timer heap (claim due fires per shard in one round
//! trip and dispatch them), namespace events (react at once to joins, leaves,
//! released leases and job changes) and finished runs. Keeping it in one task
//! means there are no locks and no interleavings to reason about: a shard is
//! never released while a claim for it is in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordError, CoordEvent, Coordinator, FireClaim,
    FireKind, LeaseGrant, MemberInfo, Membership, RunOutcome, ShardJobs,
};
use shardcron_core::{RingConfig, ShardMap};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::{Clock, ServerClock};
use crate::executor::{ClaimedFire, Executor};
use crate::handler::HandlerRegistry;
use crate::lease_watch::LeaseWatch;
use crate::metrics as m;
use crate::recorder::spawn_recorder;
use crate::settings::WorkerSettings;
use crate::status::{WorkerReport, WorkerStatus};
use crate::timetable::{DueFires, JobEntry, Timetable};

/// Delay before retrying fires whose claim round trip failed.
const CLAIM_RETRY: Duration = Duration::from_millis(250);
/// Most misfire records written per job per wake-up.
const MAX_MISFIRE_RECORDS: usize = 10;

struct Held {
    token: u64,
    version: u64,
    watch: LeaseWatch,
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
    desired: BTreeSet<u32>,
    desired_since: HashMap<u32, Instant>,
    held: BTreeMap<u32, Held>,
    timetable: Timetable,
    executor: Executor,
    records: Option<mpsc::UnboundedSender<shardcron_coord::RunRecord>>,
    recorder: tokio::task::JoinHandle<()>,
    reload: BTreeSet<u32>,
    /// Fires to claim at the next step that are not in the timetable: manual
    /// triggers, and claims whose outcome this node never learned.
    pending_claims: Vec<(u32, FireClaim)>,
    retry_at: Option<Instant>,
    reachable: bool,
    registered: bool,
    report: WorkerReport,
}

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
        let (records, rx) = mpsc::unbounded_channel();
        let recorder = spawn_recorder(coord.clone(), rx);
        let executor = Executor::new(
            info.id.clone(),
            handlers,
            settings.concurrency,
            clock.clone(),
            records.clone(),
        );
        Self {
            holder: format!("{}/{}", info.id, instance),
            ring: coord.ring_config(),
            coord,
            info,
            settings,
            clock,
            status,
            members: Vec::new(),
            desired: BTreeSet::new(),
            desired_since: HashMap::new(),
            held: BTreeMap::new(),
            timetable: Timetable::new(),
            executor,
            records: Some(records),
            recorder,
            reload: BTreeSet::new(),
            pending_claims: Vec::new(),
            retry_at: None,
            reachable: true,
            registered: false,
            report: WorkerReport::default(),
        }
    }

    pub(crate) async fn run<F: Future<Output = ()> + Send>(mut self, shutdown: F) -> WorkerReport {
        tokio::pin!(shutdown);
        let mut events = self.coord.subscribe();
        let mut control_at = Instant::now();
        let mut poll_at = Instant::now() + self.settings.poll_interval;
        info!(node = %self.info.id, holder = %self.holder, "worker starting");
        loop {
            let fire_at = self.timetable.next_due().map(|due| {
                let wait = (due - self.clock.now_ms()).max(0) as u64;
                Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(control_at) => {
                    self.control_step().await;
                    control_at = Instant::now() + self.settings.heartbeat;
                }
                () = sleep_until_opt(fire_at) => self.fire_step().await,
                () = sleep_until_opt(self.retry_at) => self.fire_step().await,
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event, &mut control_at, &mut poll_at),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        control_at = Instant::now();
                        poll_at = Instant::now();
                    }
                    Err(broadcast::error::RecvError::Closed) => events = self.coord.subscribe(),
                },
                () = self.executor.next_finished() => {}
                () = tokio::time::sleep_until(poll_at) => {
                    self.poll_versions().await;
                    poll_at = Instant::now() + self.settings.poll_interval;
                }
            }
            if !self.reload.is_empty() {
                self.reload_shards().await;
            }
            self.publish_status();
        }
        self.shutdown().await
    }

    fn on_event(&mut self, event: CoordEvent, control_at: &mut Instant, poll_at: &mut Instant) {
        debug!(?event, "event");
        match event {
            CoordEvent::MemberJoined(id) | CoordEvent::MemberLeft(id) => {
                if id != self.info.id || !self.members.contains(&id) {
                    *control_at = Instant::now();
                }
            }
            CoordEvent::LeaseReleased(shard) => {
                if self.desired.contains(&shard) && !self.held.contains_key(&shard) {
                    *control_at = Instant::now();
                }
            }
            CoordEvent::JobsChanged(shard) => {
                if self.held.contains_key(&shard) {
                    self.reload.insert(shard);
                }
            }
            CoordEvent::Resync => {
                *control_at = Instant::now();
                *poll_at = Instant::now();
            }
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
                    info!(op, "Redis reachable again");
                    self.reachable = true;
                }
                Some(v)
            }
            Err(e) if e.is_unreachable() => {
                if self.reachable {
                    warn!(op, error = %e, "Redis unreachable; leases lapse locally, fires resume on reconnect");
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

    /// Heartbeat, membership, ring, leases.
    async fn control_step(&mut self) {
        let sent_ms = self.clock.local_ms();
        let t = Instant::now();
        let beat = self
            .coord
            .heartbeat(&self.info, self.settings.member_ttl)
            .await;
        let Some(server_ms) = self.coord_result("heartbeat", t, beat) else {
            if !self.held.is_empty() {
                // The leases cannot be renewed either: count it, so an outage
                // shows up as renewal failures before validity runs out.
                counter!(m::LEASE_RENEWAL_FAILURES_TOTAL).increment(1);
            }
            self.registered = false;
            self.drop_invalid_leases();
            return;
        };
        self.clock
            .observe(sent_ms, self.clock.local_ms(), server_ms);
        if !self.registered {
            info!(node = %self.info.id, offset_ms = self.clock.offset_ms(), "registered");
            self.registered = true;
        }
        let t = Instant::now();
        let listed = self.coord.members().await;
        if let Some(membership) = self.coord_result("members", t, listed) {
            self.update_ring(membership);
        }
        self.drop_invalid_leases();
        self.release_undesired().await;
        self.renew_held().await;
        self.acquire_missing().await;
    }

    fn update_ring(&mut self, membership: Membership) {
        let ids: Vec<String> = membership.members.into_iter().map(|m| m.id).collect();
        if ids == self.members {
            return;
        }
        let map = ShardMap::compute(&ids, self.ring);
        let desired: BTreeSet<u32> = map.shards_of(&self.info.id).into_iter().collect();
        gauge!(m::MEMBERS).set(ids.len() as f64);
        gauge!(m::SHARDS_DESIRED).set(desired.len() as f64);
        if desired != self.desired {
            counter!(m::REBALANCES_TOTAL).increment(1);
            info!(members = ?ids, desired = desired.len(), "ring changed");
        }
        let now = Instant::now();
        self.desired_since.retain(|s, _| desired.contains(s));
        for &shard in &desired {
            self.desired_since.entry(shard).or_insert(now);
        }
        self.members = ids;
        self.desired = desired;
    }

    fn drop_invalid_leases(&mut self) {
        let lapsed: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| !h.watch.is_valid())
            .map(|(s, _)| *s)
            .collect();
        if !lapsed.is_empty() {
            warn!(
                shards = lapsed.len(),
                "lease validity ended locally; stopped firing those shards"
            );
        }
        for shard in lapsed {
            self.lose_shard(shard);
        }
    }

    fn lose_shard(&mut self, shard: u32) {
        if let Some(held) = self.held.remove(&shard) {
            held.watch.lose();
            self.timetable.remove_shard(shard);
            self.reload.remove(&shard);
            self.report.leases_lost += 1;
            counter!(m::LEASE_LOSSES_TOTAL).increment(1);
            debug!(shard, token = held.token, "lease lost");
        }
    }

    async fn release_undesired(&mut self) {
        let undesired: Vec<u32> = self
            .held
            .keys()
            .filter(|s| !self.desired.contains(s))
            .copied()
            .collect();
        if undesired.is_empty() {
            return;
        }
        let mut leases = Vec::with_capacity(undesired.len());
        for shard in undesired {
            if let Some(held) = self.held.remove(&shard) {
                self.timetable.remove_shard(shard);
                self.reload.remove(&shard);
                leases.push((shard, held.token));
                held.watch.hand_off();
            }
        }
        info!(shards = leases.len(), "handing off shards");
        let t = Instant::now();
        let released = self.coord.release_leases(&leases, &self.holder).await;
        self.coord_result("release leases", t, released);
    }

    async fn renew_held(&mut self) {
        let leases: Vec<(u32, u64)> = self.held.iter().map(|(s, h)| (*s, h.token)).collect();
        if leases.is_empty() {
            return;
        }
        let sent = Instant::now();
        let renewed = self
            .coord
            .renew_leases(&leases, &self.holder, self.settings.lease_ttl)
            .await;
        let Some(renewed) = self.coord_result("renew leases", sent, renewed) else {
            counter!(m::LEASE_RENEWAL_FAILURES_TOTAL).increment(1);
            return;
        };
        let valid_until = sent + self.validity();
        for ((shard, _), ok) in leases.into_iter().zip(renewed) {
            if ok {
                if let Some(h) = self.held.get(&shard) {
                    h.watch.extend(valid_until);
                }
            } else {
                warn!(shard, "lease renewal refused: another node holds the shard");
                self.lose_shard(shard);
            }
        }
    }

    fn validity(&self) -> Duration {
        self.settings
            .lease_ttl
            .saturating_sub(self.settings.drift_margin)
    }

    async fn acquire_missing(&mut self) {
        let missing: Vec<u32> = self
            .desired
            .iter()
            .filter(|s| !self.held.contains_key(s))
            .copied()
            .collect();
        if missing.is_empty() {
            return;
        }
        let sent = Instant::now();
        let grants = self
            .coord
            .acquire_leases(&missing, &self.holder, self.settings.lease_ttl)
            .await;
        let Some(grants) = self.coord_result("acquire leases", sent, grants) else {
            return;
        };
        let granted: Vec<(u32, u64)> = missing
            .iter()
            .zip(grants)
            .filter_map(|(&shard, grant)| match grant {
                LeaseGrant::Granted { token } => Some((shard, token)),
                LeaseGrant::HeldBy { .. } => None,
            })
            .collect();
        if granted.is_empty() {
            return;
        }
        let shards: Vec<u32> = granted.iter().map(|(s, _)| *s).collect();
        let t = Instant::now();
        let loaded = self.coord.load_shards(&shards).await;
        let Some(loaded) = self.coord_result("load shards", t, loaded) else {
            let t = Instant::now();
            let released = self.coord.release_leases(&granted, &self.holder).await;
            self.coord_result("release leases", t, released);
            return;
        };
        let valid_until = sent + self.validity();
        for ((shard, token), jobs) in granted.into_iter().zip(loaded) {
            self.held.insert(
                shard,
                Held {
                    token,
                    version: jobs.version,
                    watch: LeaseWatch::start(valid_until),
                },
            );
            self.install_jobs(jobs, false);
            if let Some(since) = self.desired_since.get(&shard) {
                metrics::histogram!(m::SHARD_HANDOFF_SECONDS).record(since.elapsed().as_secs_f64());
            }
            self.report.leases_acquired += 1;
            counter!(m::LEASE_ACQUISITIONS_TOTAL).increment(1);
            debug!(shard, token, "lease acquired");
        }
        info!(
            owned = self.held.len(),
            desired = self.desired.len(),
            "acquired shards"
        );
        if !self.pending_claims.is_empty() {
            self.retry_at = Some(Instant::now());
        }
        self.fire_triggers(&shards).await;
    }

    /// Merges a shard's stored jobs into the timetable. Unchanged jobs keep
    /// their cursor; new or changed ones start after their last fire or write.
    fn install_jobs(&mut self, shard_jobs: ShardJobs, is_update: bool) {
        let ShardJobs {
            shard,
            version,
            jobs,
            last_fired,
        } = shard_jobs;
        if let Some(h) = self.held.get_mut(&shard) {
            h.version = version;
        }
        let last: HashMap<String, i64> = last_fired.into_iter().collect();
        let mut stale: BTreeSet<String> = self.timetable.jobs_of_shard(shard).into_iter().collect();
        for stored in jobs {
            let id = stored.spec.id.clone();
            stale.remove(&id);
            let existing = self.timetable.get(&id);
            if existing.is_some_and(|e| e.version == stored.version) {
                continue;
            }
            if is_update {
                let delay_ms = (self.clock.now_ms() - stored.updated_ms).max(0);
                metrics::histogram!(m::JOB_PROPAGATION_SECONDS).record(delay_ms as f64 / 1000.0);
            }
            let job = match stored.spec.validate() {
                Ok(job) => job,
                Err(e) => {
                    warn!(job = %id, error = %e, "stored job is invalid; not scheduling it");
                    self.timetable.remove(&id);
                    continue;
                }
            };
            let cursor_ms = [
                existing.map(|e| e.cursor_ms),
                last.get(&id).copied(),
                Some(stored.updated_ms),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(stored.updated_ms);
            self.timetable.upsert(JobEntry {
                job: Arc::new(job),
                version: stored.version,
                shard,
                cursor_ms,
                next_ms: None,
            });
        }
        for id in stale {
            self.timetable.remove(&id);
        }
    }

    async fn reload_shards(&mut self) {
        let shards: Vec<u32> = std::mem::take(&mut self.reload)
            .into_iter()
            .filter(|s| self.held.contains_key(s))
            .collect();
        if shards.is_empty() {
            return;
        }
        let t = Instant::now();
        let loaded = self.coord.load_shards(&shards).await;
        match self.coord_result("load shards", t, loaded) {
            Some(loaded) => {
                for jobs in loaded {
                    if self.held.contains_key(&jobs.shard) {
                        self.install_jobs(jobs, true);
                    }
                }
                self.fire_triggers(&shards).await;
            }
            None => self.reload.extend(shards),
        }
    }

    /// Takes the queued manual triggers of `shards`; the next fire step claims
    /// and runs them.
    async fn fire_triggers(&mut self, shards: &[u32]) {
        let leases: Vec<(u32, u64)> = shards
            .iter()
            .filter_map(|s| self.held.get(s).map(|h| (*s, h.token)))
            .collect();
        if leases.is_empty() {
            return;
        }
        let t = Instant::now();
        let taken = self.coord.take_triggers(&leases, &self.holder).await;
        let Some(taken) = self.coord_result("take triggers", t, taken) else {
            return;
        };
        for (shard, job_id, at) in taken {
            let Some(entry) = self.timetable.get(&job_id) else {
                warn!(job = %job_id, "trigger for a job that is gone; dropped");
                continue;
            };
            let claim = FireClaim {
                job_id,
                scheduled_ms: at,
                kind: FireKind::Trigger,
                job_version: entry.version,
            };
            self.pending_claims.push((shard, claim));
        }
        if !self.pending_claims.is_empty() {
            self.retry_at = Some(Instant::now());
        }
    }

    async fn poll_versions(&mut self) {
        let shards: Vec<u32> = self.held.keys().copied().collect();
        if shards.is_empty() {
            return;
        }
        let t = Instant::now();
        let versions = self.coord.shard_versions(&shards).await;
        if let Some(versions) = self.coord_result("shard versions", t, versions) {
            for (shard, version) in shards.into_iter().zip(versions) {
                if self.held.get(&shard).is_some_and(|h| h.version != version) {
                    self.reload.insert(shard);
                }
            }
        }
    }

    /// Claims every due fire, one batch per shard, one round trip in all.
    async fn fire_step(&mut self) {
        self.retry_at = None;
        // Leases whose local validity ended are dropped before anything is
        // claimed under them, so a claim never lands for a shard this step
        // has already given up.
        self.drop_invalid_leases();
        let now_ms = self.clock.now_ms();
        let tolerance_ms = self.settings.on_time_tolerance.as_millis() as i64;
        let mut batches: BTreeMap<u32, ClaimBatch> = BTreeMap::new();
        // Triggers and claims whose outcome was never learned go first.
        let retention_ms = self.settings.claim_retention.as_millis() as i64;
        for (shard, fire) in std::mem::take(&mut self.pending_claims) {
            match self.held.get(&shard) {
                Some(held) if held.watch.is_valid() => {
                    Self::batch_for(&mut batches, shard, &self.holder, held.token)
                        .fires
                        .push(fire);
                }
                _ if now_ms - fire.scheduled_ms < retention_ms => {
                    self.pending_claims.push((shard, fire))
                }
                _ => {
                    warn!(job = %fire.job_id, at = fire.scheduled_ms, "claim outcome never learned; given up")
                }
            }
        }
        for d in self.timetable.take_due(now_ms, tolerance_ms) {
            let Some(held) = self.held.get(&d.shard) else {
                continue;
            };
            if !held.watch.is_valid() {
                // Validity ended while this step ran: claim nothing for the
                // shard; retries and triggers already batched for it wait.
                if let Some(batch) = batches.remove(&d.shard) {
                    let shard = d.shard;
                    self.pending_claims
                        .extend(batch.fires.into_iter().map(|f| (shard, f)));
                }
                self.lose_shard(d.shard);
                continue;
            }
            self.record_misfires(&d, held.token);
            let token = held.token;
            let batch = Self::batch_for(&mut batches, d.shard, &self.holder, token);
            batch.fires.extend(d.run.iter().map(|&at| FireClaim {
                job_id: d.job_id.clone(),
                scheduled_ms: at,
                kind: FireKind::Scheduled,
                job_version: d.version,
            }));
        }
        batches.retain(|_, b| !b.fires.is_empty());
        if batches.is_empty() {
            return;
        }
        let claims: Vec<ClaimBatch> = batches.into_values().collect();
        let t = Instant::now();
        let outcome = self
            .coord
            .claim_fires(&claims, self.settings.claim_retention)
            .await;
        let Some(outcomes) = self.coord_result("claim fires", t, outcome) else {
            // The claims may or may not have landed: retry them as ours.
            for batch in claims {
                self.remember_uncertain(batch.shard, batch.fires, |_| true);
            }
            self.retry_at = Some(Instant::now() + CLAIM_RETRY);
            return;
        };
        for (batch, outcome) in claims.into_iter().zip(outcomes) {
            match outcome {
                BatchOutcome::LeaseLost => {
                    warn!(shard = batch.shard, "claim refused: lease no longer ours");
                    self.lose_shard(batch.shard);
                    // Scheduled fires are the next owner's to catch up;
                    // retries and triggers exist only here.
                    self.remember_uncertain(batch.shard, batch.fires, |f| {
                        f.kind != FireKind::Scheduled
                    });
                }
                BatchOutcome::Claimed(codes) => {
                    let shard = batch.shard;
                    self.dispatch_claimed(shard, batch, codes, now_ms);
                }
            }
        }
    }

    fn batch_for<'a>(
        batches: &'a mut BTreeMap<u32, ClaimBatch>,
        shard: u32,
        holder: &str,
        token: u64,
    ) -> &'a mut ClaimBatch {
        batches.entry(shard).or_insert_with(|| ClaimBatch {
            shard,
            holder: holder.to_owned(),
            token,
            fires: Vec::new(),
        })
    }

    /// Keeps fires whose claim outcome is unknown, to claim again as ours.
    fn remember_uncertain(
        &mut self,
        shard: u32,
        fires: Vec<FireClaim>,
        keep: impl Fn(&FireClaim) -> bool,
    ) {
        for fire in fires.into_iter().filter(|f| keep(f)) {
            let kind = match fire.kind {
                FireKind::Trigger => FireKind::Trigger,
                FireKind::Scheduled | FireKind::Retry => FireKind::Retry,
            };
            self.pending_claims
                .push((shard, FireClaim { kind, ..fire }));
        }
    }

    fn dispatch_claimed(
        &mut self,
        shard: u32,
        batch: ClaimBatch,
        codes: Vec<ClaimOutcome>,
        now_ms: i64,
    ) {
        // Claimed fires are this node's alone and always run; a shard given
        // up meanwhile only means their handlers get no lease to lose.
        let token = batch.token;
        let cancel = self
            .held
            .get(&shard)
            .map_or_else(tokio_util::sync::CancellationToken::new, |h| {
                h.watch.token()
            });
        let tolerance_ms = self.settings.on_time_tolerance.as_millis() as i64;
        let mut latest: HashMap<String, i64> = HashMap::new();
        for fire in &batch.fires {
            let l = latest
                .entry(fire.job_id.clone())
                .or_insert(fire.scheduled_ms);
            *l = (*l).max(fire.scheduled_ms);
        }
        for (fire, code) in batch.fires.into_iter().zip(codes) {
            match code {
                ClaimOutcome::Claimed => {
                    let Some(entry) = self.timetable.get(&fire.job_id) else {
                        warn!(job = %fire.job_id, at = fire.scheduled_ms, "claimed a fire of a job no longer loaded; not run");
                        continue;
                    };
                    self.report.claimed += 1;
                    let catch_up = now_ms - fire.scheduled_ms > tolerance_ms
                        || latest
                            .get(fire.job_id.as_str())
                            .is_some_and(|&l| fire.scheduled_ms < l);
                    if catch_up {
                        counter!(m::CATCHUP_FIRES_TOTAL).increment(1);
                    }
                    let claimed = ClaimedFire {
                        job: entry.job.clone(),
                        scheduled_ms: fire.scheduled_ms,
                        shard,
                        token,
                        cancel: cancel.clone(),
                        catch_up,
                        version: fire.job_version,
                    };
                    self.executor.dispatch(claimed);
                }
                ClaimOutcome::AlreadyClaimed => {
                    self.report.claim_conflicts += 1;
                    counter!(m::CLAIM_CONFLICTS_TOTAL).increment(1);
                    debug!(job = %fire.job_id, at = fire.scheduled_ms, "already claimed elsewhere");
                }
                ClaimOutcome::JobChanged => {
                    self.reload.insert(shard);
                }
            }
        }
    }

    fn record_misfires(&self, d: &DueFires, token: u64) {
        let Some(entry) = self.timetable.get(&d.job_id) else {
            return;
        };
        let mk = |at: i64| ClaimedFire {
            job: entry.job.clone(),
            scheduled_ms: at,
            shard: d.shard,
            token,
            cancel: tokio_util::sync::CancellationToken::new(),
            catch_up: false,
            version: d.version,
        };
        let misfires = d.misfired.len() + usize::from(d.beyond_grace.is_some());
        if misfires > 0 {
            counter!(m::MISFIRES_TOTAL).increment(misfires as u64);
        }
        if let Some(first) = d.beyond_grace {
            self.executor.record_not_run(
                &mk(first),
                RunOutcome::Misfired,
                "this and possibly later fires were missed beyond the misfire grace",
            );
        }
        for &at in d.misfired.iter().take(MAX_MISFIRE_RECORDS) {
            self.executor.record_not_run(
                &mk(at),
                RunOutcome::Misfired,
                "not run per misfire policy",
            );
        }
    }

    fn publish_status(&self) {
        let owned_jobs = self.timetable.len();
        gauge!(m::SHARDS_OWNED).set(self.held.len() as f64);
        gauge!(m::JOBS_OWNED).set(owned_jobs as f64);
        self.status.send_if_modified(|s| {
            let next = WorkerStatus {
                node_id: self.info.id.clone(),
                registered: self.registered,
                members: self.members.clone(),
                desired_shards: self.desired.len(),
                owned_shards: self.held.len(),
                owned_jobs,
                in_flight: self.executor.in_flight(),
                stopping: false,
            };
            if *s == next {
                false
            } else {
                *s = next;
                true
            }
        });
    }

    async fn shutdown(mut self) -> WorkerReport {
        info!(node = %self.info.id, "shutting down: stop firing, deregister, release, drain");
        self.status.send_modify(|s| s.stopping = true);
        let t = Instant::now();
        let left = self.coord.deregister(&self.info.id).await;
        self.coord_result("deregister", t, left);
        let leases: Vec<(u32, u64)> = self.held.iter().map(|(s, h)| (*s, h.token)).collect();
        for (_, held) in std::mem::take(&mut self.held) {
            held.watch.hand_off();
        }
        self.timetable = Timetable::new();
        let t = Instant::now();
        let released = self.coord.release_leases(&leases, &self.holder).await;
        self.coord_result("release leases", t, released);
        info!(
            released = leases.len(),
            in_flight = self.executor.in_flight(),
            "leases released; draining"
        );
        self.report.cancelled_at_shutdown = self.executor.drain(self.settings.drain_timeout).await;
        self.records = None;
        drop(self.executor);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.recorder).await;
        self.status.send_modify(|s| {
            s.owned_shards = 0;
            s.registered = false;
        });
        info!(report = ?self.report, "worker stopped");
        self.report
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
