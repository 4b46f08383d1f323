//! An in-memory [`Coordinator`] with the same semantics as the Redis one.
//!
//! It backs `shardcron demo` (a fleet in one process with no setup) and fast
//! tests of the runtime. It passes the same conformance suite as the Redis
//! coordinator, so behaviour learned on it carries over.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shardcron_core::{
    candidate_shards, job_shard, shard_of, JobSpec, PlacementRecord, RingConfig, ShardWeights,
};
use tokio::sync::broadcast;

use crate::coordinator::{CoordResult, Coordinator};
use crate::error::CoordError;
use crate::model::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CloseFire, CoordEvent, FireClaim, FireKind, HandBack,
    JobPage, LeaseGrant, LeaseInfo, MemberInfo, Membership, OpenFire, PlacementInputs,
    QueuedTrigger, RecoverBatch, RecoverOutcome, RunRecord, ShardJobs, StoredJob, StoredPlacement,
    MAX_EARLY_CLAIM_MS,
};
use crate::redis_coord::{
    decode_shard_jobs, newest_finish, HISTORY_SWEEP_EVERY_MS, HOUR_MS, JOB_RUN_HISTORY_CAP,
    JOB_RUN_HISTORY_RETENTION_HOURS, RUN_HISTORY_CAP,
};

/// A job as the store keeps it: its version and its stored JSON (kept as
/// text, like Redis does, so an undecodable record behaves the same here).
/// Serialised (by another store keeping a [`ShardState`]) as its version
/// only: decisions read versions, never the JSON.
#[derive(Serialize, Deserialize)]
struct RawJob {
    version: u64,
    #[serde(skip)]
    json: String,
}

/// The shorter name this module uses.
type Shard = ShardState;

/// One shard's protocol state: job versions, watermarks and their claim
/// records, claim keys, queued triggers, load units and open entries, with
/// the rules `claim.lua`, `recover.lua`, `close.lua`, `hand_back.lua`,
/// `trigger.lua` and `delete_job.lua` apply to them.
///
/// Why it is public: the in-memory store keeps one per shard, and a store
/// without server-side scripts (etcd) reads a shard's state, decides with
/// these same methods and writes the result back by compare-and-set, so the
/// rules exist once for both. It serialises without the lease, the fence
/// counter, the job JSON and the audit log, which such a store keeps
/// elsewhere. Its maps are ordered, so equal states serialise to equal
/// bytes (a store can tell whether a decision wrote anything).
#[derive(Default, Serialize, Deserialize)]
pub struct ShardState {
    #[serde(skip)]
    lease: Option<(LeaseInfo, i64)>,
    #[serde(skip)]
    fence: u64,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    jobs: BTreeMap<String, RawJob>,
    /// Per job, the last scheduled fire claimed and its claim record.
    #[serde(default)]
    watermarks: BTreeMap<String, Watermark>,
    /// Claim keys: `job@ms` → (record, deadline).
    #[serde(default)]
    claims: BTreeMap<String, (String, i64)>,
    /// Every claim answered `Claimed`, kept as long as a claim key would be:
    /// what an outside audit compares with the runs. The protocol never
    /// reads it.
    #[serde(skip)]
    claim_log: BTreeMap<String, (String, i64)>,
    /// Fires of batches whose promise about job versions
    /// ([`ClaimBatch::loaded_at`]) was false: deciding from the shard
    /// would have taken a version that is not current as current. Refused
    /// as changed, and kept for an outside audit (the simulator fails a
    /// seed that has any). The protocol never reads it.
    #[serde(skip)]
    broken_promises: Vec<String>,
    #[serde(default)]
    triggers: Vec<(String, i64)>,
    #[serde(default)]
    trigger_instants: BTreeMap<String, i64>,
    /// Load units per job (`weights.lua`'s per-shard hash).
    #[serde(default)]
    job_weights: BTreeMap<String, u64>,
    /// Open `at_least_once` fires: `job@at` → `holder|token|delivery|kind`.
    #[serde(default)]
    open: BTreeMap<String, String>,
}

/// Shard weights: exact live sums kept by job writes, and the snapshot
/// placement reads (see [`Coordinator::members_and_weights`]).
#[derive(Default)]
struct Weights {
    live: BTreeMap<u32, u64>,
    live_version: u64,
    snapshot: BTreeMap<u32, u64>,
    snapshot_version: u64,
    snapshot_at_ms: i64,
}

impl Weights {
    /// Applies a job's weight change to its shard's live sum.
    fn apply(&mut self, shard: u32, old: u64, new: u64) {
        if old == new {
            return;
        }
        let sum = self.live.entry(shard).or_default();
        *sum = sum.saturating_sub(old).saturating_add(new);
        if *sum == 0 {
            self.live.remove(&shard);
        }
        self.live_version += 1;
    }

    /// Refreshes the snapshot if the live weights moved and it is at least
    /// `refresh_ms` old; the same rule as `members.lua`.
    fn refresh(&mut self, now: i64, refresh_ms: i64) {
        if self.live_version != self.snapshot_version && now - self.snapshot_at_ms >= refresh_ms {
            self.snapshot = self.live.clone();
            self.snapshot_version = self.live_version;
            self.snapshot_at_ms = now;
        }
    }
}

impl Shard {
    /// Sets a job's weight, returning the previous one.
    fn set_job_weight(&mut self, job_id: &str, units: u64) -> u64 {
        let old = if units > 0 {
            self.job_weights.insert(job_id.to_owned(), units)
        } else {
            self.job_weights.remove(job_id)
        };
        old.unwrap_or(0)
    }

    /// The stored version of a job, if the job exists.
    pub fn job_version(&self, job_id: &str) -> Option<u64> {
        self.jobs.get(job_id).map(|j| j.version)
    }

    /// The shard's version (job versions are drawn from it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Moves the shard's version on (a hand-back, a job write) and returns it.
    pub fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Stores a job under `version` (drawn with [`Self::next_version`]) and
    /// its load units; returns the units it had before.
    pub fn set_job(&mut self, job_id: &str, version: u64, json: String, units: u64) -> u64 {
        self.jobs
            .insert(job_id.to_owned(), RawJob { version, json });
        self.set_job_weight(job_id, units)
    }

    /// `delete_job.lua` after its version check: removes the job, keeps a
    /// watermark past `now` (a fire claimed ahead, whose only record it may
    /// be), drops the job's queued triggers and moves the version; returns
    /// the load units the job had.
    pub fn remove_job(&mut self, job_id: &str, now: i64) -> u64 {
        self.jobs.remove(job_id);
        if self.watermarks.get(job_id).is_some_and(|w| w.at <= now) {
            self.watermarks.remove(job_id);
        }
        self.triggers.retain(|(job, _)| job != job_id);
        self.trigger_instants.remove(job_id);
        self.version += 1;
        self.set_job_weight(job_id, 0)
    }

    /// `trigger.lua`: queues an extra fire of an existing job at `now`,
    /// moved past the job's previous trigger and past its watermark (a
    /// scheduled fire claimed ahead); `None` if the job does not exist.
    pub fn queue_trigger(&mut self, job_id: &str, now: i64) -> Option<i64> {
        if !self.jobs.contains_key(job_id) {
            return None;
        }
        let mut at = match self.trigger_instants.get(job_id) {
            Some(&prev) if prev >= now => prev + 1,
            _ => now,
        };
        if let Some(w) = self.watermarks.get(job_id) {
            if w.at >= at {
                at = w.at + 1;
            }
        }
        self.trigger_instants.insert(job_id.to_owned(), at);
        self.triggers.push((job_id.to_owned(), at));
        self.version += 1;
        Some(at)
    }

    /// The queued triggers, after dropping those of jobs that no longer
    /// exist, as `(job id, ms)` in queue order.
    pub fn live_triggers(&mut self) -> &[(String, i64)] {
        let Self { triggers, jobs, .. } = self;
        triggers.retain(|(job, _)| jobs.contains_key(job));
        triggers
    }

    /// Every job's watermark ms, sorted by job id.
    pub fn last_fired(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .watermarks
            .iter()
            .map(|(k, w)| (k.clone(), w.at))
            .collect();
        out.sort();
        out
    }

    /// A job leaving this shard because its placement changed: removes it
    /// like [`Self::remove_job`] but hands over what the job's next shard
    /// must keep (its watermark with its claim record, its queued triggers
    /// and trigger instant) instead of dropping it; `None` if the job is
    /// not here.
    pub fn take_moving_job(&mut self, job_id: &str) -> Option<MovingJob> {
        let job = self.jobs.remove(job_id)?;
        let mut triggers = Vec::new();
        self.triggers.retain(|(job, at)| {
            let ours = job == job_id;
            if ours {
                triggers.push(*at);
            }
            !ours
        });
        self.version += 1;
        Some(MovingJob {
            json: job.json,
            watermark: self.watermarks.remove(job_id),
            triggers,
            trigger_instant: self.trigger_instants.remove(job_id),
            units: self.set_job_weight(job_id, 0),
        })
    }

    /// The job's next shard takes what [`Self::take_moving_job`] handed
    /// over: the watermark (the later of the two, should this shard still
    /// keep one from an earlier stay), the triggers and the trigger
    /// instant. The job itself is stored with [`Self::set_job`].
    pub fn receive_moving_job(&mut self, job_id: &str, moving: MovingJob) {
        if let Some(w) = moving.watermark {
            match self.watermarks.get(job_id) {
                Some(kept) if kept.at >= w.at => {}
                _ => {
                    self.watermarks.insert(job_id.to_owned(), w);
                }
            }
        }
        for at in moving.triggers {
            self.triggers.push((job_id.to_owned(), at));
        }
        if let Some(at) = moving.trigger_instant {
            let kept = self.trigger_instants.entry(job_id.to_owned()).or_insert(at);
            *kept = (*kept).max(at);
        }
    }

    /// Whether the shard holds a job of this id.
    pub fn has_job(&self, job_id: &str) -> bool {
        self.jobs.contains_key(job_id)
    }

    /// `claim.lua` for one batch whose lease check passed: expired claim
    /// keys go, then every fire is decided in order against store time
    /// `now`. `here` holds the jobs of this shard whose watermark this call
    /// wrote (in this batch or an earlier one of the same call).
    pub fn claim_checked_batch(
        &mut self,
        batch: &ClaimBatch,
        now: i64,
        retention_ms: i64,
        here: &mut HashSet<String>,
    ) -> Vec<ClaimOutcome> {
        self.claims.retain(|_, (_, deadline)| *deadline > now);
        self.claim_log.retain(|_, (_, deadline)| *deadline > now);
        let latest = now + MAX_EARLY_CLAIM_MS + batch.ahead_ms.max(0);
        self.claim_batch(batch, now, latest, retention_ms, here)
    }

    /// The record of fire `key` (`job@ms`): its claim key, else the job's
    /// watermark when that is at the fire's ms (`claim.lua`'s lookup).
    fn record(&self, job_id: &str, at: i64, key: &str) -> Option<&str> {
        if let Some((value, _)) = self.claims.get(key) {
            return Some(value);
        }
        self.watermarks
            .get(job_id)
            .filter(|w| w.at == at)
            .and_then(|w| w.record.as_deref())
    }

    /// Claims one batch's fires in order; the same rules, in the same
    /// order, as `claim.lua`. `here` holds the jobs of this shard whose
    /// watermark this call wrote, in this batch or an earlier one.
    fn claim_batch(
        &mut self,
        batch: &ClaimBatch,
        now: i64,
        latest_ms: i64,
        retention_ms: i64,
        here: &mut HashSet<String>,
    ) -> Vec<ClaimOutcome> {
        let value_prefix = format!("{}|{}", batch.holder, batch.token);
        batch
            .fires
            .iter()
            .map(|fire| {
                let outcome = self.claim_one(
                    fire,
                    batch,
                    &value_prefix,
                    latest_ms,
                    here,
                    now + retention_ms,
                );
                if outcome == ClaimOutcome::Claimed {
                    let key = format!("{}@{}", fire.job_id, fire.scheduled_ms);
                    let value = format!("{value_prefix}|{}", fire.attempt);
                    self.claim_log.insert(key, (value, now + retention_ms));
                }
                outcome
            })
            .collect()
    }

    /// Whether `fire`'s job changed since the caller read it. With the
    /// batch's promise `loaded_at`, decided as `claim.lua` decides it from
    /// the shard: changed when the job is gone or was written after the
    /// shard was at `loaded_at` (never when the shard is still at it). A
    /// fire that decision would pass although its version is not the
    /// job's is a broken promise: refused, and noted for the audit.
    fn job_changed(&mut self, fire: &FireClaim, loaded_at: Option<u64>) -> bool {
        let current = self.job_version(&fire.job_id);
        let Some(loaded) = loaded_at else {
            return current != Some(fire.job_version);
        };
        let changed = self.version != loaded && current.is_none_or(|v| v > loaded);
        if !changed && current != Some(fire.job_version) {
            self.broken_promises.push(format!(
                "fire {}@{} carries version {} of its job, which is at {current:?}, in a batch that promised versions read at shard version {loaded} or later (the shard is at {})",
                fire.job_id, fire.scheduled_ms, fire.job_version, self.version
            ));
            return true;
        }
        changed
    }

    fn claim_one(
        &mut self,
        fire: &FireClaim,
        batch: &ClaimBatch,
        value_prefix: &str,
        latest_ms: i64,
        here: &mut HashSet<String>,
        deadline: i64,
    ) -> ClaimOutcome {
        let holder = batch.holder.as_str();
        let key = format!("{}@{}", fire.job_id, fire.scheduled_ms);
        let value = format!("{value_prefix}|{}", fire.attempt);
        let at = fire.scheduled_ms;
        let mut taken_over = false;
        if !fire.uncertain.is_empty() {
            let found = self.record(&fire.job_id, at, &key).and_then(|cur| {
                parse_claim_value(cur)
                    .filter(|(h, attempt)| *h == holder && fire.uncertain.contains(attempt))
                    .map(|_| ())
            });
            if found.is_some() {
                if self.claims.contains_key(&key) {
                    self.claims.insert(key.clone(), (value.clone(), deadline));
                }
                if let Some(w) = self.watermarks.get_mut(&fire.job_id) {
                    if w.at == at && w.record.is_some() {
                        w.record = Some(value.clone());
                        here.insert(fire.job_id.clone());
                    }
                }
                taken_over = true;
            }
        }
        let outcome = if taken_over {
            ClaimOutcome::Claimed
        } else if self.job_changed(fire, batch.loaded_at) {
            ClaimOutcome::JobChanged
        } else if fire.kind == FireKind::Scheduled && at > latest_ms {
            ClaimOutcome::NotYetDue
        } else if fire.kind == FireKind::Scheduled {
            self.claim_scheduled(fire, holder, &key, value, here, deadline)
        } else {
            let at_watermark = self
                .watermarks
                .get(&fire.job_id)
                .is_some_and(|w| w.at == at && w.record.is_some());
            if !at_watermark && !self.claims.contains_key(&key) {
                self.claims.insert(key.clone(), (value, deadline));
                ClaimOutcome::Claimed
            } else {
                ClaimOutcome::AlreadyClaimed
            }
        };
        if outcome == ClaimOutcome::Claimed && fire.track_open {
            let kind = fire.kind.code();
            self.open.insert(key, format!("{value_prefix}|1|{kind}"));
        }
        if fire.kind == FireKind::Trigger
            && matches!(
                outcome,
                ClaimOutcome::Claimed | ClaimOutcome::AlreadyClaimed
            )
        {
            if let Some(i) = self
                .triggers
                .iter()
                .position(|(j, at)| *j == fire.job_id && *at == fire.scheduled_ms)
            {
                self.triggers.remove(i);
            }
        }
        outcome
    }

    /// Step 4 of `claim.lua` for a scheduled fire: later than the
    /// watermark, and no key if a trigger of the job is at or after it; the
    /// record the watermark held is kept in a key when another holder wrote
    /// it or this call did.
    fn claim_scheduled(
        &mut self,
        fire: &FireClaim,
        holder: &str,
        key: &str,
        value: String,
        here: &mut HashSet<String>,
        deadline: i64,
    ) -> ClaimOutcome {
        let at = fire.scheduled_ms;
        let current = self.watermarks.get(&fire.job_id);
        if current.is_some_and(|w| at <= w.at) {
            return ClaimOutcome::AlreadyClaimed;
        }
        let guard = self
            .trigger_instants
            .get(&fire.job_id)
            .is_some_and(|&t| t >= at);
        if guard && self.claims.contains_key(key) {
            return ClaimOutcome::AlreadyClaimed;
        }
        if let Some(w) = current {
            if let Some(record) = &w.record {
                let written_by = split_claim_value(record).map(|(h, _)| h);
                if written_by != Some(holder) || here.contains(&fire.job_id) {
                    let old_key = format!("{}@{}", fire.job_id, w.at);
                    let old = (record.clone(), deadline);
                    self.claims.entry(old_key).or_insert(old);
                }
            }
        }
        if guard {
            self.claims
                .insert(key.to_owned(), (value.clone(), deadline));
        }
        self.watermarks.insert(
            fire.job_id.clone(),
            Watermark {
                at,
                record: Some(value),
            },
        );
        here.insert(fire.job_id.clone());
        ClaimOutcome::Claimed
    }
}

/// What a job carries from one shard to another when its placement
/// changes (see [`ShardState::take_moving_job`]).
pub struct MovingJob {
    /// The stored job's JSON as it was.
    pub json: String,
    watermark: Option<Watermark>,
    triggers: Vec<i64>,
    trigger_instant: Option<i64>,
    /// The load units the job weighed in its old shard.
    pub units: u64,
}

/// A job's watermark: its last scheduled fire claimed, and that claim's
/// record (`holder|token|attempt`), as `claim.lua` keeps it in one field.
#[derive(Serialize, Deserialize)]
struct Watermark {
    at: i64,
    record: Option<String>,
}

mod delivery;

/// `holder|token|attempt` -> (holder, attempt).
fn parse_claim_value(value: &str) -> Option<(&str, u64)> {
    let (holder, attempt) = split_claim_value(value)?;
    Some((holder, attempt.parse().ok()?))
}

/// `holder|token|x` -> (holder, x): `x` is an attempt id, or `h` once the
/// holder handed the fire back.
fn split_claim_value(value: &str) -> Option<(&str, &str)> {
    let (rest, last) = value.rsplit_once('|')?;
    let (holder, _token) = rest.rsplit_once('|')?;
    Some((holder, last))
}

/// One job's last runs (most recent first) and the hour of its last
/// write, as the Redis store keeps them (`{ns}:jobruns`, `{ns}:jobruns:n`).
#[derive(Default)]
struct JobRuns {
    runs: VecDeque<RunRecord>,
    hour: i64,
}

#[derive(Default)]
struct State {
    config: Option<RingConfig>,
    members: BTreeMap<String, (MemberInfo, i64)>,
    shards: HashMap<u32, Shard>,
    runs: VecDeque<RunRecord>,
    job_runs: HashMap<String, JobRuns>,
    /// Record time of the last sweep of deleted jobs' history.
    history_swept_ms: Option<i64>,
    weights: Weights,
    placement: Option<StoredPlacement>,
}

/// The store's own clock, Unix ms: the system clock by default, a virtual one
/// in the fault simulator (so store time follows tokio's paused clock).
pub type StoreClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Namespace state shared by every [`MemoryCoordinator`] cloned from one store.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    events: Arc<Mutex<Option<broadcast::Sender<CoordEvent>>>>,
    clock: StoreClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            events: Arc::default(),
            clock: Arc::new(system_now_ms),
        }
    }
}

/// [`Coordinator`] over a [`MemoryStore`]; several nodes in one process share a store.
#[derive(Clone)]
pub struct MemoryCoordinator {
    store: MemoryStore,
    namespace: String,
    ring: RingConfig,
    events: broadcast::Sender<CoordEvent>,
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose server time comes from `clock` instead of the
    /// system clock.
    pub fn with_clock(clock: StoreClock) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    /// Forgets the stored ring settings, as a store that lost data would
    /// (for tests of what the next heartbeat does).
    pub fn forget_config(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).config = None;
    }

    /// Stores a job record as raw text, bypassing validation, as a newer
    /// version or a damaged store could leave it (for tests of loading).
    pub fn put_raw_job(&self, shard: u32, job_id: &str, json: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let shard = state.shards.entry(shard).or_default();
        shard.version += 1;
        let version = shard.version;
        shard.jobs.insert(
            job_id.to_owned(),
            RawJob {
                version,
                json: json.to_owned(),
            },
        );
    }

    /// Every broken promise about job versions a claim batch made
    /// ([`ClaimBatch::loaded_at`]), one line each: none, unless the caller
    /// has a bug (for tests and the simulator).
    pub fn broken_version_promises(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .shards
            .values()
            .flat_map(|s| s.broken_promises.iter().cloned())
            .collect()
    }

    /// Every fire claimed within the claim retention as `(job id,
    /// scheduled ms, holder)`, sorted: what an outside audit compares with
    /// the runs (for tests). Kept beside the protocol's own records, which
    /// hold only what the protocol needs.
    pub fn claimed_fires(&self) -> Vec<(String, i64, String)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, i64, String)> = state
            .shards
            .values()
            .flat_map(|s| s.claim_log.iter())
            .filter_map(|(key, (value, _))| {
                let (job, at) = key.rsplit_once('@')?;
                let (holder, _) = parse_claim_value(value)?;
                Some((job.to_owned(), at.parse().ok()?, holder.to_owned()))
            })
            .collect();
        out.sort();
        out
    }

    /// The store's current time, Unix ms.
    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// A coordinator on this store; fails like Redis on mismatched ring settings.
    pub fn coordinator(&self, namespace: &str, ring: RingConfig) -> CoordResult<MemoryCoordinator> {
        let events = {
            let mut guard = self.events.lock().unwrap_or_else(|p| p.into_inner());
            guard
                .get_or_insert_with(|| broadcast::channel(4096).0)
                .clone()
        };
        let c = MemoryCoordinator {
            store: self.clone(),
            namespace: namespace.to_owned(),
            ring,
            events,
        };
        c.check_config()?;
        Ok(c)
    }
}

impl MemoryCoordinator {
    /// A coordinator on a fresh store of its own.
    pub fn new(namespace: &str, ring: RingConfig) -> CoordResult<Self> {
        MemoryStore::new().coordinator(namespace, ring)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.store
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, event: CoordEvent) {
        let _ = self.events.send(event);
    }

    /// The shard holding the job `job_id` and the job's version: it is in
    /// one of its candidate shards (one per placement), or nowhere.
    fn locate(state: &State, job_id: &str, shard_count: u32) -> Option<(u32, u64)> {
        candidate_shards(job_id, shard_count)
            .into_iter()
            .find_map(|n| Some((n, state.shards.get(&n)?.job_version(job_id)?)))
    }

    fn check_config(&self) -> CoordResult<()> {
        let mut state = self.state();
        match state.config {
            None => {
                state.config = Some(self.ring);
                Ok(())
            }
            Some(stored) => {
                let mismatch = if stored.shard_count != self.ring.shard_count {
                    Some(("shard_count", stored.shard_count, self.ring.shard_count))
                } else if stored.vnodes != self.ring.vnodes {
                    Some(("vnodes", stored.vnodes, self.ring.vnodes))
                } else if stored.load_bound_permille != self.ring.load_bound_permille {
                    Some((
                        "load_bound_permille",
                        stored.load_bound_permille,
                        self.ring.load_bound_permille,
                    ))
                } else {
                    None
                };
                match mismatch {
                    None => Ok(()),
                    Some((field, stored, given)) => Err(CoordError::ConfigMismatch {
                        namespace: self.namespace.clone(),
                        field: field.to_owned(),
                        stored: stored.to_string(),
                        given: given.to_string(),
                    }),
                }
            }
        }
    }

    /// Runs `step` on each batch's shard if the batch's holder holds its
    /// live lease under its token (the check every lease-guarded script
    /// makes first), else yields `lost` for it.
    fn under_lease<B, T: Clone>(
        &self,
        batches: &[B],
        lease: impl Fn(&B) -> (u32, String, u64),
        lost: T,
        mut step: impl FnMut(&mut Shard, &B, i64) -> T,
    ) -> Vec<T> {
        let now = self.store.now_ms();
        let mut state = self.state();
        batches
            .iter()
            .map(|batch| {
                let (n, holder, token) = lease(batch);
                let shard = state.shards.entry(n).or_default();
                if Self::holds(shard, now, &holder, token) {
                    step(shard, batch, now)
                } else {
                    lost.clone()
                }
            })
            .collect()
    }

    /// Whether `holder` holds `shard`'s live lease under `token`: the
    /// check every lease-guarded script makes first.
    fn holds(shard: &mut Shard, now: i64, holder: &str, token: u64) -> bool {
        matches!(Self::live_lease(shard, now), Some(l) if l.holder == holder && l.token == token)
    }

    fn live_lease(shard: &mut Shard, now: i64) -> Option<&LeaseInfo> {
        if matches!(shard.lease, Some((_, deadline)) if deadline <= now) {
            shard.lease = None;
        }
        shard.lease.as_ref().map(|(l, _)| l)
    }
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn ring_config(&self) -> RingConfig {
        self.ring
    }

    async fn ensure_config(&self) -> CoordResult<()> {
        self.check_config()
    }

    async fn server_time_ms(&self) -> CoordResult<i64> {
        Ok(self.store.now_ms())
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        self.check_config()?;
        let now = self.store.now_ms();
        let joined = {
            let mut state = self.state();
            let prev = state
                .members
                .insert(member.id.clone(), (member.clone(), now + ms(ttl)));
            !matches!(prev, Some((_, deadline)) if deadline > now)
        };
        if joined {
            self.publish(CoordEvent::MemberJoined(member.id.clone()));
        }
        Ok(now)
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        let removed = self.state().members.remove(node_id).is_some();
        if removed {
            self.publish(CoordEvent::MemberLeft(node_id.to_owned()));
        }
        Ok(())
    }

    async fn members(&self) -> CoordResult<Membership> {
        let now = self.store.now_ms();
        let (members, expired) = {
            let mut state = self.state();
            let expired: Vec<String> = state
                .members
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                state.members.remove(id);
            }
            let members = state.members.values().map(|(m, _)| m.clone()).collect();
            (members, expired)
        };
        for id in expired {
            self.publish(CoordEvent::MemberLeft(id));
        }
        Ok(Membership {
            server_ms: now,
            members,
        })
    }

    async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        let membership = self.members().await?;
        let mut state = self.state();
        state.weights.refresh(membership.server_ms, ms(refresh));
        let weights = &state.weights;
        let changed = known_weights != Some(weights.snapshot_version);
        let snapshot = changed.then(|| {
            ShardWeights::from_pairs(
                weights.snapshot_version,
                weights.snapshot.iter().map(|(s, w)| (*s, *w)),
            )
        });
        let placement = state
            .placement
            .as_ref()
            .filter(|stored| {
                known_placement != Some(stored.version) && known_placement != Some(u64::MAX)
            })
            .cloned();
        Ok(PlacementInputs {
            membership,
            weights: snapshot,
            placement,
        })
    }

    async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        let mut state = self.state();
        let current = state.placement.as_ref().map_or(0, |p| p.version);
        if current != expected {
            return Ok(None);
        }
        state.placement = Some(StoredPlacement {
            version: current + 1,
            record: record.clone(),
        });
        Ok(Some(current + 1))
    }

    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        let now = self.store.now_ms();
        let mut state = self.state();
        Ok(shards
            .iter()
            .map(|&n| {
                let shard = state.shards.entry(n).or_default();
                match Self::live_lease(shard, now).cloned() {
                    Some(lease) if lease.holder == holder => {
                        shard.lease = Some((lease.clone(), now + ms(ttl)));
                        LeaseGrant::Granted { token: lease.token }
                    }
                    Some(lease) => LeaseGrant::HeldBy {
                        holder: lease.holder,
                        token: lease.token,
                    },
                    None => {
                        // One more than the counter, and at least the store
                        // time in microseconds (see `acquire.lua`).
                        shard.fence = (shard.fence + 1).max(now.max(0) as u64 * 1000);
                        let lease = LeaseInfo {
                            holder: holder.to_owned(),
                            token: shard.fence,
                        };
                        shard.lease = Some((lease, now + ms(ttl)));
                        LeaseGrant::Granted { token: shard.fence }
                    }
                }
            })
            .collect())
    }

    async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        let now = self.store.now_ms();
        let mut state = self.state();
        Ok(leases
            .iter()
            .map(|&(n, token)| {
                let shard = state.shards.entry(n).or_default();
                let ours = matches!(Self::live_lease(shard, now), Some(l) if l.holder == holder && l.token == token);
                if ours {
                    if let Some((_, deadline)) = shard.lease.as_mut() {
                        *deadline = now + ms(ttl);
                    }
                }
                ours
            })
            .collect())
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        let now = self.store.now_ms();
        let released: Vec<bool> = {
            let mut state = self.state();
            leases
                .iter()
                .map(|&(n, token)| {
                    let shard = state.shards.entry(n).or_default();
                    let ours = matches!(Self::live_lease(shard, now), Some(l) if l.holder == holder && l.token == token);
                    if ours {
                        shard.lease = None;
                    }
                    ours
                })
                .collect()
        };
        for (&(shard, _), &ok) in leases.iter().zip(&released) {
            if ok {
                self.publish(CoordEvent::LeaseReleased(shard));
            }
        }
        Ok(released)
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        let now = self.store.now_ms();
        let mut state = self.state();
        Ok(shards
            .iter()
            .map(|&n| Self::live_lease(state.shards.entry(n).or_default(), now).cloned())
            .collect())
    }

    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        let lease = |b: &ClaimBatch| (b.shard, b.holder.clone(), b.token);
        // Per shard, the jobs whose watermark this call wrote: batches of
        // one shard in one call count as one call, as in `claim.lua`.
        let mut here: HashMap<u32, HashSet<String>> = HashMap::new();
        Ok(self.under_lease(
            batches,
            lease,
            BatchOutcome::LeaseLost,
            |shard, batch, now| {
                let here = here.entry(batch.shard).or_default();
                BatchOutcome::Claimed(shard.claim_checked_batch(batch, now, ms(retention), here))
            },
        ))
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        let units = spec.validate()?.load_units();
        let n = job_shard(&spec.id, spec.placement, self.ring.shard_count);
        let (stored, moved_from) = {
            let mut guard = self.state();
            let state = &mut *guard;
            let found = Self::locate(state, &spec.id, self.ring.shard_count);
            let current = found.map_or(0, |(_, v)| v);
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: spec.id.clone(),
                        expected,
                        current,
                    });
                }
            }
            let now = self.store.now_ms();
            // A placement change moves the job to its new shard in this same
            // step, with its watermark and queued triggers.
            let moved_from = found.map(|(s, _)| s).filter(|&s| s != n);
            let moving = moved_from.and_then(|from| {
                let moving = state.shards.get_mut(&from)?.take_moving_job(&spec.id)?;
                state.weights.apply(from, moving.units, 0);
                Some(moving)
            });
            let shard = state.shards.entry(n).or_default();
            let previous_json = match &moving {
                Some(m) => Some(m.json.clone()),
                None => shard.jobs.get(&spec.id).map(|j| j.json.clone()),
            };
            let previous = previous_json.and_then(|j| serde_json::from_str::<StoredJob>(&j).ok());
            let version = shard.next_version();
            let stored = StoredJob::written(spec, version, now, previous.as_ref());
            let json = serde_json::to_string(&stored).map_err(|e| CoordError::Corrupt {
                what: format!("job {}", spec.id),
                message: e.to_string(),
            })?;
            if let Some(moving) = moving {
                shard.receive_moving_job(&spec.id, moving);
            }
            let old = shard.set_job(&spec.id, stored.version, json, units);
            state.weights.apply(n, old, units);
            (stored, moved_from)
        };
        if let Some(from) = moved_from {
            self.publish(CoordEvent::JobsChanged(from));
        }
        self.publish(CoordEvent::JobsChanged(n));
        Ok(stored)
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let raw = {
            let state = self.state();
            Self::locate(&state, job_id, self.ring.shard_count).and_then(|(n, _)| {
                state
                    .shards
                    .get(&n)
                    .and_then(|s| s.jobs.get(job_id).map(|j| j.json.clone()))
            })
        };
        raw.map(|json| {
            serde_json::from_str(&json).map_err(|e| CoordError::Corrupt {
                what: format!("job {job_id}"),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        let removed_from = {
            let mut guard = self.state();
            let state = &mut *guard;
            let Some((n, current)) = Self::locate(state, job_id, self.ring.shard_count) else {
                return Ok(false);
            };
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: job_id.to_owned(),
                        expected,
                        current,
                    });
                }
            }
            let shard = state.shards.entry(n).or_default();
            let old = shard.remove_job(job_id, self.store.now_ms());
            state.weights.apply(n, old, 0);
            n
        };
        self.publish(CoordEvent::JobsChanged(removed_from));
        Ok(true)
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        let (n, at) = {
            let mut guard = self.state();
            let state = &mut *guard;
            let Some((n, _)) = Self::locate(state, job_id, self.ring.shard_count) else {
                return Ok(None);
            };
            let shard = state.shards.entry(n).or_default();
            let now = self.store.now_ms();
            match shard.queue_trigger(job_id, now) {
                Some(at) => (n, at),
                None => return Ok(None),
            }
        };
        self.publish(CoordEvent::JobsChanged(n));
        Ok(Some(at))
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        let now = self.store.now_ms();
        let mut state = self.state();
        let mut out = Vec::new();
        for &(n, token) in leases {
            let shard = state.shards.entry(n).or_default();
            let ours = matches!(Self::live_lease(shard, now), Some(l) if l.holder == holder && l.token == token);
            if ours {
                out.extend(shard.live_triggers().iter().map(|(job, at)| QueuedTrigger {
                    shard: n,
                    job_id: job.clone(),
                    at_ms: *at,
                }));
            }
        }
        Ok(out)
    }

    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let all: BTreeSet<String> = self
            .state()
            .shards
            .values()
            .flat_map(|s| s.jobs.keys().cloned())
            .collect();
        let mut ids: Vec<String> = all
            .into_iter()
            .filter(|id| id.starts_with(prefix) && after.is_none_or(|a| id.as_str() > a))
            .take(limit.saturating_add(1))
            .collect();
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().cloned()
        } else {
            None
        };
        Ok(JobPage { ids, next })
    }

    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        let state = self.state();
        Ok(shards
            .iter()
            .map(|&n| match state.shards.get(&n) {
                None => ShardJobs {
                    shard: n,
                    version: 0,
                    jobs: Vec::new(),
                    last_fired: Vec::new(),
                    unreadable: Vec::new(),
                },
                Some(s) => {
                    let (jobs, unreadable) = decode_shard_jobs(
                        s.jobs.iter().map(|(id, j)| (id.clone(), j.json.clone())),
                    );
                    let last_fired = s.last_fired();
                    ShardJobs {
                        shard: n,
                        version: s.version,
                        jobs,
                        last_fired,
                        unreadable,
                    }
                }
            })
            .collect())
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        let state = self.state();
        Ok(shards
            .iter()
            .map(|n| state.shards.get(n).map_or(0, |s| s.version))
            .collect())
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let newest = newest_finish(runs);
        let hour = newest.div_euclid(HOUR_MS);
        let mut state = self.state();
        for run in runs {
            state.runs.push_front(run.clone());
            state.runs.truncate(RUN_HISTORY_CAP);
            let per_job = state.job_runs.entry(run.job_id.clone()).or_default();
            per_job.runs.push_front(run.clone());
            per_job.runs.truncate(JOB_RUN_HISTORY_CAP);
            per_job.hour = hour;
        }
        let due = state
            .history_swept_ms
            .is_none_or(|last| newest.abs_diff(last) >= HISTORY_SWEEP_EVERY_MS);
        if due {
            // The sweep of `sweep_history.lua`, over every job at once.
            state.history_swept_ms = Some(newest);
            let State {
                job_runs, shards, ..
            } = &mut *state;
            let shard_count = self.ring.shard_count;
            job_runs.retain(|job, per_job| {
                per_job.hour >= hour - JOB_RUN_HISTORY_RETENTION_HOURS
                    || shards
                        .get(&shard_of(job, shard_count))
                        .is_some_and(|s| s.jobs.contains_key(job))
            });
        }
        Ok(())
    }

    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        let mut state = self.state();
        for close in closes {
            if let Some(shard) = state.shards.get_mut(&close.shard) {
                shard.close(close);
            }
        }
        Ok(())
    }

    async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        let state = self.state();
        Ok(shards
            .iter()
            .map(|&n| {
                state
                    .shards
                    .get(&n)
                    .map(|s| s.open_fires(n))
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        let lease = |b: &RecoverBatch| (b.shard, b.holder.clone(), b.token);
        Ok(self.under_lease(
            batches,
            lease,
            RecoverOutcome::LeaseLost,
            |shard, batch, now| {
                RecoverOutcome::Recovered(shard.recover(batch, now + ms(retention)))
            },
        ))
    }

    async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        let deadline = self.store.now_ms() + ms(retention);
        let mut moved = std::collections::BTreeSet::new();
        let out = {
            let mut state = self.state();
            fires
                .iter()
                .map(|fire| {
                    let shard = state.shards.entry(fire.shard).or_default();
                    let (handed, wrote) = shard.hand_back(holder, fire, deadline);
                    if wrote && moved.insert(fire.shard) {
                        shard.next_version();
                    }
                    handed
                })
                .collect()
        };
        for shard in moved {
            self.publish(CoordEvent::JobsChanged(shard));
        }
        Ok(out)
    }

    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>> {
        let state = self.state();
        let list = match job_id {
            None => Some(&state.runs),
            Some(j) => state.job_runs.get(j).map(|per_job| &per_job.runs),
        };
        Ok(list
            .map(|l| l.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}
