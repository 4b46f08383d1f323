//! Handing back fires whose claim reply was lost, once their shard is no
//! longer this node's to claim.
//!
//! A lost reply leaves a fire pending on this node: only this node knows
//! the ids of its lost attempts, so only it can tell whether the claim
//! landed. It used to wait for the shard to be claimable here again, which
//! never happens when the ring gave the shard to another node meanwhile (a
//! partition longer than the lease TTL): the claim key then named this
//! node, nobody else could claim the fire, and it was lost although the
//! store and other nodes were fine.
//!
//! This node runs a fire only on seeing `Claimed`, so a landed lost attempt
//! names a fire it never started. Once the store answers again, the hand-back
//! rewrites such a claim key so no attempt of this node can take it over and
//! leaves an abandoned open entry (delivery 0), which the recovery of the
//! shard's lease holder runs like any abandoned fire: within the job's
//! misfire grace, unless the job is gone or paused. A lost attempt that never
//! landed writes nothing: the fire is then still unclaimed, and the holder's
//! timetable claims it. Either way the fire leaves this node's pending
//! table, and this node writes no record of it: whoever runs it does.
//!
//! A hand-back whose own reply is lost keeps the fire pending; the next one
//! finds the key already handed back and says so. It runs at most once per
//! heartbeat, after a heartbeat that reached the store, and once more when
//! the node stops.

use metrics::counter;
use shardcron_coord::HandBack;
use tokio::time::Instant;
use tracing::info;

use super::Node;
use crate::metrics as m;

impl Node {
    /// Hands back every uncertain pending fire of a shard this node cannot
    /// claim now, in one round trip.
    pub(super) async fn hand_back_step(&mut self) {
        let held = &self.held;
        let fires = self
            .pending
            .take_uncertain_unclaimable(|shard| held.get(&shard).is_some_and(|h| h.claimable()));
        if fires.is_empty() {
            return;
        }
        let backs: Vec<HandBack> = fires
            .iter()
            .map(|((shard, job_id, at), p)| HandBack {
                shard: *shard,
                job_id: job_id.clone(),
                scheduled_ms: *at,
                kind: p.kind,
                token: p.token,
                lost_attempts: p.uncertain.clone(),
            })
            .collect();
        let t = Instant::now();
        let (coord, holder, retention) = (
            self.coord.clone(),
            self.holder.clone(),
            self.settings.claim_retention,
        );
        let reply = self
            .store(async move { coord.hand_back_fires(&holder, &backs, retention).await })
            .await;
        let Some(handed) = self.coord_result("hand back fires", t, reply) else {
            for (key, p) in fires {
                self.pending.keep(key, p);
            }
            return;
        };
        for (((shard, job_id, at), _), landed) in fires.into_iter().zip(handed) {
            let outcome = if landed {
                "handed_back"
            } else {
                "never_landed"
            };
            info!(job = %job_id, at, shard, outcome, "claim whose reply was lost handed back to the shard's holder");
            counter!(m::FIRES_HANDED_BACK_TOTAL, "outcome" => outcome).increment(1);
        }
    }
}
