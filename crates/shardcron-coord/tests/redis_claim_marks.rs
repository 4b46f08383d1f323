//! Claim marks of the Redis store (docs/ARCHITECTURE.md, "Claim marks"): a
//! lease holder's claim batch is decided without reading its watermarks
//! only while the shard's mark (`|c` of `{ns:s}:last`) is the one the
//! holder's previous claim wrote and the shard version is the one it
//! loaded. Most tests write a watermark behind the protocol's back (a
//! write no script makes without moving the mark or the version) and
//! watch whether the next claim saw it: a claim that did not read the
//! watermarks claims the fire anyway, one that did refuses it. The last
//! shows a trigger's claim key refusing a scheduled fire of its ms that
//! would otherwise have been claimed on a mark.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use shardcron_coord::{BatchOutcome, ClaimBatch, ClaimOutcome, Coordinator, FireKind};
use shardcron_core::shard_of;
use shardcron_testkit::RedisServer;

const HOLDER: &str = "n1/x";
const RETENTION: Duration = Duration::from_secs(60);

/// One job held by `HOLDER`, and what a claim of it needs.
struct Held {
    c: Arc<dyn Coordinator>,
    shard: u32,
    token: u64,
    version: u64,
    now: i64,
}

impl Held {
    async fn new(env: &Env, id: &str) -> Self {
        let c = env.coord().await;
        let now = c.server_time_ms().await.expect("time");
        let version = c.put_job(&job(id), None).await.expect("put").version;
        let shard = shard_of(id, RING.shard_count);
        let token = acquire(&c, shard, HOLDER).await;
        Self {
            c,
            shard,
            token,
            version,
            now,
        }
    }

    /// A batch of the scheduled fire of `id` at `at`, promising the shard
    /// version `loaded`.
    fn batch(&self, id: &str, at: i64, loaded: u64) -> Vec<ClaimBatch> {
        let fire = first_attempt(id, at, self.version, FireKind::Scheduled);
        let mut batches = one_batch(self.shard, HOLDER, self.token, vec![fire]);
        batches[0].loaded_at = Some(loaded);
        batches
    }

    async fn claim(&self, batches: &[ClaimBatch]) -> Vec<BatchOutcome> {
        self.c.claim_fires(batches, RETENTION).await.expect("claim")
    }

    /// Job `a` held, its fire 10 s ago claimed (which marks the shard):
    /// the holder, the shard version it loaded, and that fire's instant.
    async fn claimed_once(env: &Env, server: &RedisServer) -> (Self, u64, i64) {
        let h = Self::new(env, "a").await;
        let loaded = shard_version(server, h.shard).await;
        let t = h.now - 10_000;
        assert_eq!(
            h.claim(&h.batch("a", t, loaded)).await,
            claimed(ClaimOutcome::Claimed)
        );
        (h, loaded, t)
    }
}

fn state_key(shard: u32) -> String {
    format!("{{conf:{shard}}}:last")
}

async fn shard_version(server: &RedisServer, shard: u32) -> u64 {
    raw_redis(
        server,
        ::redis::cmd("GET").arg(format!("{{conf:{shard}}}:ver")),
    )
    .await
}

async fn mark(server: &RedisServer, shard: u32) -> Option<String> {
    raw_redis(server, ::redis::cmd("HGET").arg(state_key(shard)).arg("|c")).await
}

/// Writes `id`'s watermark as another holder's claim of `at`, touching
/// neither the mark nor the shard version.
async fn forge_watermark(server: &RedisServer, shard: u32, id: &str, at: i64) {
    let _: i64 = raw_redis(
        server,
        ::redis::cmd("HSET")
            .arg(state_key(shard))
            .arg(id)
            .arg(format!("{at}|n9/y|1|1")),
    )
    .await;
}

fn claimed(outcome: ClaimOutcome) -> Vec<BatchOutcome> {
    vec![BatchOutcome::Claimed(vec![outcome])]
}

#[tokio::test]
async fn a_claim_on_its_own_mark_reads_no_watermark_and_any_other_mark_reads_them() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    // The first claim reads the watermarks and writes its mark.
    let (h, loaded, t) = Held::claimed_once(&env, server).await;
    let first = mark(server, h.shard).await.expect("a mark");
    assert!(
        first.starts_with(&format!("{HOLDER}|{}|", h.token)),
        "{first}"
    );

    // The next is decided on that mark: it does not see the forged one.
    forge_watermark(server, h.shard, "a", t + 1_000).await;
    assert_eq!(
        h.claim(&h.batch("a", t + 1_000, loaded)).await,
        claimed(ClaimOutcome::Claimed)
    );
    let second = mark(server, h.shard).await.expect("a mark");
    assert_ne!(second, first);

    // A mark the holder does not expect sends the claim back to the
    // watermarks, which it then marks anew.
    let _: i64 = raw_redis(
        server,
        ::redis::cmd("HSET")
            .arg(state_key(h.shard))
            .arg("|c")
            .arg("-"),
    )
    .await;
    forge_watermark(server, h.shard, "a", t + 2_000).await;
    assert_eq!(
        h.claim(&h.batch("a", t + 2_000, loaded)).await,
        claimed(ClaimOutcome::AlreadyClaimed)
    );
    assert!(mark(server, h.shard).await.is_some_and(|m| m != "-"));
    assert_eq!(
        h.claim(&h.batch("a", t + 3_000, loaded)).await,
        claimed(ClaimOutcome::Claimed)
    );
}

#[tokio::test]
async fn a_job_write_or_a_trigger_in_the_shard_sends_the_next_claim_to_the_watermarks() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    let h = Held::new(&env, "a").await;
    let t = h.now - 10_000;
    // A second job in the same shard, written or triggered between claims.
    let other = (0..10_000)
        .map(|i| format!("o{i}"))
        .find(|id| shard_of(id, RING.shard_count) == h.shard)
        .expect("a job id in the shard");
    h.c.put_job(&job(&other), None).await.expect("put");
    for (step, write) in ["edit", "trigger"].into_iter().enumerate() {
        let at = t + step as i64 * 3_000;
        let loaded = shard_version(server, h.shard).await;
        assert_eq!(
            h.claim(&h.batch("a", at, loaded)).await,
            claimed(ClaimOutcome::Claimed),
            "{write}"
        );
        match write {
            "edit" => {
                h.c.put_job(&job(&other), None).await.expect("edit");
            }
            _ => {
                h.c.trigger_job(&other).await.expect("trigger");
            }
        }
        // The holder still promises the version it loaded; the store's
        // version has moved, so the claim reads the watermarks.
        forge_watermark(server, h.shard, "a", at + 1_000).await;
        assert_eq!(
            h.claim(&h.batch("a", at + 1_000, loaded)).await,
            claimed(ClaimOutcome::AlreadyClaimed),
            "{write}"
        );
    }
}

#[tokio::test]
async fn a_claim_in_a_longer_form_or_beside_another_batch_of_its_shard_unmarks_the_shard() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    let (h, loaded, t) = Held::claimed_once(&env, server).await;
    assert_ne!(mark(server, h.shard).await.as_deref(), Some("-"));

    // A tracked claim (form 7) moves the watermark and unmarks the shard.
    let mut tracked = h.batch("a", t + 1_000, loaded);
    tracked[0].fires[0] = tracked[0].fires[0].clone().tracked();
    assert_eq!(h.claim(&tracked).await, claimed(ClaimOutcome::Claimed));
    assert_eq!(mark(server, h.shard).await.as_deref(), Some("-"));
    forge_watermark(server, h.shard, "a", t + 2_000).await;
    assert_eq!(
        h.claim(&h.batch("a", t + 2_000, loaded)).await,
        claimed(ClaimOutcome::AlreadyClaimed)
    );

    // Re-marked by a plain claim, then two batches of the shard in one
    // call: neither is decided on a mark, and the shard is unmarked.
    assert_eq!(
        h.claim(&h.batch("a", t + 3_000, loaded)).await,
        claimed(ClaimOutcome::Claimed)
    );
    assert_ne!(mark(server, h.shard).await.as_deref(), Some("-"));
    forge_watermark(server, h.shard, "a", t + 4_000).await;
    let mut two = h.batch("a", t + 4_000, loaded);
    two.extend(h.batch("a", t + 5_000, loaded));
    assert_eq!(
        h.claim(&two).await,
        vec![
            BatchOutcome::Claimed(vec![ClaimOutcome::AlreadyClaimed]),
            BatchOutcome::Claimed(vec![ClaimOutcome::Claimed]),
        ]
    );
    assert_eq!(mark(server, h.shard).await.as_deref(), Some("-"));
}

#[tokio::test]
async fn another_holder_or_a_new_lease_never_claims_on_the_old_mark() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    let (h, loaded, t) = Held::claimed_once(&env, server).await;
    // The lease passes to another node and back: a new token.
    h.c.release_leases(&[(h.shard, h.token)], HOLDER)
        .await
        .expect("release");
    let other = acquire(&h.c, h.shard, "n2/z").await;
    let mut theirs = h.batch("a", t + 1_000, loaded);
    theirs[0].holder = "n2/z".to_owned();
    theirs[0].token = other;
    assert_eq!(h.claim(&theirs).await, claimed(ClaimOutcome::Claimed));
    h.c.release_leases(&[(h.shard, other)], "n2/z")
        .await
        .expect("release");
    let again = acquire(&h.c, h.shard, HOLDER).await;
    assert_ne!(again, h.token);
    let mut mine = h.batch("a", t + 1_000, loaded);
    mine[0].token = again;
    assert_eq!(h.claim(&mine).await, claimed(ClaimOutcome::AlreadyClaimed));
}

#[tokio::test]
async fn a_scheduled_fire_at_a_claimed_triggers_ms_is_not_claimed_on_a_mark() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    let h = Held::new(&env, "a").await;
    // A trigger of the job, claimed: its record is the claim key of its ms.
    let at =
        h.c.trigger_job("a")
            .await
            .expect("trigger")
            .expect("job exists");
    let mut trigger = h.batch("a", at, 0);
    trigger[0].loaded_at = None;
    trigger[0].fires[0].kind = FireKind::Trigger;
    assert_eq!(h.claim(&trigger).await, claimed(ClaimOutcome::Claimed));
    // Loaded after the trigger, the holder marks the shard with a claim
    // before that ms, then claims the scheduled fire of that very ms on
    // its mark: the shard's latest trigger is not before the fire, so the
    // batch reads the watermarks and the trigger's key makes the two one
    // fire.
    let loaded = shard_version(server, h.shard).await;
    assert_eq!(
        h.claim(&h.batch("a", at - 1_000, loaded)).await,
        claimed(ClaimOutcome::Claimed)
    );
    assert_eq!(
        h.claim(&h.batch("a", at, loaded)).await,
        claimed(ClaimOutcome::AlreadyClaimed)
    );
}
