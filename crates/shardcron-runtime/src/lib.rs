//! The shardcron worker runtime: one node of a fleet that runs cron-scheduled
//! jobs so that every fire runs exactly once.
//!
//! A [`Worker`] registers in the namespace, computes the consistent-hash ring
//! over the live members, holds leases on the shards the ring gives it, keeps a
//! timer heap over those shards' jobs, claims fires shortly before they are
//! due in one round trip per tick, starts each at its instant and runs them
//! under a node-wide concurrency limit. See
//! `docs/ARCHITECTURE.md` for the protocol and why each step exists.
//!
//! ```no_run
//! use std::sync::Arc;
//! use shardcron_coord::RedisCoordinator;
//! use shardcron_core::RingConfig;
//! use shardcron_runtime::{FnHandler, RunOutput, Worker};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let coordinator =
//!     RedisCoordinator::connect("redis://127.0.0.1:6379", "shardcron", RingConfig::default()).await?;
//! let worker = Worker::builder(Arc::new(coordinator))
//!     .handler("hello", FnHandler(|ctx: shardcron_runtime::FireContext| async move {
//!         println!("{} fired (token {})", ctx.fire_id, ctx.fencing_token);
//!         Ok(RunOutput::default())
//!     }))
//!     .build()?;
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod ahead;
pub mod clock;
pub mod executor;
pub mod handler;
pub mod lease_watch;
pub mod metrics;
mod node;
pub mod recorder;
pub mod settings;
pub mod status;
pub mod timetable;
pub mod worker;

pub use clock::{Clock, SkewedClock, SystemClock};
pub use handler::{FireContext, FnHandler, Handler, HandlerError, HandlerRegistry, RunOutput};
pub use settings::WorkerSettings;
pub use status::{WorkerReport, WorkerStatus};
pub use worker::{default_node_id, Worker, WorkerBuilder, WorkerError};

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
