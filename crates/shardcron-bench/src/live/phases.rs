//! Waiting out the two phases around the measured window that are not the
//! steady state: the fleet catching up with the fires due while the jobs
//! were being registered, and the late tail of the window's own runs.
//!
//! The jobs are registered before the workers start (at 70,000 jobs that
//! takes about 4 s), and the default misfire policy runs every missed fire
//! within its grace. So a settled fleet first works off a backlog of
//! seconds of fires, then runs on time: at 70,000 every-second jobs the
//! first 6-9 s of a window that started right after settling were late by
//! up to 2.8 s, and the runs of the first seconds after settling up to
//! 5 s, all of it fires due before the workers ran (the fleet works the
//! backlog off at about 82,000 runs/s against 70,000 due per second). That is a
//! cold start after an outage, not the sustained rate `live` and `peer`
//! measure, so the warm-up starts only once the fleet has caught up
//! ([`wait_caught_up`]); how long that took is reported.

use std::time::Duration;

use tokio::time::Instant;

use super::audit::{Fire, ReadCursor, Recorder};

/// Lateness from which a run counts as catching up rather than on time:
/// the sustained-rate criterion of `peer` (p99 under 1 s).
const CATCHING_UP_MS: i64 = 1_000;

/// Waits until the fleet has run one second (two looks half a second
/// apart) without starting a fire [`CATCHING_UP_MS`] or more late. Returns
/// the milliseconds waited, or `Err` with them when `limit` passed first
/// (the window is measured anyway, and shows the lateness).
pub async fn wait_caught_up(recorder: &Recorder, limit: Duration) -> Result<u64, u64> {
    let catching_up = |fire: &Fire| fire.started_ms - fire.scheduled_ms >= CATCHING_UP_MS;
    wait_for_quiet(recorder, Duration::from_millis(500), 2, limit, catching_up).await
}

/// Waits until no run of a fire scheduled before `to_ms` (the window's
/// end) has started for 3 s, at most 90 s: at overload the window's last
/// instants run late. Runs of later instants do not count, so a fleet on
/// time is done about 3 s after the window.
pub async fn wait_for_the_tail(recorder: &Recorder, to_ms: i64) {
    let of_the_window = |fire: &Fire| fire.scheduled_ms < to_ms;
    let limit = Duration::from_secs(90);
    // Either way the window is measured next: a tail still running at the
    // limit shows in the audit.
    let _ = wait_for_quiet(recorder, Duration::from_secs(1), 3, limit, of_the_window).await;
}

/// Looks at the runs recorded since the last look every `look_every`,
/// until `looks` looks in a row found none that `counts`. Returns the
/// milliseconds waited, or `Err` with them once `limit` has passed.
async fn wait_for_quiet(
    recorder: &Recorder,
    look_every: Duration,
    looks: u32,
    limit: Duration,
    counts: impl Fn(&Fire) -> bool,
) -> Result<u64, u64> {
    let started = Instant::now();
    let mut cursor = ReadCursor::default();
    let mut quiet_looks = 0;
    loop {
        tokio::time::sleep(look_every).await;
        let mut seen = false;
        recorder.read_new(&mut cursor, |fire| seen |= counts(fire));
        quiet_looks = if seen { 0 } else { quiet_looks + 1 };
        let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if quiet_looks >= looks {
            return Ok(waited);
        }
        if started.elapsed() >= limit {
            return Err(waited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_fleet_on_time_is_caught_up_after_two_looks() {
        let recorder = Recorder::default();
        recorder.record(0, "job-1", 1_000, 1_010);
        assert_eq!(
            wait_caught_up(&recorder, Duration::from_secs(60)).await,
            Ok(1_000)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_run_starts_the_second_of_runs_on_time_again() {
        let recorder = Recorder::default();
        let late = recorder.clone();
        let feeder = tokio::spawn(async move {
            // Late runs at 0, 0.3, 0.6 and 0.9 s, seen by the looks at 0.5
            // and 1 s: the looks at 1.5 and 2 s find none.
            for _ in 0..4 {
                late.record(0, "job-1", 1_000, 2_500);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        assert_eq!(
            wait_caught_up(&recorder, Duration::from_secs(60)).await,
            Ok(2_000)
        );
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_that_never_catches_up_is_reported_at_the_limit() {
        let recorder = Recorder::default();
        let late = recorder.clone();
        let feeder = tokio::spawn(async move {
            for _ in 0..40 {
                late.record(0, "job-1", 1_000, 3_000);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        assert_eq!(
            wait_caught_up(&recorder, Duration::from_secs(3)).await,
            Err(3_000)
        );
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn runs_after_the_window_do_not_hold_up_its_tail() {
        let recorder = Recorder::default();
        let later = recorder.clone();
        let feeder = tokio::spawn(async move {
            for i in 0..100 {
                later.record(0, "job-1", 10_000 + i, 10_000 + i);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = Instant::now();
        wait_for_the_tail(&recorder, 10_000).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_run_of_the_window_holds_up_its_tail() {
        let recorder = Recorder::default();
        let late = recorder.clone();
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            late.record(0, "job-1", 9_000, 12_500);
        });
        let started = Instant::now();
        wait_for_the_tail(&recorder, 10_000).await;
        // Quiet at 1 and 2 s, the run seen at 3 s, quiet at 4, 5 and 6 s.
        assert_eq!(started.elapsed(), Duration::from_secs(6));
        feeder.await.unwrap();
    }
}
