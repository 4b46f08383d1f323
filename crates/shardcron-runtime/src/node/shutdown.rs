//! Leaving the fleet gracefully.
//!
//! Order: stop taking new fires, deregister (peers recompute the ring at
//! once), resolve claims whose reply was lost while the leases are still
//! held, then release each shard as soon as none of its fires is running or
//! waiting, renewing the others meanwhile. At `drain_timeout` every run is
//! cancelled (handlers see the signal; fires still waiting end as cancelled
//! without starting, each recorded) and the remaining shards are released as
//! their runs end. A lease is therefore never released while a run of its
//! shard goes on, so a successor can never start a job next to the previous
//! run of the same job. Finally the run history is flushed.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::pending::record_unresolved;
use super::{Handoff, Node};
use crate::status::WorkerReport;
use crate::timetable::Timetable;

/// How long runs may take to end after they were cancelled at the drain
/// deadline before their tasks are dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

impl Node {
    pub(super) async fn shutdown(mut self) -> WorkerReport {
        info!(node = %self.info.id, "shutting down: stop firing, deregister, drain, release");
        self.status.send_modify(|s| s.stopping = true);
        self.timetable = Timetable::new();
        self.reload.clear();
        self.pending.forget_all_certain();
        let t = Instant::now();
        let (coord, id) = (self.coord.clone(), self.info.id.clone());
        // Fires claimed ahead still start at their instant while a slow
        // store holds this round trip up.
        let left = self.store(async move { coord.deregister(&id).await }).await;
        self.coord_result("deregister", t, left);
        let now = Instant::now();
        self.handoffs = true;
        for held in self.held.values_mut() {
            held.handoff.get_or_insert(Handoff {
                since: now,
                gave_up: false,
            });
        }
        let drain_until = now + self.settings.drain_timeout;
        let abort_at = drain_until + CANCEL_GRACE;
        let mut cancelled = false;
        let mut renew_at = now + self.settings.heartbeat;
        loop {
            self.reap_finished();
            self.drop_invalid_leases();
            // A lost claim of a shard no longer held goes back to the
            // shard's holder; if the store does not answer, it is given up.
            self.hand_back_step().await;
            self.record_unresolvable_at_shutdown();
            self.release_idle_handoffs().await;
            if self.held.is_empty() && self.executor.is_idle() {
                break;
            }
            // Every pending claim left is of a held shard: resolve it now, or
            // when a lost reply's retry is due.
            let retry_at = if self.pending.is_empty() {
                None
            } else {
                Some(self.retry_at.unwrap_or_else(Instant::now))
            };
            let ahead_at = self.executor.next_ahead_at();
            tokio::select! {
                biased;
                () = super::sleep_until_opt(ahead_at) => {
                    self.executor.release_due();
                }
                _ = self.executor.next_finished() => {}
                // A shard waiting for its closes is released once they land.
                () = self.unwritten.written_changed() => {}
                () = super::sleep_until_opt(retry_at) => self.fire_step().await,
                () = tokio::time::sleep_until(renew_at) => {
                    self.renew_held().await;
                    renew_at = Instant::now() + self.settings.heartbeat;
                }
                () = tokio::time::sleep_until(drain_until), if !cancelled => {
                    cancelled = true;
                    let left = self.executor.in_flight() + self.executor.waiting();
                    warn!(left, "drain deadline passed; cancelling the remaining runs");
                    self.report.cancelled_at_shutdown = left;
                    self.executor.stop_all();
                    for held in self.held.values_mut() {
                        held.watch.cancel_runs();
                        if let Some(h) = held.handoff.as_mut() {
                            h.gave_up = true;
                        }
                    }
                }
                () = tokio::time::sleep_until(abort_at) => {
                    let dropped = self.executor.abort_all();
                    warn!(dropped, "runs ignored cancellation; dropped them");
                    break;
                }
            }
        }
        let rest: Vec<u32> = self.held.keys().copied().collect();
        self.release(&rest).await;
        self.hand_back_step().await;
        self.record_unresolvable_at_shutdown();
        self.records = None;
        drop(self.executor);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.recorder).await;
        self.status.send_modify(|s| {
            s.owned_shards = 0;
            s.registered = false;
        });
        info!(report = ?self.report, "worker stopped");
        self.report
    }

    /// Claims this leaving node can no longer resolve (their shard is not
    /// held any more) are lost with it: say so, one record each.
    fn record_unresolvable_at_shutdown(&mut self) {
        for (key, p) in self.pending.take_all() {
            if self.held.contains_key(&key.0) {
                self.pending.keep(key, p);
            } else if p.is_uncertain() {
                record_unresolved(
                    &self.executor,
                    &key,
                    &p,
                    "shutdown",
                    "the node stopped before it could learn whether its claim landed",
                );
            }
        }
    }
}
