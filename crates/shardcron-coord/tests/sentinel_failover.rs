//! One coordinator behind Redis Sentinel across a failover: the master is
//! SIGKILLed, the sentinels promote its replica, and the same coordinator
//! (no reconnect by its user) reads and writes on the promoted replica,
//! hears events published there, and refuses to confirm claims until the
//! promoted master has a replica again.

mod common;

use std::time::{Duration, Instant};

use shardcron_coord::{
    BatchOutcome, ClaimOutcome, CoordEvent, Coordinator, FireKind, LeaseGrant, RedisCoordinator,
};
use shardcron_core::shard_of;
use shardcron_testkit::{GroupPasswords, RedisServer, SentinelGroup};

use common::{first_attempt, job, one_batch, Env, RING};

/// How long the coordinator may take to reach the promoted master.
const FOLLOW_WITHIN: Duration = Duration::from_secs(10);

/// SIGKILLs the master and waits until the sentinels have promoted the
/// replica; returns the killed server.
fn fail_over(group: &SentinelGroup) -> &RedisServer {
    let old = group.master().expect("the master");
    let old_port = old.port();
    tokio::task::block_in_place(|| {
        old.kill();
        group.wait_failover(old_port).expect("the replica promoted");
    });
    old
}

/// The version of `job_id` on the promoted master, read by the same
/// coordinator as soon as it reaches it (within [`FOLLOW_WITHIN`]); prints
/// how long that took after the promotion, after `label`.
async fn version_after_failover(c: &dyn Coordinator, job_id: &str, label: &str) -> Option<u64> {
    let t = Instant::now();
    let found = loop {
        match c.get_job(job_id).await {
            Ok(found) => break found,
            Err(e) if t.elapsed() < FOLLOW_WITHIN => {
                println!("not yet on the promoted master: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the promoted master not reached: {e}"),
        }
    };
    println!(
        "{label}promoted master reached {} ms after the promotion",
        t.elapsed().as_millis()
    );
    found.map(|j| j.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_follows_the_promoted_replica() {
    let env = Env::sentinel();
    let Env::Sentinel(group) = &env else {
        unreachable!("Env::sentinel() is a sentinel group")
    };
    let c = env.coord().await;
    assert_eq!(
        RedisCoordinator::connect(&group.url(), "conf", RING)
            .await
            .expect("connect")
            .min_replicas(),
        1,
        "min_replicas defaults to 1 behind Sentinel"
    );
    let mut events = c.subscribe();
    let stored = c.put_job(&job("alpha"), None).await.expect("put");
    let shard = shard_of("alpha", RING.shard_count);
    let token = match c
        .acquire_leases(&[shard], "n1/x", Duration::from_secs(120))
        .await
        .expect("acquire")[0]
    {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    };
    let claim = |at: i64| {
        one_batch(
            shard,
            "n1/x",
            token,
            vec![first_attempt(
                "alpha",
                at,
                stored.version,
                FireKind::Scheduled,
            )],
        )
    };
    let retention = Duration::from_secs(120);
    let out = c.claim_fires(&claim(1000), retention).await.expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );

    let old = fail_over(group);

    // The same coordinator reaches the promoted master, which has the job.
    assert_eq!(
        version_after_failover(&*c, "alpha", "").await,
        Some(stored.version)
    );

    // The promoted master has no replica yet: a claim is not confirmed,
    // so it is an error (a lost reply), never a fire to run.
    let unconfirmed = c.claim_fires(&claim(2000), retention).await;
    let err = unconfirmed.expect_err("a claim no replica confirmed");
    assert!(err.to_string().contains("WAIT fell short"), "{err}");

    // The listener subscribed again, on the promoted master.
    let t = Instant::now();
    loop {
        let left = FOLLOW_WITHIN.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(CoordEvent::Resync)) => break,
            Ok(_) => {}
            Err(_) => panic!("no resubscription after the failover"),
        }
    }
    c.put_job(&job("beta"), None)
        .await
        .expect("put on the promoted master");
    let beta = shard_of("beta", RING.shard_count);
    let t = Instant::now();
    loop {
        let left = FOLLOW_WITHIN.saturating_sub(t.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(CoordEvent::JobsChanged(s))) if s == beta => break,
            Ok(_) => {}
            Err(_) => panic!("no event from the promoted master"),
        }
    }

    // The lost master back, turned into the new master's replica: claims
    // are confirmed again, and the claim made before the failover held.
    tokio::task::block_in_place(|| {
        old.restart().expect("restart the lost master");
        group.wait_replicas().expect("the lost master is a replica");
    });
    let out = c
        .claim_fires(&claim(1000), retention)
        .await
        .unwrap_or_else(|e| panic!("claim: {e}\n{}", replication_state(group)));
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed])]
    );
    let out = c
        .claim_fires(&claim(3000), retention)
        .await
        .unwrap_or_else(|e| panic!("claim: {e}\n{}", replication_state(group)));
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
}

/// Each data server's `INFO replication` and the sentinels' failover
/// events, for the message of a claim that failed with the lost master
/// back as a replica.
fn replication_state(group: &SentinelGroup) -> String {
    let servers: Vec<String> = group
        .servers()
        .iter()
        .map(|s| {
            let info = s
                .command(&["INFO", "replication"])
                .unwrap_or_else(|e| e.to_string());
            format!("port {}:\n{info}", s.port())
        })
        .collect();
    format!("{}\n{}", servers.join("\n"), group.failover_events())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_wants_passwords_is_reached_and_followed_with_them() {
    let group = tokio::task::block_in_place(|| {
        SentinelGroup::start_with_passwords(GroupPasswords {
            data: "data-pw".into(),
            sentinel: "sentinel-pw".into(),
        })
    })
    .expect("a password-protected sentinel group");
    let url = group.url();
    assert!(url.contains(":data-pw@") && url.contains("sentinel_password=sentinel-pw"));
    // Without either password, or with a wrong one, the store refuses, and
    // the error says which login failed.
    for (bad, whose) in [
        (url.replace("sentinel_password=sentinel-pw", ""), "sentinel"),
        (url.replace("sentinel-pw", "wrong"), "sentinel"),
        (url.replace(":data-pw@", ""), "master"),
        (url.replace("data-pw", "wrong"), "master"),
    ] {
        let err = RedisCoordinator::connect(&bad, "pw", RING)
            .await
            .err()
            .unwrap_or_else(|| panic!("{bad} connected"));
        println!("{bad}: {err}");
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains("auth") || text.contains("password"),
            "{bad}: the error names the refused login: {err}"
        );
        assert!(
            text.contains(whose),
            "{bad}: the error says whose login: {err}"
        );
    }
    let c = RedisCoordinator::connect(&url, "pw", RING)
        .await
        .expect("both passwords given");
    let stored = c.put_job(&job("alpha"), None).await.expect("put");

    // A failover: the coordinator asks the sentinels again, logs in to
    // them and to the promoted master, and finds the job there.
    fail_over(&group);
    assert_eq!(
        version_after_failover(&c, "alpha", "password-protected group: ").await,
        Some(stored.version)
    );
}
