//! Runtime behaviour on the in-memory coordinator: panics, timeouts, retries,
//! overlap policy, triggers, pause and removal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{Coordinator, MemoryCoordinator, RunOutcome, RunRecord};
use shardcron_core::{JobSpec, OverlapPolicy, RingConfig};
use shardcron_runtime::{FireContext, FnHandler, HandlerError, RunOutput, Worker, WorkerSettings};
use tokio::sync::oneshot;

const RING: RingConfig = RingConfig::new(16, 40);

async fn run_worker_for(coord: Arc<dyn Coordinator>, secs: u64, calls: Arc<AtomicUsize>) {
    let c = calls.clone();
    let worker = Worker::builder(coord)
        .node_id("solo")
        .settings(WorkerSettings::fast())
        .handler(
            "panics",
            FnHandler(|_ctx: FireContext| async move {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                Ok(RunOutput::default())
            }),
        )
        .handler(
            "slow",
            FnHandler(|_ctx: FireContext| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(RunOutput::default())
            }),
        )
        .handler(
            "flaky",
            FnHandler(move |ctx: FireContext| {
                let c = c.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    if ctx.attempt < 3 {
                        Err(HandlerError::new(format!("attempt {} fails", ctx.attempt)))
                    } else {
                        Ok(RunOutput {
                            detail: Some("third time lucky".into()),
                        })
                    }
                }
            }),
        )
        .handler(
            "ok",
            FnHandler(|_ctx: FireContext| async move { Ok(RunOutput::default()) }),
        )
        .build()
        .expect("worker");
    run_for(worker, secs).await;
}

/// Runs `worker` for `secs` seconds, then stops it gracefully.
async fn run_for(worker: Worker, secs: u64) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let _ = tx.send(());
    task.await.expect("join").expect("run");
}

fn runs_of<'a>(runs: &'a [RunRecord], job: &str) -> Vec<&'a RunRecord> {
    runs.iter().filter(|r| r.job_id == job).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_caught_retried_and_recorded() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("b", RING).expect("coord"));
    let mut panics = JobSpec::new("panics", "@every 1s", "panics");
    panics.overlap = OverlapPolicy::Allow;
    coord.put_job(&panics, None).await.expect("put");
    let mut slow = JobSpec::new("slow", "@every 1s", "slow");
    slow.timeout = Some(Duration::from_millis(300));
    coord.put_job(&slow, None).await.expect("put");
    // Fires only through its trigger: a scheduled fire of its own (every
    // 10 s, as it was) could land just before the trigger and, still
    // retrying, make the trigger skip as an overlap.
    let mut flaky = JobSpec::new("flaky", "0 0 29 2 *", "flaky");
    flaky.retry.max_retries = 3;
    flaky.retry.backoff = Duration::from_millis(50);
    flaky.misfire_grace = Duration::from_secs(30);
    coord.put_job(&flaky, None).await.expect("put");
    let mut skip = JobSpec::new("overlapping", "@every 1s", "slow");
    skip.overlap = OverlapPolicy::Skip;
    coord.put_job(&skip, None).await.expect("put");
    coord
        .put_job(&JobSpec::new("nohandler", "@every 1s", "missing"), None)
        .await
        .expect("put");
    let calls = Arc::new(AtomicUsize::new(0));
    // Make the flaky job due: trigger it once the worker owns its shard.
    let c2 = coord.clone();
    let trig = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c2.trigger_job("flaky")
            .await
            .expect("trigger")
            .expect("exists")
    });
    run_worker_for(coord.clone(), 4, calls.clone()).await;
    let trigger_at = trig.await.expect("join");
    let runs = coord.recent_runs(None, 1000).await.expect("runs");

    let p = runs_of(&runs, "panics");
    assert!(
        !p.is_empty() && p.iter().all(|r| r.outcome == RunOutcome::Panicked),
        "{p:?}"
    );
    assert!(
        p[0].error.as_deref().unwrap_or("").contains("boom"),
        "{:?}",
        p[0]
    );

    let s = runs_of(&runs, "slow");
    assert!(s.iter().any(|r| r.outcome == RunOutcome::TimedOut), "{s:?}");

    let f = runs_of(&runs, "flaky");
    let triggered = f
        .iter()
        .find(|r| r.fire_id == format!("flaky@{trigger_at}"))
        .unwrap_or_else(|| panic!("trigger run missing: {f:?}"));
    assert_eq!(
        (triggered.outcome, triggered.attempts),
        (RunOutcome::Succeeded, 3)
    );
    assert!(calls.load(Ordering::SeqCst) >= 3);

    let o = runs_of(&runs, "overlapping");
    assert!(
        o.iter().any(|r| r.outcome == RunOutcome::SkippedOverlap),
        "{o:?}"
    );

    let n = runs_of(&runs, "nohandler");
    assert!(
        !n.is_empty() && n.iter().all(|r| r.outcome == RunOutcome::UnknownHandler),
        "{n:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_removed_jobs_stop_firing_once_acknowledged() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("p", RING).expect("coord"));
    coord
        .put_job(&JobSpec::new("to-pause", "@every 1s", "ok"), None)
        .await
        .expect("put");
    coord
        .put_job(&JobSpec::new("to-remove", "@every 1s", "ok"), None)
        .await
        .expect("put");
    let c2 = coord.clone();
    let edits = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut paused = c2.get_job("to-pause").await.expect("get").expect("exists");
        paused.spec.paused = true;
        c2.put_job(&paused.spec, Some(paused.version))
            .await
            .expect("pause");
        let paused_at = shardcron_runtime::Clock::now_ms(&shardcron_runtime::SystemClock);
        assert!(c2.delete_job("to-remove", None).await.expect("rm"));
        let removed_at = shardcron_runtime::Clock::now_ms(&shardcron_runtime::SystemClock);
        (paused_at, removed_at)
    });
    run_worker_for(coord.clone(), 6, Arc::new(AtomicUsize::new(0))).await;
    let (paused_at, removed_at) = edits.await.expect("join");
    let runs = coord.recent_runs(None, 1000).await.expect("runs");
    for (job, acked) in [("to-pause", paused_at), ("to-remove", removed_at)] {
        let r = runs_of(&runs, job);
        assert!(
            r.iter().any(|r| r.started_ms < acked),
            "{job} ran before the edit"
        );
        // A fire claimed ahead before the edit ends `cancelled` without a
        // run (zero attempts): recorded, not run.
        let late: Vec<_> = r
            .iter()
            .filter(|r| r.started_ms > acked && r.attempts > 0)
            .collect();
        assert!(
            late.is_empty(),
            "{job} ran after the write was acknowledged: {late:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_fires_of_one_job_run_one_after_another_not_skipped() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("c", RING).expect("coord"));
    // Overlap policy `skip` (the default) must not drop missed fires being made up.
    let mut slow = JobSpec::new("backlogged", "@every 1s", "slowish");
    slow.overlap = OverlapPolicy::Skip;
    coord.put_job(&slow, None).await.expect("put");
    let created = shardcron_runtime::Clock::now_ms(&shardcron_runtime::SystemClock);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let worker = Worker::builder(coord.clone())
        .node_id("late")
        .settings(WorkerSettings::fast())
        .handler(
            "slowish",
            FnHandler(|_ctx: FireContext| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(RunOutput::default())
            }),
        )
        .build()
        .expect("worker");
    run_for(worker, 2).await;
    let runs = coord
        .recent_runs(Some("backlogged"), 100)
        .await
        .expect("runs");
    let missed_then: Vec<_> = runs
        .iter()
        .filter(|r| r.scheduled_ms <= created + 3200)
        .collect();
    assert!(missed_then.len() >= 3, "{runs:?}");
    assert!(
        missed_then
            .iter()
            .all(|r| r.outcome == RunOutcome::Succeeded),
        "catch-up fires must all run: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_undone_before_the_instant_of_a_fire_claimed_ahead_keeps_the_fire() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("a", RING).expect("coord"));
    coord
        .put_job(&JobSpec::new("blinks", "@every 2s", "ok"), None)
        .await
        .expect("put");
    let now = || shardcron_runtime::Clock::now_ms(&shardcron_runtime::SystemClock);
    // An instant at least 3 s away: the worker holds the shard by then and
    // claims the fire 500 ms (the fast settings' claim_ahead) before it.
    let instant = (now() + 3000).div_euclid(2000) * 2000 + 2000;
    let c2 = coord.clone();
    let edits = tokio::spawn(async move {
        let until = |at: i64| Duration::from_millis(u64::try_from(at - now()).unwrap_or(0));
        tokio::time::sleep(until(instant - 250)).await;
        let job = c2.get_job("blinks").await.expect("get").expect("exists");
        let mut spec = job.spec.clone();
        spec.paused = true;
        let paused = c2.put_job(&spec, Some(job.version)).await.expect("pause");
        tokio::time::sleep(Duration::from_millis(100)).await;
        spec.paused = false;
        c2.put_job(&spec, Some(paused.version))
            .await
            .expect("resume");
        now()
    });
    run_worker_for(coord.clone(), 7, Arc::new(AtomicUsize::new(0))).await;
    let resumed_at = edits.await.expect("join");
    assert!(resumed_at < instant, "the edits ended before the instant");
    let runs = coord.recent_runs(None, 1000).await.expect("runs");
    let at_instant: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.job_id == "blinks" && r.scheduled_ms == instant)
        .collect();
    assert_eq!(
        at_instant.len(),
        1,
        "one record of the fire: {at_instant:?}"
    );
    assert_eq!(
        (at_instant[0].outcome, at_instant[0].attempts),
        (RunOutcome::Succeeded, 1),
        "the job was active again at its instant: {at_instant:?}"
    );
}

/// A job moved from the leader's shard to its own keeps firing, even when
/// its new shard's counter gives it the very version number it had in the
/// leader's shard: the timetable entry must follow the job to its new
/// shard (claims made under the old shard are refused there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_moved_out_of_the_leader_shard_keeps_firing() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("m", RING).expect("coord"));
    let mut spec = JobSpec::new("mover", "@every 1s", "ok");
    spec.placement = shardcron_core::Placement::Leader;
    let first = coord.put_job(&spec, None).await.expect("put");
    let c2 = coord.clone();
    let edit = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        spec.placement = shardcron_core::Placement::Sharded;
        let moved = c2.put_job(&spec, None).await.expect("move");
        let at = shardcron_runtime::Clock::now_ms(&shardcron_runtime::SystemClock);
        (moved.version, at)
    });
    run_worker_for(coord.clone(), 8, Arc::new(AtomicUsize::new(0))).await;
    let (moved_version, moved_at) = edit.await.expect("join");
    assert_eq!(
        moved_version, first.version,
        "the case needs the same version number in both shards"
    );
    let runs = coord.recent_runs(None, 1000).await.expect("runs");
    let after: Vec<i64> = runs_of(&runs, "mover")
        .iter()
        .map(|r| r.scheduled_ms)
        .filter(|&ms| ms > moved_at + 1_000)
        .collect();
    assert!(
        after.len() >= 3,
        "fires after the move: {after:?} (moved at {moved_at})"
    );
}

/// Fires released at one instant share run tasks once there are enough of
/// them (`run_set::GROUP_FROM`); each run must still report its own end
/// when it ends, or a quick job that shares a task with a slow one would
/// look busy at its next fire and be skipped as an overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_run_released_beside_slow_ones_is_not_taken_for_busy() {
    let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new("b", RING).expect("coord"));
    let quick: Vec<String> = (0..120).map(|i| format!("quick-{i:03}")).collect();
    for id in &quick {
        let mut spec = JobSpec::new(id.as_str(), "@every 1s", "ok");
        spec.overlap = OverlapPolicy::Skip;
        coord.put_job(&spec, None).await.expect("put");
    }
    // Slow runs spread over the release, each outliving the next instant.
    for i in 0..8 {
        let mut spec = JobSpec::new(format!("slow-{i}"), "@every 1s", "lingers");
        spec.overlap = OverlapPolicy::Skip;
        coord.put_job(&spec, None).await.expect("put");
    }
    let worker = Worker::builder(coord.clone())
        .node_id("solo")
        .settings(WorkerSettings::fast())
        .handler(
            "ok",
            FnHandler(|_ctx: FireContext| async move { Ok(RunOutput::default()) }),
        )
        .handler(
            "lingers",
            FnHandler(|_ctx: FireContext| async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok(RunOutput::default())
            }),
        )
        .build()
        .expect("worker");
    run_for(worker, 5).await;
    let runs = coord.recent_runs(None, 10_000).await.expect("runs");
    let skipped_slow = runs
        .iter()
        .filter(|r| r.job_id.starts_with("slow-") && r.outcome == RunOutcome::SkippedOverlap)
        .count();
    assert!(
        skipped_slow > 0,
        "the slow jobs overlap themselves: {runs:?}"
    );
    for id in &quick {
        let mine = runs_of(&runs, id);
        assert!(
            mine.len() >= 3 && mine.iter().all(|r| r.outcome == RunOutcome::Succeeded),
            "{id}: {mine:?}"
        );
    }
}
