//! Library-level tests against a coordinator: the status report, pause and
//! resume read-modify-write, job listing, and connecting one-shot commands to
//! a namespace with non-default ring settings (real Redis from the test kit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcron_cli::cmd::job::{all_ids, render_ls, set_paused};
use shardcron_cli::cmd::status::render;
use shardcron_cli::connect::connect_one_shot;
use shardcron_cli::status_report::collect;
use shardcron_cli::ExitKind;
use shardcron_coord::{Coordinator, MemoryStore, RedisCoordinator};
use shardcron_core::load::units_to_fires_per_minute;
use shardcron_core::{shard_of, Delivery, JobSpec, RingConfig, ShardMap, ShardWeights};
use shardcron_runtime::{Worker, WorkerSettings};
use shardcron_testkit::RedisServer;
use tokio::sync::oneshot;

const RING: RingConfig = RingConfig::new(64, 40);

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
    assert!(
        report.placement_version > 0,
        "the workers stored their placement and status reads it: {report:?}"
    );
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
        instance: None,
    };
    coord
        .heartbeat(&joined, Duration::from_secs(30))
        .await
        .expect("heartbeat");
    let r = collect(&admin).await.expect("collect");
    assert_eq!(r.members.len(), 3);
    assert!(
        r.churn_in_progress,
        "c owns shards by the placement but holds no lease"
    );
    // Every shard c should own is churn (c holds no lease yet); the bounded
    // load placement may also move a few shards between a and b.
    let of_c = r
        .churn
        .iter()
        .filter(|c| c.ring_owner.as_deref() == Some("c"))
        .count();
    let c_shards = r.members.iter().find(|m| m.id == "c").expect("c").shards;
    assert!(c_shards > 0, "{r:?}");
    assert_eq!(of_c, c_shards as usize, "{:?}", r.churn);
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
async fn job_ls_and_job_get_show_the_placement_and_the_delivery() {
    let coord = MemoryStore::new()
        .coordinator("d", RING)
        .expect("coordinator");
    let mut least = JobSpec::new("least", "@every 5s", "noop");
    least.delivery = Delivery::AtLeastOnce;
    least.placement = shardcron_core::Placement::Leader;
    least.cost = Some(2.5);
    coord.put_job(&least, None).await.expect("put");
    coord
        .put_job(&JobSpec::new("most", "@hourly", "noop"), None)
        .await
        .expect("put");
    let mut jobs = Vec::new();
    for id in all_ids(&coord, "").await.expect("ids") {
        jobs.push(coord.get_job(&id).await.expect("get").expect("stored"));
    }
    let text = render_ls(&jobs);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "ID",
            "SCHEDULE",
            "TZ",
            "HANDLER",
            "COST",
            "PLACEMENT",
            "DELIVERY",
            "PAUSED",
            "VERSION"
        ],
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    // `@every 5s` is two words.
    assert_eq!(
        lines[1][..8],
        [
            "least",
            "@every",
            "5s",
            "UTC",
            "noop",
            "2.5",
            "leader",
            "at_least_once"
        ],
        "{text}"
    );
    assert_eq!(
        lines[2][..7],
        [
            "most",
            "@hourly",
            "UTC",
            "noop",
            "1",
            "sharded",
            "at_most_once"
        ],
        "{text}"
    );
    // `job get` and `job ls --json` print the stored job, which always
    // carries the delivery (the default too).
    let printed = shardcron_cli::output::json(&jobs).expect("json");
    let value: serde_json::Value = serde_json::from_str(&printed).expect("parse");
    assert_eq!(value[0]["spec"]["delivery"], "at_least_once", "{printed}");
    assert_eq!(value[1]["spec"]["delivery"], "at_most_once", "{printed}");
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
    let report = collect(coord.as_ref()).await.expect("status");
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

/// Registers `id` as a live member without running a worker.
async fn join(coord: &dyn Coordinator, id: &str) {
    let member = shardcron_coord::MemberInfo {
        id: id.into(),
        version: "test".into(),
        started_ms: 0,
        addr: None,
        instance: None,
    };
    coord
        .heartbeat(&member, Duration::from_secs(30))
        .await
        .expect("heartbeat");
}

#[tokio::test]
async fn status_shows_expected_fires_and_share_per_member_and_names_the_placement() {
    let coord = MemoryStore::new()
        .coordinator("load", RING)
        .expect("coordinator");
    // A mix: 12 every-second jobs, 20 every-10s jobs, 6 hourly jobs of cost
    // 50, and a paused job that weighs nothing.
    let mut specs = Vec::new();
    for i in 0..12 {
        specs.push(JobSpec::new(format!("fast-{i:02}"), "@every 1s", "noop"));
    }
    for i in 0..20 {
        specs.push(JobSpec::new(format!("ten-{i:02}"), "@every 10s", "noop"));
    }
    for i in 0..6 {
        let mut spec = JobSpec::new(format!("heavy-{i:02}"), "@hourly", "noop");
        spec.cost = Some(50.0);
        specs.push(spec);
    }
    let mut paused = JobSpec::new("paused", "@every 1s", "noop");
    paused.paused = true;
    specs.push(paused);
    for spec in &specs {
        coord.put_job(spec, None).await.expect("put");
    }
    for node in ["a", "b", "c"] {
        join(&coord, node).await;
    }
    let report = collect(&coord).await.expect("collect");

    // The placement a worker computes from the same weights before any
    // placement is stored: the bounded-load ring, rebalanced.
    let weights = ShardWeights::from_pairs(
        0,
        specs.iter().map(|spec| {
            let units = spec.validate().expect("valid").load_units();
            (shard_of(&spec.id, RING.shard_count), units)
        }),
    );
    let members = ["a", "b", "c"];
    let map = ShardMap::place(&members, &weights, RING).rebalance(&members, &weights, RING);
    assert_eq!(report.placement_version, 0, "no worker stored one");
    let loads = map.loads();
    let total: u128 = loads.values().sum();
    // 12 x 60 + 20 x 6 fires/min, plus 6 x 50 / 60 for the hourly ones.
    let expected_total = 12.0 * 60.0 + 20.0 * 6.0 + 6.0 * 50.0 / 60.0;
    assert!(
        (report.load.fires_per_minute - expected_total).abs() < 1e-6,
        "{:?}",
        report.load
    );
    assert_eq!(u128::from(report.load.total_units), total);
    assert_eq!(report.placement, "bounded-load ring (e=0.050)");
    assert_eq!(report.placement, map.placement_name());
    let counts = map.counts();
    let mut share_sum = 0.0;
    for m in &report.members {
        let units = loads[&m.id];
        assert_eq!(u128::from(m.load_units), units, "{m:?}");
        assert_eq!(m.shards, counts[&m.id], "{m:?}");
        let fires = units_to_fires_per_minute(m.load_units);
        assert!((m.fires_per_minute - fires).abs() < 1e-9, "{m:?}");
        let share = units as f64 * 100.0 / total as f64;
        assert!((m.load_percent - share).abs() < 1e-9, "{m:?}");
        share_sum += m.load_percent;
        let jobs = specs
            .iter()
            .filter(|s| map.owner(shard_of(&s.id, RING.shard_count)) == Some(m.id.as_str()))
            .count();
        assert_eq!(m.jobs, jobs, "{m:?}");
    }
    assert!((share_sum - 100.0).abs() < 1e-6, "{share_sum}");
    let ratio = report.load.max_over_mean.expect("there is load");
    assert!(
        (ratio - map.load_balance().max_over_mean).abs() < 1e-12,
        "{ratio}"
    );
    assert!(ratio <= 1.06, "bounded load keeps the spread: {ratio}");

    let text = render(&report);
    println!("{text}");
    for needle in ["FIRES/MIN", "SHARE", "%", "fires/min expected"] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let balance = format!(
        "balance: fires max/mean {ratio:.2} (bounded-load ring (e=0.050)); shards max/mean {:.2}",
        report.balance.max_over_mean
    );
    assert!(text.contains(&balance), "{balance:?} missing:\n{text}");
    for m in &report.members {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", m.id)))
            .expect("a row per member");
        assert!(
            row.contains(&format!("{:.1}%", m.load_percent)),
            "{row} vs {m:?}"
        );
    }
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["placement"], "bounded-load ring (e=0.050)");
    assert!(json["members"][0]["fires_per_minute"].is_number(), "{json}");
    assert!(json["members"][0]["load_percent"].is_number(), "{json}");
    assert!(json["load"]["max_over_mean"].is_number(), "{json}");
}

#[tokio::test]
async fn status_without_load_says_so_instead_of_nan() {
    let coord = MemoryStore::new()
        .coordinator("idle", RING)
        .expect("coordinator");
    let mut paused = JobSpec::new("paused", "@every 1s", "noop");
    paused.paused = true;
    coord.put_job(&paused, None).await.expect("put");
    for node in ["a", "b"] {
        join(&coord, node).await;
    }
    let report = collect(&coord).await.expect("collect");
    assert_eq!(report.jobs, 1);
    assert_eq!(report.load.total_units, 0);
    assert_eq!(report.load.max_over_mean, None);
    assert!(report.members.iter().all(|m| m.load_percent == 0.0));
    let text = render(&report);
    println!("{text}");
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    assert!(
        text.contains("balance: no fires expected, no active job (bounded-load ring (e=0.050)); shards max/mean"),
        "{text}"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert!(json["load"]["max_over_mean"].is_null(), "{json}");
}
