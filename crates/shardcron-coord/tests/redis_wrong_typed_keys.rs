//! A lease key that holds something other than a string (an operator's
//! mistake, a foreign tool writing into the namespace, a damaged restore)
//! is a store fault, not a lost lease: a renewal or claim call that meets
//! one fails with the store's `WRONGTYPE` error, as a `GET` of the key
//! would, so the node counts a renewal failure and an operator sees it.
//! And it fails before it writes anything: a claim call reads every lease
//! of the call before deciding any batch, so no other batch of the call
//! has claimed a fire when the error comes back, and a renewal call
//! extends no lease.

mod common;

use std::time::Duration;

use common::{claim_step, every_shard_held, raw_redis, Env, RING};
use shardcron_coord::{BatchOutcome, ClaimOutcome, Keyspace};

#[tokio::test]
async fn a_lease_key_of_the_wrong_type_fails_renewal_and_claim_calls_before_any_write() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    let holder = "n1/x";
    let (by_shard, tokens) = every_shard_held(&c, 150, holder, Duration::from_secs(10)).await;
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    // The victim is a shard with jobs in the middle of the call, so
    // batches before it and after it would be claimed by a call that
    // decided batch by batch.
    let with_jobs: Vec<u32> = by_shard.keys().copied().collect();
    let victim = with_jobs[with_jobs.len() / 2];
    let keys = Keyspace::new("conf");
    let victim_key = keys.lease(victim);
    let () = raw_redis(
        server,
        ::redis::cmd("EVAL")
            .arg("redis.call('DEL', KEYS[1]); redis.call('RPUSH', KEYS[1], 'fault')")
            .arg(1)
            .arg(&victim_key),
    )
    .await;

    // Renewal: an error, and no lease extended past the short TTL.
    let leases: Vec<(u32, u64)> = shards.iter().map(|&s| (s, tokens[s as usize])).collect();
    let renewed = c
        .renew_leases(&leases, holder, Duration::from_secs(120))
        .await;
    let err = renewed.expect_err("a renewal over a wrong-typed lease key must fail");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    for &shard in &shards {
        let pttl: i64 = raw_redis(server, ::redis::cmd("PTTL").arg(keys.lease(shard))).await;
        assert!(pttl <= 10_000, "lease of shard {shard} extended: {pttl} ms");
    }

    // Claim: an error, and no fire of any batch claimed.
    // Both batch forms, as a claim step sends them.
    let batches = claim_step(&c, &by_shard, &tokens, holder, 5_000, |i| i % 2 == 0).await;
    let claimed = c.claim_fires(&batches, Duration::from_secs(60)).await;
    let err = claimed.expect_err("a claim over a wrong-typed lease key must fail");
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");

    // With the lease key repaired, the same call claims every fire: the
    // failed call claimed none.
    let () = raw_redis(server, ::redis::cmd("DEL").arg(&victim_key)).await;
    let () = raw_redis(
        server,
        ::redis::cmd("SET")
            .arg(&victim_key)
            .arg(format!("{holder}|{}", tokens[victim as usize]))
            .arg("PX")
            .arg(10_000),
    )
    .await;
    let out = c
        .claim_fires(&batches, Duration::from_secs(60))
        .await
        .expect("claim after the repair");
    for (batch, outcome) in batches.iter().zip(&out) {
        assert_eq!(
            outcome,
            &BatchOutcome::Claimed(vec![ClaimOutcome::Claimed; batch.fires.len()]),
            "shard {}",
            batch.shard
        );
    }
}
