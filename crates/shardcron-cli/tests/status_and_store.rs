//! Library-level tests against a coordinator: the status report, pause and
//! resume read-modify-write, job listing, and connecting one-shot commands to
//! a namespace with non-default ring settings (real Redis from the test kit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcron_cli::cmd::job::{all_ids, set_paused};
use shardcron_cli::connect::connect_one_shot;
use shardcron_cli::status_report::collect;
use shardcron_cli::ExitKind;
use shardcron_coord::{Coordinator, MemoryStore, RedisCoordinator};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::{Worker, WorkerSettings};
use shardcron_testkit::RedisServer;
use tokio::sync::oneshot;

const RING: RingConfig = RingConfig {
    shard_count: 64,
    vnodes: 40,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_members_shares_and_churn() {
    let store = MemoryStore::new();
    let admin = store.coordinator("st", RING).expect("coordinator");
    for i in 0..30 {
        admin
            .put_job(
                &JobSpec::new(format!("job-{i:02}"), "@every 1h", "noop"),
                None,
            )
            .await
            .expect("put");
    }
    let empty = collect(&admin).await.expect("collect");
    assert!(empty.members.is_empty());
    assert_eq!(empty.jobs, 30);
    assert!(
        !empty.churn_in_progress,
        "no members, no leases: nothing to move"
    );

    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for node in ["a", "b"] {
        let coord: Arc<dyn Coordinator> = Arc::new(store.coordinator("st", RING).expect("coord"));
        let worker = Worker::builder(coord)
            .node_id(node)
            .settings(WorkerSettings::fast())
            .build()
            .expect("worker");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        })));
    }
    let start = Instant::now();
    let report = loop {
        let r = collect(&admin).await.expect("collect");
        if r.members.len() == 2 && !r.churn_in_progress {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never settled: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.shard_count, 64);
    assert_eq!(report.members.iter().map(|m| m.shards).sum::<u32>(), 64);
    assert_eq!(report.members.iter().map(|m| m.jobs).sum::<usize>(), 30);
    for m in &report.members {
        assert_eq!(m.leases, m.shards, "{m:?}");
    }
    assert!(report.balance.max_over_mean >= 1.0);
    assert!(report.leases_of_non_members.is_empty());
    let json = serde_json::to_value(&report).expect("json");
    assert!(
        json["members"].is_array() && json["churn"].is_array(),
        "{json}"
    );

    // A third member joins: until it holds its shards, they show as churn.
    let coord: Arc<dyn Coordinator> = Arc::new(store.coordinator("st", RING).expect("coord"));
    let joined = shardcron_coord::MemberInfo {
        id: "c".into(),
        version: "test".into(),
        started_ms: 0,
        addr: None,
    };
    coord
        .heartbeat(&joined, Duration::from_secs(30))
        .await
        .expect("heartbeat");
    let r = collect(&admin).await.expect("collect");
    assert_eq!(r.members.len(), 3);
    assert!(
        r.churn_in_progress,
        "c owns shards by the ring but holds no lease"
    );
    assert!(
        r.churn.iter().all(|c| c.ring_owner.as_deref() == Some("c")),
        "{:?}",
        r.churn
    );
    coord.deregister("c").await.expect("deregister");

    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        task.await.expect("join").expect("worker ran");
    }
}

#[tokio::test]
async fn pause_and_resume_keep_the_rest_of_the_job() {
    let coord = MemoryStore::new()
        .coordinator("p", RING)
        .expect("coordinator");
    let mut spec = JobSpec::new("j", "@every 5s", "exec");
    spec.args = serde_json::json!({"command": "true"});
    let v1 = coord.put_job(&spec, None).await.expect("put");
    let paused = set_paused(&coord, "j", true).await.expect("pause");
    assert!(paused.spec.paused);
    assert!(paused.version != v1.version);
    assert_eq!(paused.spec.args, spec.args);
    let again = set_paused(&coord, "j", true).await.expect("pause twice");
    assert_eq!(
        again.version, paused.version,
        "no write when nothing changes"
    );
    let resumed = set_paused(&coord, "j", false).await.expect("resume");
    assert!(!resumed.spec.paused);
    let err = set_paused(&coord, "missing", true)
        .await
        .expect_err("unknown job");
    assert_eq!(err.kind, ExitKind::NotFound);
    assert!(err.message.contains("\"missing\""), "{err}");
}

#[tokio::test]
async fn listing_pages_through_every_id() {
    let coord = MemoryStore::new()
        .coordinator("l", RING)
        .expect("coordinator");
    for i in 0..1203 {
        let prefix = if i % 2 == 0 { "even" } else { "odd" };
        coord
            .put_job(
                &JobSpec::new(format!("{prefix}-{i:04}"), "@every 1h", "noop"),
                None,
            )
            .await
            .expect("put");
    }
    let all = all_ids(&coord, "").await.expect("all");
    assert_eq!(all.len(), 1203);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(all_ids(&coord, "odd-").await.expect("odd").len(), 601);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_adopt_the_namespace_ring_settings() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let first = RedisCoordinator::connect(&url, "odd", RING)
        .await
        .expect("create namespace");
    first
        .put_job(&JobSpec::new("j", "@every 1h", "noop"), None)
        .await
        .expect("put");
    let coord = connect_one_shot(&url, "odd").await.expect("adopts 64/40");
    assert_eq!(coord.ring_config(), RING);
    let stored = coord
        .get_job("j")
        .await
        .expect("get")
        .expect("found in the same shard");
    assert_eq!(stored.spec.id, "j");
    let report = collect(&coord).await.expect("status");
    assert_eq!(
        (report.shard_count, report.vnodes, report.jobs),
        (64, 40, 1)
    );

    let fresh = connect_one_shot(&url, "fresh")
        .await
        .expect("defaults on a fresh namespace");
    assert_eq!(fresh.ring_config(), RingConfig::default());

    let port = shardcron_testkit::free_port().expect("port");
    let err = match connect_one_shot(&format!("redis://127.0.0.1:{port}"), "x").await {
        Ok(_) => panic!("nothing listens there"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ExitKind::Unreachable);
    assert!(err.message.contains(&format!("127.0.0.1:{port}")), "{err}");
}
