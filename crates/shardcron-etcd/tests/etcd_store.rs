//! What the conformance suite does not cover about the etcd store: a
//! server down, paused or restarted (with the watch resyncing), racing
//! acquisitions from separate coordinators, concurrent claims and
//! renewals, a three-member cluster losing a member, and shard leases
//! ending with their holder's etcd lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordEvent, Coordinator, FireClaim, FireKind,
    LeaseGrant,
};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_etcd::{EtcdCoordinator, EtcdOptions};
use shardcron_testkit::EtcdServer;

const RING: RingConfig = RingConfig::new(16, 40);

fn job(id: &str) -> JobSpec {
    JobSpec::new(id, "@every 1s", "noop")
}

fn token(grant: &LeaseGrant) -> u64 {
    match grant {
        LeaseGrant::Granted { token } => *token,
        other => panic!("{other:?}"),
    }
}

/// Claims one scheduled fire of `job` at `at` under a fresh lease.
async fn claim_one(c: &EtcdCoordinator, job_id: &str, version: u64, at: i64) -> ClaimOutcome {
    let shard = shard_of(job_id, RING.shard_count);
    let t = token(
        &c.acquire_leases(&[shard], "n/1", Duration::from_secs(10))
            .await
            .expect("acquire")[0],
    );
    let batch = ClaimBatch {
        shard,
        holder: "n/1".into(),
        token: t,
        fires: vec![FireClaim::new(job_id, at, FireKind::Scheduled, version, 1)],
        ahead_ms: 0,
        loaded_at: None,
    };
    match c
        .claim_fires(&[batch], Duration::from_secs(60))
        .await
        .expect("claim")
        .remove(0)
    {
        BatchOutcome::Claimed(mut codes) => codes.remove(0),
        BatchOutcome::LeaseLost => panic!("lease lost"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_or_paused_is_unreachable_and_its_return_is_noticed() {
    let server = EtcdServer::start().expect("start etcd");
    let mut options = EtcdOptions::new(server.url(), "down", RING);
    options.response_timeout = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(500);
    let c = EtcdCoordinator::connect_with(options)
        .await
        .expect("connect");
    let mut events = c.subscribe();
    let v = c.put_job(&job("j"), None).await.expect("put").version;
    let now = c.server_time_ms().await.expect("time");
    assert_eq!(
        claim_one(&c, "j", v, now - 1000).await,
        ClaimOutcome::Claimed
    );

    server.pause();
    let started = Instant::now();
    let err = c.get_job("j").await.expect_err("paused");
    assert!(err.is_unreachable(), "{err}");
    assert!(
        err.to_string().starts_with("etcd unreachable at etcd://"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    server.resume();

    server.kill();
    let err = c.get_job("j").await.expect_err("down");
    assert!(err.is_unreachable(), "{err}");
    while events.try_recv().is_ok() {}
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
        "the write survived SIGKILL"
    );
    // The claim survived too: the fire is not claimed a second time.
    assert_eq!(
        claim_one(&c, "j", v, now - 1000).await,
        ClaimOutcome::AlreadyClaimed
    );
    assert_eq!(claim_one(&c, "j", v, now).await, ClaimOutcome::Claimed);
    // The watch came back and said events may have been missed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resynced = false;
    while Instant::now() < deadline && !resynced {
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            resynced = e == CoordEvent::Resync;
        }
    }
    assert!(resynced, "no Resync after the watch was re-established");
}

/// Coordinators of several holders race for the same shards: each shard
/// goes to exactly one, and every later grant has a larger token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_acquisitions_grant_each_shard_once_with_increasing_tokens() {
    let server = EtcdServer::start().expect("start etcd");
    let mut coords = Vec::new();
    for _ in 0..4 {
        coords.push(Arc::new(
            EtcdCoordinator::connect(&server.url(), "race", RING)
                .await
                .expect("connect"),
        ));
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let mut last: HashMap<u32, u64> = HashMap::new();
    for round in 0..3 {
        let tasks: Vec<_> = coords
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (c, shards) = (c.clone(), shards.clone());
                tokio::spawn(async move {
                    let holder = format!("n{i}/r{round}");
                    let grants = c
                        .acquire_leases(&shards, &holder, Duration::from_secs(30))
                        .await
                        .expect("acquire");
                    (holder, grants)
                })
            })
            .collect();
        let mut winners: HashMap<u32, (String, u64)> = HashMap::new();
        for task in tasks {
            let (holder, grants) = task.await.expect("task");
            for (&s, g) in shards.iter().zip(&grants) {
                if let LeaseGrant::Granted { token } = g {
                    let prev = winners.insert(s, (holder.clone(), *token));
                    assert!(
                        prev.is_none(),
                        "shard {s} granted twice: {prev:?} and {holder}"
                    );
                }
            }
        }
        assert_eq!(winners.len(), shards.len(), "every shard went to someone");
        let holders = coords[0].lease_holders(&shards).await.expect("holders");
        for (&s, h) in shards.iter().zip(holders) {
            let (holder, token) = &winners[&s];
            let h = h.expect("held");
            assert_eq!((&h.holder, h.token), (holder, *token));
            if let Some(prev) = last.insert(s, *token) {
                assert!(
                    *token > prev,
                    "token of shard {s} went from {prev} to {token}"
                );
            }
        }
        for (s, (holder, token)) in winners {
            let i: usize = holder[1..2].parse().expect("index");
            let released = coords[i]
                .release_leases(&[(s, token)], &holder)
                .await
                .expect("release");
            assert_eq!(released, vec![true]);
        }
    }
}

/// Claims and renewals of one holder over the same shards from several
/// tasks, in different orders: conflicting transactions are decided
/// again, never applied twice, so each fire is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_renewals_never_double_claim() {
    let server = EtcdServer::start().expect("start etcd");
    let c = Arc::new(
        EtcdCoordinator::connect(&server.url(), "busy", RING)
            .await
            .expect("connect"),
    );
    let jobs: Vec<String> = (0..64).map(|i| format!("j{i:02}")).collect();
    let mut versions = HashMap::new();
    for j in &jobs {
        versions.insert(
            j.clone(),
            c.put_job(&job(j), None).await.expect("put").version,
        );
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let grants = c
        .acquire_leases(&shards, "n/1", Duration::from_secs(60))
        .await
        .expect("acquire");
    let leases: Vec<(u32, u64)> = shards
        .iter()
        .zip(&grants)
        .map(|(&s, g)| (s, token(g)))
        .collect();
    let now = c.server_time_ms().await.expect("time");
    let versions = Arc::new(versions);
    let mut tasks = Vec::new();
    for worker in 0..4u64 {
        let (c, jobs, versions, leases) =
            (c.clone(), jobs.clone(), versions.clone(), leases.clone());
        tasks.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            for round in 0..8i64 {
                let mut order = leases.clone();
                let n = order.len();
                order.rotate_left(worker as usize * 5 % n);
                if worker % 2 == 1 {
                    order.reverse();
                }
                let batches: Vec<ClaimBatch> = order
                    .iter()
                    .map(|&(shard, token)| ClaimBatch {
                        shard,
                        holder: "n/1".into(),
                        token,
                        fires: jobs
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
                            .collect(),
                        ahead_ms: 0,
                        loaded_at: None,
                    })
                    .collect();
                let out = c
                    .claim_fires(&batches, Duration::from_secs(600))
                    .await
                    .expect("claim");
                for (batch, outcome) in batches.iter().zip(out) {
                    let BatchOutcome::Claimed(codes) = outcome else {
                        panic!("lease lost");
                    };
                    for (fire, code) in batch.fires.iter().zip(codes) {
                        if code == ClaimOutcome::Claimed {
                            claimed.push((fire.job_id.clone(), fire.scheduled_ms));
                        }
                    }
                }
            }
            claimed
        }));
    }
    for round in 0..10 {
        let mut order = leases.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        let renewed = c
            .renew_leases(&order, "n/1", Duration::from_secs(60))
            .await
            .expect("renew");
        assert!(renewed.iter().all(|&ok| ok));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "a fire was claimed twice");
    assert!(all.len() >= jobs.len(), "{}", all.len());
}

/// A three-member cluster keeps working with one member killed, and a
/// holder that stops renewing loses its shards when etcd expires its
/// lease: the next holder gets a larger token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_survives_a_member_and_leases_end_with_their_holder() {
    let cluster = EtcdServer::start_cluster().expect("start an etcd cluster");
    let a = EtcdCoordinator::connect(&cluster.url(), "cluster", RING)
        .await
        .expect("connect a");
    let b = EtcdCoordinator::connect(&cluster.url(), "cluster", RING)
        .await
        .expect("connect b");
    let v = a.put_job(&job("k"), None).await.expect("put").version;
    let shard = shard_of("k", RING.shard_count);
    let ta = token(
        &a.acquire_leases(&[shard], "a/1", Duration::from_secs(1))
            .await
            .expect("acquire")[0],
    );
    cluster.kill_member(0);
    let mut renewed = None;
    for _ in 0..50 {
        if let Ok(r) = a
            .renew_leases(&[(shard, ta)], "a/1", Duration::from_secs(1))
            .await
        {
            renewed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        renewed,
        Some(vec![true]),
        "two members of three still serve"
    );
    let mut held = None;
    for _ in 0..50 {
        if let Ok(g) = b
            .acquire_leases(&[shard], "b/1", Duration::from_secs(1))
            .await
        {
            held = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(held.as_deref(), Some([LeaseGrant::HeldBy { .. }])));
    // `a` stops renewing: etcd ends its lease (1 s, checked every 500 ms).
    let mut tb = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tb.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(grants) = b
            .acquire_leases(&[shard], "b/1", Duration::from_secs(5))
            .await
        {
            if let LeaseGrant::Granted { token } = grants[0] {
                tb = Some(token);
            }
        }
    }
    let tb = tb.expect("the lease expired with its holder's etcd lease");
    assert!(tb > ta);
    let renewed = a
        .renew_leases(&[(shard, ta)], "a/1", Duration::from_secs(1))
        .await
        .expect("renew");
    assert_eq!(renewed, vec![false], "an expired holder cannot renew");
    let now = b.server_time_ms().await.expect("time");
    let batch = ClaimBatch {
        shard,
        holder: "a/1".into(),
        token: ta,
        fires: vec![FireClaim::new("k", now, FireKind::Scheduled, v, 1)],
        ahead_ms: 0,
        loaded_at: None,
    };
    assert_eq!(
        a.claim_fires(&[batch], Duration::from_secs(60))
            .await
            .expect("claim"),
        vec![BatchOutcome::LeaseLost],
        "the old holder's claim is fenced off"
    );
}

/// The watch loses its connection while etcd compacts away the revisions
/// it missed: it cannot replay them, so it says `Resync` (the runtime
/// re-reads everything) and never delivers a replay with a hole in it;
/// then it watches from the current revision and delivers new events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_gap_is_a_resync_never_a_silent_gap() {
    use shardcron_testkit::{FaultMode, FaultProxy};

    let server = EtcdServer::start().expect("start etcd");
    let proxy = FaultProxy::start(server.addrs()[0]).await.expect("proxy");
    let url = format!("etcd://{}", proxy.addr());
    let c = EtcdCoordinator::connect(&url, "gap", RING)
        .await
        .expect("connect");
    let mut events = c.subscribe();
    c.put_job(&job("before"), None).await.expect("put");
    let seen = |events: &mut tokio::sync::broadcast::Receiver<CoordEvent>, want: CoordEvent| {
        let mut events = events.resubscribe();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Ok(e)) =
                    tokio::time::timeout(Duration::from_millis(100), events.recv()).await
                {
                    if e == want {
                        return true;
                    }
                }
            }
            false
        }
    };
    let shard = shard_of("before", RING.shard_count);
    let _ = events.recv().await;

    proxy.set_mode(FaultMode::Refuse);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Writes the watch misses, then a compaction that drops their history.
    let endpoints = vec![format!("http://{}", server.addrs()[0])];
    let mut raw = etcd_client::Client::connect(endpoints, None)
        .await
        .expect("raw client");
    let other = EtcdCoordinator::connect(&server.url(), "gap", RING)
        .await
        .expect("connect directly");
    other.put_job(&job("during"), None).await.expect("put");
    // etcd keeps the compaction revision itself: one more write, so the
    // watch's next revision is strictly below it.
    other.put_job(&job("during-2"), None).await.expect("put");
    let revision = raw
        .get("x", None)
        .await
        .expect("get")
        .header()
        .map(|h| h.revision())
        .expect("header");
    raw.compact(revision, None).await.expect("compact");

    let mut after = c.subscribe();
    proxy.set_mode(FaultMode::Pass);
    let mut resyncs = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(100), after.recv()).await {
            assert!(
                !matches!(e, CoordEvent::JobsChanged(_)),
                "a compacted event cannot be replayed: {e:?}"
            );
            if e == CoordEvent::Resync {
                resyncs += 1;
            }
        }
    }
    assert!(resyncs >= 1, "the gap must be announced");
    // Watching resumed from the current revision (a watch that kept asking
    // for the compacted one would never deliver this).
    let watching = seen(&mut after, CoordEvent::JobsChanged(shard));
    let (ok, _) = tokio::join!(watching, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other.put_job(&job("before"), None).await.expect("put")
    });
    assert!(ok, "events flow again after the resync");
}

/// A node's renewals are one keep-alive of its etcd lease, which keeps
/// every shard key on it alive: a shard the renewals stop naming must
/// still end within about a TTL, as it would on the other stores, or it
/// would stay held for as long as the node lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_the_renewals_stop_naming_ends_like_an_expired_one() {
    let server = EtcdServer::start().expect("start etcd");
    let c = EtcdCoordinator::connect(&server.url(), "unnamed", RING)
        .await
        .expect("connect");
    let ttl = Duration::from_secs(1);
    let grants = c
        .acquire_leases(&[1, 2], "n/1", ttl)
        .await
        .expect("acquire");
    let (t1, t2) = (token(&grants[0]), token(&grants[1]));
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let renewed = c.renew_leases(&[(1, t1)], "n/1", ttl).await.expect("renew");
        assert_eq!(renewed, vec![true]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let holders = c.lease_holders(&[1, 2]).await.expect("holders");
    assert_eq!(holders[0].as_ref().map(|l| l.token), Some(t1));
    assert!(
        holders[1].is_none(),
        "shard 2 ({t2}) outlived its TTL unrenewed"
    );
}

/// Claims whose fate the caller does not know, both ways: one attempt
/// applied with its reply lost (sent on another connection here, so the
/// caller never sees it), one lost in a proxy that drops every reply
/// (`Unreachable`; it never got as far as its write). Retries carrying the
/// lost attempts claim both (the landed one by takeover), and late
/// duplicates of the first attempts are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_unknown_fate_are_resolved_by_retries_with_their_lost_attempts() {
    use shardcron_testkit::{FaultMode, FaultProxy};

    let server = EtcdServer::start().expect("start etcd");
    let proxy = FaultProxy::start(server.addrs()[0]).await.expect("proxy");
    let mut options = EtcdOptions::new(format!("etcd://{}", proxy.addr()), "lost", RING);
    options.response_timeout = Duration::from_millis(700);
    let c = EtcdCoordinator::connect_with(options)
        .await
        .expect("connect");
    let direct = EtcdCoordinator::connect(&server.url(), "lost", RING)
        .await
        .expect("connect directly");
    let v = direct.put_job(&job("j"), None).await.expect("put").version;
    let shard = shard_of("j", RING.shard_count);
    let t = token(
        &c.acquire_leases(&[shard], "n/1", Duration::from_secs(30))
            .await
            .expect("acquire")[0],
    );
    let now = c.server_time_ms().await.expect("time");
    let (landed_at, lost_at) = (now - 2000, now - 1000);
    let claim = |fires: Vec<(i64, u64, Vec<u64>)>| {
        let fires = fires
            .into_iter()
            .map(|(at, attempt, lost)| {
                let mut fire = FireClaim::new("j", at, FireKind::Scheduled, v, attempt);
                fire.uncertain = lost;
                fire
            })
            .collect();
        vec![ClaimBatch {
            shard,
            holder: "n/1".into(),
            token: t,
            fires,
            ahead_ms: 0,
            loaded_at: None,
        }]
    };
    let retention = Duration::from_secs(60);
    // Attempt 1 lands; its reply never reaches the caller.
    direct
        .claim_fires(&claim(vec![(landed_at, 1, vec![])]), retention)
        .await
        .expect("claim");
    // Attempt 2 is lost on the way.
    proxy.set_mode(FaultMode::DropReplies);
    let err = c
        .claim_fires(&claim(vec![(lost_at, 2, vec![])]), retention)
        .await
        .expect_err("the reply is lost");
    assert!(err.is_unreachable(), "{err}");
    proxy.set_mode(FaultMode::Pass);
    proxy.cut_connections();
    let mut retried = None;
    for _ in 0..50 {
        let retry = claim(vec![(landed_at, 3, vec![1]), (lost_at, 4, vec![2])]);
        if let Ok(out) = c.claim_fires(&retry, retention).await {
            retried = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        retried,
        Some(vec![BatchOutcome::Claimed(vec![
            ClaimOutcome::Claimed,
            ClaimOutcome::Claimed
        ])]),
        "the landed attempt is taken over, the lost one claimed afresh"
    );
    // Late duplicates of the first attempts find the fires claimed, and a
    // stale retry naming an attempt the record no longer holds too.
    for late in [
        claim(vec![(landed_at, 1, vec![])]),
        claim(vec![(lost_at, 2, vec![])]),
        claim(vec![(landed_at, 5, vec![1])]),
    ] {
        assert_eq!(
            direct.claim_fires(&late, retention).await.expect("claim"),
            vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
        );
    }
}
