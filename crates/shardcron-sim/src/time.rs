//! Virtual time.
//!
//! Everything in a run is driven by tokio's paused clock, so the simulation
//! is deterministic and runs as fast as the CPU allows. Wall time is derived
//! from it: a fixed epoch plus the virtual time elapsed since the start. The
//! store reads the true virtual wall time; each node reads it through its own
//! adjustable offset, which is how clock steps and skew are injected.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use shardcron_runtime::Clock;
use tokio::time::Instant;

/// Wall time at the start of every run, Unix ms (a fixed instant so that runs
/// replay exactly and fire times are the same across seeds).
pub const EPOCH_MS: i64 = 1_800_000_000_000;

/// The true virtual wall clock of one run.
#[derive(Clone, Copy, Debug)]
pub struct SimTime {
    start: Instant,
}

impl SimTime {
    /// A clock whose zero is now (call inside the paused runtime).
    pub fn start_now() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// True wall time, Unix ms.
    pub fn now_ms(&self) -> i64 {
        EPOCH_MS + self.elapsed_ms()
    }

    /// Virtual ms since the start of the run.
    pub fn elapsed_ms(&self) -> i64 {
        Instant::now()
            .saturating_duration_since(self.start)
            .as_millis() as i64
    }

    /// The tokio instant at which true wall time reaches `wall_ms`.
    pub fn instant_at(&self, wall_ms: i64) -> Instant {
        let after = (wall_ms - EPOCH_MS).max(0) as u64;
        self.start + std::time::Duration::from_millis(after)
    }
}

/// A node's wall clock: true virtual time plus an offset the scenario moves.
#[derive(Clone, Debug)]
pub struct NodeClock {
    time: SimTime,
    offset_ms: Arc<AtomicI64>,
}

impl NodeClock {
    /// A clock reading `time` shifted by the shared `offset_ms`.
    pub fn new(time: SimTime, offset_ms: Arc<AtomicI64>) -> Self {
        Self { time, offset_ms }
    }
}

impl Clock for NodeClock {
    fn now_ms(&self) -> i64 {
        self.time.now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }
}

/// Formats a wall-clock instant as seconds since the epoch of the run.
pub fn rel(wall_ms: i64) -> String {
    let d = wall_ms - EPOCH_MS;
    let sign = if d < 0 { "-" } else { "" };
    let d = d.abs();
    format!("{sign}{}.{:03}s", d / 1000, d % 1000)
}
