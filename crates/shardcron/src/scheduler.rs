//! [`Scheduler`]: build a worker, start it, manage its jobs, shut it down.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use shardcron_coord::{Coordinator, StoredJob};
use shardcron_core::{FireId, JobSpec, JobValidationError, RingConfig};
use shardcron_runtime::{
    FireContext, FnHandler, Handler, HandlerError, HandlerRegistry, RunOutput, Worker,
    WorkerReport, WorkerSettings, WorkerStatus,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::jobs::{Jobs, Written};

/// The namespace a scheduler joins unless told otherwise: the daemon's
/// default too, so an embedded worker and `shardcron worker` processes
/// started without `--namespace` form one fleet.
pub const DEFAULT_NAMESPACE: &str = "shardcron";

/// Entry point: `Scheduler::builder()`.
///
/// A scheduler is one node of a fleet. Every process that builds one on the
/// same store and namespace joins the same fleet; each fire of each job runs
/// on one of them, once.
#[derive(Debug)]
pub struct Scheduler(());

impl Scheduler {
    /// Starts building a scheduler.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder {
            store: None,
            coordinator: None,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            ring: RingConfig::default(),
            node_id: None,
            settings: WorkerSettings::default(),
            handlers: HandlerRegistry::new(),
            jobs: Vec::new(),
            version: None,
        }
    }
}

/// Builds and starts a scheduler; see [`Scheduler::builder`].
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct SchedulerBuilder {
    store: Option<String>,
    coordinator: Option<Arc<dyn Coordinator>>,
    namespace: String,
    ring: RingConfig,
    node_id: Option<String>,
    settings: WorkerSettings,
    handlers: HandlerRegistry,
    jobs: Vec<JobSpec>,
    version: Option<String>,
}

impl std::fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field(
                "store",
                &self.store.as_deref().map(shardcron_coord::redact_url),
            )
            .field("namespace", &self.namespace)
            .field("node_id", &self.node_id)
            .field("handlers", &self.handlers.names())
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl SchedulerBuilder {
    /// The store the fleet shares, by URL: `redis://`, `rediss://`,
    /// `postgres://`, `postgresql://`, or any other scheme
    /// [`shardcron_store::open_store`] supports.
    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.store = Some(url.into());
        self
    }

    /// An already open store instead of a URL: an in-memory one for tests
    /// ([`crate::store::MemoryStore`]), or one built with custom options.
    /// Its namespace and ring settings are used; [`Self::namespace`] and
    /// [`Self::ring`] are then ignored.
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// The namespace (default [`DEFAULT_NAMESPACE`]): fleets in different
    /// namespaces of one store share nothing.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The ring settings (shard count, virtual nodes, load bound). Every
    /// node of a namespace must use the same ones; the default is the
    /// daemon's.
    pub fn ring(mut self, ring: RingConfig) -> Self {
        self.ring = ring;
        self
    }

    /// This node's id (default `hostname-pid`): 1-200 characters of
    /// `A-Z a-z 0-9 _ - . :`, unique in the fleet.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Worker timings and limits (heartbeat, lease TTL, concurrency, drain
    /// timeout, claim-ahead window...). The defaults suit production;
    /// [`WorkerSettings::fast`] suits tests.
    pub fn settings(mut self, settings: WorkerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Registers an async closure as the handler `name`. It receives the
    /// fire's [`FireContext`]: use `ctx.fire_id` as an idempotency key, and
    /// stop when `ctx.cancel` trips (the node lost the shard, the attempt
    /// timed out, or shutdown gave up waiting). A returned error is
    /// retried per the job's retry policy; a panic is caught and recorded.
    pub fn handler<F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(FireContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<RunOutput, HandlerError>> + Send + 'static,
    {
        self.handler_impl(name, FnHandler(handler))
    }

    /// Registers a [`Handler`] implementation as the handler `name` (one
    /// that validates its job arguments, say).
    pub fn handler_impl(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(name, Arc::new(handler));
        self
    }

    /// Registers the daemon's built-in handlers, `exec` (a shell command)
    /// and `http` (a webhook), so that jobs written for them with the CLI or
    /// the admin API run on this node too.
    pub fn builtin_handlers(mut self) -> Self {
        for (name, handler) in shardcron_handlers::builtin_handlers() {
            self.handlers.insert(name, handler);
        }
        self
    }

    /// A job this program defines: written at start unless stored exactly
    /// so already (restarts do not bump its version). Every node may define
    /// the same jobs; they are stored once. Jobs can also be added at run
    /// time through the [`SchedulerHandle`].
    pub fn job(mut self, job: impl Into<JobSpec>) -> Self {
        self.jobs.push(job.into());
        self
    }

    /// The version string this node publishes in the member registry
    /// (default: this crate's version).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Checks everything, connects, writes the builder's jobs and starts
    /// the worker in a task of the current tokio runtime.
    ///
    /// Nothing is written unless every job is valid: each is checked by the
    /// same rules as `shardcron job put` and the admin API (fields,
    /// schedule, a handler registered here that accepts the arguments,
    /// unique ids). The returned handle manages jobs and shuts the worker
    /// down; dropping it also starts a graceful shutdown.
    pub async fn start(self) -> Result<SchedulerHandle> {
        self.settings
            .validate()
            .map_err(|e| Error::Config(format!("invalid worker settings: {e}")))?;
        if self.coordinator.is_none()
            && (self.namespace.is_empty() || self.namespace.contains(['{', '}']))
        {
            return Err(Error::Config(format!(
                "invalid namespace {:?}: it must be non-empty and without braces",
                self.namespace
            )));
        }
        let mut seen = HashSet::new();
        for spec in &self.jobs {
            if !seen.insert(spec.id.as_str()) {
                return Err(JobValidationError {
                    job_id: spec.id.clone(),
                    field: "id",
                    message: format!("duplicate id {:?} among the builder's jobs", spec.id),
                }
                .into());
            }
            crate::jobs::check_job(
                spec,
                Some(&self.handlers),
                Some(self.settings.claim_retention),
                crate::jobs::now_ms(),
            )?;
        }
        let coord = match (self.coordinator, &self.store) {
            (Some(coord), _) => coord,
            (None, Some(url)) => {
                shardcron_store::open_store(url, &self.namespace, self.ring).await?
            }
            (None, None) => return Err(Error::Config(
                "no store: call `.store(url)` (redis://, postgres://...) or `.coordinator(...)`"
                    .to_owned(),
            )),
        };
        let jobs = Jobs::new(Arc::clone(&coord))
            .with_handlers(self.handlers.clone())
            .with_max_misfire_grace(self.settings.claim_retention);
        for spec in &self.jobs {
            let written = jobs.ensure(spec.clone()).await?;
            tracing::debug!(job = %spec.id, version = written.job.version, "job ensured at start");
        }
        let mut builder = Worker::builder(coord).settings(self.settings);
        for name in self.handlers.names() {
            if let Some(handler) = self.handlers.get(&name) {
                builder = builder.handler_arc(name, Arc::clone(handler));
            }
        }
        if let Some(id) = self.node_id {
            builder = builder.node_id(id);
        }
        builder = builder.version(
            self.version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        );
        let worker = builder.build()?;
        let node_id = worker.node_id().to_owned();
        let status = worker.status();
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move { worker.run(signal.cancelled_owned()).await });
        Ok(SchedulerHandle {
            jobs,
            node_id,
            status,
            stop,
            task: Some(task),
        })
    }
}

/// A running scheduler: manages jobs, reports status, shuts down.
///
/// Dropping the handle starts a graceful shutdown without waiting for it;
/// call [`SchedulerHandle::shutdown`] to wait until the node has left.
#[derive(Debug)]
pub struct SchedulerHandle {
    jobs: Jobs,
    node_id: String,
    status: watch::Receiver<WorkerStatus>,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<WorkerReport, shardcron_runtime::WorkerError>>>,
}

impl SchedulerHandle {
    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// A client for the namespace's jobs, checked against this node's
    /// handlers; clone it into your request handlers.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// What the worker believes and holds right now.
    pub fn status(&self) -> WorkerStatus {
        self.status.borrow().clone()
    }

    /// A live view of [`Self::status`], for readiness probes.
    pub fn status_watch(&self) -> watch::Receiver<WorkerStatus> {
        self.status.clone()
    }

    /// Waits until the node is registered and holds every shard the
    /// placement gives it (what `/readyz` reports), or has stopped. Wrap it
    /// in a timeout.
    pub async fn ready(&self) {
        let mut status = self.status.clone();
        let _ = status.wait_for(WorkerStatus::ready).await;
    }

    /// True once the worker has stopped (after a shutdown, or a fatal
    /// configuration error: [`Self::shutdown`] returns it).
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Adds a new job ([`Jobs::add`]); [`Error::Conflict`] if one with this
    /// id exists.
    pub async fn add_job(&self, job: impl Into<JobSpec>) -> Result<StoredJob> {
        self.jobs.add(job).await
    }

    /// Replaces an existing job ([`Jobs::replace`]).
    pub async fn replace_job(&self, job: impl Into<JobSpec>) -> Result<StoredJob> {
        self.jobs.replace(job).await
    }

    /// Adds or replaces a job ([`Jobs::upsert`]).
    pub async fn upsert_job(&self, job: impl Into<JobSpec>) -> Result<Written> {
        self.jobs.upsert(job).await
    }

    /// Removes a job ([`Jobs::remove`]): no fire of it scheduled after this
    /// returns starts, on any node.
    pub async fn remove_job(&self, id: &str) -> Result<()> {
        self.jobs.remove(id).await
    }

    /// Pauses a job ([`Jobs::pause`]).
    pub async fn pause_job(&self, id: &str) -> Result<StoredJob> {
        self.jobs.pause(id).await
    }

    /// Resumes a job ([`Jobs::resume`]).
    pub async fn resume_job(&self, id: &str) -> Result<StoredJob> {
        self.jobs.resume(id).await
    }

    /// Queues one extra fire of a job now ([`Jobs::trigger`]).
    pub async fn trigger_job(&self, id: &str) -> Result<FireId> {
        self.jobs.trigger(id).await
    }

    /// Reads one job ([`Jobs::get`]).
    pub async fn get_job(&self, id: &str) -> Result<Option<StoredJob>> {
        self.jobs.get(id).await
    }

    /// Leaves the fleet gracefully, as the daemon does on SIGTERM, and
    /// waits until it has: stop claiming, deregister (peers take over at
    /// once), release each shard once its runs have ended, cancel runs
    /// still going at the settings' `drain_timeout`, flush the run history.
    /// Returns the worker's totals, or the fatal error that stopped it
    /// earlier.
    pub async fn shutdown(mut self) -> Result<WorkerReport> {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return Ok(WorkerReport::default());
        };
        match task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(Error::Crashed(e.to_string())),
        }
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
