//! The placement step: read the members, the shard weights and the stored
//! placement (one round trip, each only when it changed), compute the next
//! placement from the stored one, store it if it moved anything, and take
//! this node's shards from it.
//!
//! The next placement is `ShardMap::rebalance` of the stored one, a pure,
//! idempotent function of (stored placement, members, weights, ring
//! settings): every node that read the same inputs computes the same result,
//! and once it is stored the others find nothing to change. Storing is a
//! compare-and-set on the stored version, so of two nodes racing only one
//! writes; the other uses its own result for one heartbeat and then reads
//! the stored one. A lost reply of the write is the same case. Which node
//! writes, and when the others notice, only decides who *tries* to lease a
//! shard; the lease and the claim script decide who runs a fire.

use std::collections::BTreeSet;

use metrics::counter;
use shardcron_coord::StoredPlacement;
use shardcron_core::load::units_to_fires_per_minute;
use shardcron_core::ShardMap;
use tokio::time::Instant;
use tracing::{debug, info};

use super::Node;
use crate::metrics as m;

impl Node {
    /// Reads the placement inputs and recomputes this node's shards when
    /// any of them changed (or an earlier placement is still to be stored).
    pub(super) async fn placement_step(&mut self) {
        let t = Instant::now();
        let known_weights = self.weights.as_ref().map(|w| w.version);
        let known_placement = self.stored_placement.as_ref().map(|p| p.version);
        let (coord, refresh) = (self.coord.clone(), self.settings.rebalance_interval);
        let read = self
            .store(async {
                coord
                    .placement_inputs(known_weights, known_placement, refresh)
                    .await
            })
            .await;
        let Some(inputs) = self.coord_result("members", t, read) else {
            return;
        };
        self.recovery.observe_members(&inputs.membership.members);
        let ids: Vec<String> = inputs
            .membership
            .members
            .into_iter()
            .map(|m| m.id)
            .collect();
        // The same members as the previous read: a membership view that has
        // held for a heartbeat, not a transient one (e.g. the first node to
        // reach a restarted store sees itself alone until the others beat).
        let settled = ids == self.members;
        let mut changed = !settled || self.placement_unstored;
        if let Some(weights) = inputs.weights {
            self.weights = Some(weights);
            changed = true;
        }
        if let Some(stored) = inputs.placement {
            self.stored_placement = Some(stored);
            changed = true;
        }
        if !changed {
            return;
        }
        let map = self.next_placement(&ids, settled).await;
        self.apply_placement(ids, &map);
    }

    /// The next placement from the stored one (or a fresh one), stored if it
    /// differs and the member view it came from has `settled`. A view seen
    /// once is acted on but not stored, so a transient one (every member
    /// expired during a store outage, the first to come back alone) cannot
    /// rewrite the placement the fleet returns to; it is stored one
    /// heartbeat later if it holds.
    async fn next_placement(&mut self, ids: &[String], settled: bool) -> ShardMap {
        let weights = self.weights.clone().unwrap_or_default();
        let stored = self.stored_placement.as_ref().map(|p| &p.record);
        let map = ShardMap::next_placement(stored, ids, &weights, self.ring);
        self.placement_unstored = false;
        // Store it only if it differs from the stored one (same owners and
        // members: nothing to write, every node computed the same).
        let Some(record) = map.to_record().filter(|r| Some(r) != stored) else {
            return map;
        };
        if !settled {
            self.placement_unstored = true;
            return map;
        }
        let expected = self.stored_placement.as_ref().map_or(0, |p| p.version);
        let coord = self.coord.clone();
        let stored = self
            .store(async { coord.store_placement(expected, &record).await })
            .await;
        match stored {
            Ok(Some(version)) => {
                debug!(version, "stored the next placement");
                self.stored_placement = Some(StoredPlacement { version, record });
            }
            Ok(None) => debug!("another node stored the next placement first"),
            Err(e) => {
                // Retried next heartbeat (if the write landed, the next read
                // returns it and there is nothing left to store).
                debug!(error = %e, "storing the placement failed");
                self.placement_unstored = true;
            }
        }
        map
    }

    /// Takes this node's shards from `map`.
    fn apply_placement(&mut self, ids: Vec<String>, map: &ShardMap) {
        let desired: BTreeSet<u32> = map.shards_of(&self.info.id).into_iter().collect();
        let desired_load: u128 = desired.iter().map(|&s| u128::from(map.weight(s))).sum();
        metrics::gauge!(m::MEMBERS).set(ids.len() as f64);
        metrics::gauge!(m::SHARDS_DESIRED).set(desired.len() as f64);
        metrics::gauge!(m::EXPECTED_FIRES_PER_MINUTE).set(units_to_fires_per_minute(
            u64::try_from(desired_load).unwrap_or(u64::MAX),
        ));
        if desired != self.desired {
            counter!(m::REBALANCES_TOTAL).increment(1);
            info!(
                members = ?ids,
                desired = desired.len(),
                placement_version = self.stored_placement.as_ref().map_or(0, |p| p.version),
                load_max_over_mean = map.load_balance().max_over_mean,
                "placement changed"
            );
        }
        let now = Instant::now();
        self.desired_since.retain(|s, _| desired.contains(s));
        for &shard in &desired {
            self.desired_since.entry(shard).or_insert(now);
        }
        self.members = ids;
        self.desired = desired;
    }
}
