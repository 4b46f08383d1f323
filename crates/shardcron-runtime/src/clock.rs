//! Wall clocks.
//!
//! Fire times are wall-clock instants, so the runtime needs "now". It reads the
//! local clock through [`Clock`] (so tests can skew it) and corrects it by the
//! offset to the Redis server's clock measured on every heartbeat: nodes with
//! skewed clocks still agree on when a fire is due. Lease validity never uses
//! wall time; it uses the monotonic clock.

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

/// Local clock corrected to the coordination server's clock.
#[derive(Clone)]
pub struct ServerClock {
    local: Arc<dyn Clock>,
    offset_ms: Arc<AtomicI64>,
}

impl ServerClock {
    /// Wraps a local clock with a zero offset.
    pub fn new(local: Arc<dyn Clock>) -> Self {
        Self {
            local,
            offset_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Local time, uncorrected.
    pub fn local_ms(&self) -> i64 {
        self.local.now_ms()
    }

    /// Records a server reading taken between local times `sent_ms` and `received_ms`.
    pub fn observe(&self, sent_ms: i64, received_ms: i64, server_ms: i64) {
        let midpoint = sent_ms + (received_ms - sent_ms) / 2;
        self.offset_ms
            .store(server_ms - midpoint, Ordering::Relaxed);
    }

    /// Current offset server − local, ms.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Server-corrected now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.local.now_ms() + self.offset_ms()
    }
}
