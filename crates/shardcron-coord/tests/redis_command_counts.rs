//! What a claim step and a lease renewal cost Redis, in commands, on one
//! server: the figure `shardcron-bench` reports per fire, pinned here where
//! it cannot drift unnoticed. A claim call reads the lease (and shard
//! version) of all its batches in one `MGET`, and a renewal call its
//! leases in one `MGET`, before deciding each batch or lease on its own;
//! what stays per shard is the job-state read and write of a claim and the
//! `PEXPIRE` of a renewal.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{claim_step, command_calls, every_shard_held, raw_redis, Env, RING};
use shardcron_coord::{BatchOutcome, ClaimOutcome};

/// Calls of `name` in `calls` (0 when it was not called).
fn of(calls: &BTreeMap<String, u64>, name: &str) -> u64 {
    calls.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_claim_call_and_a_renewal_read_their_leases_in_one_command() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    // Jobs in most of the ring's shards, every shard held by one holder.
    let holder = "n1/x";
    let ttl = Duration::from_secs(30);
    let (by_shard, tokens) = every_shard_held(&c, 150, holder, ttl).await;
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    // One batch per shard with jobs, as a claim step sends them: the
    // shard-version form for all but one, whose fires are sent one by one.
    let batches = claim_step(&c, &by_shard, &tokens, holder, 5_000, |i| i > 0).await;
    assert!(batches.len() > 40, "{} shards with jobs", batches.len());
    let () = raw_redis(server, ::redis::cmd("CONFIG").arg("RESETSTAT")).await;
    let out = c
        .claim_fires(&batches, Duration::from_secs(60))
        .await
        .expect("claim");
    for (batch, outcome) in batches.iter().zip(&out) {
        assert_eq!(
            outcome,
            &BatchOutcome::Claimed(vec![ClaimOutcome::Claimed; batch.fires.len()])
        );
    }
    let calls = command_calls(server).await;
    let n = batches.len() as u64;
    assert_eq!(of(&calls, "mget"), 1, "{calls:?}");
    assert_eq!(of(&calls, "get"), 0, "{calls:?}");
    assert_eq!(of(&calls, "hmget"), n, "{calls:?}");
    assert_eq!(of(&calls, "hset"), n, "{calls:?}");
    assert_eq!(of(&calls, "evalsha"), 1, "{calls:?}");

    let leases: Vec<(u32, u64)> = shards.iter().map(|&s| (s, tokens[s as usize])).collect();
    let () = raw_redis(server, ::redis::cmd("CONFIG").arg("RESETSTAT")).await;
    let renewed = c.renew_leases(&leases, holder, ttl).await.expect("renew");
    assert!(renewed.iter().all(|&ok| ok), "{renewed:?}");
    let calls = command_calls(server).await;
    assert_eq!(of(&calls, "mget"), 1, "{calls:?}");
    assert_eq!(of(&calls, "get"), 0, "{calls:?}");
    assert_eq!(
        of(&calls, "pexpire"),
        u64::from(RING.shard_count),
        "{calls:?}"
    );
}
