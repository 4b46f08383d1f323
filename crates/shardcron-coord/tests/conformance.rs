//! One conformance suite, run against both coordinators: the in-memory one and
//! the Redis one on a real `redis-server` started by the test kit.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordError, CoordEvent, Coordinator, FireClaim,
    FireKind, LeaseGrant, MemberInfo, MemoryStore, RedisCoordinator, RunOutcome, RunRecord,
};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_testkit::RedisServer;

enum Env {
    Memory(MemoryStore),
    Redis(RedisServer),
}

const RING: RingConfig = RingConfig {
    shard_count: 64,
    vnodes: 40,
};

impl Env {
    fn memory() -> Self {
        Env::Memory(MemoryStore::new())
    }

    fn redis() -> Self {
        Env::Redis(RedisServer::start().expect("start redis-server"))
    }

    async fn coord_with(&self, ring: RingConfig) -> Result<Arc<dyn Coordinator>, CoordError> {
        Ok(match self {
            Env::Memory(store) => Arc::new(store.coordinator("conf", ring)?),
            Env::Redis(server) => {
                Arc::new(RedisCoordinator::connect(&server.url(), "conf", ring).await?)
            }
        })
    }

    async fn coord(&self) -> Arc<dyn Coordinator> {
        self.coord_with(RING).await.expect("coordinator")
    }
}

fn member(id: &str) -> MemberInfo {
    MemberInfo {
        id: id.to_owned(),
        version: "test".to_owned(),
        started_ms: 1,
        addr: None,
    }
}

fn job(id: &str) -> JobSpec {
    JobSpec::new(id, "@every 1s", "noop")
}

async fn mismatched_ring_settings_are_refused(env: Env) {
    let _first = env.coord().await;
    let err = env
        .coord_with(RingConfig {
            shard_count: 128,
            vnodes: 40,
        })
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, CoordError::ConfigMismatch { .. }), "{msg}");
    assert!(
        msg.contains("shard_count=64") && msg.contains("shard_count=128"),
        "{msg}"
    );
    assert!(env.coord().await.ensure_config().await.is_ok());
}

async fn members_register_expire_and_leave(env: Env) {
    let c = env.coord().await;
    let mut events = c.subscribe();
    c.heartbeat(&member("a"), Duration::from_secs(30))
        .await
        .expect("hb");
    c.heartbeat(&member("b"), Duration::from_millis(300))
        .await
        .expect("hb");
    let ids: Vec<String> = c
        .members()
        .await
        .expect("list")
        .members
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let ids: Vec<String> = c
        .members()
        .await
        .expect("list")
        .members
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec!["a"], "b must expire after its TTL");
    c.deregister("a").await.expect("leave");
    assert!(c.members().await.expect("list").members.is_empty());
    let mut seen = Vec::new();
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        if e != CoordEvent::Resync {
            seen.push(e);
        }
    }
    for expected in [
        CoordEvent::MemberJoined("a".into()),
        CoordEvent::MemberJoined("b".into()),
        CoordEvent::MemberLeft("b".into()),
        CoordEvent::MemberLeft("a".into()),
    ] {
        assert!(seen.contains(&expected), "missing {expected:?} in {seen:?}");
    }
}

async fn leases_fence_and_release_only_if_ours(env: Env) {
    let c = env.coord().await;
    let ttl = Duration::from_secs(10);
    let g = c
        .acquire_leases(&[3, 4], "n1/x", ttl)
        .await
        .expect("acquire");
    let t3 = match g[0] {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert!(matches!(g[1], LeaseGrant::Granted { .. }));
    assert_eq!(
        c.acquire_leases(&[3], "n2/y", ttl).await.expect("acquire")[0],
        LeaseGrant::HeldBy {
            holder: "n1/x".into(),
            token: t3
        }
    );
    assert_eq!(
        c.renew_leases(&[(3, t3)], "n1/x", ttl)
            .await
            .expect("renew"),
        vec![true]
    );
    assert_eq!(
        c.renew_leases(&[(3, t3)], "n2/y", ttl)
            .await
            .expect("renew"),
        vec![false]
    );
    assert_eq!(
        c.renew_leases(&[(3, t3 + 7)], "n1/x", ttl)
            .await
            .expect("renew"),
        vec![false]
    );
    assert_eq!(
        c.release_leases(&[(3, t3)], "n2/y").await.expect("release"),
        vec![false]
    );
    let holders = c.lease_holders(&[3, 5]).await.expect("holders");
    assert_eq!(holders[0].as_ref().map(|l| l.node_id()), Some("n1"));
    assert!(holders[1].is_none());
    assert_eq!(
        c.release_leases(&[(3, t3)], "n1/x").await.expect("release"),
        vec![true]
    );
    let t3b = match c.acquire_leases(&[3], "n2/y", ttl).await.expect("acquire")[0] {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert!(t3b > t3, "fencing token must increase: {t3b} <= {t3}");
    // Expiry hands the shard to the next holder with a larger token still.
    let short = Duration::from_millis(200);
    assert_eq!(
        c.renew_leases(&[(3, t3b)], "n2/y", short)
            .await
            .expect("renew"),
        vec![true]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t3c = match c.acquire_leases(&[3], "n3/z", ttl).await.expect("acquire")[0] {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert!(t3c > t3b);
}

async fn claims_are_exactly_once_and_fenced(env: Env) {
    let c = env.coord().await;
    let stored = c.put_job(&job("alpha"), None).await.expect("put");
    let shard = shard_of("alpha", RING.shard_count);
    let token = match c
        .acquire_leases(&[shard], "n1/x", Duration::from_secs(10))
        .await
        .expect("acq")[0]
    {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    let fire = |at: i64, version: u64, kind: FireKind| FireClaim {
        job_id: "alpha".into(),
        scheduled_ms: at,
        kind,
        job_version: version,
    };
    let batch = |token: u64, fires: Vec<FireClaim>| ClaimBatch {
        shard,
        holder: "n1/x".into(),
        token,
        fires,
    };
    let retention = Duration::from_secs(120);
    let v = stored.version;
    let out = c
        .claim_fires(
            &[batch(
                token,
                vec![
                    fire(1000, v, FireKind::Scheduled),
                    fire(2000, v, FireKind::Scheduled),
                ],
            )],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![
            ClaimOutcome::Claimed,
            ClaimOutcome::Claimed
        ])]
    );
    // The same fire again, and an older one, are refused.
    let out = c
        .claim_fires(
            &[batch(
                token,
                vec![
                    fire(2000, v, FireKind::Scheduled),
                    fire(1500, v, FireKind::Scheduled),
                ],
            )],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![
            ClaimOutcome::AlreadyClaimed,
            ClaimOutcome::AlreadyClaimed
        ])]
    );
    // A stale token claims nothing.
    let out = c
        .claim_fires(
            &[batch(token + 1, vec![fire(3000, v, FireKind::Scheduled)])],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(out, vec![BatchOutcome::LeaseLost]);
    // A trigger is not bound by the last-fired time. Its claim key makes it
    // exactly once across holders; its own holder may claim it again (after a
    // lost reply), which is what the runtime relies on.
    let trigger = || vec![batch(token, vec![fire(1500, v, FireKind::Trigger)])];
    for _ in 0..2 {
        let out = c.claim_fires(&trigger(), retention).await.expect("claim");
        assert_eq!(
            out,
            vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
        );
    }
    // Last-fired times are recorded per job.
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert_eq!(loaded[0].last_fired, vec![("alpha".to_owned(), 2000)]);
    // A job changed or removed since it was loaded cannot be claimed.
    let updated = c.put_job(&job("alpha"), Some(v)).await.expect("update");
    assert!(updated.version > v);
    let out = c
        .claim_fires(
            &[batch(token, vec![fire(5000, v, FireKind::Scheduled)])],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged])]
    );
    assert!(c.delete_job("alpha", None).await.expect("delete"));
    let out = c
        .claim_fires(
            &[batch(
                token,
                vec![fire(6000, updated.version, FireKind::Scheduled)],
            )],
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged])]
    );
}

async fn job_store_versions_lists_and_rejects_bad_input(env: Env) {
    let c = env.coord().await;
    let mut events = c.subscribe();
    let a = c.put_job(&job("team/a"), Some(0)).await.expect("create");
    assert!(matches!(
        c.put_job(&job("team/a"), Some(0)).await,
        Err(CoordError::VersionConflict { current, .. }) if current == a.version
    ));
    let mut changed = job("team/a");
    changed.schedule = "*/5 * * * *".into();
    let a2 = c.put_job(&changed, Some(a.version)).await.expect("update");
    assert!(a2.version > a.version);
    assert!(matches!(
        c.put_job(&job("team/a"), Some(a.version)).await,
        Err(CoordError::VersionConflict { .. })
    ));
    let got = c.get_job("team/a").await.expect("get").expect("present");
    assert_eq!(got.spec.schedule, "*/5 * * * *");
    assert_eq!(got.version, a2.version);
    // Invalid input is refused and nothing stored changes.
    let mut bad = job("team/a");
    bad.schedule = "61 * * * *".into();
    assert!(
        matches!(c.put_job(&bad, None).await, Err(CoordError::InvalidJob(e)) if e.field == "schedule")
    );
    assert_eq!(
        c.get_job("team/a")
            .await
            .expect("get")
            .expect("present")
            .version,
        a2.version
    );
    for i in 0..25 {
        c.put_job(&job(&format!("team/b{i:02}")), None)
            .await
            .expect("put");
    }
    c.put_job(&job("other"), None).await.expect("put");
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c
            .list_jobs("team/", after.as_deref(), 10)
            .await
            .expect("list");
        all.extend(page.ids);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(all.len(), 26);
    assert_eq!(all[0], "team/a");
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    let shard = shard_of("team/a", RING.shard_count);
    let v_before = c.shard_versions(&[shard]).await.expect("versions")[0];
    assert!(c.delete_job("team/a", None).await.expect("delete"));
    assert!(!c.delete_job("team/a", None).await.expect("delete"));
    assert!(c.get_job("team/a").await.expect("get").is_none());
    assert!(c.shard_versions(&[shard]).await.expect("versions")[0] > v_before);
    assert!(!c
        .list_jobs("team/", None, 100)
        .await
        .expect("list")
        .ids
        .contains(&"team/a".to_owned()));
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert!(loaded[0].jobs.iter().all(|j| j.spec.id != "team/a"));
    let mut saw_change = false;
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        saw_change |= e == CoordEvent::JobsChanged(shard);
    }
    assert!(
        saw_change,
        "a job write must publish a change event for its shard"
    );
}

async fn run_history_is_capped_and_per_job(env: Env) {
    let c = env.coord().await;
    let run = |job: &str, at: i64| RunRecord {
        job_id: job.into(),
        fire_id: format!("{job}@{at}"),
        node_id: "n1".into(),
        shard: 1,
        fencing_token: 1,
        scheduled_ms: at,
        started_ms: at,
        finished_ms: at + 5,
        attempts: 1,
        outcome: RunOutcome::Succeeded,
        error: None,
        detail: None,
    };
    let runs: Vec<RunRecord> = (0..150)
        .map(|i| run(if i % 2 == 0 { "x" } else { "y" }, i))
        .collect();
    c.record_runs(&runs).await.expect("record");
    let recent = c.recent_runs(None, 5).await.expect("recent");
    assert_eq!(
        recent.iter().map(|r| r.scheduled_ms).collect::<Vec<_>>(),
        vec![149, 148, 147, 146, 145]
    );
    let xs = c.recent_runs(Some("x"), 1000).await.expect("recent");
    assert_eq!(xs.len(), 75);
    assert!(xs.iter().all(|r| r.job_id == "x"));
}

async fn triggers_queue_for_the_lease_holder(env: Env) {
    let c = env.coord().await;
    assert_eq!(c.trigger_job("ghost").await.expect("trigger"), None);
    c.put_job(&job("manual"), None).await.expect("put");
    let shard = shard_of("manual", RING.shard_count);
    let v0 = c.shard_versions(&[shard]).await.expect("v")[0];
    let at = c
        .trigger_job("manual")
        .await
        .expect("trigger")
        .expect("queued");
    assert!(
        c.shard_versions(&[shard]).await.expect("v")[0] > v0,
        "a trigger bumps the shard version"
    );
    let token = match c
        .acquire_leases(&[shard], "n1/x", Duration::from_secs(10))
        .await
        .expect("acq")[0]
    {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert!(
        c.take_triggers(&[(shard, token)], "n2/y")
            .await
            .expect("take")
            .is_empty(),
        "not the holder"
    );
    let taken = c
        .take_triggers(&[(shard, token)], "n1/x")
        .await
        .expect("take");
    assert_eq!(taken, vec![(shard, "manual".to_owned(), at)]);
    assert!(
        c.take_triggers(&[(shard, token)], "n1/x")
            .await
            .expect("take")
            .is_empty(),
        "taken once"
    );
}

async fn a_lost_claim_reply_can_be_claimed_again_by_its_holder_only(env: Env) {
    let c = env.coord().await;
    let stored = c.put_job(&job("retry"), None).await.expect("put");
    let shard = shard_of("retry", RING.shard_count);
    let ttl = Duration::from_secs(10);
    let grant = |g: &LeaseGrant| match g {
        LeaseGrant::Granted { token } => *token,
        other => panic!("{other:?}"),
    };
    let t1 = grant(&c.acquire_leases(&[shard], "n1/x", ttl).await.expect("acq")[0]);
    let fire = |at: i64, kind: FireKind| FireClaim {
        job_id: "retry".into(),
        scheduled_ms: at,
        kind,
        job_version: stored.version,
    };
    let batch = |holder: &str, token: u64, fires: Vec<FireClaim>| ClaimBatch {
        shard,
        holder: holder.into(),
        token,
        fires,
    };
    let r = Duration::from_secs(120);
    // The claim lands, but pretend its reply was lost.
    c.claim_fires(
        &[batch("n1/x", t1, vec![fire(1000, FireKind::Scheduled)])],
        r,
    )
    .await
    .expect("claim");
    // The lease changes hands and comes back to the same holder under a new token.
    c.release_leases(&[(shard, t1)], "n1/x")
        .await
        .expect("release");
    let t2 = grant(&c.acquire_leases(&[shard], "n2/y", ttl).await.expect("acq")[0]);
    let out = c
        .claim_fires(&[batch("n2/y", t2, vec![fire(1000, FireKind::Retry)])], r)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])],
        "another holder must not take it"
    );
    c.release_leases(&[(shard, t2)], "n2/y")
        .await
        .expect("release");
    let t3 = grant(&c.acquire_leases(&[shard], "n1/x", ttl).await.expect("acq")[0]);
    assert!(t3 > t1);
    let out = c
        .claim_fires(
            &[batch(
                "n1/x",
                t3,
                vec![fire(1000, FireKind::Retry), fire(2000, FireKind::Retry)],
            )],
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![
            ClaimOutcome::Claimed,
            ClaimOutcome::Claimed
        ])],
        "its own lost claim, and a retry whose claim never landed, are claimed"
    );
    let out = c
        .claim_fires(&[batch("n1/x", t3, vec![fire(1500, FireKind::Retry)])], r)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])],
        "not before the last fired time"
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::memory()).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis()).await } )*
        }
    };
}

conformance!(
    mismatched_ring_settings_are_refused,
    members_register_expire_and_leave,
    leases_fence_and_release_only_if_ours,
    claims_are_exactly_once_and_fenced,
    job_store_versions_lists_and_rejects_bad_input,
    run_history_is_capped_and_per_job,
    triggers_queue_for_the_lease_holder,
    a_lost_claim_reply_can_be_claimed_again_by_its_holder_only,
);

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = shardcron_testkit::free_port().expect("port");
    let err = RedisCoordinator::connect(&format!("redis://127.0.0.1:{port}"), "x", RING)
        .await
        .err()
        .expect("must fail");
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}
