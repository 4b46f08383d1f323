//! One conformance suite, run against both coordinators: the in-memory one and
//! the Redis one on a real `redis-server` started by the test kit.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordError, CoordEvent, Coordinator, FireClaim,
    FireKind, HandBack, LeaseGrant, QueuedTrigger, RedisCoordinator, RunOutcome, RunRecord,
    ShardJobs,
};
use shardcron_core::{shard_of, JobSpec, RingConfig, ShardMap, ShardWeights};

mod common;

use common::{acquire, first_attempt, job, member, one_batch, Env, RING};

async fn mismatched_ring_settings_are_refused(env: Env) {
    let _first = env.coord().await;
    let err = env
        .coord_with(RingConfig::new(128, 40))
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
    tokio::time::sleep(env.expiry_wait(Duration::from_millis(300), Duration::from_millis(450)))
        .await;
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
    // The refused renewals left the lease exactly as it was, and a renewal
    // of a lease that does not exist creates none.
    assert_eq!(
        c.renew_leases(&[(5, t3)], "n1/x", ttl)
            .await
            .expect("renew"),
        vec![false]
    );
    let holders = c.lease_holders(&[3, 5]).await.expect("holders");
    assert_eq!(
        holders[0].as_ref().map(|l| (l.holder.as_str(), l.token)),
        Some(("n1/x", t3))
    );
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
    tokio::time::sleep(env.expiry_wait(short, Duration::from_millis(300))).await;
    let t3c = match c.acquire_leases(&[3], "n3/z", ttl).await.expect("acquire")[0] {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert!(t3c > t3b);
}

/// A holder whose lease ended in the store (a restart without persistence,
/// or a pause past the TTL) renews with its old token. The refusal must not
/// touch the new holder's lease: shortening it to the renewer's TTL would
/// let a third node take the shard while the new holder still counts on it
/// (two holders at once); lengthening it would keep a dead holder's shard.
async fn a_refused_renewal_leaves_the_new_holders_expiry_alone(env: Env) {
    let c = env.coord().await;
    let short = Duration::from_millis(200);
    let long = Duration::from_secs(30);
    let t1 = match c
        .acquire_leases(&[6], "n1/x", short)
        .await
        .expect("acquire")[0]
    {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    tokio::time::sleep(env.expiry_wait(short, Duration::from_millis(300))).await;
    let t2 = match c.acquire_leases(&[6], "n2/y", long).await.expect("acquire")[0] {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(
        c.renew_leases(&[(6, t1)], "n1/x", short)
            .await
            .expect("renew"),
        vec![false],
        "a renewal with the lost lease's token is refused"
    );
    tokio::time::sleep(env.expiry_wait(short, Duration::from_millis(300))).await;
    assert_eq!(
        c.acquire_leases(&[6], "n3/z", long).await.expect("acquire")[0],
        LeaseGrant::HeldBy {
            holder: "n2/y".into(),
            token: t2
        },
        "the new holder's lease must outlive the refused renewer's TTL"
    );
}

async fn claims_are_exactly_once_and_fenced(env: Env) {
    let c = env.coord().await;
    let stored = c.put_job(&job("alpha"), None).await.expect("put");
    let shard = shard_of("alpha", RING.shard_count);
    let token = acquire(&c, shard, "n1/x").await;
    let fire = |at: i64, version: u64, kind: FireKind| first_attempt("alpha", at, version, kind);
    let batch = |token: u64, fires: Vec<FireClaim>| one_batch(shard, "n1/x", token, fires);
    let retention = Duration::from_secs(120);
    let v = stored.version;
    let out = c
        .claim_fires(
            &batch(
                token,
                vec![
                    fire(1000, v, FireKind::Scheduled),
                    fire(2000, v, FireKind::Scheduled),
                ],
            ),
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
            &batch(
                token,
                vec![
                    fire(2000, v, FireKind::Scheduled),
                    fire(1500, v, FireKind::Scheduled),
                ],
            ),
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
            &batch(token + 1, vec![fire(3000, v, FireKind::Scheduled)]),
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(out, vec![BatchOutcome::LeaseLost]);
    // A trigger is not bound by the last-fired time, and its claim key makes
    // it exactly once, for its own holder too: a first attempt never takes
    // over an existing claim.
    let trigger = || batch(token, vec![fire(1500, v, FireKind::Trigger)]);
    let out = c.claim_fires(&trigger(), retention).await.expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let out = c.claim_fires(&trigger(), retention).await.expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
    );
    // Last-fired times are recorded per job.
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert_eq!(loaded[0].last_fired, vec![("alpha".to_owned(), 2000)]);
    // A fire later than the store's clock allows is refused, and nothing is
    // written: the watermark stays.
    let now = c.server_time_ms().await.expect("time");
    let out = c
        .claim_fires(
            &batch(token, vec![fire(now + 5_000, v, FireKind::Scheduled)]),
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::NotYetDue])]
    );
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert_eq!(loaded[0].last_fired, vec![("alpha".to_owned(), 2000)]);
    // Within the batch's claim-ahead window the same fire is claimed (and
    // advances the watermark); a window too short for it still refuses it.
    let ahead = |ahead_ms: i64| {
        let mut b = batch(token, vec![fire(now + 5_000, v, FireKind::Scheduled)]);
        b[0].ahead_ms = ahead_ms;
        b
    };
    let out = c
        .claim_fires(&ahead(1_000), retention)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::NotYetDue])]
    );
    let out = c
        .claim_fires(&ahead(10_000), retention)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert_eq!(
        loaded[0].last_fired,
        vec![("alpha".to_owned(), now + 5_000)]
    );
    // A job changed or removed since it was loaded cannot be claimed.
    let updated = c.put_job(&job("alpha"), Some(v)).await.expect("update");
    assert!(updated.version > v);
    let out = c
        .claim_fires(
            &batch(token, vec![fire(5000, v, FireKind::Scheduled)]),
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
            &batch(
                token,
                vec![fire(6000, updated.version, FireKind::Scheduled)],
            ),
            retention,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged])]
    );
}

/// A batch is decided fire by fire, in order: a watermark moved by an earlier
/// fire of the batch binds the later ones, and every fire is checked against
/// its own job's version, however large the batch (the Redis script reads
/// and writes them in chunks).
async fn a_large_batch_is_decided_fire_by_fire(env: Env) {
    let c = env.coord().await;
    let shard = shard_of("alpha", RING.shard_count);
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("job-{i}"))
        .filter(|id| shard_of(id, RING.shard_count) == shard)
        .take(50)
        .collect();
    assert_eq!(ids.len(), 50, "enough jobs in one shard");
    let mut versions = Vec::new();
    for id in &ids {
        versions.push(c.put_job(&job(id), None).await.expect("put").version);
    }
    let token = acquire(&c, shard, "n1/x").await;
    let rounds = 170;
    let mut fires = Vec::new();
    for r in 1..=rounds {
        for (id, &v) in ids.iter().zip(&versions) {
            fires.push(first_attempt(id, 1000 * r, v, FireKind::Scheduled));
        }
    }
    for (id, &v) in ids.iter().zip(&versions) {
        fires.push(first_attempt(id, 1500, v, FireKind::Scheduled));
        fires.push(first_attempt(id, 999_000, v + 1, FireKind::Scheduled));
    }
    fires.push(first_attempt("ghost", 1000, 1, FireKind::Scheduled));
    let claimed = fires.len() - 2 * ids.len() - 1;
    let out = c
        .claim_fires(
            &one_batch(shard, "n1/x", token, fires),
            Duration::from_secs(120),
        )
        .await
        .expect("claim");
    let mut expected = vec![ClaimOutcome::Claimed; claimed];
    for _ in &ids {
        expected.push(ClaimOutcome::AlreadyClaimed);
        expected.push(ClaimOutcome::JobChanged);
    }
    expected.push(ClaimOutcome::JobChanged);
    assert_eq!(out, vec![BatchOutcome::Claimed(expected)]);
    let loaded = c.load_shards(&[shard]).await.expect("load");
    let mut want: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), 1000 * rounds)).collect();
    want.sort();
    let mut got = loaded[0].last_fired.clone();
    got.sort();
    assert_eq!(got, want);
}

/// A batch that promises its job versions were read at a shard load
/// (`loaded_at`) is decided as one checked fire by fire: a job unchanged
/// since is claimed, whatever else of its shard was written; one rewritten
/// or deleted since is refused. A store may decide it from the shard's
/// version without reading each job's (Redis does).
async fn a_batch_promising_its_load_is_decided_as_fire_by_fire(env: Env) {
    let c = env.coord().await;
    let shard = shard_of("alpha", RING.shard_count);
    let ids: Vec<String> = (0..10_000)
        .map(|i| format!("job-{i}"))
        .filter(|id| shard_of(id, RING.shard_count) == shard)
        .take(3)
        .collect();
    assert_eq!(ids.len(), 3, "enough jobs in one shard");
    for id in &ids {
        c.put_job(&job(id), None).await.expect("put");
    }
    let token = acquire(&c, shard, "n1/x").await;
    let load = c.load_shards(&[shard]).await.expect("load").remove(0);
    let version_of = |load: &ShardJobs, id: &str| {
        load.jobs
            .iter()
            .find(|j| j.spec.id == id)
            .map(|j| j.version)
            .expect("loaded")
    };
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let promising = |load: &ShardJobs, at: i64, fires: &[&str], attempt: u64| {
        let fires = fires
            .iter()
            .map(|id| FireClaim::new(*id, at, FireKind::Scheduled, version_of(load, id), attempt))
            .collect();
        let mut batch = one_batch(shard, "n1/x", token, fires);
        batch[0].loaded_at = Some(load.version);
        batch
    };
    let retention = Duration::from_secs(120);
    let claim = |batch: Vec<ClaimBatch>| {
        let c = c.clone();
        async move { c.claim_fires(&batch, retention).await.expect("claim") }
    };
    let claimed = |codes: Vec<ClaimOutcome>| vec![BatchOutcome::Claimed(codes)];
    use ClaimOutcome::{AlreadyClaimed, Claimed, JobChanged};
    // Nothing written since the load.
    assert_eq!(
        claim(promising(&load, 1_000, &[a, b], 7)).await,
        claimed(vec![Claimed, Claimed])
    );
    assert_eq!(
        claim(promising(&load, 1_000, &[a], 8)).await,
        claimed(vec![AlreadyClaimed])
    );
    // Another job of the shard rewritten: the shard's version moved, these
    // two did not change.
    c.put_job(&job(&ids[2]), None).await.expect("rewrite");
    assert_eq!(
        claim(promising(&load, 2_000, &[a, b], 9)).await,
        claimed(vec![Claimed, Claimed])
    );
    // One of them rewritten, the other deleted.
    c.put_job(&job(a), None).await.expect("rewrite");
    assert_eq!(
        claim(promising(&load, 3_000, &[a, b], 10)).await,
        claimed(vec![JobChanged, Claimed])
    );
    assert!(c.delete_job(b, None).await.expect("delete"));
    assert_eq!(
        claim(promising(&load, 4_000, &[a, b], 11)).await,
        claimed(vec![JobChanged, JobChanged])
    );
    // Loaded again, the rewritten job is claimed under its new version.
    let reload = c.load_shards(&[shard]).await.expect("load").remove(0);
    assert!(reload.version > load.version);
    assert_eq!(
        claim(promising(&reload, 4_000, &[a], 12)).await,
        claimed(vec![Claimed])
    );
}

/// The batches of one `claim_fires` call are decided each on its own: a
/// lost lease fails only its batch, an empty batch is answered as empty,
/// and every outcome comes back in its batch's place, however many fires
/// the call carries (the Redis store packs batches into script calls of a
/// bounded size).
async fn the_batches_of_one_call_are_decided_each_on_its_own(env: Env) {
    let c = env.coord().await;
    let mut by_shard: std::collections::BTreeMap<u32, (String, u64)> = Default::default();
    for i in 0..2_000 {
        let id = format!("multi-{i}");
        let shard = shard_of(&id, RING.shard_count);
        if by_shard.len() < 12 && !by_shard.contains_key(&shard) {
            let v = c.put_job(&job(&id), None).await.expect("put").version;
            by_shard.insert(shard, (id, v));
        }
    }
    assert_eq!(by_shard.len(), 12, "enough shards");
    let mut batches = Vec::new();
    let mut expected = Vec::new();
    for (i, (&shard, (id, v))) in by_shard.iter().enumerate() {
        let token = acquire(&c, shard, "n1/x").await;
        // Every third batch presents a stale token; every fourth is empty;
        // the others carry 300 fires (3,600 in all, past one script call).
        let stale = i % 3 == 1;
        let fires: Vec<FireClaim> = if i % 4 == 3 {
            Vec::new()
        } else {
            (1..=300)
                .map(|r| first_attempt(id, 1000 * r, *v, FireKind::Scheduled))
                .collect()
        };
        expected.push(if stale {
            BatchOutcome::LeaseLost
        } else {
            BatchOutcome::Claimed(vec![ClaimOutcome::Claimed; fires.len()])
        });
        batches.push(ClaimBatch {
            shard,
            holder: "n1/x".into(),
            token: if stale { token + 1 } else { token },
            fires,
            ahead_ms: 0,
            loaded_at: None,
        });
    }
    let out = c
        .claim_fires(&batches, Duration::from_secs(120))
        .await
        .expect("claim");
    assert_eq!(out, expected);
    // The stale batches wrote nothing: their fires are still free.
    for (i, batch) in batches.iter().enumerate().filter(|(i, _)| i % 3 == 1) {
        let token = batch.token - 1;
        let again = ClaimBatch {
            token,
            ..batch.clone()
        };
        let out = c
            .claim_fires(&[again], Duration::from_secs(120))
            .await
            .expect("claim");
        let n = batch.fires.len();
        assert_eq!(
            out,
            vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed; n])],
            "batch {i}"
        );
    }
}

/// Claims of one batch on `shard`, as codes (panics on a lost lease).
async fn codes(
    c: &Arc<dyn Coordinator>,
    shard: u32,
    holder: &str,
    token: u64,
    fires: Vec<FireClaim>,
) -> Vec<ClaimOutcome> {
    match c
        .claim_fires(
            &one_batch(shard, holder, token, fires),
            Duration::from_secs(120),
        )
        .await
        .expect("claim")
        .remove(0)
    {
        BatchOutcome::Claimed(codes) => codes,
        BatchOutcome::LeaseLost => panic!("lease lost"),
    }
}

/// A scheduled fire's claim record is the job's watermark until the
/// watermark moves on. The records a holder may still need survive the
/// move: the one another holder wrote (its reply may have been lost, and
/// only a hand-back can resolve it now), and one written earlier in the
/// same call (that call's reply may be lost as a whole).
async fn the_watermark_keeps_the_records_a_holder_may_still_need(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("wm"), None).await.expect("put").version;
    let shard = shard_of("wm", RING.shard_count);
    let retry = |at: i64, attempt: u64, uncertain: Vec<u64>| FireClaim {
        uncertain,
        ..FireClaim::new("wm", at, FireKind::Scheduled, v, attempt)
    };
    let t1 = acquire(&c, shard, "n1/a").await;
    // Two fires of the job in one call; say its reply was lost. The retry
    // names both attempts: both are this holder's, the first one too,
    // although the watermark moved past it in the same call.
    assert_eq!(
        codes(
            &c,
            shard,
            "n1/a",
            t1,
            vec![retry(1000, 11, vec![]), retry(2000, 12, vec![])]
        )
        .await,
        vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]
    );
    assert_eq!(
        codes(
            &c,
            shard,
            "n1/a",
            t1,
            vec![retry(1000, 13, vec![11]), retry(2000, 14, vec![12])]
        )
        .await,
        vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]
    );
    // A lineage is taken over once: 11 and 12 are spent.
    assert_eq!(
        codes(
            &c,
            shard,
            "n1/a",
            t1,
            vec![retry(1000, 15, vec![11]), retry(2000, 16, vec![12])]
        )
        .await,
        vec![ClaimOutcome::AlreadyClaimed, ClaimOutcome::AlreadyClaimed]
    );
    // Fire 3000 lands; its reply is lost, and the lease moves to n2, which
    // claims 4000. n1 can no longer claim there, but its record of 3000
    // survives the move, so its hand-back finds it.
    assert_eq!(
        codes(&c, shard, "n1/a", t1, vec![retry(3000, 17, vec![])]).await,
        vec![ClaimOutcome::Claimed]
    );
    assert_eq!(
        c.release_leases(&[(shard, t1)], "n1/a")
            .await
            .expect("release"),
        vec![true]
    );
    let t2 = acquire(&c, shard, "n2/b").await;
    assert_eq!(
        codes(
            &c,
            shard,
            "n2/b",
            t2,
            vec![first_attempt("wm", 4000, v, FireKind::Scheduled)]
        )
        .await,
        vec![ClaimOutcome::Claimed]
    );
    let back = HandBack {
        shard,
        job_id: "wm".into(),
        scheduled_ms: 3000,
        kind: FireKind::Scheduled,
        token: t1,
        lost_attempts: vec![17],
    };
    assert_eq!(
        c.hand_back_fires("n1/a", &[back], Duration::from_secs(120))
            .await
            .expect("hand back"),
        vec![true]
    );
    let open = c.open_fires(&[shard]).await.expect("open");
    assert_eq!(
        open[0]
            .iter()
            .map(|f| (f.scheduled_ms, f.delivery, f.abandoned))
            .collect::<Vec<_>>(),
        vec![(3000, 0, true)]
    );
    // Two batches of the one shard in one call count as one call: the
    // record the first wrote survives the second moving the watermark on
    // (the reply of the whole call may be lost), so the retry finds both.
    let two = |a: FireClaim, b: FireClaim| {
        let mut batches = one_batch(shard, "n2/b", t2, vec![a]);
        batches.extend(one_batch(shard, "n2/b", t2, vec![b]));
        batches
    };
    let claimed = BatchOutcome::Claimed(vec![ClaimOutcome::Claimed]);
    assert_eq!(
        c.claim_fires(
            &two(retry(5000, 21, vec![]), retry(6000, 22, vec![])),
            Duration::from_secs(120)
        )
        .await
        .expect("claim"),
        vec![claimed.clone(), claimed.clone()]
    );
    assert_eq!(
        c.claim_fires(
            &two(retry(5000, 23, vec![21]), retry(6000, 24, vec![22])),
            Duration::from_secs(120)
        )
        .await
        .expect("claim"),
        vec![claimed.clone(), claimed]
    );
    // n2's own watermark record: a hand-back naming another holder's
    // attempt finds nothing of n1 there.
    let back = HandBack {
        shard,
        job_id: "wm".into(),
        scheduled_ms: 4000,
        kind: FireKind::Scheduled,
        token: t1,
        lost_attempts: vec![17],
    };
    assert_eq!(
        c.hand_back_fires("n1/a", &[back], Duration::from_secs(120))
            .await
            .expect("hand back"),
        vec![false]
    );
}

/// A trigger and a scheduled fire never share a fire id by accident: a
/// trigger's instant is moved past a scheduled fire claimed ahead, and a
/// scheduled fire at a queued trigger's ms is one fire with it, whichever
/// is claimed first.
async fn a_trigger_and_a_scheduled_fire_of_one_ms_are_one_fire(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("tr"), None).await.expect("put").version;
    let shard = shard_of("tr", RING.shard_count);
    let t = acquire(&c, shard, "n1/a").await;
    let now = c.server_time_ms().await.expect("time");
    let ahead = |fires: Vec<FireClaim>| {
        let mut b = one_batch(shard, "n1/a", t, fires);
        b[0].ahead_ms = 60_000;
        b
    };
    let r = Duration::from_secs(120);
    let claimed = c
        .claim_fires(
            &ahead(vec![first_attempt(
                "tr",
                now + 30_000,
                v,
                FireKind::Scheduled,
            )]),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let at = c
        .trigger_job("tr")
        .await
        .expect("trigger")
        .expect("job exists");
    assert!(
        at > now + 30_000,
        "the trigger's instant {at} moved past the fire claimed ahead"
    );
    // The scheduled fire of the trigger's ms, claimed first, is the same
    // fire: the trigger then finds it claimed and leaves the queue.
    let claimed = c
        .claim_fires(
            &ahead(vec![first_attempt("tr", at, v, FireKind::Scheduled)]),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let claimed = c
        .claim_fires(
            &ahead(vec![first_attempt("tr", at, v, FireKind::Trigger)]),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
    );
    assert!(c
        .read_triggers(&[(shard, t)], "n1/a")
        .await
        .expect("read")
        .is_empty());
    // The other order: the trigger is claimed first, the scheduled fire of
    // its ms finds it.
    let at = c
        .trigger_job("tr")
        .await
        .expect("trigger")
        .expect("job exists");
    let claimed = c
        .claim_fires(
            &ahead(vec![first_attempt("tr", at, v, FireKind::Trigger)]),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let claimed = c
        .claim_fires(
            &ahead(vec![first_attempt("tr", at, v, FireKind::Scheduled)]),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        claimed,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
    );
}

/// Deleting a job keeps a watermark past the store's time (a fire claimed
/// ahead, whose only record it may be): the job re-created under the same
/// id cannot claim that fire again. Its queued triggers go with it.
async fn a_job_re_created_does_not_claim_a_fire_claimed_ahead_again(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("re"), None).await.expect("put").version;
    let shard = shard_of("re", RING.shard_count);
    let t = acquire(&c, shard, "n1/a").await;
    let now = c.server_time_ms().await.expect("time");
    let at = now + 30_000;
    let mut b = one_batch(
        shard,
        "n1/a",
        t,
        vec![first_attempt("re", at, v, FireKind::Scheduled)],
    );
    b[0].ahead_ms = 60_000;
    let r = Duration::from_secs(120);
    assert_eq!(
        c.claim_fires(&b, r).await.expect("claim"),
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    c.trigger_job("re").await.expect("trigger");
    assert!(c.delete_job("re", None).await.expect("delete"));
    let v2 = c.put_job(&job("re"), None).await.expect("put").version;
    assert!(c
        .read_triggers(&[(shard, t)], "n1/a")
        .await
        .expect("read")
        .is_empty());
    let mut b = one_batch(
        shard,
        "n1/a",
        t,
        vec![first_attempt("re", at, v2, FireKind::Scheduled)],
    );
    b[0].ahead_ms = 60_000;
    assert_eq!(
        c.claim_fires(&b, r).await.expect("claim"),
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
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

async fn triggers_stay_queued_until_their_claim(env: Env) {
    let c = env.coord().await;
    assert_eq!(c.trigger_job("ghost").await.expect("trigger"), None);
    let v = c.put_job(&job("manual"), None).await.expect("put").version;
    let shard = shard_of("manual", RING.shard_count);
    let v0 = c.shard_versions(&[shard]).await.expect("v")[0];
    let at = c
        .trigger_job("manual")
        .await
        .expect("trigger")
        .expect("queued");
    let at2 = c
        .trigger_job("manual")
        .await
        .expect("trigger")
        .expect("queued");
    assert!(
        at2 > at,
        "two triggers never share a fire id: {at} then {at2}"
    );
    assert!(
        c.shard_versions(&[shard]).await.expect("v")[0] > v0,
        "a trigger bumps the shard version"
    );
    let token = acquire(&c, shard, "n1/x").await;
    assert!(
        c.read_triggers(&[(shard, token)], "n2/y")
            .await
            .expect("read")
            .is_empty(),
        "not the holder"
    );
    let queued = |at_ms| QueuedTrigger {
        shard,
        job_id: "manual".into(),
        at_ms,
    };
    for _ in 0..2 {
        let read = c
            .read_triggers(&[(shard, token)], "n1/x")
            .await
            .expect("read");
        assert_eq!(
            read,
            vec![queued(at), queued(at2)],
            "reading removes nothing"
        );
    }
    // Claiming a trigger is what removes it; finding it claimed too.
    let r = Duration::from_secs(120);
    let out = c
        .claim_fires(
            &one_batch(
                shard,
                "n1/x",
                token,
                vec![first_attempt("manual", at, v, FireKind::Trigger)],
            ),
            r,
        )
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let read = c
        .read_triggers(&[(shard, token)], "n1/x")
        .await
        .expect("read");
    assert_eq!(read, vec![queued(at2)]);
    // A trigger whose job is gone can never be claimed: reading drops it.
    assert!(c.delete_job("manual", None).await.expect("delete"));
    assert!(c
        .read_triggers(&[(shard, token)], "n1/x")
        .await
        .expect("read")
        .is_empty());
    c.put_job(&job("manual"), None).await.expect("put again");
    assert!(c
        .read_triggers(&[(shard, token)], "n1/x")
        .await
        .expect("read")
        .is_empty());
}

async fn a_lost_attempt_is_taken_over_once_and_by_its_holder_only(env: Env) {
    let c = env.coord().await;
    let v = c.put_job(&job("retry"), None).await.expect("put").version;
    let shard = shard_of("retry", RING.shard_count);
    let r = Duration::from_secs(120);
    let t1 = acquire(&c, shard, "n1/x").await;
    let attempt = |at: i64, attempt: u64, uncertain: Vec<u64>| FireClaim {
        uncertain,
        ..FireClaim::new("retry", at, FireKind::Scheduled, v, attempt)
    };
    let claim = |holder: &'static str, token: u64, fires: Vec<FireClaim>| {
        let c = c.clone();
        async move {
            match c
                .claim_fires(&one_batch(shard, holder, token, fires), r)
                .await
                .expect("claim")
                .remove(0)
            {
                BatchOutcome::Claimed(codes) => codes,
                BatchOutcome::LeaseLost => panic!("lease lost"),
            }
        }
    };
    // Attempt 1 lands but its reply is lost.
    assert_eq!(
        claim("n1/x", t1, vec![attempt(1000, 1, vec![])]).await,
        vec![ClaimOutcome::Claimed]
    );
    // A first attempt of the same fire (the timetable produced it again) is
    // refused; a retry naming attempt 1 takes it over, once.
    assert_eq!(
        claim(
            "n1/x",
            t1,
            vec![attempt(1000, 2, vec![]), attempt(1000, 3, vec![1])]
        )
        .await,
        vec![ClaimOutcome::AlreadyClaimed, ClaimOutcome::Claimed]
    );
    // Attempt 3's reply is lost too: attempt 1 cannot be taken over again
    // (that lineage is 3 now), but a retry naming 1 and 3 can.
    assert_eq!(
        claim("n1/x", t1, vec![attempt(1000, 4, vec![1])]).await,
        vec![ClaimOutcome::AlreadyClaimed]
    );
    assert_eq!(
        claim("n1/x", t1, vec![attempt(1000, 5, vec![1, 3])]).await,
        vec![ClaimOutcome::Claimed]
    );
    // The old lease ends; another holder with a new token cannot take the
    // claim over even naming the attempt.
    assert_eq!(
        c.release_leases(&[(shard, t1)], "n1/x")
            .await
            .expect("release"),
        vec![true]
    );
    let t2 = acquire(&c, shard, "n2/y").await;
    assert_eq!(
        claim("n2/y", t2, vec![attempt(1000, 5, vec![5])]).await,
        vec![ClaimOutcome::AlreadyClaimed],
        "another holder cannot take it over"
    );
    assert_eq!(
        c.release_leases(&[(shard, t2)], "n2/y")
            .await
            .expect("release"),
        vec![true]
    );
    // The holder, back under a new token, can resolve its own lost attempt;
    // a retry whose attempts never landed is claimed like a first attempt.
    let t3 = acquire(&c, shard, "n1/x").await;
    assert!(t3 > t2 && t2 > t1);
    assert_eq!(
        claim(
            "n1/x",
            t3,
            vec![attempt(1000, 6, vec![5]), attempt(2000, 7, vec![99])]
        )
        .await,
        vec![ClaimOutcome::Claimed, ClaimOutcome::Claimed]
    );
    assert_eq!(
        claim("n1/x", t3, vec![attempt(1500, 8, vec![42])]).await,
        vec![ClaimOutcome::AlreadyClaimed],
        "not before the last fired time"
    );
}

async fn fencing_tokens_are_at_least_store_time_in_microseconds(env: Env) {
    let c = env.coord().await;
    let before = c.server_time_ms().await.expect("time");
    let token = acquire(&c, 9, "n1/x").await;
    assert!(
        token >= before as u64 * 1000,
        "token {token} must be at least store time in µs ({before} ms): tokens must keep increasing after the store loses its counter"
    );
    assert_eq!(
        c.release_leases(&[(9, token)], "n1/x")
            .await
            .expect("release"),
        vec![true]
    );
    assert!(acquire(&c, 9, "n2/y").await > token);
}

async fn heartbeat_reasserts_the_ring_settings(env: Env) {
    let c = env.coord().await;
    c.heartbeat(&member("a"), Duration::from_secs(30))
        .await
        .expect("hb");
    // The store loses the settings; a node configured otherwise starts and
    // stores its own. The first node's next heartbeat must notice.
    env.forget_config().await;
    let other = env
        .coord_with(RingConfig::new(128, 40))
        .await
        .expect("a node with other settings starts on an empty config");
    let err = c
        .heartbeat(&member("a"), Duration::from_secs(30))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, CoordError::ConfigMismatch { .. }), "{err}");
    other
        .heartbeat(&member("b"), Duration::from_secs(30))
        .await
        .expect("the settings now stored are b's");
    // Lost settings are written back by a heartbeat.
    env.forget_config().await;
    other
        .heartbeat(&member("b"), Duration::from_secs(30))
        .await
        .expect("hb");
    assert!(matches!(
        c.heartbeat(&member("a"), Duration::from_secs(30)).await,
        Err(CoordError::ConfigMismatch { .. })
    ));
}

async fn activity_starts_at_creation_and_resume_only(env: Env) {
    let c = env.coord().await;
    let created = c.put_job(&job("act"), None).await.expect("create");
    assert_eq!(created.active_since_ms, created.updated_ms);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut edited = job("act");
    edited.schedule = "@every 2s".into();
    let e = c.put_job(&edited, None).await.expect("edit");
    assert!(e.updated_ms > created.updated_ms);
    assert_eq!(
        e.active_since_ms, created.active_since_ms,
        "an edit keeps it"
    );
    let mut paused = edited.clone();
    paused.paused = true;
    let p = c.put_job(&paused, None).await.expect("pause");
    assert_eq!(p.active_since_ms, created.active_since_ms);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = c.put_job(&edited, None).await.expect("resume");
    assert_eq!(r.active_since_ms, r.updated_ms, "a resume restarts it");
    let got = c.get_job("act").await.expect("get").expect("present");
    assert_eq!(got.active_since_ms, r.active_since_ms);
    let shard = shard_of("act", RING.shard_count);
    let loaded = c.load_shards(&[shard]).await.expect("load");
    assert_eq!(loaded[0].jobs[0].schedule_floor_ms(), r.active_since_ms);
}

async fn an_unreadable_job_does_not_fail_its_shard(env: Env) {
    let c = env.coord().await;
    c.put_job(&job("good"), None).await.expect("put");
    let shard = shard_of("good", RING.shard_count);
    let newer = r#"{"version":999999,"updated_ms":1,"spec":{"id":"from-the-future","schedule":"@every 1s","handler":"noop","a_field_from_a_newer_version":1}}"#;
    env.put_raw_job(shard, "from-the-future", newer).await;
    env.put_raw_job(shard, "garbage", "{not json").await;
    let loaded = c
        .load_shards(&[shard])
        .await
        .expect("the load must not fail");
    let ids: Vec<&str> = loaded[0].jobs.iter().map(|j| j.spec.id.as_str()).collect();
    assert_eq!(ids, vec!["good"]);
    let bad: Vec<&str> = loaded[0]
        .unreadable
        .iter()
        .map(|u| u.job_id.as_str())
        .collect();
    assert_eq!(bad, vec!["from-the-future", "garbage"]);
    assert!(loaded[0].unreadable[0]
        .error
        .contains("a_field_from_a_newer_version"));
}

/// The weights snapshot as placement reads it, always fresh.
async fn fresh_weights(c: &Arc<dyn Coordinator>) -> ShardWeights {
    c.members_and_weights(None, Duration::ZERO)
        .await
        .expect("members and weights")
        .1
        .expect("weights included when none are known")
}

async fn job_writes_keep_shard_weights_exact(env: Env) {
    let c = env.coord().await;
    assert!(fresh_weights(&c).await.is_empty());
    let every_second = job("w-fast");
    let mut hourly = JobSpec::new("w-hourly", "@hourly", "noop");
    hourly.cost = Some(2.5);
    c.put_job(&every_second, None).await.expect("put");
    c.put_job(&hourly, None).await.expect("put");
    let fast_shard = shard_of("w-fast", RING.shard_count);
    let hourly_shard = shard_of("w-hourly", RING.shard_count);
    let expected = |fast: u64, slow: u64| {
        ShardWeights::from_pairs(0, [(fast_shard, fast), (hourly_shard, slow)])
    };
    let weights = fresh_weights(&c).await;
    let want = expected(86_400_000, 60_000);
    assert_eq!(
        weights.iter().collect::<Vec<_>>(),
        want.iter().collect::<Vec<_>>()
    );
    let version = weights.version;
    assert!(version > 0);

    // An edit that keeps the weight keeps the version: nodes reread nothing.
    let mut edited = every_second.clone();
    edited.args = serde_json::json!({"x": 1});
    c.put_job(&edited, None).await.expect("edit");
    let (_, unchanged) = c
        .members_and_weights(Some(version), Duration::ZERO)
        .await
        .expect("read");
    assert_eq!(unchanged, None, "weights reread although no weight changed");

    // Pause weighs 0, resume weighs again, delete removes the share.
    edited.paused = true;
    c.put_job(&edited, None).await.expect("pause");
    let paused = fresh_weights(&c).await;
    assert!(paused.version > version);
    assert_eq!(
        paused.get(fast_shard),
        if fast_shard == hourly_shard {
            60_000
        } else {
            0
        }
    );
    edited.paused = false;
    c.put_job(&edited, None).await.expect("resume");
    assert_eq!(fresh_weights(&c).await.total(), 86_460_000);
    assert!(c.delete_job("w-hourly", None).await.expect("delete"));
    let after = fresh_weights(&c).await;
    assert_eq!(after.total(), 86_400_000);
    assert_eq!(after.non_empty(), 1);
    assert!(c.delete_job("w-fast", None).await.expect("delete"));
    assert!(fresh_weights(&c).await.is_empty());

    // A refused write (version conflict) changes no weight.
    let before = fresh_weights(&c).await;
    let err = c
        .put_job(&job("w-new"), Some(7))
        .await
        .expect_err("conflict");
    assert!(matches!(err, CoordError::VersionConflict { .. }), "{err}");
    assert_eq!(fresh_weights(&c).await, before);
}

async fn the_weights_snapshot_refreshes_at_most_once_per_interval(env: Env) {
    let c = env.coord().await;
    let hour = Duration::from_secs(3600);
    c.put_job(&job("s-1"), None).await.expect("put");
    // Never refreshed before: the first read takes a snapshot at once.
    let (members, first) = c.members_and_weights(None, hour).await.expect("read");
    assert!(members.members.is_empty());
    let first = first.expect("weights");
    assert_eq!(first.total(), 86_400_000);
    c.put_job(&job("s-2"), None).await.expect("put");
    // Within the interval the snapshot stays as it was.
    let (_, same) = c
        .members_and_weights(Some(first.version), hour)
        .await
        .expect("read");
    assert_eq!(same, None);
    let (_, again) = c.members_and_weights(None, hour).await.expect("read");
    assert_eq!(again.as_ref(), Some(&first));
    // Once the interval has passed, the next read refreshes it.
    let (_, fresh) = c
        .members_and_weights(Some(first.version), Duration::ZERO)
        .await
        .expect("read");
    let fresh = fresh.expect("refreshed weights");
    assert!(fresh.version > first.version);
    assert_eq!(fresh.total(), 2 * 86_400_000);
}

async fn the_placement_is_stored_by_compare_and_set(env: Env) {
    let c = env.coord().await;
    let hour = Duration::from_secs(3600);
    let inputs = c.placement_inputs(None, None, hour).await.expect("read");
    assert_eq!(inputs.placement, None, "nothing stored yet");
    let weights = ShardWeights::default();
    let first = ShardMap::place(&["a", "b"], &weights, RING)
        .to_record()
        .expect("record");
    assert_eq!(c.store_placement(0, &first).await.expect("store"), Some(1));
    // A writer that started from nothing (or from version 0) again loses.
    let other = ShardMap::place(&["a", "b", "c"], &weights, RING)
        .to_record()
        .expect("record");
    assert_eq!(c.store_placement(0, &other).await.expect("cas"), None);
    let read = c.placement_inputs(None, None, hour).await.expect("read");
    let stored = read.placement.expect("stored placement");
    assert_eq!((stored.version, &stored.record), (1, &first));
    // Read again only when the version moved; never when not wanted.
    let known = c.placement_inputs(None, Some(1), hour).await.expect("read");
    assert_eq!(known.placement, None);
    let unwanted = c
        .placement_inputs(None, Some(u64::MAX), hour)
        .await
        .expect("read");
    assert_eq!(unwanted.placement, None);
    assert_eq!(c.store_placement(1, &other).await.expect("store"), Some(2));
    let next = c.placement_inputs(None, Some(1), hour).await.expect("read");
    assert_eq!(
        next.placement.map(|p| (p.version, p.record)),
        Some((2, other))
    );
}

conformance!(
    mismatched_ring_settings_are_refused,
    members_register_expire_and_leave,
    leases_fence_and_release_only_if_ours,
    claims_are_exactly_once_and_fenced,
    a_large_batch_is_decided_fire_by_fire,
    a_batch_promising_its_load_is_decided_as_fire_by_fire,
    the_batches_of_one_call_are_decided_each_on_its_own,
    the_watermark_keeps_the_records_a_holder_may_still_need,
    a_trigger_and_a_scheduled_fire_of_one_ms_are_one_fire,
    a_job_re_created_does_not_claim_a_fire_claimed_ahead_again,
    job_store_versions_lists_and_rejects_bad_input,
    run_history_is_capped_and_per_job,
    triggers_stay_queued_until_their_claim,
    a_lost_attempt_is_taken_over_once_and_by_its_holder_only,
    fencing_tokens_are_at_least_store_time_in_microseconds,
    heartbeat_reasserts_the_ring_settings,
    activity_starts_at_creation_and_resume_only,
    an_unreadable_job_does_not_fail_its_shard,
    job_writes_keep_shard_weights_exact,
    the_weights_snapshot_refreshes_at_most_once_per_interval,
    the_placement_is_stored_by_compare_and_set,
    a_refused_renewal_leaves_the_new_holders_expiry_alone,
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
