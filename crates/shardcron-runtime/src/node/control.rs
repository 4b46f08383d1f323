//! The heartbeat step: register (re-asserting the ring settings), sample the
//! store's clock, take the placement step (`placement.rs`), then hand off,
//! renew and acquire shard leases.
//!
//! Handoff rule: a shard the ring moved elsewhere is released only at a moment
//! when none of its fires is running or waiting on this node, no claim of it
//! is unresolved, and the open-entry changes of its tracked fires are
//! written (a successor must not find a finished fire open). Until then this node keeps the lease (renewing it) and
//! keeps serving the shard, so its fires are not delayed; the new owner, who
//! cannot acquire the lease before the release, can therefore never start a
//! job while the job's previous run is still going here. A shard that finds
//! no such moment within `handoff_timeout` stops being claimed, its handlers
//! are cancelled (they see the signal) and it is released once they end.

use metrics::counter;
use shardcron_coord::{CoordError, LeaseGrant};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::{Handoff, Held, Node};
use crate::lease_watch::LeaseWatch;
use crate::metrics as m;

/// Shards loaded per round trip, so a large acquisition never turns into one
/// reply big enough to time out.
const LOAD_CHUNK: usize = 64;

impl Node {
    /// Heartbeat, membership, ring, leases.
    pub(super) async fn control_step(&mut self) {
        let sent = Instant::now();
        let (coord, info, ttl) = (
            self.coord.clone(),
            self.info.clone(),
            self.settings.member_ttl,
        );
        let beat = self
            .store(async { coord.heartbeat(&info, ttl).await })
            .await;
        if let Err(e @ CoordError::ConfigMismatch { .. }) = beat {
            error!(error = %e, "the namespace's ring settings changed under this node; stopping");
            self.fatal = Some(e);
            return;
        }
        let Some(server_ms) = self.coord_result("heartbeat", sent, beat) else {
            if !self.held.is_empty() {
                // The leases cannot be renewed either: count it, so an outage
                // shows up as renewal failures before validity runs out.
                counter!(m::LEASE_RENEWAL_FAILURES_TOTAL).increment(1);
            }
            self.registered = false;
            self.drop_invalid_leases();
            return;
        };
        self.clock.observe(sent, Instant::now(), server_ms);
        self.clock_suspect = false;
        if !self.registered {
            info!(node = %self.info.id, wall_clock_off_ms = self.clock.offset_ms(), "registered");
            self.registered = true;
        }
        self.placement_step().await;
        self.drop_invalid_leases();
        self.update_handoffs();
        self.renew_held().await;
        self.release_idle_handoffs().await;
        self.acquire_missing().await;
        self.hand_back_step().await;
        self.recovery_step().await;
    }

    /// Drops every lease whose local validity has ended.
    pub(super) fn drop_invalid_leases(&mut self) {
        let lapsed: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| !h.watch.is_valid())
            .map(|(s, _)| *s)
            .collect();
        if !lapsed.is_empty() {
            warn!(
                shards = lapsed.len(),
                "lease validity ended locally; stopped firing those shards"
            );
        }
        for shard in lapsed {
            self.lose_shard(shard);
        }
    }

    /// The lease is gone: its handlers are cancelled and its claimed fires
    /// that have not started never will (each is recorded).
    pub(super) fn lose_shard(&mut self, shard: u32) {
        if let Some(held) = self.held.remove(&shard) {
            held.watch.lose();
            self.executor.start_ended_ahead(Some(shard));
            self.timetable.remove_shard(shard);
            self.reload.remove(&shard);
            self.pending.forget_certain(shard);
            self.forget_unreadable(shard);
            self.report.leases_lost += 1;
            counter!(m::LEASE_LOSSES_TOTAL).increment(1);
            debug!(shard, token = held.token, "lease lost");
            self.on_let_go(shard);
        }
    }

    /// Starts a handoff for every held shard the ring moved elsewhere, calls
    /// one off if the ring gave the shard back, and gives up waiting for
    /// those past `handoff_timeout`.
    fn update_handoffs(&mut self) {
        let now = Instant::now();
        let timeout = self.settings.handoff_timeout;
        let mut gave_up = Vec::new();
        let leader_shard = self.leader_shard;
        for (&shard, held) in &mut self.held {
            let desired = self.desired.contains(&shard) || shard == leader_shard;
            match &mut held.handoff {
                None if !desired => {
                    held.handoff = Some(Handoff {
                        since: now,
                        gave_up: false,
                    });
                }
                Some(h) if desired && !h.gave_up => held.handoff = None,
                Some(h) if !h.gave_up && now.duration_since(h.since) >= timeout => {
                    h.gave_up = true;
                    held.watch.cancel_runs();
                    gave_up.push(shard);
                }
                _ => {}
            }
        }
        self.handoffs = self.held.values().any(|h| h.handoff.is_some());
        if !gave_up.is_empty() {
            self.executor.start_ended_ahead(None);
        }
        for shard in gave_up {
            warn!(
                shard,
                ?timeout,
                "handoff waited too long for the shard's runs; cancelled them"
            );
            self.timetable.remove_shard(shard);
            self.reload.remove(&shard);
        }
    }

    /// Whether a shard in handoff can be released now.
    fn ready_to_release(&self, shard: u32, held: &Held) -> bool {
        let Some(handoff) = &held.handoff else {
            return false;
        };
        !self.executor.shard_busy(shard)
            && !self.unwritten.pending(shard)
            && (handoff.gave_up || !self.pending.has_uncertain(shard))
    }

    /// Releases every shard in handoff whose runs have all ended.
    pub(super) async fn release_idle_handoffs(&mut self) {
        if !self.handoffs {
            return;
        }
        let ready: Vec<u32> = self
            .held
            .iter()
            .filter(|(s, h)| self.ready_to_release(**s, h))
            .map(|(s, _)| *s)
            .collect();
        if !ready.is_empty() {
            self.release(&ready).await;
        }
    }

    /// Releases `shards` (held, with no run left) in one round trip.
    pub(super) async fn release(&mut self, shards: &[u32]) {
        let mut leases = Vec::with_capacity(shards.len());
        for &shard in shards {
            if let Some(held) = self.held.remove(&shard) {
                self.timetable.remove_shard(shard);
                self.reload.remove(&shard);
                self.pending.forget_certain(shard);
                self.forget_unreadable(shard);
                leases.push((shard, held.token));
                held.watch.released();
                self.on_let_go(shard);
            }
        }
        if leases.is_empty() {
            return;
        }
        info!(shards = leases.len(), "handing off shards");
        let t = Instant::now();
        let (coord, holder) = (self.coord.clone(), self.holder.clone());
        let released = self
            .store(async { coord.release_leases(&leases, &holder).await })
            .await;
        self.coord_result("release leases", t, released);
    }

    /// Renews, in one round trip, every held lease whose local validity
    /// would fall below half of a fresh one's before the next heartbeat.
    ///
    /// Renewing only those, rather than all leases every heartbeat, halves
    /// the store's renewal work with the default settings (a lease is
    /// renewed every second heartbeat: two of Redis's ~5.5 commands per fire
    /// at 1,000 jobs were renewals). A held lease still always has at least
    /// half a validity left at a heartbeat, so a store outage shorter than
    /// that stops no firing; see "Lease renewal" in docs/ARCHITECTURE.md.
    pub(super) async fn renew_held(&mut self) {
        let now = Instant::now();
        let floor = self.validity() / 2 + self.settings.heartbeat;
        let leases: Vec<(u32, u64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.watch.valid_until().saturating_duration_since(now) < floor)
            .map(|(s, h)| (*s, h.token))
            .collect();
        if leases.is_empty() {
            return;
        }
        let sent = Instant::now();
        let (coord, holder, ttl) = (
            self.coord.clone(),
            self.holder.clone(),
            self.settings.lease_ttl,
        );
        let renewed = self
            .store(async { coord.renew_leases(&leases, &holder, ttl).await })
            .await;
        let Some(renewed) = self.coord_result("renew leases", sent, renewed) else {
            counter!(m::LEASE_RENEWAL_FAILURES_TOTAL).increment(1);
            return;
        };
        let valid_until = sent + self.validity();
        for ((shard, _), ok) in leases.into_iter().zip(renewed) {
            if ok {
                if let Some(h) = self.held.get(&shard) {
                    h.watch.extend(valid_until);
                }
            } else {
                warn!(shard, "lease renewal refused: another node holds the shard");
                self.lose_shard(shard);
            }
        }
    }

    fn validity(&self) -> std::time::Duration {
        self.settings
            .lease_ttl
            .saturating_sub(self.settings.drift_margin)
    }

    /// Acquires the desired shards not held yet, and loads them in chunks.
    async fn acquire_missing(&mut self) {
        let missing = self.shards_to_acquire();
        if missing.is_empty() {
            return;
        }
        let sent = Instant::now();
        let (coord, holder, ttl) = (
            self.coord.clone(),
            self.holder.clone(),
            self.settings.lease_ttl,
        );
        let grants = self
            .store(async { coord.acquire_leases(&missing, &holder, ttl).await })
            .await;
        let Some(grants) = self.coord_result("acquire leases", sent, grants) else {
            return;
        };
        let granted: Vec<(u32, u64)> = missing
            .iter()
            .zip(grants)
            .filter_map(|(&shard, grant)| match grant {
                LeaseGrant::Granted { token } => Some((shard, token)),
                LeaseGrant::HeldBy { .. } => None,
            })
            .collect();
        if granted.is_empty() {
            return;
        }
        let valid_until = sent + self.validity();
        for chunk in granted.chunks(LOAD_CHUNK) {
            self.load_granted(chunk, valid_until).await;
        }
        if granted.iter().any(|&(s, _)| s != self.leader_shard) {
            info!(
                owned = self.held.len(),
                desired = self.desired.len(),
                "acquired shards"
            );
        }
        if !self.pending.is_empty() {
            self.retry_at = Some(Instant::now());
        }
    }

    /// Loads freshly granted shards; a chunk that cannot be loaded is
    /// released again (the node cannot serve it), the others are kept.
    async fn load_granted(&mut self, granted: &[(u32, u64)], valid_until: Instant) {
        let shards: Vec<u32> = granted.iter().map(|(s, _)| *s).collect();
        let t = Instant::now();
        let (coord, holder) = (self.coord.clone(), self.holder.clone());
        let loaded = self.store(async { coord.load_shards(&shards).await }).await;
        let Some(loaded) = self.coord_result("load shards", t, loaded) else {
            let t = Instant::now();
            let released = self
                .store(async { coord.release_leases(granted, &holder).await })
                .await;
            self.coord_result("release leases", t, released);
            return;
        };
        for (&(shard, token), jobs) in granted.iter().zip(loaded) {
            self.held.insert(
                shard,
                Held {
                    token,
                    version: jobs.version,
                    watch: LeaseWatch::start(valid_until),
                    handoff: None,
                },
            );
            self.install_jobs(jobs, false);
            self.recovery.scan_soon(shard);
            self.on_granted(shard, token);
            if let Some(since) = self.desired_since.get(&shard) {
                metrics::histogram!(m::SHARD_HANDOFF_SECONDS).record(since.elapsed().as_secs_f64());
            }
            self.report.leases_acquired += 1;
            counter!(m::LEASE_ACQUISITIONS_TOTAL).increment(1);
            debug!(shard, token, "lease acquired");
        }
        self.read_triggers(&shards).await;
    }
}
