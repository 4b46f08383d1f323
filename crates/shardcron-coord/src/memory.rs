//! An in-memory [`Coordinator`] with the same semantics as the Redis one.
//!
//! It backs `shardcron demo` (a fleet in one process with no setup) and fast
//! tests of the runtime. It passes the same conformance suite as the Redis
//! coordinator, so behaviour learned on it carries over.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use shardcron_core::{shard_of, JobSpec, RingConfig};
use tokio::sync::broadcast;

use crate::coordinator::{CoordResult, Coordinator};
use crate::error::CoordError;
use crate::model::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordEvent, FireKind, JobPage, LeaseGrant, LeaseInfo,
    MemberInfo, Membership, RunRecord, ShardJobs, StoredJob,
};
use crate::redis_coord::{JOB_RUN_HISTORY_CAP, RUN_HISTORY_CAP};

#[derive(Default)]
struct Shard {
    lease: Option<(LeaseInfo, i64)>,
    fence: u64,
    version: u64,
    jobs: BTreeMap<String, StoredJob>,
    last_fired: HashMap<String, i64>,
    claims: HashMap<String, (String, i64)>,
    triggers: Vec<(String, i64)>,
}

#[derive(Default)]
struct State {
    config: Option<RingConfig>,
    members: BTreeMap<String, (MemberInfo, i64)>,
    shards: HashMap<u32, Shard>,
    runs: VecDeque<RunRecord>,
    job_runs: HashMap<String, VecDeque<RunRecord>>,
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
                        shard.fence += 1;
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
        let now = self.store.now_ms();
        let mut state = self.state();
        Ok(batches
            .iter()
            .map(|batch| {
                let shard = state.shards.entry(batch.shard).or_default();
                let ours = matches!(Self::live_lease(shard, now), Some(l) if l.holder == batch.holder && l.token == batch.token);
                if !ours {
                    return BatchOutcome::LeaseLost;
                }
                shard.claims.retain(|_, (_, deadline)| *deadline > now);
                let value = format!("{}|{}", batch.holder, batch.token);
                let holder_prefix = format!("{}|", batch.holder);
                BatchOutcome::Claimed(
                    batch
                        .fires
                        .iter()
                        .map(|fire| {
                            if shard.jobs.get(&fire.job_id).map(|j| j.version) != Some(fire.job_version) {
                                return ClaimOutcome::JobChanged;
                            }
                            let key = format!("{}@{}", fire.job_id, fire.scheduled_ms);
                            if fire.kind != FireKind::Scheduled
                                && shard.claims.get(&key).is_some_and(|(v, _)| v.starts_with(&holder_prefix))
                            {
                                shard.claims.insert(key, (value.clone(), now + ms(retention)));
                                return ClaimOutcome::Claimed;
                            }
                            let fresh = fire.kind == FireKind::Trigger
                                || shard
                                    .last_fired
                                    .get(&fire.job_id)
                                    .is_none_or(|&last| fire.scheduled_ms > last);
                            if !fresh || shard.claims.contains_key(&key) {
                                return ClaimOutcome::AlreadyClaimed;
                            }
                            shard.claims.insert(key, (value.clone(), now + ms(retention)));
                            if fire.kind != FireKind::Trigger {
                                shard.last_fired.insert(fire.job_id.clone(), fire.scheduled_ms);
                            }
                            ClaimOutcome::Claimed
                        })
                        .collect(),
                )
            })
            .collect())
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        spec.validate()?;
        let n = shard_of(&spec.id, self.ring.shard_count);
        let stored = {
            let mut state = self.state();
            let shard = state.shards.entry(n).or_default();
            let current = shard.jobs.get(&spec.id).map_or(0, |j| j.version);
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: spec.id.clone(),
                        expected,
                        current,
                    });
                }
            }
            shard.version += 1;
            let stored = StoredJob {
                version: shard.version,
                updated_ms: self.store.now_ms(),
                spec: spec.clone(),
            };
            shard.jobs.insert(spec.id.clone(), stored.clone());
            stored
        };
        self.publish(CoordEvent::JobsChanged(n));
        Ok(stored)
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let n = shard_of(job_id, self.ring.shard_count);
        Ok(self
            .state()
            .shards
            .get(&n)
            .and_then(|s| s.jobs.get(job_id).cloned()))
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        let n = shard_of(job_id, self.ring.shard_count);
        let removed = {
            let mut state = self.state();
            let shard = state.shards.entry(n).or_default();
            let current = shard.jobs.get(job_id).map_or(0, |j| j.version);
            if current == 0 {
                return Ok(false);
            }
            if let Some(expected) = expected_version {
                if expected != current {
                    return Err(CoordError::VersionConflict {
                        job_id: job_id.to_owned(),
                        expected,
                        current,
                    });
                }
            }
            shard.jobs.remove(job_id);
            shard.last_fired.remove(job_id);
            shard.version += 1;
            true
        };
        self.publish(CoordEvent::JobsChanged(n));
        Ok(removed)
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        let n = shard_of(job_id, self.ring.shard_count);
        let at = {
            let mut state = self.state();
            let shard = state.shards.entry(n).or_default();
            if !shard.jobs.contains_key(job_id) {
                return Ok(None);
            }
            let at = self.store.now_ms();
            shard.triggers.push((job_id.to_owned(), at));
            shard.version += 1;
            at
        };
        self.publish(CoordEvent::JobsChanged(n));
        Ok(Some(at))
    }

    async fn take_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<(u32, String, i64)>> {
        let now = self.store.now_ms();
        let mut state = self.state();
        let mut out = Vec::new();
        for &(n, token) in leases {
            let shard = state.shards.entry(n).or_default();
            let ours = matches!(Self::live_lease(shard, now), Some(l) if l.holder == holder && l.token == token);
            if ours {
                out.extend(shard.triggers.drain(..).map(|(job, at)| (n, job, at)));
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
                },
                Some(s) => ShardJobs {
                    shard: n,
                    version: s.version,
                    jobs: s.jobs.values().cloned().collect(),
                    last_fired: s.last_fired.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                },
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
        let mut state = self.state();
        for run in runs {
            state.runs.push_front(run.clone());
            state.runs.truncate(RUN_HISTORY_CAP);
            let per_job = state.job_runs.entry(run.job_id.clone()).or_default();
            per_job.push_front(run.clone());
            per_job.truncate(JOB_RUN_HISTORY_CAP);
        }
        Ok(())
    }

    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>> {
        let state = self.state();
        let list = match job_id {
            None => Some(&state.runs),
            Some(j) => state.job_runs.get(j),
        };
        Ok(list
            .map(|l| l.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}
