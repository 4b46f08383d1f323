//! A claim refused because the job changed must not lose the fire: the node
//! reloads and decides the fire again under the new version.
//!
//! The edit is written without its change event (as when the pub/sub message
//! is lost), so the claim's version check is the first to notice it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardcron_coord::{Coordinator, MemoryStore, StoredJob};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_runtime::{FireContext, FnHandler, RunOutput, Worker, WorkerSettings};
use tokio::sync::oneshot;

const RING: RingConfig = RingConfig::new(8, 40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_first_noticed_by_the_claim_does_not_lose_the_fire() {
    let store = MemoryStore::new();
    let admin = store.coordinator("r", RING).expect("coord");
    let spec = JobSpec::new("edited", "@every 1s", "record");
    let stored = admin.put_job(&spec, None).await.expect("put");
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let log = seen.clone();
    let worker = Worker::builder(Arc::new(store.coordinator("r", RING).expect("coord")))
        .node_id("solo")
        .settings(WorkerSettings {
            // No version poll in the window: only the claim can notice.
            poll_interval: Duration::from_secs(60),
            ..WorkerSettings::fast()
        })
        .handler(
            "record",
            FnHandler(move |ctx: FireContext| {
                let log = log.clone();
                async move {
                    log.lock().expect("log").push(ctx.scheduled_ms);
                    Ok(RunOutput::default())
                }
            }),
        )
        .build()
        .expect("worker");
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Edit the job's arguments without publishing the change.
    let shard = shard_of("edited", RING.shard_count);
    let next_version = admin.shard_versions(&[shard]).await.expect("versions")[0] + 1;
    let mut edited = spec.clone();
    edited.args = serde_json::json!({ "edited": true });
    let record = StoredJob {
        version: next_version,
        updated_ms: store.now_ms(),
        active_since_ms: stored.updated_ms,
        spec: edited,
    };
    let json = serde_json::to_string(&record).expect("json");
    let edited_at = store.now_ms();
    store.put_raw_job(shard, "edited", &json);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _ = stop.send(());
    task.await.expect("join").expect("run");
    let ran: BTreeSet<i64> = seen.lock().expect("log").iter().copied().collect();
    let first = *ran.iter().next().expect("the job ran");
    let last_expected = (edited_at / 1000 + 2) * 1000;
    let missing: Vec<i64> = (first / 1000..=last_expected / 1000)
        .map(|s| s * 1000)
        .filter(|t| !ran.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "fires lost around the unannounced edit at {edited_at}: {missing:?} (ran {ran:?})"
    );
}
