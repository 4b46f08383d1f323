//! The lease watchdog: cancels a shard's runs the moment its local validity ends.
//!
//! Validity is `sent + lease_ttl - drift_margin`, measured on the monotonic clock
//! from *before* the acquire or renew request left, so it ends before the store
//! could expire the lease. The watchdog is its own task so a node blocked on a
//! slow or partitioned store still cancels its handlers on time.
//!
//! Two signals come out of it. `lost` trips when the lease is lost (validity
//! ended, renewal refused). `runs`, a child of `lost`, is what handlers of the
//! shard see: it also trips when a handoff gives up waiting for them, while
//! the node still holds (and renews) the lease until they have ended. Every
//! claimed fire carries a [`LeaseGuard`] and is started only while it is live,
//! so no fire starts after its lease has ended.

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A held shard's validity deadline and cancellation signals.
pub struct LeaseWatch {
    deadline: watch::Sender<Instant>,
    lost: CancellationToken,
    runs: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// What a claimed fire keeps of its shard's lease: whether the lease still
/// stands (for the start check) and the signal its handler sees.
#[derive(Clone, Debug)]
pub struct LeaseGuard {
    deadline: watch::Receiver<Instant>,
    runs: CancellationToken,
}

impl LeaseGuard {
    /// A guard that is never live (for fires recorded without a lease).
    pub fn ended() -> Self {
        let runs = CancellationToken::new();
        runs.cancel();
        Self {
            deadline: watch::channel(Instant::now()).1,
            runs,
        }
    }

    /// True while the lease is held, locally valid, and the shard's runs
    /// have not been told to stop.
    pub fn is_live(&self) -> bool {
        !self.runs.is_cancelled() && *self.deadline.borrow() > Instant::now()
    }

    /// The signal the handler sees: trips when the lease is lost or the
    /// shard's runs are cancelled by a handoff. Borrowed: a clone or a drop
    /// of a token takes the lock that every fire of the shard shares, so a
    /// run that only waits on it borrows it.
    pub fn runs_token(&self) -> &CancellationToken {
        &self.runs
    }
}

impl LeaseWatch {
    /// Starts watching a lease valid until `valid_until`.
    pub fn start(valid_until: Instant) -> Self {
        let (deadline, mut rx) = watch::channel(valid_until);
        let lost = CancellationToken::new();
        let runs = lost.child_token();
        let token = lost.clone();
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
            lost,
            runs,
            task,
        }
    }

    /// Extends validity after a successful renewal.
    pub fn extend(&self, valid_until: Instant) {
        self.deadline.send_replace(valid_until);
    }

    /// Whether the lease is still valid locally.
    pub fn is_valid(&self) -> bool {
        !self.lost.is_cancelled() && *self.deadline.borrow() > Instant::now()
    }

    /// Validity deadline.
    pub fn valid_until(&self) -> Instant {
        *self.deadline.borrow()
    }

    /// The guard handed to every fire claimed under this lease.
    pub fn guard(&self) -> LeaseGuard {
        LeaseGuard {
            deadline: self.deadline.subscribe(),
            runs: self.runs.clone(),
        }
    }

    /// Tells the shard's running handlers to stop, and keeps its waiting
    /// fires from starting, while the lease itself is kept.
    pub fn cancel_runs(&self) {
        self.runs.cancel();
    }

    /// Declares the lease lost: running handlers see cancellation, and
    /// claimed fires that have not started never will.
    pub fn lose(self) {
        self.lost.cancel();
        self.task.abort();
    }

    /// Stops watching after a release. The release happens only once the
    /// shard has no run left, so there is nothing to cancel; the guard of any
    /// straggler ends with the deadline, which is no longer extended.
    pub fn released(self) {
        self.runs.cancel();
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_guard_ends_with_validity_and_with_cancelled_runs() {
        let watch = LeaseWatch::start(Instant::now() + Duration::from_secs(1));
        let guard = watch.guard();
        assert!(guard.is_live());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!guard.is_live(), "validity ended");
        let watch = LeaseWatch::start(Instant::now() + Duration::from_secs(1));
        let guard = watch.guard();
        watch.cancel_runs();
        assert!(!guard.is_live());
        assert!(watch.is_valid(), "cancelling runs keeps the lease");
        assert!(guard.runs_token().is_cancelled());
    }
}
