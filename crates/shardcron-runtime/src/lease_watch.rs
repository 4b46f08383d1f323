//! The lease watchdog: cancels a shard's runs the moment its local validity ends.
//!
//! Validity is `sent + lease_ttl - drift_margin`, measured on the monotonic clock
//! from *before* the acquire or renew request left, so it ends before Redis
//! could expire the lease. The watchdog is its own task so a node blocked on a
//! slow or partitioned Redis still cancels its handlers on time.

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A held shard's validity deadline and cancellation signal.
pub struct LeaseWatch {
    deadline: watch::Sender<Instant>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseWatch {
    /// Starts watching a lease valid until `valid_until`.
    pub fn start(valid_until: Instant) -> Self {
        let (deadline, mut rx) = watch::channel(valid_until);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            loop {
                let until = *rx.borrow_and_update();
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(until) => {
                        if *rx.borrow() <= Instant::now() {
                            token.cancel();
                            return;
                        }
                    }
                    changed = rx.changed() => if changed.is_err() { return },
                    () = token.cancelled() => return,
                }
            }
        });
        Self {
            deadline,
            cancel,
            task,
        }
    }

    /// Extends validity after a successful renewal.
    pub fn extend(&self, valid_until: Instant) {
        self.deadline.send_replace(valid_until);
    }

    /// Whether the lease is still valid locally.
    pub fn is_valid(&self) -> bool {
        !self.cancel.is_cancelled() && *self.deadline.borrow() > Instant::now()
    }

    /// Validity deadline.
    pub fn valid_until(&self) -> Instant {
        *self.deadline.borrow()
    }

    /// Token that trips when the lease is lost.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Declares the lease lost: running handlers see cancellation.
    pub fn lose(self) {
        self.cancel.cancel();
        self.task.abort();
    }

    /// Stops watching without cancelling (graceful handoff: claimed runs finish).
    pub fn hand_off(self) {
        self.task.abort();
    }
}
