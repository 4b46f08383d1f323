//! The Redis implementation of [`Coordinator`].
//!
//! Every batched operation is one pipeline of per-shard `EVALSHA` calls: one
//! round trip on a standalone server, and each script still touches a single
//! hash-tag slot. On a Redis Cluster (`redis+cluster://`) the same pipeline
//! is split by slot and its parts go to their nodes in parallel (see
//! `conn.rs`); calls that carry many shards (claim batches, lease renewals,
//! `MGET` of versions) are grouped by slot first, and the two job writes
//! whose keys spanned slots are split into a per-shard atomic step and an
//! idempotent namespace step (see `job_writes.rs`). Behind Redis Sentinel
//! (`redis+sentinel://`) the requests are one server's, sent to the master
//! the sentinels name and following it across failovers (see
//! `sentinel_link.rs`). The connections
//! reconnect by themselves; every request has a response timeout so a
//! partitioned node notices quickly and its runtime can stop firing before
//! its leases could expire.
//!
//! A `rediss://` store is the same over TLS: the certificate files its URL
//! names are read once and every connection uses them (see
//! `tls_options.rs`); so is a `rediss+cluster://` one, a cluster whose
//! every node is reached over TLS (see `cluster_tls.rs`).

use std::time::Duration;

use async_trait::async_trait;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, Script, Value};
use shardcron_core::{
    candidate_shards, job_shard, shard_of, JobSpec, Placement, PlacementRecord, RingConfig,
    ShardWeights,
};
use tokio::sync::broadcast;

use crate::coordinator::{CoordResult, Coordinator};
use crate::error::{CoordError, MAX_RELOCATIONS};
use crate::events::{in_turn, spawn_subscriber};
use crate::keyspace::Keyspace;
use crate::model::{
    BatchOutcome, ClaimBatch, CloseFire, CoordEvent, HandBack, JobPage, LeaseGrant, LeaseInfo,
    MemberInfo, Membership, OpenFire, PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome,
    RunRecord, ShardJobs, StoredJob, StoredPlacement, UnreadableJob,
};
use crate::scripts::Scripts;

mod claim_calls;
mod claim_marks;
mod cluster_link;
mod cluster_tls;
mod conn;
mod delivery;
mod history;
mod job_writes;
pub mod ring_entry;
mod sentinel_link;
mod tls_options;

use claim_calls::{claim_call_args, claim_calls, split_claim_reply};
use claim_marks::{ClaimMarks, MarkPlan};
pub use cluster_tls::TLS_CLUSTER_SCHEME;
pub use conn::{check_redis_url, CLUSTER_SCHEME};
use conn::{parse_target, StoreConn};
use history::HistoryState;
pub(crate) use history::{newest_finish, HOUR_MS};
pub use sentinel_link::SENTINEL_SCHEME;
use tls_options::{client, describe, take_tls_options};

/// Runs kept in the namespace-wide history.
pub const RUN_HISTORY_CAP: usize = 10_000;
/// Runs kept per job.
pub const JOB_RUN_HISTORY_CAP: usize = 100;
/// How long the runs of a deleted job stay readable after its last run, in
/// hours (those of a defined job stay as long as the job).
pub const JOB_RUN_HISTORY_RETENTION_HOURS: i64 = 7 * 24;
/// Most leases one `renew.lua` call extends (its keys are several shards'
/// on one server; a Lua `unpack` limit is never reached).
const RENEW_CHUNK: usize = 1024;

/// Shard versions read by one `MGET` (one reply of a few kilobytes).
const VERSIONS_PER_MGET: usize = 1024;

/// Least record time between two steps of one coordinator's sweep of
/// deleted jobs' history, ms.
pub(crate) const HISTORY_SWEEP_EVERY_MS: u64 = 60_000;

/// Longest `WAIT` for replicas by default (capped at half the response
/// timeout, so a reply still comes before the client gives up).
const DEFAULT_REPLICA_WAIT: Duration = Duration::from_millis(500);

/// Connection settings of the Redis coordinator.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://` URL.
    pub url: String,
    /// Namespace (key prefix).
    pub namespace: String,
    /// Ring settings the namespace must have.
    pub ring: RingConfig,
    /// Longest wait for one reply before the server counts as unreachable.
    pub response_timeout: Duration,
    /// Longest wait to (re)connect.
    pub connect_timeout: Duration,
}

impl RedisOptions {
    /// Options with default timeouts (1 s reply, 1 s connect).
    pub fn new(url: impl Into<String>, namespace: impl Into<String>, ring: RingConfig) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
            ring,
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// [`Coordinator`] on a Redis server.
pub struct RedisCoordinator {
    url: String,
    conn: StoreConn,
    /// `WAIT` after claims and lease acquisitions: (replicas, timeout ms),
    /// `None` when `min_replicas` is 0.
    wait: Option<(u32, u64)>,
    keys: Keyspace,
    ring: RingConfig,
    scripts: Scripts,
    events: broadcast::Sender<CoordEvent>,
    subscriber: tokio::task::JoinHandle<()>,
    /// Run numbers and sweep position of the run history writes.
    history: HistoryState,
    /// The watermarks this coordinator's claims wrote, per shard, and the
    /// claim marks that vouch for them (`claim_marks`).
    marks: ClaimMarks,
}

impl Drop for RedisCoordinator {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// The URL without any password, for messages: the user information
/// before the hosts, and the value of a `sentinel_password` option.
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    const OPTION: &str = "sentinel_password=";
    match url.find(OPTION) {
        Some(at) => {
            let value = at + OPTION.len();
            let end = url[value..].find('&').map_or(url.len(), |i| value + i);
            format!("{}***{}", &url[..value], &url[end..])
        }
        None => url,
    }
}

fn server_ms(secs: i64, micros: i64) -> i64 {
    secs * 1000 + micros / 1000
}

impl RedisCoordinator {
    /// Connects with default timeouts and checks the namespace's ring settings.
    pub async fn connect(url: &str, namespace: &str, ring: RingConfig) -> CoordResult<Self> {
        Self::connect_with(RedisOptions::new(url, namespace, ring)).await
    }

    /// Connects with explicit options and checks the namespace's ring settings.
    pub async fn connect_with(options: RedisOptions) -> CoordResult<Self> {
        let url = redact_url(&options.url);
        let unreachable = |e: RedisError| CoordError::Unreachable {
            url: url.clone(),
            message: describe(&e),
        };
        let invalid = |message| CoordError::Unreachable {
            url: url.clone(),
            message,
        };
        let (plain_url, tls) = take_tls_options(&options.url).map_err(invalid)?;
        let target = parse_target(&plain_url).map_err(invalid)?;
        let clients = target
            .nodes
            .iter()
            .map(|node| client(node, tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreachable)?;
        let conn = tokio::time::timeout(
            options.connect_timeout * 4,
            StoreConn::open(
                &target,
                tls.as_ref(),
                options.response_timeout,
                options.connect_timeout,
            ),
        )
        .await
        .map_err(|_| CoordError::Unreachable {
            url: url.clone(),
            message: "timed out connecting".to_owned(),
        })?
        .map_err(unreachable)?;
        let min_replicas = match target.min_replicas {
            Some(n) => n,
            None => u32::from(conn.has_replicas().await.map_err(unreachable)?),
        };
        let wait_ms = target.replica_wait_ms.unwrap_or_else(|| {
            (options.response_timeout / 2)
                .min(DEFAULT_REPLICA_WAIT)
                .as_millis()
                .max(1) as u64
        });
        let keys = Keyspace::new(&options.namespace);
        let (events, _) = broadcast::channel(4096);
        // Behind Sentinel the listener subscribes on the master the
        // sentinels name at the time; elsewhere on the URL's nodes in turn.
        let next_client = match &conn {
            StoreConn::Sentinel(link) => Some(link.subscriptions()),
            _ => in_turn(clients),
        };
        let subscriber = spawn_subscriber(
            next_client.ok_or_else(|| CoordError::Unreachable {
                url: url.clone(),
                message: "the store URL names no server".to_owned(),
            })?,
            keys.events_channel(),
            events.clone(),
            options.connect_timeout,
        );
        let coordinator = Self {
            url,
            conn,
            wait: (min_replicas > 0).then_some((min_replicas, wait_ms)),
            keys,
            ring: options.ring,
            scripts: Scripts::new(),
            events,
            subscriber,
            history: HistoryState::new(),
            marks: ClaimMarks::new(),
        };
        coordinator.ensure_config().await?;
        Ok(coordinator)
    }

    /// The ring settings as script arguments: field, value, ...
    /// Runs `members.lua`: live members and, unless `known_weights` /
    /// `known_placement` is `-`, the weights snapshot and the stored
    /// placement if their versions differ from the known ones.
    async fn read_members(
        &self,
        known_weights: &str,
        known_placement: &str,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        let keys = [
            self.keys.members(),
            self.keys.member_deadlines(),
            self.keys.live_weights(),
            self.keys.live_weights_version(),
            self.keys.placed_weights(),
            self.keys.placed_weights_meta(),
            self.keys.placement(),
        ];
        let args = [
            self.keys.events_channel(),
            known_weights.to_owned(),
            refresh.as_millis().to_string(),
            known_placement.to_owned(),
        ];
        let reply: Vec<Value> = self
            .eval("members", &self.scripts.members, &keys, &args)
            .await?;
        let (head, rest) = reply.split_at(reply.len().min(7));
        let [Value::Int(server_ms), Value::Int(version), Value::Int(included), weights, Value::Int(placement_version), Value::Int(placement_included), placement] =
            head
        else {
            return Err(Self::corrupt("member list", format!("{head:?}")));
        };
        let weights = if *included == 1 {
            Some(
                parse_weights((*version).max(0) as u64, weights)
                    .map_err(|e| Self::corrupt("shard weights", e))?,
            )
        } else {
            None
        };
        // A record that does not decode comes back empty (which no
        // placement accepts), with its version, so the caller computes a
        // fresh placement and replaces it by compare-and-set.
        let placement = (*placement_included == 1).then(|| StoredPlacement {
            version: (*placement_version).max(0) as u64,
            record: value_to_string(placement)
                .and_then(|json| serde_json::from_str::<PlacementRecord>(&json).ok())
                .unwrap_or(PlacementRecord {
                    members: Vec::new(),
                    owners: Vec::new(),
                }),
        });
        let mut members = Vec::new();
        let mut iter = rest.iter();
        while let (Some(id), Some(info)) = (iter.next(), iter.next()) {
            let id = value_to_string(id).unwrap_or_default();
            let info = value_to_string(info).unwrap_or_default();
            match serde_json::from_str::<MemberInfo>(&info) {
                Ok(m) => members.push(m),
                Err(e) => return Err(Self::corrupt(format!("member {id}"), e)),
            }
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(PlacementInputs {
            membership: Membership {
                server_ms: *server_ms,
                members,
            },
            weights,
            placement,
        })
    }

    fn config_args(&self) -> Vec<String> {
        vec![
            "shard_count".to_owned(),
            self.ring.shard_count.to_string(),
            "vnodes".to_owned(),
            self.ring.vnodes.to_string(),
            "load_bound_permille".to_owned(),
            self.ring.load_bound_permille.to_string(),
        ]
    }

    /// The key builder of this namespace.
    pub fn keyspace(&self) -> &Keyspace {
        &self.keys
    }

    fn map_err(&self, op: &'static str, e: RedisError) -> CoordError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
        {
            CoordError::Unreachable {
                url: self.url.clone(),
                message: format!("{op}: {e}"),
            }
        } else {
            CoordError::Store {
                op,
                message: e.to_string(),
            }
        }
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> CoordResult<T> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.map_err(op, e))
    }

    async fn query<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> CoordResult<T> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.map_err(op, e))
    }

    /// Replicas a claim or lease acquisition must reach before it counts
    /// (URL option `min_replicas`; by default 1 on a cluster with replicas
    /// and behind Sentinel, else 0).
    pub fn min_replicas(&self) -> u32 {
        self.wait.map_or(0, |(n, _)| n)
    }

    /// Runs a pipeline of writes that must reach `min_replicas` replicas
    /// before they count: each part ends with `WAIT` in the same round
    /// trip. One that falls short is an error, as a lost reply is: the
    /// writes may or may not survive a failover, so nothing may act on
    /// them (a claimed fire is not started; the runtime retries it as a
    /// claim of unknown fate).
    async fn pipeline_confirmed<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> CoordResult<T> {
        let (values, confirmed) = self
            .conn
            .pipeline_waiting(pipe, self.wait)
            .await
            .map_err(|e| self.map_err(op, e))?;
        if let (false, Some((replicas, ms))) = (confirmed, self.wait) {
            return Err(CoordError::Store {
                op,
                message: format!(
                    "not confirmed by {replicas} replica(s) within {ms} ms (WAIT fell short): \
                     treated as a lost reply"
                ),
            });
        }
        T::from_redis_value(Value::Array(values)).map_err(|e| Self::corrupt(op, e))
    }

    /// Runs a pipeline (split by slot on a cluster); after a server restart
    /// (empty script cache) loads the scripts and retries once.
    async fn pipeline<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> CoordResult<T> {
        let values = self
            .conn
            .pipeline(pipe)
            .await
            .map_err(|e| self.map_err(op, e))?;
        T::from_redis_value(Value::Array(values)).map_err(|e| Self::corrupt(op, e))
    }

    /// Indices of `items` grouped so that each group's shards share one
    /// cluster slot, in first-seen order; one group of all on a server.
    fn by_slot<T>(&self, items: &[T], shard: impl Fn(&T) -> u32) -> Vec<Vec<usize>> {
        if !self.conn.is_cluster() {
            return vec![(0..items.len()).collect()];
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of = std::collections::HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let slot = redis::cluster_routing::Slot::for_key(self.keys.lease(shard(item)));
            let g = *group_of.entry(slot).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        groups
    }

    fn evalsha(pipe: &mut Pipeline, script: &Script, keys: &[String], args: &[String]) {
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys);
        for a in args {
            cmd.arg(a);
        }
    }

    /// The shard the job `job_id` is stored in now: one of its candidate
    /// shards (one per placement), or `None` if it exists in none. One
    /// round trip; a script acting on the answer checks it again.
    async fn locate(&self, job_id: &str) -> CoordResult<Option<u32>> {
        let candidates = candidate_shards(job_id, self.ring.shard_count);
        let mut pipe = redis::pipe();
        for &n in &candidates {
            pipe.cmd("HEXISTS").arg(self.keys.jobs(n)).arg(job_id);
        }
        let found: Vec<bool> = self.pipeline("locate job", &pipe).await?;
        Ok(candidates
            .into_iter()
            .zip(found)
            .find_map(|(n, here)| here.then_some(n)))
    }

    /// The ring shard of a job (a Redis Cluster keeps only sharded jobs).
    fn shard(&self, job_id: &str) -> u32 {
        shard_of(job_id, self.ring.shard_count)
    }

    /// A `leader` or `broadcast` job on a Redis Cluster: its shard's keys
    /// are in another slot than the job's ring shard, and a placement
    /// change would have to move the job between slots, which no script
    /// can do atomically; refused until that move has a design of its own
    /// (see "Redis Cluster" in docs/ARCHITECTURE.md).
    fn no_placements_on_a_cluster(spec: &JobSpec) -> CoordError {
        CoordError::InvalidJob(shardcron_core::JobValidationError {
            job_id: spec.id.clone(),
            field: "placement",
            message: format!(
                "{} is not available on a Redis Cluster store yet (only sharded); use one Redis server, PostgreSQL or etcd for leader and broadcast jobs",
                spec.placement
            ),
        })
    }

    fn corrupt(what: impl Into<String>, message: impl ToString) -> CoordError {
        CoordError::Corrupt {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

fn parse_stored_job(raw: &str) -> Result<StoredJob, serde_json::Error> {
    serde_json::from_str(raw)
}

/// Decodes a shard's `id -> stored JSON` entries one by one: an entry that
/// does not decode (or whose spec id is not its field) is reported, never
/// fatal for the others. Every store keeps a job as this JSON text, so
/// every store decodes a shard's jobs with this.
pub fn decode_shard_jobs(
    raw: impl IntoIterator<Item = (String, String)>,
) -> (Vec<StoredJob>, Vec<UnreadableJob>) {
    let mut jobs = Vec::new();
    let mut unreadable = Vec::new();
    for (id, raw) in raw {
        match parse_stored_job(&raw) {
            Ok(job) if job.spec.id == id => jobs.push(job),
            Ok(job) => unreadable.push(UnreadableJob {
                job_id: id,
                error: format!("stored under another id ({:?})", job.spec.id),
            }),
            Err(e) => unreadable.push(UnreadableJob {
                job_id: id,
                error: e.to_string(),
            }),
        }
    }
    jobs.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    unreadable.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    (jobs, unreadable)
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    fn namespace(&self) -> &str {
        self.keys.namespace()
    }

    fn ring_config(&self) -> RingConfig {
        self.ring
    }

    async fn ensure_config(&self) -> CoordResult<()> {
        let args = self.config_args();
        let mismatch: Vec<String> = self
            .eval(
                "ensure config",
                &self.scripts.ensure_config,
                &[self.keys.config()],
                &args,
            )
            .await?;
        match mismatch.as_slice() {
            [] => Ok(()),
            [field, stored, given] => Err(CoordError::ConfigMismatch {
                namespace: self.keys.namespace().to_owned(),
                field: field.clone(),
                stored: stored.clone(),
                given: given.clone(),
            }),
            other => Err(Self::corrupt("config check reply", format!("{other:?}"))),
        }
    }

    async fn server_time_ms(&self) -> CoordResult<i64> {
        let (secs, micros): (i64, i64) = self.query("time", &redis::cmd("TIME")).await?;
        Ok(server_ms(secs, micros))
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        let info = serde_json::to_string(member).map_err(|e| Self::corrupt("member info", e))?;
        let args = vec![
            member.id.clone(),
            info,
            ttl.as_millis().to_string(),
            self.keys.events_channel(),
        ];
        let mut args = args;
        args.extend(self.config_args());
        let keys = [
            self.keys.members(),
            self.keys.member_deadlines(),
            self.keys.config(),
        ];
        let reply: Vec<Value> = self
            .eval("heartbeat", &self.scripts.heartbeat, &keys, &args)
            .await?;
        match reply.as_slice() {
            [Value::Int(_is_new), Value::Int(now)] => Ok(*now),
            [Value::Int(-1), field, stored, given] => Err(CoordError::ConfigMismatch {
                namespace: self.keys.namespace().to_owned(),
                field: value_to_string(field).unwrap_or_default(),
                stored: value_to_string(stored).unwrap_or_default(),
                given: value_to_string(given).unwrap_or_default(),
            }),
            other => Err(Self::corrupt("heartbeat reply", format!("{other:?}"))),
        }
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        let keys = [self.keys.members(), self.keys.member_deadlines()];
        let args = [node_id.to_owned(), self.keys.events_channel()];
        let _: i64 = self
            .eval("deregister", &self.scripts.deregister, &keys, &args)
            .await?;
        Ok(())
    }

    async fn members(&self) -> CoordResult<Membership> {
        Ok(self
            .read_members("-", "-", Duration::ZERO)
            .await?
            .membership)
    }

    async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        // `Some(u64::MAX)` matches no version: the caller does not want it.
        let known = |v: Option<u64>| match v {
            Some(u64::MAX) => "-".to_owned(),
            Some(v) => v.to_string(),
            None => String::new(),
        };
        self.read_members(&known(known_weights), &known(known_placement), refresh)
            .await
    }

    async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        let json = serde_json::to_string(record).map_err(|e| Self::corrupt("placement", e))?;
        let reply: Vec<i64> = self
            .eval(
                "store placement",
                &self.scripts.store_placement,
                &[self.keys.placement()],
                &[expected.to_string(), json],
            )
            .await?;
        match reply.as_slice() {
            [1, version] => Ok(Some((*version).max(0) as u64)),
            [0, _] => Ok(None),
            other => Err(Self::corrupt("store placement reply", format!("{other:?}"))),
        }
    }

    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        let args = [holder.to_owned(), ttl.as_millis().to_string()];
        for &shard in shards {
            let keys = [
                self.keys.lease(shard),
                self.keys.fence(shard),
                self.keys.last_fired(shard),
                self.keys.legacy_job_versions(shard),
                self.keys.legacy_trigger_instants(shard),
            ];
            Self::evalsha(&mut pipe, &self.scripts.acquire, &keys, &args);
        }
        let replies: Vec<(i64, String)> = self.pipeline_confirmed("acquire leases", &pipe).await?;
        self.history.forget_shards(
            shards
                .iter()
                .zip(&replies)
                .filter(|(_, (token, _))| *token >= 0)
                .map(|(&shard, _)| shard),
        );
        Ok(replies
            .into_iter()
            .map(|(token, current)| {
                if token >= 0 {
                    LeaseGrant::Granted {
                        token: token as u64,
                    }
                } else {
                    let (holder, token) =
                        current.rsplit_once('|').unwrap_or((current.as_str(), "0"));
                    LeaseGrant::HeldBy {
                        holder: holder.to_owned(),
                        token: token.parse().unwrap_or(0),
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
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        // A node's renewals go in calls of up to RENEW_CHUNK leases (not one
        // call per lease): each lease is still checked on its own.
        // On a cluster, one call per slot's leases (a script keeps to a slot).
        let mut pipe = redis::pipe();
        let mut order = Vec::with_capacity(leases.len());
        for group in self.by_slot(leases, |&(shard, _)| shard) {
            for chunk in group.chunks(RENEW_CHUNK) {
                let keys: Vec<String> = chunk
                    .iter()
                    .map(|&i| self.keys.lease(leases[i].0))
                    .collect();
                let mut args = Vec::with_capacity(chunk.len() + 1);
                args.push(ttl.as_millis().to_string());
                args.extend(chunk.iter().map(|&i| format!("{holder}|{}", leases[i].1)));
                Self::evalsha(&mut pipe, &self.scripts.renew, &keys, &args);
                order.extend_from_slice(chunk);
            }
        }
        let replies: Vec<Vec<i64>> = self.pipeline("renew leases", &pipe).await?;
        let flat: Vec<i64> = replies.into_iter().flatten().collect();
        if flat.len() != leases.len() {
            return Err(Self::corrupt(
                "renew reply",
                format!("{} answers for {} leases", flat.len(), leases.len()),
            ));
        }
        let mut replies = vec![0; leases.len()];
        for (i, r) in order.into_iter().zip(flat) {
            replies[i] = r;
        }
        self.history.forget_shards(
            leases
                .iter()
                .zip(&replies)
                .filter(|(_, r)| **r != 1)
                .map(|(&(shard, _), _)| shard),
        );
        Ok(replies.into_iter().map(|r| r == 1).collect())
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &(shard, token) in leases {
            let args = [
                format!("{holder}|{token}"),
                self.keys.events_channel(),
                shard.to_string(),
            ];
            Self::evalsha(
                &mut pipe,
                &self.scripts.release,
                &[self.keys.lease(shard)],
                &args,
            );
        }
        let replies: Vec<i64> = self.pipeline("release leases", &pipe).await?;
        self.history
            .forget_shards(leases.iter().map(|&(shard, _)| shard));
        Ok(replies.into_iter().map(|r| r == 1).collect())
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &shard in shards {
            pipe.cmd("GET").arg(self.keys.lease(shard));
        }
        let replies: Vec<Option<String>> = self.pipeline("lease holders", &pipe).await?;
        Ok(replies
            .into_iter()
            .map(|v| {
                v.and_then(|v| {
                    let (holder, token) = v.rsplit_once('|')?;
                    Some(LeaseInfo {
                        holder: holder.to_owned(),
                        token: token.parse().ok()?,
                    })
                })
            })
            .collect())
    }

    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        // On a cluster, a call carries batches of one slot only: the
        // batches are grouped by slot and the outcomes put back in order.
        let groups = self.by_slot(batches, |b| b.shard);
        let grouped: Vec<Vec<ClaimBatch>> = if groups.len() == 1 {
            Vec::new()
        } else {
            groups
                .iter()
                .map(|g| g.iter().map(|&i| batches[i].clone()).collect())
                .collect()
        };
        let calls: Vec<&[ClaimBatch]> = if grouped.is_empty() {
            claim_calls(batches)
        } else {
            grouped.iter().flat_map(|g| claim_calls(g)).collect()
        };
        let mut pipe = redis::pipe();
        let mut plans: Vec<Vec<MarkPlan>> = Vec::with_capacity(calls.len());
        for call in &calls {
            let (keys, args, marks) =
                claim_call_args(&self.keys, call, &mut |b| self.marks.plan(b), retention);
            Self::evalsha(&mut pipe, &self.scripts.claim, &keys, &args);
            plans.push(marks);
        }
        // Whatever the calls wrote is unknown until their replies are read:
        // a failed or unreadable reply forgets every shard of the step.
        let forget_all = || batches.iter().for_each(|b| self.marks.forget(b.shard));
        let replies: Vec<Vec<i64>> = self
            .pipeline_confirmed("claim fires", &pipe)
            .await
            .inspect_err(|_| forget_all())?;
        let mut marked = Vec::with_capacity(batches.len());
        for (call, codes) in calls.iter().zip(&replies) {
            split_claim_reply(call, codes, &mut marked).inspect_err(|_| forget_all())?;
        }
        let mut outcomes = Vec::with_capacity(batches.len());
        let sent = calls
            .iter()
            .flat_map(|c| c.iter())
            .zip(plans.iter().flatten());
        for ((batch, plan), (outcome, status)) in sent.zip(marked) {
            self.marks.learn(batch, plan, status, &outcome);
            outcomes.push(outcome);
        }
        if grouped.is_empty() {
            return Ok(outcomes);
        }
        let mut ordered: Vec<Option<BatchOutcome>> = vec![None; batches.len()];
        for (i, outcome) in groups.into_iter().flatten().zip(outcomes) {
            ordered[i] = Some(outcome);
        }
        ordered
            .into_iter()
            .map(|o| o.ok_or_else(|| Self::corrupt("claim reply", "a batch without an outcome")))
            .collect()
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        let units = spec.validate()?.load_units();
        let shard = job_shard(&spec.id, spec.placement, self.ring.shard_count);
        let json = serde_json::to_string(spec).map_err(|e| Self::corrupt("job spec", e))?;
        if self.conn.is_cluster() {
            if spec.placement != Placement::Sharded {
                return Err(Self::no_placements_on_a_cluster(spec));
            }
            return self
                .put_job_split(spec, expected_version, units, json)
                .await;
        }
        for _ in 0..MAX_RELOCATIONS {
            let source = self.locate(&spec.id).await?.filter(|&s| s != shard);
            let from = source.unwrap_or(shard);
            let mut keys = vec![
                self.keys.jobs(shard),
                self.keys.last_fired(shard),
                self.keys.shard_version(shard),
                self.keys.job_index(),
                self.keys.job_weights(shard),
                self.keys.live_weights(),
                self.keys.live_weights_version(),
                self.keys.legacy_job_versions(shard),
                self.keys.legacy_trigger_instants(shard),
                self.keys.jobs(from),
                self.keys.last_fired(from),
                self.keys.shard_version(from),
                self.keys.job_weights(from),
                self.keys.triggers(from),
                self.keys.legacy_job_versions(from),
                self.keys.legacy_trigger_instants(from),
                self.keys.triggers(shard),
            ];
            keys.extend(
                candidate_shards(&spec.id, self.ring.shard_count).map(|n| self.keys.jobs(n)),
            );
            let args = [
                spec.id.clone(),
                json.clone(),
                expected_version.map(|v| v.to_string()).unwrap_or_default(),
                if spec.paused { "1" } else { "0" }.to_owned(),
                self.keys.events_channel(),
                shard.to_string(),
                units.to_string(),
                source.map(|s| s.to_string()).unwrap_or_default(),
            ];
            let reply: Vec<i64> = self
                .eval("put job", &self.scripts.put_job, &keys, &args)
                .await?;
            return match reply.as_slice() {
                [-2] => continue,
                [-1, current] => Err(CoordError::VersionConflict {
                    job_id: spec.id.clone(),
                    expected: expected_version.unwrap_or(0),
                    current: (*current).max(0) as u64,
                }),
                [version, updated_ms, active_since_ms] => Ok(StoredJob {
                    version: *version as u64,
                    updated_ms: *updated_ms,
                    active_since_ms: *active_since_ms,
                    spec: spec.clone(),
                }),
                other => Err(Self::corrupt("put job reply", format!("{other:?}"))),
            };
        }
        Err(CoordError::moved_while_written(&spec.id))
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let mut pipe = redis::pipe();
        for n in candidate_shards(job_id, self.ring.shard_count) {
            pipe.cmd("HGET").arg(self.keys.jobs(n)).arg(job_id);
        }
        let raws: Vec<Option<String>> = self.pipeline("get job", &pipe).await?;
        raws.into_iter()
            .flatten()
            .next()
            .map(|raw| {
                parse_stored_job(&raw).map_err(|e| Self::corrupt(format!("job {job_id}"), e))
            })
            .transpose()
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        if self.conn.is_cluster() {
            if let Some(removed) = self.delete_job_split(job_id, expected_version).await? {
                return Ok(removed);
            }
            let current = self.get_job(job_id).await?.map_or(0, |j| j.version);
            return Err(CoordError::VersionConflict {
                job_id: job_id.to_owned(),
                expected: expected_version.unwrap_or(0),
                current,
            });
        }
        for _ in 0..MAX_RELOCATIONS {
            let Some(shard) = self.locate(job_id).await? else {
                return Ok(false);
            };
            let keys = [
                self.keys.jobs(shard),
                self.keys.legacy_job_versions(shard),
                self.keys.shard_version(shard),
                self.keys.last_fired(shard),
                self.keys.job_index(),
                self.keys.legacy_trigger_instants(shard),
                self.keys.job_weights(shard),
                self.keys.live_weights(),
                self.keys.live_weights_version(),
                self.keys.triggers(shard),
            ];
            let args = [
                job_id.to_owned(),
                expected_version.map(|v| v.to_string()).unwrap_or_default(),
                self.keys.events_channel(),
                shard.to_string(),
            ];
            let removed: i64 = self
                .eval("delete job", &self.scripts.delete_job, &keys, &args)
                .await?;
            return match removed {
                1 => Ok(true),
                // Gone from where it was found: moved or deleted meanwhile.
                0 => continue,
                _ => {
                    let current = self.get_job(job_id).await?.map_or(0, |j| j.version);
                    Err(CoordError::VersionConflict {
                        job_id: job_id.to_owned(),
                        expected: expected_version.unwrap_or(0),
                        current,
                    })
                }
            };
        }
        Err(CoordError::moved_while_written(job_id))
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        for _ in 0..MAX_RELOCATIONS {
            let Some(shard) = self.locate(job_id).await? else {
                return Ok(None);
            };
            let keys = [
                self.keys.legacy_job_versions(shard),
                self.keys.triggers(shard),
                self.keys.shard_version(shard),
                self.keys.legacy_trigger_instants(shard),
                self.keys.last_fired(shard),
            ];
            let args = [
                job_id.to_owned(),
                self.keys.events_channel(),
                shard.to_string(),
            ];
            let at: i64 = self
                .eval("trigger job", &self.scripts.trigger, &keys, &args)
                .await?;
            if at >= 0 {
                return Ok(Some(at));
            }
        }
        Err(CoordError::moved_while_written(job_id))
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &(shard, token) in leases {
            let keys = [
                self.keys.triggers(shard),
                self.keys.lease(shard),
                self.keys.last_fired(shard),
            ];
            Self::evalsha(
                &mut pipe,
                &self.scripts.read_triggers,
                &keys,
                &[format!("{holder}|{token}")],
            );
        }
        let replies: Vec<Vec<String>> = self.pipeline("read triggers", &pipe).await?;
        let mut out = Vec::new();
        for (&(shard, _), items) in leases.iter().zip(replies) {
            for item in items {
                if let Some((job, at)) = item.rsplit_once('|') {
                    if let Ok(at_ms) = at.parse() {
                        out.push(QueuedTrigger {
                            shard,
                            job_id: job.to_owned(),
                            at_ms,
                        });
                    }
                }
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
        let min = match after {
            Some(a) if a >= prefix => format!("({a}"),
            _ if prefix.is_empty() => "-".to_owned(),
            _ => format!("[{prefix}"),
        };
        let max = if prefix.is_empty() {
            "+".to_owned()
        } else {
            format!("[{prefix}\u{ff}")
        };
        if self.conn.is_cluster() {
            return self.list_jobs_checked(min, &max, limit).await;
        }
        let fetch = limit.saturating_add(1);
        let mut ids: Vec<String> = self
            .query(
                "list jobs",
                redis::cmd("ZRANGEBYLEX")
                    .arg(self.keys.job_index())
                    .arg(min)
                    .arg(max)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(fetch),
            )
            .await?;
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().cloned()
        } else {
            None
        };
        Ok(JobPage { ids, next })
    }

    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for &shard in shards {
            pipe.cmd("GET").arg(self.keys.shard_version(shard));
            pipe.cmd("HGETALL").arg(self.keys.jobs(shard));
            pipe.cmd("HGETALL").arg(self.keys.last_fired(shard));
        }
        type Reply = (Option<u64>, Vec<(String, String)>, Vec<(String, String)>);
        let replies: Vec<Reply> = {
            let flat: Vec<Value> = self.pipeline("load shards", &pipe).await?;
            let mut out = Vec::with_capacity(shards.len());
            for chunk in flat.chunks(3) {
                let reply: Reply = redis::from_redis_value(Value::Array(chunk.to_vec()))
                    .map_err(|e| Self::corrupt("shard jobs", e))?;
                out.push(reply);
            }
            out
        };
        let mut out = Vec::with_capacity(shards.len());
        for (&shard, (version, jobs, last_fired)) in shards.iter().zip(replies) {
            let (jobs, unreadable) = decode_shard_jobs(jobs);
            // The job-state hash also holds `id|v` and `id|t` fields; only
            // a bare job id is a watermark.
            let last_fired = last_fired
                .into_iter()
                .filter(|(field, _)| !field.contains('|'))
                .map(|(job, value)| {
                    watermark_ms(&value)
                        .map(|ms| (job, ms))
                        .ok_or_else(|| Self::corrupt("watermark", value))
                })
                .collect::<CoordResult<Vec<_>>>()?;
            out.push(ShardJobs {
                shard,
                version: version.unwrap_or(0),
                jobs,
                last_fired,
                unreadable,
            });
        }
        Ok(out)
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        // One MGET per chunk rather than a GET per shard: a node polls all
        // its shards' versions every `poll_interval`, which was a fifth of
        // a command per fire at 1,000 jobs on 1,024 shards.
        // On a cluster an MGET keeps to one slot: one per slot's shards.
        let mut pipe = redis::pipe();
        let mut order = Vec::with_capacity(shards.len());
        for group in self.by_slot(shards, |&shard| shard) {
            for chunk in group.chunks(VERSIONS_PER_MGET) {
                let mut mget = redis::cmd("MGET");
                for &i in chunk {
                    mget.arg(self.keys.shard_version(shards[i]));
                }
                pipe.add_command(mget);
                order.extend_from_slice(chunk);
            }
        }
        let replies: Vec<Vec<Option<u64>>> = self.pipeline("shard versions", &pipe).await?;
        let flat: Vec<u64> = replies
            .into_iter()
            .flatten()
            .map(|v| v.unwrap_or(0))
            .collect();
        if flat.len() != shards.len() {
            return Err(Self::corrupt(
                "shard versions reply",
                format!("{} versions for {} shards", flat.len(), shards.len()),
            ));
        }
        let mut versions = vec![0; shards.len()];
        for (i, v) in order.into_iter().zip(flat) {
            versions[i] = v;
        }
        Ok(versions)
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        self.record_and_close(runs, &[]).await
    }

    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        self.record_and_close(&[], closes).await
    }

    async fn record_and_close(&self, runs: &[RunRecord], closes: &[CloseFire]) -> CoordResult<()> {
        if runs.is_empty() && closes.is_empty() {
            return Ok(());
        }
        self.write_history(runs, closes).await
    }

    async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        self.read_open_fires(shards).await
    }

    async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        self.recover_open_fires(batches, retention).await
    }

    async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        self.hand_back(holder, fires, retention).await
    }

    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(job_id) = job_id {
            return self.read_job_runs(job_id, limit).await;
        }
        let raw: Vec<String> = self
            .query(
                "recent runs",
                redis::cmd("LRANGE")
                    .arg(self.keys.runs())
                    .arg(0)
                    .arg(limit - 1),
            )
            .await?;
        raw.iter()
            .map(|r| ring_entry::decode_listed(r).map_err(|e| Self::corrupt("run record", e)))
            .collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}

/// Parses a flat `shard, units, ...` reply of `HGETALL` into weights.
fn parse_weights(version: u64, reply: &Value) -> Result<ShardWeights, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let mut pairs = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [shard, units] = pair else {
            return Err("odd number of elements".to_owned());
        };
        let shard = value_to_string(shard).unwrap_or_default();
        let units = value_to_string(units).unwrap_or_default();
        let shard: u32 = shard
            .parse()
            .map_err(|_| format!("shard {shard:?} is not a shard number"))?;
        let units: u64 = units
            .parse()
            .map_err(|_| format!("weight {units:?} of shard {shard} is not a whole number"))?;
        pairs.push((shard, units));
    }
    Ok(ShardWeights::from_pairs(version, pairs))
}

/// The ms of a watermark field: `ms|holder|token|attempt` (the claim of the
/// job's last scheduled fire, see `claim.lua`), or a bare `ms` as written
/// before the watermark held the claim.
fn watermark_ms(value: &str) -> Option<i64> {
    value.split('|').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis+sentinel://:m@h:1,h:2/m?min_replicas=0&sentinel_password=s&x=1"),
            "redis+sentinel://***@h:1,h:2/m?min_replicas=0&sentinel_password=***&x=1"
        );
        assert_eq!(
            redact_url("redis+sentinel://h:1/m?sentinel_password=s"),
            "redis+sentinel://h:1/m?sentinel_password=***"
        );
    }

    #[test]
    fn watermarks_read_with_and_without_their_record() {
        assert_eq!(watermark_ms("1000|n1/a|5|9"), Some(1000));
        assert_eq!(watermark_ms("1000"), Some(1000));
        assert_eq!(watermark_ms("x|n1/a|5|9"), None);
    }
}
