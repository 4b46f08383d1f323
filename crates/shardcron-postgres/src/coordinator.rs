//! [`PostgresCoordinator`]: connection pool, schema, and the parts of the
//! [`Coordinator`] contract that are not fires or history (membership,
//! leases, jobs, triggers, placement).
//!
//! Each trait call is one statement (a function call or a plain query)
//! on a pooled connection, inside a response timeout: a server that does
//! not answer in time counts as unreachable, like Redis. The server also
//! has a `statement_timeout` of three quarters of it, so it stops work
//! before its caller gives up on it.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use shardcron_coord::{
    redact_url, BatchOutcome, ClaimBatch, CloseFire, CoordError, CoordEvent, CoordResult,
    Coordinator, HandBack, JobPage, LeaseGrant, LeaseInfo, MemberInfo, Membership, OpenFire,
    PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome, RunRecord, ShardJobs, StoredJob,
    StoredPlacement, UnreadableJob,
};
use shardcron_core::{shard_of, JobSpec, PlacementRecord, RingConfig, ShardWeights};
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::error::{corrupt, map_pg, map_pool, timed_out};
use crate::events::spawn_listener;
use crate::history::HistoryState;
use crate::migrate::migrate;
use crate::schema::NamespaceSchema;

/// Connection settings of the PostgreSQL coordinator.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// `postgres://` URL (libpq style `key=value` strings work too).
    pub url: String,
    /// Namespace (a schema of its own).
    pub namespace: String,
    /// Ring settings the namespace must have.
    pub ring: RingConfig,
    /// Longest wait for one reply before the server counts as unreachable;
    /// the server-side `statement_timeout` is three quarters of it.
    pub response_timeout: Duration,
    /// Longest wait to (re)connect.
    pub connect_timeout: Duration,
    /// Most connections the pool opens.
    pub pool_size: usize,
}

impl PostgresOptions {
    /// Options with default timeouts (2 s reply, 2 s connect) and a pool of 8.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>, ring: RingConfig) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
            ring,
            response_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            pool_size: 8,
        }
    }
}

/// [`Coordinator`] on a PostgreSQL database.
pub struct PostgresCoordinator {
    pub(crate) url: String,
    namespace: String,
    pub(crate) schema: NamespaceSchema,
    ring: RingConfig,
    pool: Pool,
    response_timeout: Duration,
    events: broadcast::Sender<CoordEvent>,
    listener: tokio::task::JoinHandle<()>,
    pub(crate) history: HistoryState,
}

impl Drop for PostgresCoordinator {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Migrations may take longer than one ordinary statement.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

impl PostgresCoordinator {
    /// Connects with default options, creates or migrates the namespace's
    /// schema and checks its ring settings.
    pub async fn connect(url: &str, namespace: &str, ring: RingConfig) -> CoordResult<Self> {
        Self::connect_with(PostgresOptions::new(url, namespace, ring)).await
    }

    /// Connects with explicit options; see [`PostgresCoordinator::connect`].
    pub async fn connect_with(options: PostgresOptions) -> CoordResult<Self> {
        let url = redact_url(&options.url);
        let mut config: tokio_postgres::Config =
            options.url.parse().map_err(|e| CoordError::Unreachable {
                url: url.clone(),
                message: format!("invalid URL: {e}"),
            })?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("shardcron");
        // The server gives up on a statement before the client does, so a
        // call the client reports as failed has rarely been left running
        // on the server (a claim committing after its caller moved on).
        let statement_ms = statement_timeout(options.response_timeout);
        config.options(format!(
            "-c statement_timeout={statement_ms} -c lock_timeout={}",
            statement_ms / 2
        ));
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| CoordError::Unreachable {
                url: url.clone(),
                message: format!("connection pool: {e}"),
            })?;
        let schema = NamespaceSchema::new(&options.namespace);
        {
            let op = "migrate schema";
            let mut client = pool.get().await.map_err(|e| map_pool(&url, op, &e))?;
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {}",
                    MIGRATION_TIMEOUT.as_millis()
                ))
                .await
                .map_err(|e| map_pg(&url, op, &e))?;
            let migrated = tokio::time::timeout(
                MIGRATION_TIMEOUT,
                migrate(&mut client, &url, &options.namespace, &schema),
            )
            .await
            .map_err(|_| timed_out(&url, op));
            // The connection goes back to the pool with the usual timeout,
            // or is dropped if it cannot be reset.
            let reset = client
                .batch_execute(&format!("SET statement_timeout = {statement_ms}"))
                .await;
            if reset.is_err() {
                let _ = deadpool_postgres::Object::take(client);
            }
            migrated??;
        }
        let (events, _) = broadcast::channel(4096);
        let (ready, listening) = tokio::sync::oneshot::channel();
        let listener = spawn_listener(
            listen_config,
            schema.name().to_owned(),
            events.clone(),
            options.connect_timeout,
            ready,
        );
        // Events are a fast path only: if listening takes longer, go on
        // (the listener keeps trying; the runtime polls meanwhile).
        let _ = tokio::time::timeout(options.connect_timeout, listening).await;
        let coordinator = Self {
            url,
            namespace: options.namespace,
            schema,
            ring: options.ring,
            pool,
            response_timeout: options.response_timeout,
            events,
            listener,
            history: HistoryState::new(),
        };
        coordinator.ensure_config().await?;
        Ok(coordinator)
    }

    /// The schema this namespace's tables are in.
    pub fn schema(&self) -> &NamespaceSchema {
        &self.schema
    }

    /// Runs one statement (`__SCHEMA__` filled in) within the response
    /// timeout and returns its rows.
    pub(crate) async fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> CoordResult<Vec<Row>> {
        let sql = self.schema.render(sql);
        let run = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| map_pool(&self.url, op, &e))?;
            let statement = client
                .prepare_cached(&sql)
                .await
                .map_err(|e| map_pg(&self.url, op, &e))?;
            client
                .query(&statement, params)
                .await
                .map_err(|e| map_pg(&self.url, op, &e))
        };
        tokio::time::timeout(self.response_timeout, run)
            .await
            .map_err(|_| timed_out(&self.url, op))?
    }

    /// [`Self::query`] for a statement that returns exactly one row.
    pub(crate) async fn query_one(
        &self,
        op: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> CoordResult<Row> {
        self.query(op, sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt(op, "no row returned"))
    }

    pub(crate) fn shard(&self, job_id: &str) -> u32 {
        shard_of(job_id, self.ring.shard_count)
    }

    fn config_args(&self) -> (Vec<String>, Vec<String>) {
        (
            vec![
                "shard_count".to_owned(),
                "vnodes".to_owned(),
                "load_bound_permille".to_owned(),
            ],
            vec![
                self.ring.shard_count.to_string(),
                self.ring.vnodes.to_string(),
                self.ring.load_bound_permille.to_string(),
            ],
        )
    }

    fn mismatch(&self, field: &str, stored: &str, given: &str) -> CoordError {
        CoordError::ConfigMismatch {
            namespace: self.namespace.clone(),
            field: field.to_owned(),
            stored: stored.to_owned(),
            given: given.to_owned(),
        }
    }

    /// `placement_inputs()` of the schema: '' none known, '-' not wanted.
    async fn read_members(
        &self,
        known_weights: &str,
        known_placement: &str,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        let op = "list members";
        let refresh = i64::try_from(refresh.as_millis()).unwrap_or(i64::MAX);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.placement_inputs($1, $2, $3)",
                &[&known_weights, &refresh, &known_placement],
            )
            .await?;
        let reply: serde_json::Value = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        let reply: MembersReply =
            serde_json::from_value(reply).map_err(|e| corrupt("member list", e))?;
        let weights = reply.included.then(|| {
            ShardWeights::from_pairs(
                reply.snapshot_version.max(0) as u64,
                reply
                    .weights
                    .iter()
                    .map(|&(shard, units)| (shard, units.max(0) as u64)),
            )
        });
        // A record that does not decode comes back empty (which no
        // placement accepts), so the caller replaces it by compare-and-set.
        let placement = reply.placement_included.then(|| StoredPlacement {
            version: reply.placement_version.max(0) as u64,
            record: serde_json::from_str::<PlacementRecord>(&reply.placement).unwrap_or(
                PlacementRecord {
                    members: Vec::new(),
                    owners: Vec::new(),
                },
            ),
        });
        let mut members = Vec::with_capacity(reply.members.len());
        for (id, info) in &reply.members {
            members.push(
                serde_json::from_str::<MemberInfo>(info)
                    .map_err(|e| corrupt(format!("member {id}"), e))?,
            );
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(PlacementInputs {
            membership: Membership {
                server_ms: reply.now,
                members,
            },
            weights,
            placement,
        })
    }
}

/// The reply of `placement_inputs()`.
#[derive(serde::Deserialize)]
struct MembersReply {
    now: i64,
    snapshot_version: i64,
    included: bool,
    weights: Vec<(u32, i64)>,
    placement_version: i64,
    placement_included: bool,
    placement: String,
    members: Vec<(String, String)>,
}

/// Decodes a shard's `(id, record)` rows one by one: a record that does not
/// decode (or names another id) is reported, never fatal for the others.
fn decode_shard_jobs(raw: Vec<(String, String)>) -> (Vec<StoredJob>, Vec<UnreadableJob>) {
    let mut jobs = Vec::new();
    let mut unreadable = Vec::new();
    for (id, raw) in raw {
        match serde_json::from_str::<StoredJob>(&raw) {
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

/// The server-side `statement_timeout` for a client response timeout:
/// three quarters of it (at least 1 ms).
fn statement_timeout(response: Duration) -> u128 {
    (response.as_millis() * 3 / 4).max(1)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn shards_param(shards: &[u32]) -> Vec<i32> {
    shards.iter().map(|&s| s as i32).collect()
}

fn tokens_param(leases: &[(u32, u64)]) -> (Vec<i32>, Vec<i64>) {
    leases.iter().map(|&(s, t)| (s as i32, t as i64)).unzip()
}

#[async_trait]
impl Coordinator for PostgresCoordinator {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn ring_config(&self) -> RingConfig {
        self.ring
    }

    async fn ensure_config(&self) -> CoordResult<()> {
        let op = "ensure config";
        let (fields, values) = self.config_args();
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.check_config($1, $2)",
                &[&fields, &values],
            )
            .await?;
        let mismatch: Vec<String> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match mismatch.as_slice() {
            [] => Ok(()),
            [field, stored, given] => Err(self.mismatch(field, stored, given)),
            other => Err(corrupt("config check reply", format!("{other:?}"))),
        }
    }

    async fn server_time_ms(&self) -> CoordResult<i64> {
        let op = "time";
        let row = self
            .query_one(op, "SELECT __SCHEMA__.now_ms()", &[])
            .await?;
        row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        let op = "heartbeat";
        let info = serde_json::to_string(member).map_err(|e| corrupt("member info", e))?;
        let (fields, values) = self.config_args();
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.heartbeat($1, $2, $3, $4, $5)",
                &[&member.id, &info, &duration_ms(ttl), &fields, &values],
            )
            .await?;
        let reply: Vec<String> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match reply.as_slice() {
            [flag, field, stored, given] if flag == "-1" => {
                Err(self.mismatch(field, stored, given))
            }
            [_, now] => now.parse().map_err(|e| corrupt("heartbeat reply", e)),
            other => Err(corrupt("heartbeat reply", format!("{other:?}"))),
        }
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        self.query(
            "deregister",
            "SELECT __SCHEMA__.deregister($1)",
            &[&node_id],
        )
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
        let op = "store placement";
        let json = serde_json::to_string(record).map_err(|e| corrupt("placement", e))?;
        let rows = self
            .query(
                op,
                "UPDATE __SCHEMA__.state SET placement_version = placement_version + 1,
                     placement = $2
                 WHERE placement_version = $1 RETURNING placement_version",
                &[&(expected as i64), &json],
            )
            .await?;
        match rows.first() {
            Some(row) => {
                let v: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
                Ok(Some(v.max(0) as u64))
            }
            None => Ok(None),
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
        let op = "acquire leases";
        let rows = self
            .query(
                op,
                "SELECT granted, cur_holder, cur_token FROM __SCHEMA__.acquire($1, $2, $3)
                 ORDER BY ord",
                &[&shards_param(shards), &holder, &duration_ms(ttl)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let granted: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
            if granted >= 0 {
                out.push(LeaseGrant::Granted {
                    token: granted as u64,
                });
            } else {
                let holder: Option<String> =
                    row.try_get(1).map_err(|e| map_pg(&self.url, op, &e))?;
                let token: Option<i64> = row.try_get(2).map_err(|e| map_pg(&self.url, op, &e))?;
                out.push(LeaseGrant::HeldBy {
                    holder: holder.unwrap_or_default(),
                    token: token.unwrap_or(0).max(0) as u64,
                });
            }
        }
        Ok(out)
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
        let op = "renew leases";
        let (shards, tokens) = tokens_param(leases);
        // One statement: lock the rows still ours in shard order, extend
        // them, and answer per requested lease.
        let rows = self
            .query(
                op,
                "WITH want AS (
                     SELECT * FROM unnest($1::integer[], $2::bigint[]) WITH ORDINALITY
                         AS u(shard, token, ord)),
                 mine AS (
                     SELECT l.shard FROM __SCHEMA__.leases l JOIN want w
                         ON l.shard = w.shard AND l.token = w.token
                     WHERE l.holder = $3 AND l.deadline_ms > __SCHEMA__.now_ms()
                     ORDER BY l.shard FOR UPDATE OF l),
                 renewed AS (
                     UPDATE __SCHEMA__.leases l SET deadline_ms = __SCHEMA__.now_ms() + $4
                     FROM mine WHERE l.shard = mine.shard RETURNING l.shard)
                 SELECT renewed.shard IS NOT NULL FROM want
                     LEFT JOIN renewed ON renewed.shard = want.shard ORDER BY want.ord",
                &[&shards, &tokens, &holder, &duration_ms(ttl)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, bool>(0))
            .collect::<Result<Vec<bool>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let op = "release leases";
        let (shards, tokens) = tokens_param(leases);
        let rows = self
            .query(
                op,
                "SELECT __SCHEMA__.release($1, $2, $3)",
                &[&shards, &tokens, &holder],
            )
            .await?;
        let released = rows
            .iter()
            .map(|r| r.try_get::<_, i32>(0))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))?;
        Ok(leases
            .iter()
            .map(|&(s, _)| released.contains(&(s as i32)))
            .collect())
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "lease holders";
        let rows = self
            .query(
                op,
                "SELECT l.holder, l.token FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.leases l ON l.shard = u.shard AND l.holder IS NOT NULL
                     AND l.deadline_ms > __SCHEMA__.now_ms()
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let holder: Option<String> = row.try_get(0)?;
                let token: Option<i64> = row.try_get(1)?;
                Ok(holder.map(|holder| LeaseInfo {
                    holder,
                    token: token.unwrap_or(0).max(0) as u64,
                }))
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        self.claim(batches, retention).await
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        let op = "put job";
        let units = spec.validate()?.load_units();
        let shard = self.shard(&spec.id);
        let json = serde_json::to_string(spec).map_err(|e| corrupt("job spec", e))?;
        let expected = expected_version.map(|v| v as i64);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.put_job($1, $2, $3, $4, $5, $6)",
                &[
                    &spec.id,
                    &(shard as i32),
                    &json,
                    &expected,
                    &spec.paused,
                    &(units as i64),
                ],
            )
            .await?;
        let reply: Vec<i64> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match reply.as_slice() {
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
            other => Err(corrupt("put job reply", format!("{other:?}"))),
        }
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let op = "get job";
        let rows = self
            .query(
                op,
                "SELECT record FROM __SCHEMA__.jobs WHERE job_id = $1",
                &[&job_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let raw: String = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| corrupt(format!("job {job_id}"), e))
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        let op = "delete job";
        let shard = self.shard(job_id);
        let expected = expected_version.map(|v| v as i64);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.delete_job($1, $2, $3)",
                &[&job_id, &(shard as i32), &expected],
            )
            .await?;
        let removed: i32 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match removed {
            1 => Ok(true),
            0 => Ok(false),
            _ => {
                let current = self.get_job(job_id).await?.map_or(0, |j| j.version);
                Err(CoordError::VersionConflict {
                    job_id: job_id.to_owned(),
                    expected: expected_version.unwrap_or(0),
                    current,
                })
            }
        }
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        let op = "trigger job";
        let shard = self.shard(job_id);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.trigger_job($1, $2)",
                &[&job_id, &(shard as i32)],
            )
            .await?;
        let at: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        Ok((at >= 0).then_some(at))
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let op = "read triggers";
        let (shards, tokens) = tokens_param(leases);
        let rows = self
            .query(
                op,
                "SELECT o_shard, o_job_id, o_at_ms FROM __SCHEMA__.read_triggers($1, $2, $3)",
                &[&shards, &tokens, &holder],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(QueuedTrigger {
                    shard: row.try_get::<_, i32>(0)? as u32,
                    job_id: row.try_get(1)?,
                    at_ms: row.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let op = "list jobs";
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .query(
                op,
                "SELECT job_id FROM __SCHEMA__.jobs
                 WHERE starts_with(job_id, $1) AND ($2::text IS NULL OR job_id > $2)
                 ORDER BY job_id LIMIT $3",
                &[&prefix, &after, &fetch],
            )
            .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))?;
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
        let op = "load shards";
        // One statement, one snapshot: versions, jobs and watermarks agree.
        let rows = self
            .query(
                op,
                "SELECT u.ord, coalesce(v.version, 0), j.job_id, j.record, j.last_fired_ms
                 FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.shard_versions v ON v.shard = u.shard
                 LEFT JOIN __SCHEMA__.jobs j ON j.shard = u.shard
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        let mut per_shard: Vec<(u64, Vec<(String, String)>, Vec<(String, i64)>)> =
            vec![(0, Vec::new(), Vec::new()); shards.len()];
        for row in &rows {
            let parse = || -> Result<_, tokio_postgres::Error> {
                let ord: i64 = row.try_get(0)?;
                let version: i64 = row.try_get(1)?;
                let job: Option<String> = row.try_get(2)?;
                let record: Option<String> = row.try_get(3)?;
                let last: Option<i64> = row.try_get(4)?;
                Ok((ord, version, job, record, last))
            };
            let (ord, version, job, record, last) =
                parse().map_err(|e| map_pg(&self.url, op, &e))?;
            let Some(slot) = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| per_shard.get_mut(i))
            else {
                return Err(corrupt("shard jobs", format!("row for position {ord}")));
            };
            slot.0 = version.max(0) as u64;
            if let (Some(job), Some(record)) = (job, record) {
                if let Some(last) = last {
                    slot.2.push((job.clone(), last));
                }
                slot.1.push((job, record));
            }
        }
        Ok(shards
            .iter()
            .zip(per_shard)
            .map(|(&shard, (version, jobs, last_fired))| {
                let (jobs, unreadable) = decode_shard_jobs(jobs);
                ShardJobs {
                    shard,
                    version,
                    jobs,
                    last_fired,
                    unreadable,
                }
            })
            .collect())
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "shard versions";
        let rows = self
            .query(
                op,
                "SELECT coalesce(v.version, 0)
                 FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.shard_versions v ON v.shard = u.shard
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map(|v| v.max(0) as u64))
            .collect::<Result<_, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))
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
        self.recover(batches, retention).await
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
        self.read_runs(job_id, limit).await
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}
