//! etcd's history stays bounded without any server setting: the store
//! compacts it itself ([`shardcron_etcd::compaction`]).
//!
//! Why a test: etcd keeps every revision until compacted and refuses every
//! write once its backend quota is full (alarm `NOSPACE`), and by default
//! it never compacts. Here a private etcd with a 64 MiB quota and no
//! auto-compaction takes claims of 1,000 jobs at about 1,000 fires/s for a
//! minute, several times its quota in written history, and must answer
//! every claim; before self-compaction it refused writes within seconds.
//! And an etcd whose quota is already full (history grown while
//! self-compaction was off) is still compacted, so that a defragment and
//! `etcdctl alarm disarm` are all an operator has to add.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, Coordinator, FireClaim, FireKind, LeaseGrant,
};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_etcd::{Compacted, EtcdCoordinator, EtcdOptions};
use shardcron_testkit::EtcdServer;

const RING: RingConfig = RingConfig::new(16, 40);
const QUOTA: u64 = 64 * 1024 * 1024;
const JOBS: usize = 1000;
const SLICES: usize = 50;
const WINDOW: Duration = Duration::from_secs(60);

/// etcd's `/metrics` value of `name` (a gauge or counter without labels).
fn metric(url: &str, name: &str) -> f64 {
    let host = url.trim_start_matches("etcd://");
    let mut stream = TcpStream::connect(host).expect("connect metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("request metrics");
    let mut body = String::new();
    stream.read_to_string(&mut body).expect("read metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_quota_etcd_without_auto_compaction_keeps_taking_claims() {
    let quota = QUOTA.to_string();
    let server =
        EtcdServer::start_with_args(&["--quota-backend-bytes", &quota]).expect("start etcd");
    let options = EtcdOptions::new(server.url(), "quota", RING);
    let c = EtcdCoordinator::connect_with(options)
        .await
        .expect("connect");

    let mut jobs = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        let id = format!("job-{i:04}");
        let spec = JobSpec::new(id.as_str(), "@every 1s", "noop");
        let version = c.put_job(&spec, None).await.expect("put job").version;
        jobs.push((id, version));
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let tokens: Vec<u64> = c
        .acquire_leases(&shards, "n/1", Duration::from_secs(300))
        .await
        .expect("acquire")
        .iter()
        .map(|g| match g {
            LeaseGrant::Granted { token } => *token,
            other => panic!("{other:?}"),
        })
        .collect();

    // Claims from the next whole second on: each job's fire of each second,
    // the jobs in SLICES calls per second.
    let started = Instant::now();
    let mut second = c.server_time_ms().await.expect("time") / 1000 + 1;
    let (mut fires, mut shard_writes) = (0u64, 0u64);
    while started.elapsed() < WINDOW {
        let at = second * 1000;
        for slice in 0..SLICES {
            let mut batches: Vec<ClaimBatch> = Vec::new();
            for (id, version) in jobs.iter().skip(slice).step_by(SLICES) {
                let shard = shard_of(id, RING.shard_count);
                let claim = FireClaim::new(id.as_str(), at, FireKind::Scheduled, *version, 1);
                match batches.iter_mut().find(|b| b.shard == shard) {
                    Some(b) => b.fires.push(claim),
                    None => batches.push(ClaimBatch {
                        shard,
                        holder: "n/1".into(),
                        token: tokens[shard as usize],
                        fires: vec![claim],
                        ahead_ms: 2000,
                        loaded_at: None,
                    }),
                }
            }
            let outcomes = c
                .claim_fires(&batches, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("claim after {fires} fires refused: {e}"));
            for outcome in outcomes {
                let BatchOutcome::Claimed(codes) = outcome else {
                    panic!("lease lost after {fires} fires");
                };
                assert!(
                    codes.iter().all(|c| *c == ClaimOutcome::Claimed),
                    "{codes:?}"
                );
                fires += codes.len() as u64;
            }
            shard_writes += batches.len() as u64;
        }
        // A job edit each second: a plain (not nested) transaction, which
        // etcd checks against its quota (it lets nested ones through
        // unchecked, but refuses them too once an alarm is raised).
        c.put_job(&JobSpec::new("edited", "@every 1h", "noop"), None)
            .await
            .unwrap_or_else(|e| panic!("job edit after {fires} fires refused: {e}"));
        second += 1;
        let now = c.server_time_ms().await.expect("time");
        second = second.max(now / 1000);
        let wait = second * 1000 - now - 900;
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    // What was written: the bytes of every request etcd received (the
    // claims' transactions, each carrying its shard's state document, are
    // nearly all of it), against the quota.
    let url = server.url();
    let received = metric(&url, "etcd_network_client_grpc_received_bytes_total");
    let db_size = metric(&url, "etcd_mvcc_db_total_size_in_bytes");
    let head = c.compact_history(Duration::ZERO).await.expect("compact");
    println!(
        "{fires} fires in {:.1} s, {shard_writes} state writes, {:.1} MiB received, \
         db file {:.1} MiB (quota {} MiB), last compaction {head:?}",
        started.elapsed().as_secs_f64(),
        received / 1048576.0,
        db_size / 1048576.0,
        QUOTA / 1048576,
    );
    assert!(matches!(head, Compacted::To(_)), "{head:?}");
    assert!(
        received > 2.0 * QUOTA as f64,
        "the test wrote too little to prove anything: {received} bytes"
    );
    assert!(fires >= 30_000, "only {fires} fires claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_that_already_refuses_writes_is_still_compacted() {
    let quota = (16 * 1024 * 1024).to_string();
    let server =
        EtcdServer::start_with_args(&["--quota-backend-bytes", &quota]).expect("start etcd");
    let mut options = EtcdOptions::new(server.url(), "full", RING);
    options.compact_every = None;
    let c = EtcdCoordinator::connect_with(options)
        .await
        .expect("connect");
    assert_eq!(
        c.compact_history(Duration::ZERO).await.expect("record"),
        Compacted::Recorded
    );
    // Job edits of a large job until etcd's quota is full.
    let mut spec = JobSpec::new("big", "@every 1h", "noop");
    let mut refused = None;
    for i in 0..1000 {
        spec.args = serde_json::Value::String(format!("{i}{}", "x".repeat(30_000)));
        if let Err(e) = c.put_job(&spec, None).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("the quota never filled");
    assert!(refused.contains("database space exceeded"), "{refused}");
    // The record cannot move, but the compaction to it still happens.
    let compacted = c.compact_history(Duration::ZERO).await.expect("compact");
    assert!(
        matches!(compacted, Compacted::To(r) if r > 0),
        "{compacted:?}"
    );
    // The alarm stays until an operator disarms it.
    let still = c.put_job(&spec, None).await.expect_err("alarm raised");
    assert!(
        still.to_string().contains("database space exceeded"),
        "{still}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_per_interval_compacts_to_a_revision_an_interval_old() {
    let server = EtcdServer::start().expect("start etcd");
    let connect = || {
        let mut options = EtcdOptions::new(server.url(), "fleet", RING);
        options.compact_every = None;
        EtcdCoordinator::connect_with(options)
    };
    let (a, b) = (connect().await.expect("a"), connect().await.expect("b"));
    let hour = Duration::from_secs(3600);
    // The first check records the revision; every other node's check
    // within the interval does nothing.
    assert_eq!(
        a.compact_history(hour).await.expect("a"),
        Compacted::Recorded
    );
    assert_eq!(b.compact_history(hour).await.expect("b"), Compacted::NotDue);
    assert_eq!(a.compact_history(hour).await.expect("a"), Compacted::NotDue);
    // Once due, one node compacts to the recorded revision; the record
    // moves, so the next check is not due again.
    let recorded = match b.compact_history(Duration::ZERO).await.expect("b") {
        Compacted::To(r) => r,
        other => panic!("{other:?}"),
    };
    assert!(recorded > 0);
    assert_eq!(a.compact_history(hour).await.expect("a"), Compacted::NotDue);
    // A write after the record survives the next compaction: only
    // superseded revisions go.
    let v = a
        .put_job(&JobSpec::new("kept", "@every 1s", "noop"), None)
        .await
        .expect("put");
    match a.compact_history(Duration::ZERO).await.expect("a") {
        Compacted::To(r) => assert!(r > recorded, "{r} <= {recorded}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.get_job("kept").await.expect("get").map(|j| j.version),
        Some(v.version)
    );
}
