//! The recovery step of delivery `at_least_once`: take over the open fires
//! of a held shard whose holder died or gave them up, and run them again.
//!
//! A claimed `at_least_once` fire has an open entry in the store from its
//! claim until its holder writes a terminal record (or marks it abandoned:
//! lease ended before it could start or finish, node stopping). This step
//! reads the open entries of some held shards and recovers, under the lease,
//! those that
//!
//! - were abandoned by their holder (this node included), or
//! - were written under an older fencing token than this node's lease (the
//!   holder's lease on the shard has ended: expired or released) by a holder
//!   whose process is gone: its node id is not a live member, or the member
//!   of that id is another process instance (it restarted).
//!
//! A live holder's entry that it did not abandon is left alone: it may still
//! be running the fire or writing its terminal record; it will close or
//! abandon it. Recovery is a compare-and-set on the entry as read, so no fire
//! is recovered twice, and it rewrites the fire's claim key, so the old
//! holder cannot take a lost claim reply over afterwards.
//!
//! When shards are scanned: right after they are acquired, all held shards
//! when a holder disappears from the membership, every
//! [`SWEEP_EVERY_BEATS`] heartbeats the held shards that have an
//! `at_least_once` job (to find entries abandoned after the acquire), and
//! again after a scan or a recovery whose round trip failed. A recovery
//! whose reply was lost is resolved by the next scan: an entry that reads
//! exactly as the recovery would have written it is this node's.
//!
//! A fire handed back by a node whose claim reply was lost (`hand_back`)
//! has an abandoned entry of delivery 0 and is recovered the same way,
//! whatever its job's delivery; if that recovery does not reach a terminal
//! state either, an `at_most_once` job's fire is closed as cancelled rather
//! than run again.
//!
//! A recovered fire runs with the same fire id, delivery + 1, a new fencing
//! token and attempt numbers above the earlier deliveries', if it is still
//! within its job's misfire grace; past it, it is recorded as misfired (a
//! terminal state). A fire of a job that is gone or paused is closed as
//! cancelled: a paused job never fires after the pause is acknowledged.

use std::collections::{BTreeSet, HashMap, HashSet};

use shardcron_coord::{MemberInfo, OpenFire, RecoverBatch, RecoverOutcome, RunOutcome};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Node;
use crate::executor::{ClaimedFire, EntryChange, RecordFields};
use crate::metrics as m;

/// Heartbeats between two sweeps of the held shards with `at_least_once`
/// jobs.
pub(super) const SWEEP_EVERY_BEATS: u32 = 5;

/// What the recovery step knows between heartbeats.
#[derive(Debug)]
pub(super) struct Recovery {
    /// This node's holder string (always alive).
    own_holder: String,
    /// Holder strings (`node/instance`) of the live members.
    live_holders: HashSet<String>,
    /// Live members that did not publish an instance: any holder of their
    /// node id counts as alive.
    bare_nodes: HashSet<String>,
    /// Shards to scan at the next step.
    due: BTreeSet<u32>,
    /// Heartbeats since the last sweep.
    beats: u32,
    /// A holder disappeared: scan every held shard at the next step.
    sweep_all: bool,
    /// Recoveries whose reply was lost: each fire's entry as the recovery
    /// would have written it.
    uncertain: HashMap<(u32, String, i64), OpenFire>,
}

impl Recovery {
    pub(super) fn new(own_holder: &str) -> Self {
        Self {
            own_holder: own_holder.to_owned(),
            live_holders: HashSet::new(),
            bare_nodes: HashSet::new(),
            due: BTreeSet::new(),
            beats: 0,
            sweep_all: false,
            uncertain: HashMap::new(),
        }
    }

    /// Takes the live members of a membership read; when a holder seen
    /// before is gone, every held shard is scanned at the next step.
    pub(super) fn observe_members(&mut self, members: &[MemberInfo]) {
        let mut holders = HashSet::new();
        let mut bare = HashSet::new();
        for member in members {
            match member.holder() {
                Some(h) => {
                    holders.insert(h);
                }
                None => {
                    bare.insert(member.id.clone());
                }
            }
        }
        let someone_left = self.live_holders.iter().any(|h| !holders.contains(h))
            || self.bare_nodes.iter().any(|n| !bare.contains(n));
        self.live_holders = holders;
        self.bare_nodes = bare;
        if someone_left {
            self.sweep_all = true;
        }
    }

    /// Scans `shard` at the next step.
    pub(super) fn scan_soon(&mut self, shard: u32) {
        self.due.insert(shard);
    }

    fn holder_alive(&self, holder: &str) -> bool {
        holder == self.own_holder
            || self.live_holders.contains(holder)
            || holder
                .split_once('/')
                .is_some_and(|(node, _)| self.bare_nodes.contains(node))
    }

    /// Whether an entry read under this node's lease `token` is to be
    /// recovered: abandoned (by anyone, this node included: a lease that
    /// lapsed locally and was granted again keeps its token), or written
    /// under an older token by a holder that is gone.
    fn recoverable(&self, entry: &OpenFire, token: u64) -> bool {
        entry.abandoned || (entry.token < token && !self.holder_alive(&entry.holder))
    }
}

impl Node {
    /// Scans the shards due, recovers what is recoverable, and runs it.
    pub(super) async fn recovery_step(&mut self) {
        let shards = self.shards_to_scan();
        if shards.is_empty() {
            return;
        }
        let t = Instant::now();
        let coord = self.coord.clone();
        let read = self.store(async { coord.open_fires(&shards).await }).await;
        let Some(read) = self.coord_result("open fires", t, read) else {
            self.recovery.due.extend(shards);
            return;
        };
        let mut batches = Vec::new();
        for (shard, entries) in shards.into_iter().zip(read) {
            let Some(held) = self.held.get(&shard).filter(|h| h.claimable()) else {
                continue;
            };
            let token = held.token;
            let mut fires = Vec::new();
            for entry in entries {
                let key = (shard, entry.job_id.clone(), entry.scheduled_ms);
                if let Some(expected) = self.recovery.uncertain.remove(&key) {
                    if expected == entry {
                        // Our recovery landed although its reply was lost.
                        self.run_recovered(expected);
                        continue;
                    }
                }
                if self.recovery.recoverable(&entry, token) {
                    fires.push(entry);
                }
            }
            if !fires.is_empty() {
                batches.push(RecoverBatch {
                    shard,
                    holder: self.holder.clone(),
                    token,
                    fires,
                });
            }
        }
        if batches.is_empty() {
            return;
        }
        let t = Instant::now();
        let (coord, retention) = (self.coord.clone(), self.settings.claim_retention);
        let outcome = self
            .store(async { coord.recover_fires(&batches, retention).await })
            .await;
        let Some(outcomes) = self.coord_result("recover fires", t, outcome) else {
            // Each recovery may have landed: the next scan tells.
            for batch in batches {
                self.recovery.due.insert(batch.shard);
                for fire in batch.fires {
                    let key = (batch.shard, fire.job_id.clone(), fire.scheduled_ms);
                    let expected = recovered_entry(fire, &batch.holder, batch.token);
                    self.recovery.uncertain.insert(key, expected);
                }
            }
            return;
        };
        for (batch, outcome) in batches.into_iter().zip(outcomes) {
            match outcome {
                RecoverOutcome::LeaseLost => {
                    warn!(
                        shard = batch.shard,
                        "recovery refused: lease no longer ours"
                    );
                    self.lose_shard(batch.shard);
                }
                RecoverOutcome::Recovered(codes) => {
                    for (fire, won) in batch.fires.into_iter().zip(codes) {
                        if won {
                            let fire = recovered_entry(fire, &batch.holder, batch.token);
                            self.run_recovered(fire);
                        } else {
                            debug!(shard = batch.shard, job = %fire.job_id, at = fire.scheduled_ms, "open fire changed before recovery; left alone");
                        }
                    }
                }
            }
        }
    }

    /// The shards to scan now: those marked due, plus every held shard
    /// after a holder left, plus, every few heartbeats, the held shards
    /// with an `at_least_once` job. Shards in handoff are skipped.
    fn shards_to_scan(&mut self) -> Vec<u32> {
        self.give_up_uncertain_of_lost_shards();
        let r = &mut self.recovery;
        r.beats += 1;
        let sweep = r.beats >= SWEEP_EVERY_BEATS;
        if sweep {
            r.beats = 0;
        }
        let sweep_all = std::mem::take(&mut r.sweep_all);
        let mut due = std::mem::take(&mut r.due);
        let swept = self
            .held
            .keys()
            .filter(|&&s| sweep_all || (sweep && self.shard_tracks_fires(s)));
        due.extend(swept);
        due.into_iter()
            .filter(|s| {
                self.held
                    .get(s)
                    .is_some_and(|h| h.claimable() && h.handoff.is_none())
            })
            .collect()
    }

    /// A recovery whose reply was lost, of a shard this node no longer
    /// holds: if it landed, the entry names this node, which is alive, so no
    /// one else would recover it. Abandon it (a no-op if it did not land).
    fn give_up_uncertain_of_lost_shards(&mut self) {
        let gone: Vec<(u32, String, i64)> = self
            .recovery
            .uncertain
            .keys()
            .filter(|(s, _, _)| !self.held.contains_key(s))
            .cloned()
            .collect();
        for key in gone {
            if let Some(fire) = self.recovery.uncertain.remove(&key) {
                self.give_up_recovered(
                    &fire,
                    "a recovery whose reply was lost, given up with its shard's lease",
                );
            }
        }
    }

    /// Whether any loaded job of `shard` has delivery `at_least_once`.
    fn shard_tracks_fires(&self, shard: u32) -> bool {
        self.timetable
            .entries_of_shard(shard)
            .any(|e| e.job.spec.delivery.tracks_fires())
    }

    /// Runs a fire this node recovered (its entry now names this node), or
    /// closes it with a record saying why it does not run.
    fn run_recovered(&mut self, fire: OpenFire) {
        let Some(held) = self.held.get(&fire.shard) else {
            // Lost meanwhile: the entry names this node under a token that
            // is no longer valid; give it up for the next holder.
            self.give_up_recovered(
                &fire,
                "the shard's lease ended before the recovered fire could start",
            );
            return;
        };
        let guard = held.watch.guard();
        let now_ms = self.clock.now_ms();
        let Some(entry) = self.timetable.get(&fire.job_id) else {
            m::fires_recovered("cancelled", 1);
            self.executor.record_lost(
                fields(&fire),
                "job_removed",
                "recovered, but the job no longer exists",
                EntryChange::Close,
            );
            return;
        };
        let claimed = ClaimedFire {
            job: entry.job.clone(),
            scheduled_ms: fire.scheduled_ms,
            shard: fire.shard,
            token: fire.token,
            lease: guard,
            catch_up: true,
            version: entry.version,
            delivery: fire.delivery,
            tracked: true,
            trigger: fire.kind == shardcron_coord::FireKind::Trigger,
        };
        if entry.job.spec.paused {
            m::fires_recovered("cancelled", 1);
            self.executor.record_not_run(
                &claimed,
                RunOutcome::Cancelled,
                "recovered, but the job is paused",
            );
            return;
        }
        if fire.delivery > 1 && !entry.job.spec.delivery.tracks_fires() {
            // Handed back (delivery 0), recovered once, and open again: the
            // first recovery's run may have started. An at_most_once job
            // does not run a fire twice.
            m::fires_recovered("cancelled", 1);
            self.executor.record_not_run(
                &claimed,
                RunOutcome::Cancelled,
                "recovered, but the job is at_most_once and an earlier recovery of this fire may have started it",
            );
            return;
        }
        if now_ms - fire.scheduled_ms > entry.grace_ms {
            m::fires_recovered("misfired", 1);
            self.executor.record_not_run(
                &claimed,
                RunOutcome::Misfired,
                "recovered beyond the misfire grace",
            );
            return;
        }
        m::fires_recovered("run", 1);
        info!(job = %fire.job_id, at = fire.scheduled_ms, shard = fire.shard, delivery = fire.delivery, "running a recovered fire");
        self.executor.reap_finished();
        self.executor.dispatch(claimed);
    }

    /// Abandons a recovered fire this node cannot run after all.
    fn give_up_recovered(&self, fire: &OpenFire, why: &str) {
        self.executor.record_lost(
            fields(fire),
            "lease_ended_before_start",
            why,
            EntryChange::Abandon,
        );
    }
}

/// The entry a successful recovery of `fire` by `holder` under `token`
/// leaves in the store.
fn recovered_entry(fire: OpenFire, holder: &str, token: u64) -> OpenFire {
    OpenFire {
        holder: holder.to_owned(),
        token,
        delivery: fire.delivery + 1,
        abandoned: false,
        ..fire
    }
}

fn fields(fire: &OpenFire) -> RecordFields<'_> {
    RecordFields {
        job_id: &fire.job_id,
        scheduled_ms: fire.scheduled_ms,
        shard: fire.shard,
        token: fire.token,
        job_label: None,
        open_delivery: Some(fire.delivery),
    }
}
