//! A worker embedded in a program, with closure handlers, on Redis.
//!
//! ```bash
//! cargo run --example embedded -- redis://127.0.0.1:6379
//! SHARDCRON_STORE=redis://10.0.0.5:6379 cargo run --example embedded
//! ```
//!
//! Start it in two or three terminals: the copies form one fleet, and each
//! fire is printed by exactly one of them. Stop one with Ctrl-C: it leaves
//! gracefully and the others take its shards at once.
//!
//! `tests/embedded.rs` runs this file's [`scheduler`] as two nodes against
//! a private `redis-server` and audits every fire.

use std::time::Duration;

use shardcron::{HandlerError, Job, RunOutput, Scheduler, SchedulerBuilder};

/// The store: the first argument, else `SHARDCRON_STORE`, else a local Redis.
fn store_url() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SHARDCRON_STORE").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// This program's scheduler: its handlers and the jobs it always has.
pub fn scheduler(store_url: &str) -> SchedulerBuilder {
    Scheduler::builder()
        .store(store_url)
        .namespace("embedded-example")
        .handler("report", |ctx| async move {
            // The fire id is the same on every node: an idempotency key.
            println!("{} ran on {}", ctx.fire_id, ctx.node_id);
            Ok(RunOutput::default())
        })
        .handler("cleanup", |ctx| async move {
            let max_age = ctx.args["max_age_s"].as_u64().unwrap_or(3600);
            tokio::select! {
                // Trips if this node loses the shard or the timeout hits.
                () = ctx.cancel.cancelled() => Err(HandlerError::new("cancelled")),
                () = tokio::time::sleep(Duration::from_millis(50)) => Ok(RunOutput {
                    detail: Some(format!("removed files older than {max_age}s")),
                }),
            }
        })
        .job(Job::cron("report", "*/5 * * * * *").handler("report"))
}

#[tokio::main]
async fn main() -> Result<(), shardcron::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shardcron=info".into()))
        .init();
    let scheduler = scheduler(&store_url()).start().await?;

    // Jobs can be added, changed and removed at run time, from any node.
    scheduler
        .upsert_job(
            Job::every("cleanup", Duration::from_secs(3))
                .handler("cleanup")
                .args(serde_json::json!({ "max_age_s": 600 }))
                .timeout(Duration::from_secs(2))
                .retries(1),
        )
        .await?;
    println!("node {} is running; Ctrl-C stops it", scheduler.node_id());

    let _ = tokio::signal::ctrl_c().await;
    let report = scheduler.shutdown().await?;
    println!("left the fleet; this node claimed {} fires", report.claimed);
    Ok(())
}
