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

use common::{command_calls, first_attempt, job, raw_redis, Env, RING};
use shardcron_coord::{BatchOutcome, ClaimBatch, ClaimOutcome, FireKind, LeaseGrant};
use shardcron_core::shard_of;

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
    let mut by_shard: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    for i in 0..150 {
        let id = format!("job-{i}");
        let stored = c.put_job(&job(&id), None).await.expect("put");
        by_shard
            .entry(shard_of(&id, RING.shard_count))
            .or_default()
            .push((id, stored.version));
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let holder = "n1/x";
    let ttl = Duration::from_secs(30);
    let tokens: Vec<u64> = c
        .acquire_leases(&shards, holder, ttl)
        .await
        .expect("acquire")
        .into_iter()
        .map(|g| match g {
            LeaseGrant::Granted { token } => token,
            other => panic!("{other:?}"),
        })
        .collect();
    let loaded = c
        .load_shards(&by_shard.keys().copied().collect::<Vec<_>>())
        .await
        .expect("load");
    // One batch per shard with jobs, as a claim step sends them: the
    // shard-version form for all but one, whose fires are sent one by one.
    let batches: Vec<ClaimBatch> = by_shard
        .iter()
        .zip(&loaded)
        .enumerate()
        .map(|(i, ((&shard, jobs), load))| ClaimBatch {
            shard,
            holder: holder.to_owned(),
            token: tokens[shard as usize],
            fires: jobs
                .iter()
                .map(|(id, v)| first_attempt(id, 5_000, *v, FireKind::Scheduled))
                .collect(),
            ahead_ms: 0,
            loaded_at: (i > 0).then_some(load.version),
        })
        .collect();
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
