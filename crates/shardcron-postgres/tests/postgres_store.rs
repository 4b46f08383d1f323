//! What the conformance suite does not cover about the PostgreSQL store:
//! schema migration (concurrent first connects, a schema newer than the
//! binary), namespaces sharing a database, `sslmode`, and a server that is
//! down, paused or restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcron_coord::{CoordError, Coordinator, FireClaim, FireKind};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_postgres::{NamespaceSchema, PostgresCoordinator, PostgresOptions, SCHEMA_VERSION};
use shardcron_testkit::PostgresServer;

const RING: RingConfig = RingConfig::new(16, 40);

fn job(id: &str) -> JobSpec {
    JobSpec::new(id, "@every 1s", "noop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_migrate_at_once_and_a_newer_schema_is_refused() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let connects: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresCoordinator::connect(&url, "many", RING).await })
        })
        .collect();
    for connect in connects {
        connect.await.expect("task").expect("connect");
    }
    let schema = NamespaceSchema::new("many");
    let versions = server
        .psql(&format!(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM {}",
            schema.object("schema_migrations")
        ))
        .expect("versions");
    let expected: Vec<String> = (1..=SCHEMA_VERSION).map(|v| v.to_string()).collect();
    assert_eq!(versions, expected.join(","));

    // A newer binary migrated the namespace: this one must not touch it.
    server
        .psql(&format!(
            "INSERT INTO {} (version) VALUES (99)",
            schema.object("schema_migrations")
        ))
        .expect("bump");
    let before = server
        .psql("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shardcron_many'")
        .expect("functions");
    let err = PostgresCoordinator::connect(&url, "many", RING)
        .await
        .err()
        .expect("must be refused");
    match err {
        CoordError::ConfigMismatch {
            ref field,
            ref stored,
            ref given,
            ..
        } => {
            assert_eq!(field, "schema_version");
            assert_eq!(stored, "99");
            assert_eq!(given, &SCHEMA_VERSION.to_string());
        }
        other => panic!("{other:?}"),
    }
    let after = server
        .psql("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'shardcron_many'")
        .expect("functions");
    assert_eq!(before, after);
}

#[tokio::test]
async fn namespaces_share_a_database_without_sharing_rows() {
    let server = PostgresServer::start().expect("start postgres");
    let a = PostgresCoordinator::connect(&server.url(), "team-a", RING)
        .await
        .expect("a");
    let b = PostgresCoordinator::connect(&server.url(), "team_b", RING)
        .await
        .expect("b");
    a.put_job(&job("x"), None).await.expect("put");
    assert!(a.get_job("x").await.expect("get").is_some());
    assert!(b.get_job("x").await.expect("get").is_none());
    assert!(b
        .list_jobs("", None, 10)
        .await
        .expect("list")
        .ids
        .is_empty());
    // Other ring settings are a matter of each namespace.
    PostgresCoordinator::connect(&server.url(), "team_c", RingConfig::new(32, 40))
        .await
        .expect("c");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let port = shardcron_testkit::free_port().expect("port");
    let err = PostgresCoordinator::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/x"),
        "x",
        RING,
    )
    .await
    .err()
    .expect("must fail");
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn tls_is_used_when_the_url_asks_for_it() {
    let server = PostgresServer::start().expect("start postgres");
    // The test server offers no TLS: `prefer` (the default) falls back to
    // plain TCP, `require` refuses it.
    PostgresCoordinator::connect(&format!("{}?sslmode=prefer", server.url()), "tls", RING)
        .await
        .expect("prefer falls back");
    let err =
        PostgresCoordinator::connect(&format!("{}?sslmode=require", server.url()), "tls", RING)
            .await
            .err()
            .expect("require refuses a server without TLS");
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_or_paused_is_unreachable_and_its_return_is_noticed() {
    let server = Arc::new(PostgresServer::start().expect("start postgres"));
    let mut options = PostgresOptions::new(server.url(), "down", RING);
    options.response_timeout = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(500);
    let c = PostgresCoordinator::connect_with(options)
        .await
        .expect("connect");
    let v = c.put_job(&job("j"), None).await.expect("put").version;

    server.pause();
    let started = Instant::now();
    let err = c.server_time_ms().await.expect_err("paused");
    assert!(err.is_unreachable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    server.resume();

    server.kill();
    let err = c.get_job("j").await.expect_err("down");
    assert!(err.is_unreachable(), "{err}");
    server.restart().expect("restart");
    let mut back = None;
    for _ in 0..50 {
        if let Ok(found) = c.get_job("j").await {
            back = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        back.map(|j| j.version),
        Some(v),
        "the write survived the crash"
    );

    // Claims work again on the restarted server.
    claim_one_fire(
        &c,
        "j",
        v,
        0,
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .await;
}

/// Claims, renewals and acquisitions of one holder over the same shards,
/// concurrently and in different orders: none deadlocks (a deadlock would
/// surface as an error), and each fire is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_renewals_in_any_order_neither_deadlock_nor_double_claim() {
    let server = PostgresServer::start().expect("start postgres");
    let c = Arc::new(
        PostgresCoordinator::connect(&server.url(), "busy", RING)
            .await
            .expect("connect"),
    );
    let jobs: Vec<String> = (0..64).map(|i| format!("j{i:02}")).collect();
    let mut versions = std::collections::HashMap::new();
    for j in &jobs {
        let v = c.put_job(&job(j), None).await.expect("put").version;
        versions.insert(j.clone(), v);
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let grants = c
        .acquire_leases(&shards, "n/1", Duration::from_secs(60))
        .await
        .expect("acquire");
    let leases: Vec<(u32, u64)> = shards
        .iter()
        .zip(&grants)
        .map(|(&s, g)| match g {
            shardcron_coord::LeaseGrant::Granted { token } => (s, *token),
            other => panic!("{other:?}"),
        })
        .collect();
    let now = c.server_time_ms().await.expect("time");
    let versions = Arc::new(versions);
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let (c, jobs, versions, leases) =
            (c.clone(), jobs.clone(), versions.clone(), leases.clone());
        tasks.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            for round in 0..10i64 {
                let mut order = leases.clone();
                let n = order.len();
                order.rotate_left((worker as usize * 5) % n);
                if worker % 2 == 1 {
                    order.reverse();
                }
                let batches: Vec<shardcron_coord::ClaimBatch> = order
                    .iter()
                    .map(|&(shard, token)| {
                        let mut fires: Vec<FireClaim> = jobs
                            .iter()
                            .filter(|j| shard_of(j, RING.shard_count) == shard)
                            .map(|j| {
                                FireClaim::new(
                                    j.clone(),
                                    now - 10_000 + round * 100,
                                    FireKind::Scheduled,
                                    versions[j],
                                    worker * 1000 + round as u64,
                                )
                            })
                            .collect();
                        if worker % 2 == 1 {
                            fires.reverse();
                        }
                        shardcron_coord::ClaimBatch {
                            shard,
                            holder: "n/1".into(),
                            token,
                            fires,
                            ahead_ms: 0,
                            loaded_at: None,
                        }
                    })
                    .collect();
                let out = c
                    .claim_fires(&batches, Duration::from_secs(600))
                    .await
                    .expect("claim");
                for (batch, outcome) in batches.iter().zip(out) {
                    let shardcron_coord::BatchOutcome::Claimed(codes) = outcome else {
                        panic!("lease lost");
                    };
                    for (fire, code) in batch.fires.iter().zip(codes) {
                        if code == shardcron_coord::ClaimOutcome::Claimed {
                            claimed.push((fire.job_id.clone(), fire.scheduled_ms));
                        }
                    }
                }
            }
            claimed
        }));
    }
    for round in 0..20 {
        let mut order = leases.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        let renewed = c
            .renew_leases(&order, "n/1", Duration::from_secs(60))
            .await
            .expect("renew");
        assert!(renewed.iter().all(|&ok| ok));
        let mut again: Vec<u32> = order.iter().map(|&(s, _)| s).collect();
        let n = again.len();
        again.rotate_left(round % n);
        c.acquire_leases(&again, "n/1", Duration::from_secs(60))
            .await
            .expect("refresh");
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "a fire was claimed twice");
    // Per job the watermark lets a round's fire through at most once.
    assert!(all.len() >= jobs.len(), "{}", all.len());
}

/// A fire row follows the seed's state machine: `claimed` at the claim,
/// `running` once its node reports the start (only under the claim's own
/// holder and token), then the outcome its run record reports; a start
/// notice arriving after the outcome changes nothing.
#[tokio::test]
async fn a_fire_row_moves_claimed_running_outcome_and_never_back() {
    let server = PostgresServer::start().expect("start postgres");
    let c = PostgresCoordinator::connect(&server.url(), "states", RING)
        .await
        .expect("connect");
    let v = c.put_job(&job("st"), None).await.expect("put").version;
    let (shard, token, at) = claim_one_fire(
        &c,
        "st",
        v,
        1_000,
        Duration::from_secs(60),
        Duration::from_secs(600),
    )
    .await;
    let schema = NamespaceSchema::new("states");
    let status = || {
        server
            .psql(&format!(
                "SELECT status FROM {} WHERE job_id = 'st' AND at_ms = {at}",
                schema.object("fires")
            ))
            .expect("status")
    };
    assert_eq!(status(), "claimed");
    let started = |holder: &str, token: u64| shardcron_coord::StartedFire {
        shard,
        job_id: "st".into(),
        scheduled_ms: at,
        holder: holder.into(),
        token,
        started_ms: at + 5,
    };
    // Another holder's or token's notice is not this claim's.
    c.mark_running(&[started("n/2", token), started("n/1", token + 1)])
        .await
        .expect("mark");
    assert_eq!(status(), "claimed");
    c.mark_running(&[started("n/1", token)])
        .await
        .expect("mark");
    assert_eq!(status(), "running");
    let record = shardcron_coord::RunRecord {
        job_id: "st".into(),
        fire_id: format!("st@{at}"),
        node_id: "n".into(),
        shard,
        fencing_token: token,
        scheduled_ms: at,
        started_ms: at + 5,
        finished_ms: at + 9,
        attempts: 1,
        outcome: shardcron_coord::RunOutcome::Succeeded,
        error: None,
        detail: None,
    };
    c.record_and_close(&[record], &[]).await.expect("record");
    assert_eq!(status(), "succeeded");
    c.mark_running(&[started("n/1", token)])
        .await
        .expect("late mark");
    assert_eq!(status(), "succeeded", "a late start notice changes nothing");
}

/// Acquires the shard of `job` for holder `n/1` (lease `ttl`) and claims
/// the job's fire `back_ms` before server time, asserting it is claimed;
/// returns the shard, the token and the fire's instant.
async fn claim_one_fire(
    c: &PostgresCoordinator,
    job: &str,
    version: u64,
    back_ms: i64,
    ttl: Duration,
    retention: Duration,
) -> (u32, u64, i64) {
    let shard = shard_of(job, RING.shard_count);
    let token = match c
        .acquire_leases(&[shard], "n/1", ttl)
        .await
        .expect("acquire")[0]
    {
        shardcron_coord::LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    let at = c.server_time_ms().await.expect("time") - back_ms;
    let out = c
        .claim_fires(
            &[shardcron_coord::ClaimBatch {
                shard,
                holder: "n/1".into(),
                token,
                fires: vec![FireClaim::new(job, at, FireKind::Scheduled, version, 1)],
                ahead_ms: 0,
                loaded_at: None,
            }],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![shardcron_coord::BatchOutcome::Claimed(vec![
            shardcron_coord::ClaimOutcome::Claimed
        ])]
    );
    (shard, token, at)
}
