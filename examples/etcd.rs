//! The `embedded` example on etcd: the same program, another URL.
//!
//! ```bash
//! cargo run --example etcd -- etcd://127.0.0.1:2379
//! SHARDCRON_STORE=etcd://10.0.0.5:2379,10.0.0.6:2379,10.0.0.7:2379 cargo run --example etcd
//! ```
//!
//! List every member of the etcd cluster in the URL: the client moves to
//! another when one fails. Leases are etcd leases (whole seconds), claims
//! are transactions compared on revisions, and events come from a watch
//! (see "etcd store" in docs/ARCHITECTURE.md).

use shardcron::{Job, RunOutput, Scheduler};

#[tokio::main]
async fn main() -> Result<(), shardcron::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shardcron=info".into()))
        .init();
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SHARDCRON_STORE").ok())
        .unwrap_or_else(|| "etcd://127.0.0.1:2379".to_owned());

    let scheduler = Scheduler::builder()
        .store(url)
        .namespace("embedded_example")
        .handler("report", |ctx| async move {
            println!(
                "{} ran on {} (fencing token {})",
                ctx.fire_id, ctx.node_id, ctx.fencing_token
            );
            Ok(RunOutput::default())
        })
        .job(Job::cron("report", "*/5 * * * * *").handler("report"))
        .start()
        .await?;
    println!("node {} is running; Ctrl-C stops it", scheduler.node_id());

    let _ = tokio::signal::ctrl_c().await;
    scheduler.shutdown().await?;
    Ok(())
}
