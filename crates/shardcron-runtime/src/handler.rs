//! Handlers: the code a fire runs, registered by name.
//!
//! A job names its handler (`exec`, `http`, or one the embedding program
//! registers) and carries JSON `args`. Keeping "what to run" as a name plus data
//! lets jobs live in Redis and be written by any node, the CLI or the HTTP API,
//! while the code stays in the worker binary. The [`FireContext`] gives the
//! handler everything it needs to be idempotent downstream (the fire id) and to
//! stop when its node loses the shard (the cancellation token).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use foldhash::HashMap;
use shardcron_core::FireId;
use tokio_util::sync::CancellationToken;

/// Everything a handler learns about the fire it runs.
#[derive(Clone, Debug)]
pub struct FireContext {
    /// Id of the job.
    pub job_id: String,
    /// Stable id of this fire (`job_id@scheduled_ms`); use it as an idempotency key.
    pub fire_id: FireId,
    /// Scheduled instant, Unix milliseconds.
    pub scheduled_ms: i64,
    /// Shard the job belongs to.
    pub shard: u32,
    /// Fencing token of the shard lease under which the fire was claimed.
    pub fencing_token: u64,
    /// Attempt number, starting at 1. Numbers never repeat for one fire
    /// id: a recovered fire's first attempt is above every attempt its
    /// earlier deliveries could make (`(delivery - 1) × (max_retries + 1) + 1`).
    pub attempt: u32,
    /// Delivery of the fire: 1 for a fire run by the node that claimed it,
    /// one more each time an `at_least_once` fire is recovered after its
    /// node died or gave it up. Above 1 the fire may have run before.
    pub delivery: u32,
    /// Id of the node running the fire.
    pub node_id: String,
    /// The job's `args`.
    pub args: serde_json::Value,
    /// The job's timeout, if any (the runtime enforces it as well).
    pub timeout: Option<Duration>,
    /// Trips when this node loses the shard's lease or shuts down hard; a
    /// handler should stop promptly when it does.
    pub cancel: CancellationToken,
}

/// What a successful run reports; stored in the run history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// Free-form detail, e.g. the tail of a command's output.
    pub detail: Option<String>,
}

/// Why a run failed; stored in the run history. A handler returns it: a
/// `retryable` failure is attempted again per the job's retry policy, a
/// [`HandlerError::permanent`] one is not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// Human-readable cause.
    pub message: String,
    /// Free-form detail, e.g. the tail of a command's output.
    pub detail: Option<String>,
    /// False when retrying cannot help (bad arguments, say).
    pub retryable: bool,
}

impl HandlerError {
    /// A retryable failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: None,
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::new(message)
        }
    }

    /// Attaches detail (e.g. output tail).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Code that runs a fire.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt of one fire.
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError>;

    /// Checks a job's `args` before the job is stored; the default accepts anything.
    fn validate_args(&self, _args: &serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// Adapts an async closure into a [`Handler`].
pub struct FnHandler<F>(pub F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(FireContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<RunOutput, HandlerError>> + Send + 'static,
{
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError> {
        (self.0)(ctx).await
    }
}

/// Handlers by name (`foldhash`: every run looks its handler up).
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a handler under `name`.
    pub fn insert(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) {
        self.handlers.insert(name.into(), handler);
    }

    /// Looks a handler up.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }

    /// Checks that `handler` exists and accepts `args`.
    pub fn validate(&self, handler: &str, args: &serde_json::Value) -> Result<(), String> {
        match self.handlers.get(handler) {
            None => Err(format!(
                "unknown handler {handler:?}; registered: {}",
                self.names().join(", ")
            )),
            Some(h) => h.validate_args(args),
        }
    }
}
