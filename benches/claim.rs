//! Throughput of the claim script: `RedisCoordinator::claim_fires` against a
//! private `redis-server` (shardcron-testkit), one `ClaimBatch` of 1, 10 or
//! 100 fires per call.
//!
//! Setup puts one job in each of the shards used and acquires their leases,
//! and every fire has a strictly larger scheduled time than the previous one
//! of its job, so every claim is a real success (checked: the bench exits 1
//! if any claim does not come back `Claimed`). Each call is one round trip
//! (one `EVALSHA`), so time per call ≈ loopback RTT + script time.
//!
//! Run: `cargo bench --bench claim` (needs `redis-server` on PATH or
//! `SHARDCRON_REDIS_SERVER`).

use std::cell::Cell;
use std::process::exit;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, Coordinator, FireClaim, FireKind, LeaseGrant,
    RedisCoordinator,
};
use shardcron_core::{shard_of, JobSpec, RingConfig};
use shardcron_testkit::RedisServer;

/// Shards used by the bench (one job and one lease each); calls rotate over them.
const SHARDS: u32 = 64;
const HOLDER: &str = "bench-node/1";
const RETENTION: Duration = Duration::from_secs(30);

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("claim bench: {what}: {error}");
    exit(1)
}

/// One job per shard: `(shard, job id, job version, fencing token)`.
struct Fixture {
    shards: Vec<(u32, String, u64, u64)>,
}

async fn setup(coordinator: &RedisCoordinator) -> Fixture {
    let mut ids: Vec<Option<String>> = vec![None; SHARDS as usize];
    let mut index = 0u32;
    while ids.iter().any(Option::is_none) {
        let id = format!("bench-job-{index}");
        let slot = &mut ids[shard_of(&id, SHARDS) as usize];
        if slot.is_none() {
            *slot = Some(id);
        }
        index += 1;
    }
    let shard_list: Vec<u32> = (0..SHARDS).collect();
    let grants = coordinator
        .acquire_leases(&shard_list, HOLDER, Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| fail("acquiring leases", e));
    let mut shards = Vec::new();
    for ((shard, id), grant) in shard_list
        .into_iter()
        .zip(ids.into_iter().flatten())
        .zip(grants)
    {
        let LeaseGrant::Granted { token } = grant else {
            fail(
                "acquiring leases",
                format!("shard {shard} not granted: {grant:?}"),
            )
        };
        let spec = JobSpec::new(id.clone(), "@every 5s", "noop");
        let stored = coordinator
            .put_job(&spec, None)
            .await
            .unwrap_or_else(|e| fail("putting a job", e));
        shards.push((shard, id, stored.version, token));
    }
    Fixture { shards }
}

fn claim(c: &mut Criterion) {
    let server = RedisServer::start().unwrap_or_else(|e| fail("starting redis-server", e));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("building the tokio runtime", e));
    let ring = RingConfig::new(SHARDS, 16);
    let coordinator = runtime
        .block_on(RedisCoordinator::connect(&server.url(), "bench", ring))
        .unwrap_or_else(|e| fail("connecting", e));
    let fixture = runtime.block_on(setup(&coordinator));

    // Next scheduled ms per shard's job; only ever increases.
    let next_ms: Vec<Cell<i64>> = (0..SHARDS).map(|_| Cell::new(1_700_000_000_000)).collect();
    let rotation = Cell::new(0usize);
    let not_claimed = Cell::new(0u64);

    let mut group = c.benchmark_group("claim/claim_fires");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for fires in [1u64, 10, 100] {
        group.throughput(Throughput::Elements(fires));
        group.bench_with_input(
            BenchmarkId::new("fires_per_batch", fires),
            &fires,
            |b, &fires| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iterations {
                            let slot = rotation.get();
                            rotation.set((slot + 1) % fixture.shards.len());
                            let (shard, id, version, token) = &fixture.shards[slot];
                            let cursor = &next_ms[slot];
                            let batch = ClaimBatch {
                                shard: *shard,
                                holder: HOLDER.to_owned(),
                                token: *token,
                                fires: (0..fires)
                                    .map(|_| {
                                        cursor.set(cursor.get() + 1);
                                        FireClaim::new(
                                            id.clone(),
                                            cursor.get(),
                                            FireKind::Scheduled,
                                            *version,
                                            cursor.get() as u64,
                                        )
                                    })
                                    .collect(),
                                ahead_ms: 0,
                                loaded_at: None,
                            };
                            match coordinator.claim_fires(&[batch], RETENTION).await {
                                Ok(outcomes) => {
                                    for outcome in outcomes {
                                        match outcome {
                                            BatchOutcome::Claimed(results) => {
                                                let lost = results
                                                    .iter()
                                                    .filter(|r| **r != ClaimOutcome::Claimed)
                                                    .count();
                                                not_claimed.set(not_claimed.get() + lost as u64);
                                            }
                                            BatchOutcome::LeaseLost => {
                                                not_claimed.set(not_claimed.get() + fires);
                                            }
                                        }
                                    }
                                }
                                Err(e) => fail("claiming", e),
                            }
                        }
                        start.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
    if not_claimed.get() > 0 {
        fail(
            "verifying",
            format!("{} fires were not claimed", not_claimed.get()),
        );
    }
    drop(coordinator);
    drop(server);
}

criterion_group!(benches, claim);
criterion_main!(benches);
