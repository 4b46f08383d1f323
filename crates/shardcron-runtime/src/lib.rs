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
//! Programs that embed a worker use the `shardcron` crate, which re-exports
//! what they need from here and adds the builder, job management and
//! shutdown handle. This crate is the engine underneath; the example below
//! drives it directly.
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

#![warn(missing_docs)]

// The public surface is the re-exports below and `metrics` (whose names
// and labels are a contract with dashboards and alerts). The other modules
// are the engine's parts: they stay `pub` for this crate's tests, the
// simulator and the benchmarks, but are hidden from the docs and carry no
// stability promise.
#[doc(hidden)]
pub mod ahead;
#[doc(hidden)]
pub mod clock;
#[doc(hidden)]
pub mod executor;
#[doc(hidden)]
pub mod fire_metrics;
#[doc(hidden)]
pub mod handler;
#[doc(hidden)]
pub mod lease_watch;
pub mod metrics;
mod node;
#[doc(hidden)]
pub mod recorder;
mod run_set;
#[doc(hidden)]
pub mod settings;
#[doc(hidden)]
pub mod status;
#[doc(hidden)]
pub mod timetable;
#[doc(hidden)]
pub mod worker;

pub use clock::{Clock, SkewedClock, SystemClock};
pub use handler::{FireContext, FnHandler, Handler, HandlerError, HandlerRegistry, RunOutput};
pub use settings::WorkerSettings;
pub use status::{WorkerReport, WorkerStatus};
pub use worker::{default_node_id, Worker, WorkerBuilder, WorkerError};
