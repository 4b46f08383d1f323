//! Cost of the shard map: `ShardMap::compute` (the plain ring) and
//! `ShardMap::place` (the weighted placement every node computes on every
//! membership or weights change), `owner` lookups (paid per fire and per lease
//! decision), plus `shard_of` (paid per job load).
//!
//! Run: `cargo bench --bench ring`. Kept short (3 s per point, 20 samples)
//! so the whole suite fits in a few minutes on 2 cores.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use shardcron_core::{shard_of, RingConfig, ShardMap, ShardWeights, DEFAULT_VNODES};

fn members(count: u32) -> Vec<String> {
    (0..count).map(|i| format!("node-{i:04}")).collect()
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    group
}

fn compute(c: &mut Criterion) {
    let mut group = configure(c, "ring/compute");
    // Milliseconds per iteration at S = 65536: flat sampling fits 20 samples.
    group.sampling_mode(SamplingMode::Flat);
    for shard_count in [1024u32, 65_536] {
        for count in [3u32, 10, 100] {
            let members = members(count);
            let config = RingConfig::new(shard_count, DEFAULT_VNODES);
            group.bench_with_input(
                BenchmarkId::new(format!("S={shard_count}"), format!("N={count}")),
                &members,
                |b, members| b.iter(|| ShardMap::compute(black_box(members), config)),
            );
        }
    }
    group.finish();
}

/// Weights of `jobs` jobs `job-0..` over
/// `shard_count` shards, the realistic mix of the placement bench: 1 %
/// every second, 9 % every 10 s, 30 % every minute, 40 % hourly, 20 % daily.
fn mixed_weights(jobs: u32, shard_count: u32) -> ShardWeights {
    const PER_DAY_UNITS: [u64; 5] = [86_400_000, 8_640_000, 1_440_000, 24_000, 1_000];
    ShardWeights::from_pairs(
        0,
        (0..jobs).map(|i| {
            let class = match i % 100 {
                0 => 0,
                1..=9 => 1,
                10..=39 => 2,
                40..=79 => 3,
                _ => 4,
            };
            let cost = u64::from(1 + i % 7);
            (
                shard_of(&format!("job-{i}"), shard_count),
                PER_DAY_UNITS[class] * cost,
            )
        }),
    )
}

fn place(c: &mut Criterion) {
    let mut group = configure(c, "placement/place");
    group.sampling_mode(SamplingMode::Flat);
    for shard_count in [1024u32, 65_536] {
        for count in [10u32, 100] {
            let members = members(count);
            let config = RingConfig::new(shard_count, DEFAULT_VNODES);
            let weights = mixed_weights(count * 100, shard_count);
            group.bench_with_input(
                BenchmarkId::new(format!("S={shard_count}"), format!("N={count}")),
                &members,
                |b, members| b.iter(|| ShardMap::place(black_box(members), &weights, config)),
            );
        }
    }
    group.finish();
}

fn owner(c: &mut Criterion) {
    let mut group = configure(c, "ring/owner");
    group.throughput(Throughput::Elements(1));
    for shard_count in [1024u32, 65_536] {
        let config = RingConfig::new(shard_count, DEFAULT_VNODES);
        let map = ShardMap::compute(&members(100), config);
        let mut shard = 0u32;
        group.bench_function(BenchmarkId::new(format!("S={shard_count}"), "N=100"), |b| {
            b.iter(|| {
                shard = (shard + 7919) % shard_count;
                black_box(map.owner(black_box(shard)))
            })
        });
    }
    group.finish();
}

fn job_shard(c: &mut Criterion) {
    let mut group = configure(c, "ring/shard_of");
    group.throughput(Throughput::Elements(1));
    let ids: Vec<String> = (0..1024).map(|i| format!("job-{i}")).collect();
    let mut next = 0usize;
    group.bench_function("S=1024", |b| {
        b.iter(|| {
            next = (next + 1) % ids.len();
            black_box(shard_of(black_box(&ids[next]), 1024))
        })
    });
    group.finish();
}

criterion_group!(benches, compute, place, owner, job_shard);
criterion_main!(benches);
