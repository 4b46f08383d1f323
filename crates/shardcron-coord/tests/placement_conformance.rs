//! The store contract of job placements, run against every coordinator:
//! `leader` and `broadcast` jobs live in their own shards (one past the
//! ring's last, two past it), and a placement change moves a job between
//! shards in one atomic step that carries its watermark and its queued
//! triggers, so a fire claimed in the old shard is never claimed again in
//! the new one.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{
    BatchOutcome, ClaimOutcome, Coordinator, FireKind, LeaseGrant, QueuedTrigger,
};
use shardcron_core::{broadcast_shard, leader_shard, shard_of, JobSpec, Placement};

mod common;

use common::{acquire, first_attempt, job, one_batch, Env, RING};

const RETENTION: Duration = Duration::from_secs(120);

fn placed(id: &str, placement: Placement) -> JobSpec {
    JobSpec {
        placement,
        ..job(id)
    }
}

/// Claims one fire under the lease `(shard, holder, token)`.
async fn claim_one(
    c: &Arc<dyn Coordinator>,
    (shard, holder, token): (u32, &str, u64),
    job_id: &str,
    at: i64,
    version: u64,
    kind: FireKind,
) -> ClaimOutcome {
    let out = c
        .claim_fires(
            &one_batch(
                shard,
                holder,
                token,
                vec![first_attempt(job_id, at, version, kind)],
            ),
            RETENTION,
        )
        .await
        .expect("claim");
    match out.as_slice() {
        [BatchOutcome::Claimed(codes)] => codes[0],
        other => panic!("{other:?}"),
    }
}

async fn job_ids_of(c: &Arc<dyn Coordinator>, shard: u32) -> Vec<String> {
    let loaded = c.load_shards(&[shard]).await.expect("load");
    let mut ids: Vec<String> = loaded[0].jobs.iter().map(|j| j.spec.id.clone()).collect();
    ids.sort();
    ids
}

async fn leader_and_broadcast_jobs_live_in_their_own_shards(env: Env) {
    let c = env.coord().await;
    let (leader, broadcast) = (
        leader_shard(RING.shard_count),
        broadcast_shard(RING.shard_count),
    );
    let before = c.shard_versions(&[leader, broadcast]).await.expect("v");
    c.put_job(&placed("report", Placement::Leader), None)
        .await
        .expect("put leader job");
    c.put_job(&placed("flush", Placement::Broadcast), None)
        .await
        .expect("put broadcast job");
    c.put_job(&job("spread"), None).await.expect("put");
    assert_eq!(job_ids_of(&c, leader).await, vec!["report"]);
    assert_eq!(job_ids_of(&c, broadcast).await, vec!["flush"]);
    assert!(!job_ids_of(&c, shard_of("report", RING.shard_count))
        .await
        .contains(&"report".to_owned()));
    let after = c.shard_versions(&[leader, broadcast]).await.expect("v");
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "{before:?} -> {after:?}"
    );
    let read = c.get_job("report").await.expect("get").expect("exists");
    assert_eq!(read.spec.placement, Placement::Leader);
    let mut ids = c.list_jobs("", None, 10).await.expect("list").ids;
    ids.sort();
    assert_eq!(ids, vec!["flush", "report", "spread"]);
    // Only the ring's jobs weigh on placement.
    let weights = c
        .members_and_weights(None, Duration::ZERO)
        .await
        .expect("weights")
        .1
        .expect("weights read");
    assert!(
        weights.iter().all(|(s, _)| s < RING.shard_count),
        "{weights:?}"
    );
    assert_eq!(weights.iter().count(), 1, "{weights:?}");
    // The leader shard's lease is an election: one holder at a time, and
    // the next one's token is higher.
    let t1 = acquire(&c, leader, "n1/a").await;
    let other = c
        .acquire_leases(&[leader], "n2/b", Duration::from_secs(10))
        .await
        .expect("acquire");
    assert!(matches!(other[0], LeaseGrant::HeldBy { .. }), "{other:?}");
    assert_eq!(
        c.release_leases(&[(leader, t1)], "n1/a")
            .await
            .expect("release"),
        vec![true]
    );
    let t2 = acquire(&c, leader, "n2/b").await;
    assert!(t2 > t1, "{t1} then {t2}");
    // A leader job's fires and triggers are claimed under that lease.
    let v = read.version;
    let now = c.server_time_ms().await.expect("time");
    assert_eq!(
        claim_one(
            &c,
            (leader, "n2/b", t2),
            "report",
            now - 1000,
            v,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::Claimed
    );
    let at = c
        .trigger_job("report")
        .await
        .expect("trigger")
        .expect("queued");
    assert_eq!(
        c.read_triggers(&[(leader, t2)], "n2/b")
            .await
            .expect("read"),
        vec![QueuedTrigger {
            shard: leader,
            job_id: "report".into(),
            at_ms: at,
        }]
    );
    assert!(c.delete_job("flush", None).await.expect("delete"));
    assert!(c.get_job("flush").await.expect("get").is_none());
    assert!(job_ids_of(&c, broadcast).await.is_empty());
}

async fn a_placement_change_moves_the_job_with_its_watermark_and_triggers(env: Env) {
    let c = env.coord().await;
    let ring_shard = shard_of("mover", RING.shard_count);
    let leader = leader_shard(RING.shard_count);
    let v1 = c.put_job(&job("mover"), None).await.expect("put").version;
    let t = acquire(&c, ring_shard, "n1/a").await;
    let now = c.server_time_ms().await.expect("time");
    let fired = now - 2000;
    assert_eq!(
        claim_one(
            &c,
            (ring_shard, "n1/a", t),
            "mover",
            fired,
            v1,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::Claimed
    );
    let trigger_at = c
        .trigger_job("mover")
        .await
        .expect("trigger")
        .expect("queued");
    let versions_before = c.shard_versions(&[ring_shard, leader]).await.expect("v");
    // A stale expected version is refused and moves nothing.
    let stale = c
        .put_job(&placed("mover", Placement::Leader), Some(v1 + 1_000))
        .await;
    assert!(stale.is_err(), "{stale:?}");
    assert_eq!(job_ids_of(&c, leader).await, Vec::<String>::new());
    let current = c
        .get_job("mover")
        .await
        .expect("get")
        .expect("exists")
        .version;
    let moved = c
        .put_job(&placed("mover", Placement::Leader), Some(current))
        .await
        .expect("move");
    assert_eq!(moved.spec.placement, Placement::Leader);
    let versions_after = c.shard_versions(&[ring_shard, leader]).await.expect("v");
    assert!(
        versions_after[0] > versions_before[0] && versions_after[1] > versions_before[1],
        "both shards' versions move: {versions_before:?} -> {versions_after:?}"
    );
    assert!(!job_ids_of(&c, ring_shard)
        .await
        .contains(&"mover".to_owned()));
    let loaded = c.load_shards(&[leader]).await.expect("load");
    assert_eq!(
        loaded[0].last_fired,
        vec![("mover".to_owned(), fired)],
        "the watermark came along"
    );
    // The old shard's owner can claim nothing more of it.
    assert_eq!(
        claim_one(
            &c,
            (ring_shard, "n1/a", t),
            "mover",
            now - 1000,
            v1,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::JobChanged
    );
    assert!(c
        .read_triggers(&[(ring_shard, t)], "n1/a")
        .await
        .expect("read")
        .is_empty());
    // The leader finds the trigger, and the fire claimed in the old shard
    // is not claimed again.
    let tl = acquire(&c, leader, "n2/b").await;
    assert_eq!(
        c.read_triggers(&[(leader, tl)], "n2/b")
            .await
            .expect("read"),
        vec![QueuedTrigger {
            shard: leader,
            job_id: "mover".into(),
            at_ms: trigger_at,
        }]
    );
    assert_eq!(
        claim_one(
            &c,
            (leader, "n2/b", tl),
            "mover",
            fired,
            moved.version,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::AlreadyClaimed
    );
    let next = now - 500;
    assert_eq!(
        claim_one(
            &c,
            (leader, "n2/b", tl),
            "mover",
            next,
            moved.version,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::Claimed
    );
    // And back: the newer watermark comes along again.
    let back = c.put_job(&job("mover"), None).await.expect("move back");
    assert_eq!(job_ids_of(&c, leader).await, Vec::<String>::new());
    let loaded = c.load_shards(&[ring_shard]).await.expect("load");
    assert!(loaded[0].jobs.iter().any(|j| j.spec.id == "mover"));
    assert!(
        loaded[0].last_fired.contains(&("mover".to_owned(), next)),
        "{:?}",
        loaded[0].last_fired
    );
    assert_eq!(
        claim_one(
            &c,
            (ring_shard, "n1/a", t),
            "mover",
            next,
            back.version,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::AlreadyClaimed
    );
    // Only one copy exists wherever it went.
    assert_eq!(
        c.list_jobs("mover", None, 10).await.expect("list").ids,
        vec!["mover"]
    );
    assert!(c.delete_job("mover", None).await.expect("delete"));
    assert!(c.get_job("mover").await.expect("get").is_none());
}

async fn a_job_re_created_in_another_placement_is_not_claimed_in_its_old_shard(env: Env) {
    let c = env.coord().await;
    // Fresh shards: the ring shard's first version and the broadcast
    // shard's first version are the same number.
    let ring_shard = shard_of("again", RING.shard_count);
    let old = c.put_job(&job("again"), None).await.expect("put").version;
    let t = acquire(&c, ring_shard, "n1/a").await;
    assert!(c.delete_job("again", None).await.expect("delete"));
    let new = c
        .put_job(&placed("again", Placement::Leader), None)
        .await
        .expect("re-create");
    let now = c.server_time_ms().await.expect("time");
    // The old shard's owner, before it reloads, claims with the version it
    // loaded: refused, whatever number the new shard drew.
    assert_eq!(
        claim_one(
            &c,
            (ring_shard, "n1/a", t),
            "again",
            now - 1000,
            old,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::JobChanged,
        "old version {old}, new version {}",
        new.version
    );
    assert_eq!(
        claim_one(
            &c,
            (ring_shard, "n1/a", t),
            "again",
            now - 1000,
            new.version,
            FireKind::Scheduled
        )
        .await,
        ClaimOutcome::JobChanged
    );
}

/// On a Redis Cluster, a job's placement shards are in other slots than
/// its ring shard, and a placement change would move it between slots,
/// which no script does atomically: the store keeps sharded jobs only, and
/// refuses the others naming the field, writing nothing.
async fn a_cluster_refuses_leader_and_broadcast_jobs(env: Env) {
    let c = env.coord().await;
    for placement in [Placement::Leader, Placement::Broadcast] {
        let err = c
            .put_job(&placed("apart", placement), None)
            .await
            .expect_err("refused on a cluster");
        assert!(err.to_string().contains("placement"), "{err}");
    }
    assert!(c.get_job("apart").await.expect("get").is_none());
    assert!(c
        .list_jobs("", None, 10)
        .await
        .expect("list")
        .ids
        .is_empty());
}

/// Every case on every store that keeps placements (not a Redis Cluster).
macro_rules! placement_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::memory()).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis()).await } )*
        }
        mod sentinel {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::sentinel()).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::postgres()).await } )*
        }
        mod etcd {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::etcd()).await } )*
        }
    };
}

mod redis_cluster {
    #[tokio::test]
    async fn a_cluster_refuses_leader_and_broadcast_jobs() {
        super::a_cluster_refuses_leader_and_broadcast_jobs(super::Env::redis_cluster()).await
    }
}

placement_stores!(
    a_job_re_created_in_another_placement_is_not_claimed_in_its_old_shard,
    leader_and_broadcast_jobs_live_in_their_own_shards,
    a_placement_change_moves_the_job_with_its_watermark_and_triggers,
);
