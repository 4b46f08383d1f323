//! Clocks.
//!
//! Fire times are wall-clock instants, so the runtime needs "now", and every
//! node of a fleet must agree on it. The store's clock is the reference: each
//! heartbeat samples it, and between samples the node advances the estimate
//! with its own monotonic clock ([`ServerClock`]). The node's wall clock
//! ([`Clock`], skewable in tests) is used only until the first sample, so a
//! node whose wall clock is wrong or stepped still fires on time. Lease
//! validity uses only the monotonic clock. The store refuses a claim for a
//! fire further ahead of its own clock than the claim-ahead window allows,
//! and a claimed fire starts only once the earliest server time the samples
//! allow ([`ServerClock::earliest_now_ms`]) has reached its instant, so even
//! a wrong estimate can never run a fire early.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// The system clock shifted by an adjustable offset (for skew tests).
#[derive(Clone, Debug, Default)]
pub struct SkewedClock {
    offset_ms: Arc<AtomicI64>,
}

impl SkewedClock {
    /// A clock `offset_ms` ahead of the system clock (negative: behind).
    pub fn new(offset_ms: i64) -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(offset_ms)),
        }
    }

    /// Changes the offset.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }
}

/// Most recent samples the offset filter keeps (one per heartbeat).
const MAX_SAMPLES: usize = 8;

/// One reading of the server clock: the offset `server - monotonic` lies in
/// `[lo, hi]`, because the server read its clock after the request left and
/// before the reply came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OffsetSample {
    lo: i64,
    hi: i64,
}

/// The offset filter: the intersection of the newest samples that agree.
///
/// A sample taken across a pause (a long round trip) is wide, but it still
/// contains the true offset, so intersecting it with narrow samples cannot
/// move the estimate outside what the narrow ones allow: unlike a midpoint
/// of the latest sample, one slow round trip cannot skew the clock. Samples
/// that do not intersect mean the server's clock stepped; the filter then
/// starts again from the newest sample. The estimate is the midpoint of the
/// intersection; it only moves within the interval every kept sample allows,
/// so its rate of change is bounded by the samples themselves.
#[derive(Clone, Debug, Default)]
struct OffsetFilter {
    samples: std::collections::VecDeque<OffsetSample>,
    estimate: Option<i64>,
    /// The lowest offset every kept sample allows.
    lowest: Option<i64>,
}

impl OffsetFilter {
    fn observe(&mut self, sample: OffsetSample) {
        self.samples.push_front(sample);
        self.samples.truncate(MAX_SAMPLES);
        let (mut lo, mut hi) = (sample.lo, sample.hi);
        let mut keep = 1;
        for s in self.samples.iter().skip(1) {
            let (nlo, nhi) = (lo.max(s.lo), hi.min(s.hi));
            if nlo > nhi {
                break;
            }
            (lo, hi) = (nlo, nhi);
            keep += 1;
        }
        self.samples.truncate(keep);
        self.estimate = Some(lo + (hi - lo) / 2);
        self.lowest = Some(lo);
    }
}

/// The server's clock as this node sees it.
///
/// Every round trip that returns the server time gives an interval for the
/// offset between the server clock and this process's *monotonic* clock.
/// Between samples, server time is estimated from the monotonic clock, so
/// a step of the node's wall clock (NTP step, an operator, a VM resume that
/// rewrites the wall clock) cannot move the node's idea of "now": the wall
/// clock is used only before the first sample. See `OffsetFilter` for how
/// samples are combined.
#[derive(Clone)]
pub struct ServerClock {
    local: Arc<dyn Clock>,
    base: tokio::time::Instant,
    filter: Arc<std::sync::Mutex<OffsetFilter>>,
    offset_ms: Arc<AtomicI64>,
    lowest_offset_ms: Arc<AtomicI64>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerClock {
    /// Wraps a local wall clock, used until the first server sample.
    pub fn new(local: Arc<dyn Clock>) -> Self {
        Self {
            local,
            base: tokio::time::Instant::now(),
            filter: Arc::default(),
            offset_ms: Arc::new(AtomicI64::new(0)),
            lowest_offset_ms: Arc::new(AtomicI64::new(0)),
            synced: Arc::default(),
        }
    }

    fn mono_ms(&self, at: tokio::time::Instant) -> i64 {
        at.saturating_duration_since(self.base).as_millis() as i64
    }

    /// Local wall time, uncorrected.
    pub fn local_ms(&self) -> i64 {
        self.local.now_ms()
    }

    /// Records a server reading taken by a request sent at `sent` and
    /// answered at `received` (monotonic instants).
    pub fn observe(
        &self,
        sent: tokio::time::Instant,
        received: tokio::time::Instant,
        server_ms: i64,
    ) {
        // ±1 ms: the server and the monotonic clock are read in whole ms.
        let sample = OffsetSample {
            lo: server_ms - self.mono_ms(received) - 1,
            hi: server_ms - self.mono_ms(sent) + 1,
        };
        let mut filter = self.filter.lock().unwrap_or_else(|p| p.into_inner());
        filter.observe(sample);
        if let (Some(estimate), Some(lowest)) = (filter.estimate, filter.lowest) {
            self.offset_ms.store(estimate, Ordering::Relaxed);
            self.lowest_offset_ms.store(lowest, Ordering::Relaxed);
            self.synced.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a server sample has been taken yet.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Current offset between server time and the local wall clock, ms (for
    /// logs and status: how far this node's wall clock is off).
    pub fn offset_ms(&self) -> i64 {
        self.now_ms() - self.local.now_ms()
    }

    /// The earliest the server's clock can read now, Unix ms: the low end
    /// of what the kept samples allow (the estimate before the first
    /// sample). A fire claimed ahead starts only once this reaches its
    /// instant, so a wide sample (a slow round trip) delays it a little
    /// instead of starting it early.
    pub fn earliest_now_ms(&self) -> i64 {
        if self.is_synced() {
            self.mono_ms(tokio::time::Instant::now())
                + self.lowest_offset_ms.load(Ordering::Relaxed)
        } else {
            self.local.now_ms()
        }
    }

    /// Server-corrected now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.ms_at(tokio::time::Instant::now())
    }

    /// Server-corrected time at the monotonic instant `at` (read just
    /// before), Unix ms, so one clock read gives both a run's start and
    /// the start of its duration. Before the first sample: the local wall
    /// clock now.
    pub fn ms_at(&self, at: tokio::time::Instant) -> i64 {
        if self.is_synced() {
            self.mono_ms(at) + self.offset_ms.load(Ordering::Relaxed)
        } else {
            self.local.now_ms()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lo: i64, hi: i64) -> OffsetSample {
        OffsetSample { lo, hi }
    }

    #[test]
    fn a_wide_sample_from_a_pause_does_not_skew_the_estimate() {
        let mut f = OffsetFilter::default();
        f.observe(sample(1000, 1002));
        assert_eq!(f.estimate, Some(1001));
        // A round trip that spanned a 4 s pause: the old midpoint rule would
        // have moved the offset by about 2 s.
        f.observe(sample(-3000, 1002));
        assert_eq!(f.estimate, Some(1001));
        f.observe(sample(1001, 1003));
        assert_eq!(f.estimate, Some(1001));
    }

    #[test]
    fn samples_that_disagree_mean_a_step_and_restart_the_filter() {
        let mut f = OffsetFilter::default();
        f.observe(sample(1000, 1002));
        f.observe(sample(5000, 5002));
        assert_eq!(f.estimate, Some(5001));
        assert_eq!(f.samples.len(), 1);
    }

    #[test]
    fn only_the_newest_samples_are_kept() {
        let mut f = OffsetFilter::default();
        for _ in 0..20 {
            f.observe(sample(0, 10));
        }
        assert_eq!(f.samples.len(), MAX_SAMPLES);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_step_does_not_move_server_time() {
        let wall = SkewedClock::new(0);
        let clock = ServerClock::new(Arc::new(wall.clone()));
        let sent = tokio::time::Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(2)).await;
        let server = SystemClock.now_ms();
        clock.observe(sent, tokio::time::Instant::now(), server);
        let before = clock.now_ms();
        wall.set_offset_ms(3_600_000);
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        let after = clock.now_ms();
        assert!((after - before - 500).abs() <= 2, "{before} -> {after}");
    }
}
