//! The leader election: every node runs for the lease of the leader shard
//! (one past the ring's last), and whoever holds it is the leader and runs
//! the `leader` jobs, which live in that shard.
//!
//! Why a shard lease and not a separate lock: the leader's jobs then go
//! through exactly the path every fire takes (claim under the lease's
//! fencing token, watermark, catch-up, misfire policy, cancellation when
//! the lease is lost, recovery of `at_least_once` fires), on every store
//! behind the `Coordinator` trait, with nothing store-specific added. The
//! election is the lease's own rule: a free lease goes to the first node
//! to ask, a held one to no one else. The ring never gives the leader
//! shard to anyone, so no handoff moves it; the leader keeps it until it
//! leaves (released at once, and the others, woken by the release event,
//! ask for it at once) or dies (its lease expires; the others ask every
//! heartbeat, so one holds it within the lease TTL plus a heartbeat).

use metrics::{counter, gauge};
use tracing::info;

use super::Node;
use crate::metrics as m;

impl Node {
    /// Whether this node wants to hold `shard`: the ring gives it to this
    /// node, or it is the leader shard, which every registered node runs
    /// for.
    pub(super) fn wants(&self, shard: u32) -> bool {
        self.desired.contains(&shard) || (shard == self.leader_shard && self.registered)
    }

    /// The shards to ask for: the ring's not held yet, and the leader
    /// shard while no lease of it is held here.
    pub(super) fn shards_to_acquire(&self) -> Vec<u32> {
        let mut missing: Vec<u32> = self
            .desired
            .iter()
            .filter(|s| !self.held.contains_key(s))
            .copied()
            .collect();
        if self.registered && !self.held.contains_key(&self.leader_shard) {
            missing.push(self.leader_shard);
        }
        missing
    }

    /// Called when a lease is granted: notes the leadership if it is the
    /// leader shard's.
    pub(super) fn on_granted(&mut self, shard: u32, token: u64) {
        if shard != self.leader_shard {
            return;
        }
        let since = self.clock.now_ms();
        self.leading_since = Some(since);
        gauge!(m::LEADER).set(1.0);
        counter!(m::LEADER_CHANGES_TOTAL).increment(1);
        info!(node = %self.info.id, token, since_ms = since, "became the leader");
    }

    /// Called when a lease is lost or released: notes the end of the
    /// leadership if it is the leader shard's.
    pub(super) fn on_let_go(&mut self, shard: u32) {
        if shard != self.leader_shard || self.leading_since.is_none() {
            return;
        }
        self.leading_since = None;
        gauge!(m::LEADER).set(0.0);
        info!(node = %self.info.id, "no longer the leader");
    }
}
