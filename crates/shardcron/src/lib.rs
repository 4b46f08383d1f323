//! Cron jobs for a fleet, embedded in your Rust service: every scheduled
//! fire of every job runs once, on one node, however many nodes run it.
//!
//! ```no_run
//! use shardcron::{Job, RunOutput, Scheduler};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), shardcron::Error> {
//!     let scheduler = Scheduler::builder()
//!         .store("redis://127.0.0.1:6379")
//!         .handler("hello", |ctx| async move {
//!             println!("{} runs once in the fleet", ctx.fire_id);
//!             Ok(RunOutput::default())
//!         })
//!         .job(Job::cron("greet", "*/5 * * * * *").handler("hello"))
//!         .start()
//!         .await?;
//!     let _ = tokio::signal::ctrl_c().await;
//!     scheduler.shutdown().await?;
//!     Ok(())
//! }
//! ```
//!
//! Start that program on as many hosts as you like: they register in the
//! store, split the job shards between them, and each fire of `greet` runs
//! on exactly one of them. The store is Redis (`redis://`, `rediss://`) or
//! PostgreSQL (`postgres://`), with the same guarantees.
//!
//! # What you get
//!
//! * [`Scheduler::builder`] → [`SchedulerBuilder`]: the store URL, the
//!   namespace, the handlers (async closures or [`Handler`]s), the jobs the
//!   program defines, [`WorkerSettings`]. [`SchedulerBuilder::start`] checks
//!   all of it, connects, and runs the worker in a tokio task.
//! * [`Job`]: a typed job definition (schedule, time zone, timeout,
//!   retries, misfire and overlap policies, delivery), stored as a
//!   [`JobSpec`] and checked by the same rules as the CLI and the admin API.
//! * [`SchedulerHandle`]: add, replace, remove, pause, resume and trigger
//!   jobs while the fleet runs (they propagate to the owning node in
//!   milliseconds), watch the node's status, and
//!   [`shutdown`](SchedulerHandle::shutdown) gracefully, as the daemon does
//!   on SIGTERM.
//! * [`Jobs`]: the same job management without running a worker (an admin
//!   service), and cheap to clone into your HTTP handlers.
//! * [`FireContext`]: what a handler gets: the fire id (an idempotency
//!   key), the fencing token, the attempt, the job's arguments and a
//!   cancellation token.
//! * [`Error`]: one error type; each variant says what the caller can do.
//!
//! # Without a server
//!
//! A scheduler on the in-memory store runs in one process, which is what
//! tests want:
//!
//! ```
//! use std::time::Duration;
//! use shardcron::store::{MemoryStore, RingConfig};
//! use shardcron::{Job, RunOutput, Scheduler, WorkerSettings};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let (tx, mut fired) = tokio::sync::mpsc::unbounded_channel();
//! let scheduler = Scheduler::builder()
//!     .coordinator(std::sync::Arc::new(store.coordinator("docs", RingConfig::new(16, 40))?))
//!     .settings(WorkerSettings::fast())
//!     .handler("tick", move |ctx| {
//!         let tx = tx.clone();
//!         async move {
//!             let _ = tx.send(ctx.fire_id.to_string());
//!             Ok(RunOutput::default())
//!         }
//!     })
//!     .start()
//!     .await?;
//! // Jobs can be added at run time, from any node.
//! scheduler.add_job(Job::every("tick-job", Duration::from_secs(1)).handler("tick")).await?;
//! let fire_id = tokio::time::timeout(Duration::from_secs(10), fired.recv()).await?;
//! assert!(fire_id.is_some_and(|id| id.starts_with("tick-job@")));
//! scheduler.remove_job("tick-job").await?;
//! scheduler.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! A fire runs only after its node claimed it atomically in the store under
//! a current shard lease; a node cut off from the store stops before its
//! leases can expire. Fires missed during a handoff or an outage are caught
//! up by the next owner within the job's `misfire_grace`. A fire claimed by
//! a node that then dies is lost for [`Delivery::AtMostOnce`] jobs (the
//! default) and run again for [`Delivery::AtLeastOnce`] ones. See the
//! repository's `README.md` and `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

mod error;
mod job;
pub mod jobs;
mod scheduler;

pub use async_trait::async_trait;
pub use error::{Error, Precondition, Result};
pub use job::Job;
pub use jobs::{Jobs, Written};
pub use scheduler::{Scheduler, SchedulerBuilder, SchedulerHandle, DEFAULT_NAMESPACE};

pub use shardcron_coord::StoredJob;
pub use shardcron_core::{
    Delivery, FireId, JobSpec, JobValidationError, MisfirePolicy, OverlapPolicy, Placement,
    RetryPolicy,
};
pub use shardcron_runtime::{
    FireContext, FnHandler, Handler, HandlerError, HandlerRegistry, RunOutput, WorkerReport,
    WorkerSettings, WorkerStatus,
};

/// The daemon's built-in handlers, for programs that want them
/// ([`SchedulerBuilder::builtin_handlers`] registers both).
pub mod handlers {
    pub use shardcron_handlers::{
        builtin_handlers, ExecArgs, ExecHandler, HttpArgs, HttpHandler, StatusRange,
        EXEC_HANDLER_NAME, HTTP_HANDLER_NAME,
    };
}

/// Stores, for what [`SchedulerBuilder::store`] does not cover: the
/// in-memory store for tests, opening a store yourself, the ring settings.
pub mod store {
    pub use shardcron_coord::{CoordError, Coordinator, MemoryStore};
    pub use shardcron_core::RingConfig;
    pub use shardcron_store::{open_store, OpenError, SUPPORTED_SCHEMES};
}

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
