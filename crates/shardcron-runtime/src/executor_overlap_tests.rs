//! The overlap policy against lateness: a fire is skipped as overlapping
//! only when the job's previous run would still be going had it started on
//! time, not because this node started it late (a handoff, a catch-up).

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{RunOutcome, RunRecord};
use shardcron_core::{JobSpec, OverlapPolicy};
use tokio::sync::mpsc;

use super::{ClaimedFire, Executor};
use crate::clock::{ServerClock, SkewedClock};
use crate::handler::{FnHandler, HandlerRegistry, RunOutput};
use crate::lease_watch::LeaseWatch;

/// An executor whose one handler, `work`, takes `run_ms`.
fn executor(run_ms: u64) -> (Executor, mpsc::UnboundedReceiver<RunRecord>, ServerClock) {
    let mut handlers = HandlerRegistry::new();
    handlers.insert(
        "work",
        Arc::new(FnHandler(move |_ctx| async move {
            tokio::time::sleep(Duration::from_millis(run_ms)).await;
            Ok(RunOutput::default())
        })),
    );
    let clock = ServerClock::new(Arc::new(SkewedClock::new(0)));
    let (tx, rx) = mpsc::unbounded_channel();
    (Executor::new("n".into(), handlers, 4, clock.clone(), tx), rx, clock)
}

fn fire(at: i64, lease: &LeaseWatch) -> ClaimedFire {
    let mut spec = JobSpec::new("j", "@every 1s", "work");
    spec.overlap = OverlapPolicy::Skip;
    ClaimedFire {
        job: Arc::new(spec.validate().expect("valid job")),
        scheduled_ms: at,
        shard: 0,
        token: 1,
        lease: lease.guard(),
        catch_up: false,
        version: 1,
    }
}

/// Drives `executor` until it is idle (as the node loop does), then returns
/// the outcomes of the first `n` records, by scheduled time.
async fn outcomes(
    executor: &mut Executor,
    rx: &mut mpsc::UnboundedReceiver<RunRecord>,
    n: usize,
) -> Vec<(i64, RunOutcome)> {
    while !executor.is_idle() {
        tokio::time::timeout(Duration::from_secs(5), executor.next_finished())
            .await
            .expect("runs end within 5 s");
    }
    let mut out = Vec::new();
    while out.len() < n {
        let record = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a record within 5 s")
            .expect("records");
        out.push((record.scheduled_ms, record.outcome));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

#[tokio::test]
async fn a_fire_started_late_does_not_make_the_next_one_skip() {
    // The previous fire ran a second late (a new owner's first fire after a
    // handoff, still within the on-time tolerance); its 300 ms run is still
    // going when the next fire, a second after it, is due.
    let (mut executor, mut rx, clock) = executor(300);
    let lease = LeaseWatch::start(tokio::time::Instant::now() + Duration::from_secs(60));
    let now = clock.now_ms();
    executor.dispatch(fire(now - 1000, &lease));
    executor.reap_finished();
    executor.dispatch(fire(now, &lease));
    let got = outcomes(&mut executor, &mut rx, 2).await;
    assert_eq!(
        got,
        vec![(now - 1000, RunOutcome::Succeeded), (now, RunOutcome::Succeeded)]
    );
}

#[tokio::test]
async fn a_run_longer_than_the_period_still_makes_the_next_fire_skip() {
    // Started on time and still going a full period later: a real overlap.
    let (mut executor, mut rx, clock) = executor(1500);
    let lease = LeaseWatch::start(tokio::time::Instant::now() + Duration::from_secs(60));
    let now = clock.now_ms();
    executor.dispatch(fire(now, &lease));
    tokio::time::sleep(Duration::from_millis(1050)).await;
    executor.reap_finished();
    executor.dispatch(fire(now + 1000, &lease));
    let got = outcomes(&mut executor, &mut rx, 2).await;
    assert_eq!(
        got,
        vec![(now, RunOutcome::Succeeded), (now + 1000, RunOutcome::SkippedOverlap)]
    );
}
