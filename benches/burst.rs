//! Starting a burst: 5,000 fires claimed ahead of the same instant,
//! released by `Executor::release_due` when it comes, on a two-thread
//! runtime like the worker's.
//!
//! At 20,000 every-second jobs on four workers, each worker starts 5,000
//! fires at every second, and the start lateness of the last of them is the
//! run's p99 (docs/BENCHMARKS.md §4p). Once claims are made ahead, that
//! lateness is CPU work on the node: dispatching each fire (overlap check,
//! spawning its run task), running the task up to the handler, then its
//! record and reaping it. This bench times that work alone, without Redis
//! and the rest of the node, so a change to the start path shows as a
//! figure that barely moves between runs, where the fleet bench moves by
//! ±20 % from run to run on a small machine.
//!
//! - `start`: from the release until the last handler has started;
//! - `start_and_reap`: until every run has ended, its record has reached
//!   the recorder's channel and the executor has reaped it.
//!
//! Run: `cargo bench --bench burst`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcron_core::{Job, JobSpec};
use shardcron_runtime::clock::ServerClock;
use shardcron_runtime::executor::{ClaimedFire, EndSink, Executor};
use shardcron_runtime::lease_watch::LeaseWatch;
use shardcron_runtime::recorder::{Note, UnwrittenCloses};
use shardcron_runtime::{FnHandler, HandlerRegistry, RunOutput, SystemClock};
use tokio::sync::{mpsc, Notify};

/// Fires in one burst: one worker's share of 20,000 jobs on four.
const FIRES: usize = 5_000;
/// Shards the jobs spread over (the default shard count).
const SHARDS: u32 = 1024;
/// How far ahead of their instant the fires are dispatched, ms.
const AHEAD_MS: i64 = 20;

/// What one burst took.
struct BurstTimes {
    start: Duration,
    start_and_reap: Duration,
}

/// The jobs of the burst, made once: a worker loads its jobs once, not per
/// fire.
fn jobs() -> Vec<Arc<Job>> {
    (0..FIRES)
        .map(|i| {
            let spec = JobSpec::new(format!("job-{i}"), "@every 1s", "noop");
            match spec.validate() {
                Ok(job) => Arc::new(job),
                Err(e) => panic!("bench job invalid: {e}"),
            }
        })
        .collect()
}

/// Runs one burst of `jobs` on the current runtime and times it.
async fn burst(
    jobs: &[Arc<Job>],
    started: Arc<AtomicUsize>,
    all_started: Arc<Notify>,
) -> BurstTimes {
    started.store(0, Ordering::SeqCst);
    let mut handlers = HandlerRegistry::new();
    let (count, notify) = (started.clone(), all_started.clone());
    handlers.insert(
        "noop",
        Arc::new(FnHandler(move |_ctx: shardcron_runtime::FireContext| {
            let (count, notify) = (count.clone(), notify.clone());
            async move {
                if count.fetch_add(1, Ordering::SeqCst) + 1 == FIRES {
                    notify.notify_one();
                }
                Ok(RunOutput::default())
            }
        })),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Note>();
    // The recorder's side of the channel: take every note as it comes.
    let drained = tokio::spawn(async move {
        let mut notes = 0usize;
        while rx.recv().await.is_some() {
            notes += 1;
        }
        notes
    });
    let clock = ServerClock::new(Arc::new(SystemClock));
    let sink = EndSink::new(
        "bench-node".to_owned(),
        "bench-node/1".to_owned(),
        false,
        tx,
        Arc::new(UnwrittenCloses::default()),
    );
    let mut executor = Executor::new("bench-node".to_owned(), handlers, 10_000, clock, sink);
    let lease = LeaseWatch::start(tokio::time::Instant::now() + Duration::from_secs(600));
    let now_ms = ServerClock::new(Arc::new(SystemClock)).now_ms();
    let fires: Vec<ClaimedFire> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| ClaimedFire {
            job: job.clone(),
            scheduled_ms: now_ms + AHEAD_MS,
            shard: i as u32 % SHARDS,
            token: 1,
            lease: lease.guard(),
            catch_up: false,
            version: 1,
            delivery: 1,
            tracked: false,
            trigger: false,
        })
        .collect();
    for fire in fires {
        executor.dispatch(fire);
    }
    assert_eq!(
        executor.claimed_ahead(),
        FIRES,
        "every fire waits for its instant"
    );
    if let Some(at) = executor.next_ahead_at() {
        tokio::time::sleep_until(at).await;
    }
    let waiting = all_started.notified();
    let began = Instant::now();
    while executor.release_due() == 0 {
        // The wake-up can come a little before the estimate's instant.
        tokio::task::yield_now().await;
    }
    waiting.await;
    let start = began.elapsed();
    while executor.in_flight() > 0 {
        executor.next_finished().await;
    }
    let start_and_reap = began.elapsed();
    drop(executor);
    lease.released();
    let notes = drained.await.unwrap_or(0);
    assert_eq!(notes, FIRES, "every run sends its record");
    BurstTimes {
        start,
        start_and_reap,
    }
}

fn bench(c: &mut Criterion) {
    // The daemon's allocator (linked from shardcron-alloc), tuned as the
    // daemon tunes it.
    shardcron_alloc::keep_freed_memory();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let jobs = Arc::new(jobs());
    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(Notify::new());
    let mut group = c.benchmark_group("burst");
    group
        .throughput(Throughput::Elements(FIRES as u64))
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for (name, pick) in [
        (
            "start",
            (|t: &BurstTimes| t.start) as fn(&BurstTimes) -> Duration,
        ),
        ("start_and_reap", |t: &BurstTimes| t.start_and_reap),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let (jobs, started, all_started) =
                        (jobs.clone(), started.clone(), all_started.clone());
                    // Driven from a runtime thread, as the node loop is, so
                    // run tasks are spawned onto that thread's queue.
                    let times = runtime.block_on(async move {
                        tokio::spawn(async move { burst(&jobs, started, all_started).await }).await
                    });
                    match times {
                        Ok(times) => total += pick(&times),
                        Err(e) => panic!("burst task failed: {e}"),
                    }
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
