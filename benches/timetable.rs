//! Taking one second's fires from the timer heap: 5,000 every-second jobs
//! (one worker's share of 20,000 on four) all due at the same instant,
//! taken by one claim step, as `Timetable::take_due` does a claim-ahead
//! window before the instant.
//!
//! Every job of the burst shares the instant, so what the heap compares
//! among equal instants is paid at every step of every pop. This bench
//! times the claim step's timetable work alone, without Redis and the rest
//! of the node.
//!
//! Run: `cargo bench --bench timetable`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcron_core::JobSpec;
use shardcron_runtime::timetable::{ClaimWindow, JobEntry, Timetable};

/// Jobs due at each instant.
const JOBS: usize = 5_000;
/// Shards the jobs spread over (the default shard count).
const SHARDS: u32 = 1024;
/// A whole second: every fire lies on one.
const T0: i64 = 1_800_000_000_000;
/// How far ahead of its instant a fire is taken (the default claim-ahead).
const AHEAD_MS: i64 = 500;

/// A timetable of `JOBS` every-second jobs named as the live bench names
/// them, every cursor at `T0`.
fn timetable() -> Timetable {
    let mut table = Timetable::new();
    for i in 0..JOBS {
        let spec = JobSpec::new(format!("job-{i}"), "@every 1s", "noop");
        let job = match spec.validate() {
            Ok(job) => Arc::new(job),
            Err(e) => panic!("bench job invalid: {e}"),
        };
        table.upsert(JobEntry {
            job,
            version: 1,
            shard: i as u32 % SHARDS,
            cursor_ms: T0,
            next_ms: None,
            grace_ms: 60_000,
        });
    }
    table
}

fn take_second(c: &mut Criterion) {
    // The daemon's allocator (linked from shardcron-alloc), tuned as the
    // daemon tunes it.
    shardcron_alloc::keep_freed_memory();
    let mut group = c.benchmark_group("timetable");
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30)
        .throughput(Throughput::Elements(JOBS as u64));
    let mut table = timetable();
    let mut instant = T0;
    group.bench_function("take_due 5000 jobs at one instant", |b| {
        b.iter(|| {
            instant += 1000;
            let now_ms = instant - AHEAD_MS;
            let horizon = |_shard: u32| instant;
            let window = ClaimWindow {
                now_ms,
                furthest_ms: instant,
                shard_horizon: &horizon,
                max_ahead: usize::MAX,
            };
            let taken = table.take_due(&window, 2000, usize::MAX);
            assert_eq!(taken.len(), JOBS, "every job fires at every second");
            taken
        })
    });
    group.finish();
}

criterion_group!(benches, take_second);
criterion_main!(benches);
