//! Worker settings and their defaults.
//!
//! The timing settings are tied together by the protocol: a node heartbeats
//! several times per member TTL, renews leases every heartbeat, and treats a
//! lease as valid locally only until `acquired + lease_ttl - drift_margin`, so it
//! stops firing before Redis could hand the shard to someone else. `validate`
//! rejects combinations that would break those inequalities.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Tunables of a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Period of heartbeats, lease renewals and ownership checks.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long a registration lives without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub member_ttl: Duration,
    /// Time to live of a shard lease in Redis.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Safety margin subtracted from the lease TTL for local validity (clock
    /// drift between this node and Redis, plus scheduling delays).
    #[serde(with = "humantime_serde")]
    pub drift_margin: Duration,
    /// Most runs in flight on this node at once.
    pub concurrency: usize,
    /// How long shutdown waits for in-flight runs before cancelling them.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How long a shard the ring moved elsewhere keeps being served while
    /// its runs go on. The lease is released at the first moment none of the
    /// shard's fires is running or waiting, so the new owner can never start
    /// a job while its previous run is still going. If no such moment comes
    /// within this time, the node stops claiming for the shard, cancels its
    /// runs (handlers see the signal) and releases the lease once they end.
    #[serde(with = "humantime_serde")]
    pub handoff_timeout: Duration,
    /// Shortest time between two placements by new shard weights. Job
    /// writes change the store's live weights at once; the snapshot nodes
    /// place by is refreshed at most this often, so a burst of writes moves
    /// shards once. Membership changes are not delayed by it.
    #[serde(with = "humantime_serde")]
    pub rebalance_interval: Duration,
    /// How long a fire's claim key is kept in Redis. Must exceed every job's
    /// misfire grace.
    #[serde(with = "humantime_serde")]
    pub claim_retention: Duration,
    /// Period of the versioned job poll that backs up change notifications.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A fire started within this much of its scheduled time is on time;
    /// later ones are catch-up fires subject to the misfire policy.
    #[serde(with = "humantime_serde")]
    pub on_time_tolerance: Duration,
    /// How long before its scheduled instant a fire is claimed. The claim's
    /// round trip then happens before the fire is due and the fire starts
    /// from a local timer at its exact instant, so start lateness does not
    /// grow with the number of fires due at once. The window is also capped
    /// by the lease's remaining local validity. What it costs: fires claimed
    /// but not yet due when a node crashes are lost (`at_most_once`) or
    /// recovered by the next owner (`at_least_once`), so a crash loses at
    /// most this much of a shard's schedule on top of what was running.
    /// Zero claims each fire when it is due.
    #[serde(with = "humantime_serde")]
    pub claim_ahead: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            member_ttl: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(5),
            drift_margin: Duration::from_millis(750),
            concurrency: 256,
            drain_timeout: Duration::from_secs(30),
            handoff_timeout: Duration::from_secs(30),
            rebalance_interval: Duration::from_secs(10),
            claim_retention: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_secs(5),
            on_time_tolerance: Duration::from_secs(2),
            claim_ahead: Duration::from_millis(500),
        }
    }
}

impl WorkerSettings {
    /// Settings scaled for tests and demos: 250 ms heartbeat, 1.5 s TTLs.
    pub fn fast() -> Self {
        Self {
            heartbeat: Duration::from_millis(250),
            member_ttl: Duration::from_millis(1500),
            lease_ttl: Duration::from_millis(1500),
            drift_margin: Duration::from_millis(300),
            drain_timeout: Duration::from_secs(5),
            handoff_timeout: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(2),
            poll_interval: Duration::from_secs(2),
            ..Self::default()
        }
    }

    /// How long after a node crashes its shards may go unowned: its lease
    /// (and registration, which `validate` keeps no longer) expires, and the
    /// next heartbeat of the new owner acquires them.
    pub fn takeover_bound(&self) -> Duration {
        self.lease_ttl + self.heartbeat
    }

    /// The misfire grace a job gets on this node: its own, capped at
    /// `claim_retention`, because a claim that outlives its key can no
    /// longer be told apart from a fresh one.
    pub fn effective_grace(&self, job_grace: Duration) -> Duration {
        job_grace.min(self.claim_retention)
    }

    /// Checks that the timings keep the protocol's inequalities.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() {
            return Err("heartbeat must be greater than zero".into());
        }
        if self.member_ttl < self.heartbeat * 2 {
            return Err(format!(
                "member_ttl ({:?}) must be at least twice the heartbeat ({:?})",
                self.member_ttl, self.heartbeat
            ));
        }
        if self.lease_ttl <= self.drift_margin + self.heartbeat {
            return Err(format!(
                "lease_ttl ({:?}) must exceed heartbeat + drift_margin ({:?})",
                self.lease_ttl,
                self.heartbeat + self.drift_margin
            ));
        }
        if self.member_ttl > self.lease_ttl {
            return Err(format!(
                "member_ttl ({:?}) must not exceed lease_ttl ({:?}): a crashed node's shards are taken over when both have expired, and the promised bound is lease_ttl + heartbeat",
                self.member_ttl, self.lease_ttl
            ));
        }
        if self.claim_ahead + self.heartbeat + self.drift_margin >= self.lease_ttl {
            return Err(format!(
                "claim_ahead ({:?}) must be shorter than lease_ttl - drift_margin - heartbeat ({:?}): a fire is claimed ahead only within the lease's local validity, which a renewal extends to that much at worst",
                self.claim_ahead,
                self.lease_ttl.saturating_sub(self.drift_margin + self.heartbeat)
            ));
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.claim_retention < Duration::from_secs(60) {
            return Err("claim_retention must be at least 60s".into());
        }
        if self.claim_retention <= self.takeover_bound() * 2 {
            return Err(format!(
                "claim_retention ({:?}) must exceed twice the crash takeover bound lease_ttl + heartbeat ({:?})",
                self.claim_retention,
                self.takeover_bound()
            ));
        }
        Ok(())
    }
}
