//! A live view of a worker, for readiness probes, the CLI and tests.

use serde::Serialize;

/// What a worker currently believes and holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStatus {
    /// Node id.
    pub node_id: String,
    /// True once the node has registered and not since lost contact.
    pub registered: bool,
    /// Members this node sees, sorted.
    pub members: Vec<String>,
    /// Shards the ring assigns to this node.
    pub desired_shards: usize,
    /// Shards whose lease this node holds and may fire.
    pub owned_shards: usize,
    /// Jobs in owned shards.
    pub owned_jobs: usize,
    /// Runs in flight.
    pub in_flight: usize,
    /// True while shutting down.
    pub stopping: bool,
    /// True while this node is the fleet's leader (runs the `leader` jobs).
    pub leader: bool,
}

impl WorkerStatus {
    /// Ready: registered, not stopping, and holding every desired shard.
    pub fn ready(&self) -> bool {
        self.registered && !self.stopping && self.owned_shards == self.desired_shards
    }
}

/// Totals of one worker run, returned when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Fires this node claimed.
    pub claimed: u64,
    /// Fires another node had claimed first.
    pub claim_conflicts: u64,
    /// Leases acquired.
    pub leases_acquired: u64,
    /// Leases lost.
    pub leases_lost: u64,
    /// Runs cancelled by the drain deadline.
    pub cancelled_at_shutdown: usize,
    /// Times claiming paused because the waiting line was full (a release
    /// of many fires claimed ahead fills it for as long as it takes to
    /// start them; that alone is not overload).
    pub claim_pauses: u64,
    /// Times the node declared itself overloaded: its waiting line stayed
    /// full for longer than `on_time_tolerance`.
    pub overloads: u64,
}
