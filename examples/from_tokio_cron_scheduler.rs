//! Moving from `tokio-cron-scheduler` (one process) to shardcron (a fleet).
//!
//! ```bash
//! cargo run --example from_tokio_cron_scheduler                          # one process, no server
//! cargo run --example from_tokio_cron_scheduler -- redis://127.0.0.1:6379  # a fleet: start it twice
//! ```
//!
//! # Before: tokio-cron-scheduler, one node
//!
//! Every copy of the service runs every job: with three replicas, each
//! invoice batch is sent three times.
//!
//! ```ignore
//! use std::time::Duration;
//! use tokio_cron_scheduler::{Job, JobScheduler};
//!
//! let sched = JobScheduler::new().await?;
//! sched.add(Job::new_async_tz("0 */5 * * * *", chrono_tz::America::New_York, |_uuid, _l| {
//!     Box::pin(async move { send_invoices().await })
//! })?).await?;
//! sched.add(Job::new_repeated_async(Duration::from_secs(30), |_uuid, _l| {
//!     Box::pin(async move { refresh_cache().await })
//! })?).await?;
//! let report = Job::new_async("0 0 2 * * *", |_uuid, _l| Box::pin(async move { nightly_report().await }))?;
//! let report_id = sched.add(report).await?;   // a Uuid, known to this process only
//! sched.start().await?;
//! // ...
//! sched.remove(&report_id).await?;            // this process stops running it
//! sched.shutdown().await?;
//! ```
//!
//! # After: shardcron, a fleet
//!
//! [`main`] below. What changes:
//!
//! * The code of a job is a named handler registered on every node; the job
//!   itself is data in the store (id, schedule, handler name, arguments),
//!   so any node, the CLI or the admin API can add or remove it.
//! * Ids are yours (`"invoices"`), not a random `Uuid` per process.
//! * Cron expressions are the same 6-field, seconds-first syntax (5 fields,
//!   minute first, work too). `new_repeated_async(30s)` becomes
//!   `Job::every(.., 30s)`, aligned to multiples of 30 s since the epoch so
//!   every node computes the same instants.
//! * Each fire runs once in the fleet, and a fire missed while no node was
//!   up is caught up within `misfire_grace` (tokio-cron-scheduler skips it).
//! * Removing a job stops it on every node; `shutdown` hands the node's
//!   shards to the others instead of stopping the jobs.

use std::sync::Arc;
use std::time::Duration;

use shardcron::store::{MemoryStore, RingConfig};
use shardcron::{Job, RunOutput, Scheduler};

async fn send_invoices() {
    println!("sending invoices");
}

async fn refresh_cache() {
    println!("refreshing the cache");
}

async fn nightly_report() {
    println!("writing the nightly report");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let builder = Scheduler::builder()
        .handler("send-invoices", |_ctx| async move {
            send_invoices().await;
            Ok(RunOutput::default())
        })
        .handler("refresh-cache", |_ctx| async move {
            refresh_cache().await;
            Ok(RunOutput::default())
        })
        .handler("nightly-report", |_ctx| async move {
            nightly_report().await;
            Ok(RunOutput::default())
        })
        .job(
            Job::cron("invoices", "0 */5 * * * *")
                .tz("America/New_York")
                .handler("send-invoices"),
        )
        .job(Job::every("cache", Duration::from_secs(30)).handler("refresh-cache"))
        .job(Job::cron("report", "0 0 2 * * *").handler("nightly-report"));
    // With a URL the copies of this program form a fleet; without one it
    // runs alone on the in-memory store, like tokio-cron-scheduler did.
    let builder = match std::env::args().nth(1) {
        Some(url) => builder.store(url).namespace("migration-example"),
        None => builder.coordinator(Arc::new(
            MemoryStore::new().coordinator("migration-example", RingConfig::default())?,
        )),
    };
    let scheduler = builder.start().await?;
    println!("node {} is running; Ctrl-C stops it", scheduler.node_id());

    let _ = tokio::signal::ctrl_c().await;
    // `sched.remove(&uuid)` stopped a job in one process; this stops it in
    // the fleet (here only to show the call: the next start adds it back).
    scheduler.remove_job("report").await?;
    scheduler.shutdown().await?;
    Ok(())
}
