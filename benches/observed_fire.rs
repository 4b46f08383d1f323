//! What one fire pays to be observed by `shardcron worker`: its metrics
//! through the Prometheus recorder the daemon installs, and its `fire` span
//! under the daemon's log subscriber at its default `info` filter.
//!
//! The live bench runs its workers as an embedded library, with neither
//! installed unless given `--observe`; this bench times the two parts alone,
//! each the way the runtime did it before and the way it does it now:
//!
//! - metrics: one macro call per series (a registry lookup each) against
//!   the node's handles, registered once ([`FireMetrics`]);
//! - span: the span with the node's id among its fields against the span
//!   that leaves it to its `worker` parent.
//!
//! Run: `cargo bench --bench observed_fire`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcron_coord::RunOutcome;
use shardcron_core::FireId;
use shardcron_runtime::fire_metrics::{FireMetrics, SHARDED};
use shardcron_runtime::metrics as m;

/// The daemon's recorder and subscriber, installed for the whole process.
fn observe_as_the_daemon(runtime: &tokio::runtime::Runtime) {
    let _in_runtime = runtime.enter();
    if let Err(e) = shardcron_cli::observe::as_a_worker("bench", "bench") {
        panic!("installing the recorder: {e}");
    }
}

/// The series one fire records, one macro call each, as before.
fn fire_metrics_by_macro() {
    metrics::counter!(m::FIRES_BY_PLACEMENT_TOTAL, "placement" => SHARDED).increment(1);
    metrics::gauge!(m::RUNS_IN_FLIGHT).increment(1.0);
    m::lateness(12, None);
    m::run_duration(Duration::from_micros(3));
    m::fire_outcome(RunOutcome::Succeeded, None);
    metrics::gauge!(m::RUNS_IN_FLIGHT).increment(-1.0);
}

/// The same series through the node's handles.
fn fire_metrics_by_handle(handles: &FireMetrics) {
    handles.claimed(SHARDED);
    handles.in_flight_add(1.0);
    handles.lateness(12, None);
    handles.run_duration(Duration::from_micros(3));
    handles.outcome(RunOutcome::Succeeded, None);
    handles.in_flight_add(-1.0);
}

fn observed_fire(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("building the runtime: {e}"),
    };
    observe_as_the_daemon(&runtime);
    let handles = FireMetrics::register();

    let mut metrics_group = c.benchmark_group("fire metrics, daemon's recorder");
    metrics_group.throughput(Throughput::Elements(1));
    metrics_group.bench_function("one macro call per series", |b| {
        b.iter(fire_metrics_by_macro);
    });
    metrics_group.bench_function("handles registered once", |b| {
        b.iter(|| fire_metrics_by_handle(&handles));
    });
    metrics_group.finish();

    let worker = tracing::info_span!("worker", node = "node-1");
    let _in_worker = worker.enter();
    let job = "job-1234";
    let fire_id = FireId::new(job, 1_800_000_000_000);
    let mut span_group = c.benchmark_group("fire span, daemon's subscriber");
    span_group.throughput(Throughput::Elements(1));
    span_group.bench_function("with the node among its fields", |b| {
        b.iter(|| {
            let span = tracing::info_span!(
                "fire",
                job = %job,
                fire = %FireId::new(job, 1_800_000_000_000),
                shard = 17u32,
                node = %"node-1",
                token = 42u64,
                delivery = 1u32
            );
            drop(span.enter());
        });
    });
    span_group.bench_function("the node left to its parent", |b| {
        b.iter(|| {
            let span = tracing::info_span!(
                "fire",
                job = %job,
                fire = %fire_id,
                shard = 17u32,
                token = 42u64,
                delivery = 1u32
            );
            drop(span.enter());
        });
    });
    span_group.bench_function("no span", |b| {
        b.iter(|| std::hint::black_box(&fire_id));
    });
    span_group.finish();
}

criterion_group!(benches, observed_fire);
criterion_main!(benches);
