//! Cost of computing the next fire: `Schedule::next_after`, called by every
//! node for every job it owns after each fire and on every shard load.
//!
//! Covers a 5-field crontab expression, a 6-field one with seconds,
//! `@every 5s` (pure arithmetic) and a cron expression in a DST zone queried
//! right before a spring-forward gap (the wall-clock slow path).
//!
//! Run: `cargo bench --bench schedule`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcron_core::{parse_time_zone, Schedule};

/// 2025-06-01T12:00:00Z: an ordinary day.
const ORDINARY_MS: i64 = 1_748_779_200_000;
/// 2025-03-09T06:00:00Z = 01:00 EST, one hour before New York springs forward.
const BEFORE_GAP_MS: i64 = 1_741_500_000_000;

fn next_after(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule/next_after");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    let cases = [
        ("cron5 */5 * * * * UTC", "*/5 * * * *", "UTC", ORDINARY_MS),
        (
            "cron6 */10 * * * * * UTC",
            "*/10 * * * * *",
            "UTC",
            ORDINARY_MS,
        ),
        ("@every 5s", "@every 5s", "UTC", ORDINARY_MS),
        (
            "cron5 30 2 * * * New_York DST gap",
            "30 2 * * *",
            "America/New_York",
            BEFORE_GAP_MS,
        ),
    ];
    for (name, expr, zone, start) in cases {
        let (Ok(schedule), Ok(tz)) = (Schedule::parse(expr), parse_time_zone(zone)) else {
            eprintln!("schedule bench: cannot parse {expr:?} in {zone}");
            std::process::exit(1);
        };
        group.bench_function(name, |b| {
            b.iter(|| black_box(schedule.next_after(black_box(start), tz)))
        });
    }
    group.finish();
}

criterion_group!(benches, next_after);
criterion_main!(benches);
