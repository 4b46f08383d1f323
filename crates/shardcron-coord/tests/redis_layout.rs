//! The Redis store reads a namespace written by versions before the
//! job-state hash: job versions in `{ns:s}:jobver` and trigger instants in
//! `{ns:s}:trigger_at`. The first script that touches such a shard moves
//! them into the job-state hash (`{ns:s}:last`, fields `id|v` and `id|t`)
//! inside its own atomic step, so every later claim reads one hash.

mod common;

use std::time::Duration;

use common::*;
use shardcron_coord::{BatchOutcome, ClaimOutcome, FireKind};
use shardcron_core::shard_of;
use shardcron_testkit::RedisServer;

fn state_key(shard: u32) -> String {
    format!("{{conf:{shard}}}:last")
}

/// Rewrites `job`'s version and last trigger in the old layout, as an older
/// version would have left them; returns its version.
async fn to_old_layout(server: &RedisServer, job: &str, trigger_ms: i64) -> u64 {
    let shard = shard_of(job, RING.shard_count);
    let version: Option<u64> = raw_redis(
        server,
        ::redis::cmd("HGET")
            .arg(state_key(shard))
            .arg(format!("{job}|v")),
    )
    .await;
    let version = version.expect("the new layout keeps the version in the state hash");
    let () = raw_redis(
        server,
        ::redis::cmd("HDEL")
            .arg(state_key(shard))
            .arg(format!("{job}|v"))
            .arg(format!("{job}|t")),
    )
    .await;
    let () = raw_redis(
        server,
        ::redis::cmd("HSET")
            .arg(format!("{{conf:{shard}}}:jobver"))
            .arg(job)
            .arg(version),
    )
    .await;
    let () = raw_redis(
        server,
        ::redis::cmd("HSET")
            .arg(format!("{{conf:{shard}}}:trigger_at"))
            .arg(job)
            .arg(trigger_ms),
    )
    .await;
    version
}

async fn old_hashes_left(server: &RedisServer, shard: u32) -> i64 {
    raw_redis(
        server,
        ::redis::cmd("EXISTS")
            .arg(format!("{{conf:{shard}}}:jobver"))
            .arg(format!("{{conf:{shard}}}:trigger_at")),
    )
    .await
}

#[tokio::test]
async fn a_shard_of_the_old_layout_is_moved_by_its_first_script() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!("Env::redis() is Redis")
    };
    let c = env.coord().await;
    let now = c.server_time_ms().await.expect("time");

    // Acquiring the shard moves it; a claim then sees the old version and
    // the old trigger instant (a scheduled fire at or before it needs its
    // key, so a trigger of that ms cannot run it a second time).
    c.put_job(&job("moved"), None).await.expect("put");
    let version = to_old_layout(server, "moved", now + 5).await;
    let shard = shard_of("moved", RING.shard_count);
    let token = acquire(&c, shard, "n1/x").await;
    assert_eq!(old_hashes_left(server, shard).await, 0);
    let t: Option<String> = raw_redis(
        server,
        ::redis::cmd("HGET").arg(state_key(shard)).arg("moved|t"),
    )
    .await;
    assert_eq!(t, Some((now + 5).to_string()));
    let latest: Option<String> =
        raw_redis(server, ::redis::cmd("HGET").arg(state_key(shard)).arg("|t")).await;
    assert_eq!(
        latest,
        Some((now + 5).to_string()),
        "the shard's latest trigger"
    );
    let claim = |at: i64, v: u64| {
        one_batch(
            shard,
            "n1/x",
            token,
            vec![first_attempt("moved", at, v, FireKind::Scheduled)],
        )
    };
    let retention = Duration::from_secs(60);
    let out = c
        .claim_fires(&claim(now + 5, version + 1), retention)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged])]
    );
    let out = c
        .claim_fires(&claim(now + 5, version), retention)
        .await
        .expect("claim");
    assert_eq!(
        out,
        vec![BatchOutcome::Claimed(vec![ClaimOutcome::Claimed])]
    );
    let key: i64 = raw_redis(
        server,
        ::redis::cmd("EXISTS").arg(format!("{{conf:{shard}}}:fire:moved@{}", now + 5)),
    )
    .await;
    assert_eq!(key, 1, "a fire at the old trigger instant keeps its key");

    // A job write, a trigger and a delete each move a shard no node holds.
    for (id, step) in [("edit", 0), ("fire", 1), ("drop", 2)] {
        c.put_job(&job(id), None).await.expect("put");
        let version = to_old_layout(server, id, now + 60_000).await;
        let shard = shard_of(id, RING.shard_count);
        match step {
            0 => {
                let edited = c.put_job(&job(id), Some(version)).await.expect("edit");
                assert!(edited.version > version);
                let stale = c.put_job(&job(id), Some(version)).await;
                assert!(stale.is_err(), "the moved version is the one compared");
            }
            1 => {
                let at = c.trigger_job(id).await.expect("trigger");
                assert_eq!(at, Some(now + 60_001), "past the old trigger instant");
            }
            _ => {
                assert!(!c.delete_job(id, Some(version + 1)).await.is_ok_and(|d| d));
                assert!(c.delete_job(id, Some(version)).await.expect("delete"));
                assert!(c.get_job(id).await.expect("get").is_none());
            }
        }
        assert_eq!(old_hashes_left(server, shard).await, 0, "{id}");
    }
}
