//! `shardcron-bench`: measurements that back shardcron's placement and
//! coordination choices (results and conclusions: `docs/BENCHMARKS.md`).
//!
//! The ring as shipped (`shardcron_core::ShardMap`) was picked on paper; this
//! crate checks the choice with numbers.
//!
//! * `sim` is pure computation: it replays membership changes (scale-out,
//!   scale-in, rolling restarts, crashes) through several placement
//!   strategies and measures how much work moves compared with the
//!   theoretical minimum and how evenly it is spread afterwards — first
//!   counting jobs (every job alike), then on weighted workloads, where a
//!   node's load is fires per second times cost and job writes can move
//!   shards too. Results go to JSON and CSV (for diffing between runs) and
//!   to SVG charts.
//! * `live` runs real in-process workers against a private redis-server and
//!   measures what a fire costs end to end (throughput, lateness, Redis
//!   commands and CPU per fire) while checking that no fire is duplicated or
//!   missed — optionally through a scripted churn timeline (graceful leaves,
//!   crashes, joins), timing each handoff and takeover.
//! * `peer` runs `live` and the BullMQ peer (`benches/peers/bullmq`) one
//!   after the other at each job rate and puts them side by side.
//!
//! The library part exists so the strategies, metrics and audit can be
//! unit-tested apart from the command line; `main.rs` only parses arguments
//! and maps errors to exit codes.

#![warn(missing_docs)]

pub mod charts;
pub mod cli;
pub mod error;
pub mod job_churn;
pub mod live;
pub mod metrics;
pub mod peer;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod sim_cmd;
pub mod strategy;
pub mod weighted;
pub mod weighted_record;
pub mod weighted_report;
pub mod weighted_workload;
pub mod workload;

pub use error::BenchError;
