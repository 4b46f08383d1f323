//! [`PostgresCoordinator`]: connecting (pool, migration, event listener),
//! running one statement, and the [`Coordinator`] implementation, which
//! hands each call to the module that does that job (`members`, `leases`,
//! `jobs`, `fires`, `history`).
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
    PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome, RunRecord, ShardJobs,
    StartedFire, StoredJob,
};
use shardcron_core::{job_shard, JobSpec, Placement, PlacementRecord, RingConfig};
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

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
    pub(crate) namespace: String,
    pub(crate) schema: NamespaceSchema,
    pub(crate) ring: RingConfig,
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
        let tls = crate::tls::connector().map_err(|e| CoordError::Unreachable {
            url: url.clone(),
            message: format!("TLS setup: {e}"),
        })?;
        let listen_config = config.clone();
        let manager = Manager::from_config(
            config,
            tls.clone(),
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
            tls,
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

    /// The shard of a job of `placement` (see [`job_shard`]).
    pub(crate) fn shard(&self, job_id: &str, placement: Placement) -> u32 {
        job_shard(job_id, placement, self.ring.shard_count)
    }
}

/// The server-side `statement_timeout` for a client response timeout:
/// three quarters of it (at least 1 ms).
fn statement_timeout(response: Duration) -> u128 {
    (response.as_millis() * 3 / 4).max(1)
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
        self.check_config().await
    }

    async fn server_time_ms(&self) -> CoordResult<i64> {
        self.now_ms().await
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        self.beat(member, ttl).await
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        self.leave(node_id).await
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
        // `Some(u64::MAX)` matches no version: not wanted.
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
        self.put_placement(expected, record).await
    }

    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        self.acquire(shards, holder, ttl).await
    }

    async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        self.renew(leases, holder, ttl).await
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        self.release(leases, holder).await
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        self.holders(shards).await
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
        self.write_job(spec, expected_version).await
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        self.read_job(job_id).await
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        self.remove_job(job_id, expected_version).await
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        self.queue_trigger(job_id).await
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        self.queued_triggers(leases, holder).await
    }

    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        self.job_page(prefix, after, limit).await
    }

    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        self.shard_jobs(shards).await
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        self.versions(shards).await
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        self.record_and_close(runs, &[]).await
    }

    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        self.record_and_close(&[], closes).await
    }

    async fn mark_running(&self, fires: &[StartedFire]) -> CoordResult<()> {
        self.set_running(fires).await
    }

    fn keeps_fire_states(&self) -> bool {
        true
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
