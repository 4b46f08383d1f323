//! The `embedded` example on PostgreSQL: the same program, another URL.
//!
//! ```bash
//! cargo run --example postgres -- postgres://shardcron:secret@127.0.0.1:5432/shardcron
//! SHARDCRON_STORE=postgres://... cargo run --example postgres
//! ```
//!
//! The first node creates the namespace's schema (`shardcron_<namespace>`),
//! so the user needs `CREATE` on the database. PostgreSQL gives the same
//! guarantees as Redis, and also keeps a state per fire (claimed, running,
//! outcome) that `shardcron runs` shows.

use std::time::Duration;

use shardcron::{Delivery, HandlerError, Job, RunOutput, Scheduler};

#[tokio::main]
async fn main() -> Result<(), shardcron::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shardcron=info".into()))
        .init();
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SHARDCRON_STORE").ok())
        .unwrap_or_else(|| "postgres://shardcron@127.0.0.1:5432/shardcron".to_owned());

    let scheduler = Scheduler::builder()
        .store(url)
        .namespace("embedded_example")
        .handler("report", |ctx| async move {
            println!("{} ran on {}", ctx.fire_id, ctx.node_id);
            Ok(RunOutput::default())
        })
        .handler("charge", |ctx| async move {
            // An at-least-once job may be delivered again after a node dies:
            // de-duplicate downstream by the fire id.
            if ctx.delivery > 1 {
                println!("{} re-delivered (delivery {})", ctx.fire_id, ctx.delivery);
            }
            if ctx.args["amount"].as_u64().is_none() {
                return Err(HandlerError::permanent("args.amount is missing"));
            }
            Ok(RunOutput::default())
        })
        .job(Job::cron("report", "*/5 * * * * *").handler("report"))
        .job(
            Job::every("charge", Duration::from_secs(10))
                .handler("charge")
                .args(serde_json::json!({ "amount": 100 }))
                .delivery(Delivery::AtLeastOnce)
                .retries(3),
        )
        .start()
        .await?;
    println!("node {} is running; Ctrl-C stops it", scheduler.node_id());

    let _ = tokio::signal::ctrl_c().await;
    scheduler.shutdown().await?;
    Ok(())
}
