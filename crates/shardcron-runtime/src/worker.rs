//! The worker: builder, public API and shutdown sequence.
//!
//! A worker is one node of the fleet. `run` drives a single state machine
//! (`crate::node::Node`) until the shutdown future resolves, then leaves
//! gracefully: stop firing, deregister (so peers recompute the ring at once),
//! release every lease (so they can take the shards at once), drain in-flight
//! runs up to a deadline, flush the run history.

use std::future::Future;
use std::sync::Arc;

use shardcron_coord::{CoordError, Coordinator, MemberInfo};
use tokio::sync::watch;

use crate::clock::{Clock, SystemClock};
use crate::handler::{Handler, HandlerRegistry};
use crate::node::Node;
use crate::settings::WorkerSettings;
use crate::status::{WorkerReport, WorkerStatus};

/// Why a worker could not start or stopped with an error. None of these is
/// worth retrying unchanged: fix the settings, the node id, or (for a
/// [`CoordError::ConfigMismatch`]) the ring settings or namespace. An
/// unreachable store is never an error here: the worker waits it out.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Settings break the protocol's timing rules.
    #[error("invalid worker settings: {0}")]
    Settings(String),
    /// The node id is unusable.
    #[error("invalid node id {0:?}: use 1-200 characters of A-Z a-z 0-9 _ - . :")]
    NodeId(String),
    /// The coordination store refused us (e.g. mismatched shard count).
    #[error(transparent)]
    Coord(#[from] CoordError),
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    coordinator: Arc<dyn Coordinator>,
    node_id: Option<String>,
    handlers: HandlerRegistry,
    settings: WorkerSettings,
    clock: Arc<dyn Clock>,
    version: String,
    addr: Option<String>,
    instance: Option<String>,
}

impl WorkerBuilder {
    /// Sets the process instance id that, with the node id, names this
    /// worker as a lease holder (default: derived from the start time and the
    /// process id). Two incarnations of one node id must never share it; the
    /// fault simulator sets it so that runs replay exactly from a seed.
    pub fn instance_id(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Sets the node id (default: `hostname-pid`).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Registers a handler under `name`.
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(name, Arc::new(handler));
        self
    }

    /// Registers an already shared handler under `name`.
    pub fn handler_arc(mut self, name: impl Into<String>, handler: Arc<dyn Handler>) -> Self {
        self.handlers.insert(name, handler);
        self
    }

    /// Replaces the settings.
    pub fn settings(mut self, settings: WorkerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Uses another wall clock (tests inject skew with it).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Version string published in the member registry.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Admin address published in the member registry.
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Validates and builds the worker.
    pub fn build(self) -> Result<Worker, WorkerError> {
        self.settings.validate().map_err(WorkerError::Settings)?;
        let node_id = self.node_id.unwrap_or_else(default_node_id);
        if shardcron_core::validate_job_id(&node_id).is_err() || node_id.contains('/') {
            return Err(WorkerError::NodeId(node_id));
        }
        let (status, _) = watch::channel(WorkerStatus {
            node_id: node_id.clone(),
            ..WorkerStatus::default()
        });
        let instance = self.instance.unwrap_or_else(crate::node::instance_id);
        Ok(Worker {
            instance: instance.clone(),
            coordinator: self.coordinator,
            info: MemberInfo {
                id: node_id,
                version: self.version,
                started_ms: self.clock.now_ms(),
                addr: self.addr,
                instance: Some(instance),
            },
            handlers: self.handlers,
            settings: self.settings,
            clock: self.clock,
            status: Arc::new(status),
        })
    }
}

/// `hostname-pid`, the default node id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// One node of the fleet.
pub struct Worker {
    instance: String,
    coordinator: Arc<dyn Coordinator>,
    info: MemberInfo,
    handlers: HandlerRegistry,
    settings: WorkerSettings,
    clock: Arc<dyn Clock>,
    status: Arc<watch::Sender<WorkerStatus>>,
}

impl Worker {
    /// Starts building a worker on `coordinator`.
    pub fn builder(coordinator: Arc<dyn Coordinator>) -> WorkerBuilder {
        WorkerBuilder {
            coordinator,
            node_id: None,
            handlers: HandlerRegistry::new(),
            settings: WorkerSettings::default(),
            clock: Arc::new(SystemClock),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            addr: None,
            instance: None,
        }
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.info.id
    }

    /// The handlers this worker runs.
    pub fn handlers(&self) -> &HandlerRegistry {
        &self.handlers
    }

    /// A live view of the worker's state.
    pub fn status(&self) -> watch::Receiver<WorkerStatus> {
        self.status.subscribe()
    }

    /// Runs until `shutdown` resolves, then leaves gracefully. Returns an error
    /// only for fatal configuration problems (e.g. a namespace created with
    /// another shard count, found at start or by any later heartbeat, after
    /// which the worker leaves gracefully); an unreachable store is waited
    /// out, never fatal.
    pub async fn run<F>(self, shutdown: F) -> Result<WorkerReport, WorkerError>
    where
        F: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        loop {
            match self.coordinator.ensure_config().await {
                Ok(()) => break,
                Err(e) if e.is_unreachable() => {
                    tracing::warn!(error = %e, "waiting for Redis before starting");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(WorkerReport::default()),
                        () = tokio::time::sleep(self.settings.heartbeat) => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let node_id = self.info.id.clone();
        let node = Node::new(
            self.instance,
            self.coordinator,
            self.info,
            self.handlers,
            self.settings,
            self.clock,
            self.status,
        );
        let span = tracing::info_span!("worker", node = %node_id);
        match tracing::Instrument::instrument(node.run(shutdown), span).await {
            (report, None) => Ok(report),
            (_, Some(fatal)) => Err(fatal.into()),
        }
    }
}
