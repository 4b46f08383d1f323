//! The fire step: claim every due fire (and every pending one) in one round
//! trip, then act on each outcome.
//!
//! | outcome | what happens |
//! |---|---|
//! | `Claimed` | dispatched to the executor: it runs, or gets a record saying why not |
//! | `AlreadyClaimed` | dropped: another claim (or the watermark) has it |
//! | `JobChanged` | the shard is reloaded and the job's cursor goes back before the fire, so it is decided again under the new version |
//! | `NotYetDue` | the store's clock says the fire is in the future: the job's cursor goes back, and nothing is claimed until the next heartbeat resamples the clock |
//! | lease lost | the shard is dropped; the next owner catches its scheduled fires up; unresolved claims stay pending |
//! | reply lost | every fire of the request becomes pending with its attempt marked uncertain, claimed again 250 ms later |

use std::collections::BTreeMap;

use foldhash::HashMap;
use metrics::counter;
use shardcron_coord::{BatchOutcome, ClaimBatch, ClaimOutcome, FireClaim, FireKind, RunOutcome};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::pending::{record_unresolved, FireKey, Pending};
use super::Node;
use crate::executor::{ClaimedFire, EntryChange, RecordFields};
use crate::fire_metrics::SHARDED;
use crate::lease_watch::LeaseGuard;
use crate::metrics as m;
use crate::timetable::{ClaimWindow, DueFires};

/// Delay before retrying fires whose claim round trip failed.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
/// Most misfire records written per job per wake-up.
const MAX_MISFIRE_RECORDS: usize = 10;

/// The fires of one step, per shard, one entry per fire id.
#[derive(Default)]
struct StepBatches {
    by_shard: BTreeMap<u32, BTreeMap<(String, i64), FireClaim>>,
    /// Cursor of each job before this step's decision (for `NotYetDue`).
    cursor_before: HashMap<String, i64>,
}

impl Node {
    /// Whether claims of `job_id` keep an open entry (delivery
    /// `at_least_once`, as loaded).
    fn tracks_fires(&self, job_id: &str) -> bool {
        self.timetable
            .get(job_id)
            .is_some_and(|e| e.job.spec.delivery.tracks_fires())
    }

    fn new_attempt(&mut self) -> u64 {
        self.next_attempt += 1;
        self.next_attempt
    }

    /// Claims every due fire, one batch per shard, one round trip in all.
    pub(super) async fn fire_step(&mut self) {
        self.retry_at = None;
        self.last_claim = Instant::now();
        // Fires claimed earlier that are due now start before this step's
        // round trip, not after it.
        self.executor.release_due();
        // Leases whose local validity ended are dropped before anything is
        // claimed under them, so a claim never lands for a shard this step
        // has already given up.
        self.drop_invalid_leases();
        let now_ms = self.clock.now_ms();
        let mut step = StepBatches::default();
        // One attempt id for every claim of the step: an attempt only has
        // to tell this holder's attempts at one fire apart, and a fire is
        // claimed at most once per step. The store is then sent it once
        // per batch instead of once per fire.
        let attempt = self.new_attempt();
        self.take_pending(&mut step, now_ms, attempt);
        if !self.clock_suspect {
            self.take_timetable(&mut step, now_ms, attempt);
        }
        let claims: Vec<ClaimBatch> = std::mem::take(&mut step.by_shard)
            .into_iter()
            .filter(|(_, fires)| !fires.is_empty())
            .filter_map(|(shard, fires)| {
                let held = self.held.get(&shard)?;
                let fires: Vec<FireClaim> = fires.into_values().collect();
                Some(ClaimBatch {
                    shard,
                    holder: self.holder.clone(),
                    token: held.token,
                    loaded_at: self.versions_loaded_at(shard, held.version, &fires),
                    fires,
                    ahead_ms: self.settings.claim_ahead.as_millis() as i64,
                })
            })
            .collect();
        if claims.is_empty() {
            return;
        }
        let t = Instant::now();
        let (coord, retention) = (self.coord.clone(), self.settings.claim_retention);
        let outcome = self
            .store(async { coord.claim_fires(&claims, retention).await })
            .await;
        let Some(outcomes) = self.coord_result("claim fires", t, outcome) else {
            // The claims may or may not have landed: only this node can
            // resolve them, with their attempt ids.
            for batch in &claims {
                for fire in &batch.fires {
                    self.pending
                        .lost_reply(fire_key(batch.shard, fire), fire, batch.token);
                }
            }
            self.retry_at = Some(Instant::now() + CLAIM_RETRY);
            return;
        };
        self.executor.reap_finished();
        for (batch, outcome) in claims.into_iter().zip(outcomes) {
            match outcome {
                BatchOutcome::LeaseLost => {
                    warn!(shard = batch.shard, "claim refused: lease no longer ours");
                    self.lose_shard(batch.shard);
                    // Scheduled fires are the next owner's to catch up and
                    // triggers stay queued for it; a fire whose earlier
                    // attempt may have landed is only this node's to resolve.
                    for fire in batch.fires {
                        if !fire.uncertain.is_empty() {
                            let key = fire_key(batch.shard, &fire);
                            self.pending.keep(key, pending_of(&fire, batch.token));
                        }
                    }
                }
                BatchOutcome::Claimed(codes) => {
                    self.on_claimed(batch, codes, now_ms, &step.cursor_before);
                }
            }
        }
    }

    /// Moves pending claims into the step's batches, keeps the ones whose
    /// shard cannot be claimed now, and gives up unresolved ones too old to
    /// run.
    fn take_pending(&mut self, step: &mut StepBatches, now_ms: i64, attempt: u64) {
        for (key, p) in self.pending.take_all() {
            let (shard, job_id, at) = key.clone();
            if self.held.get(&shard).is_some_and(|h| h.claimable()) {
                let version = self.current_version(&job_id, at, &p);
                let claim = FireClaim {
                    uncertain: p.uncertain,
                    track_open: p.tracked || self.tracks_fires(&job_id),
                    ..FireClaim::new(job_id.clone(), at, p.kind, version, attempt)
                };
                step.by_shard
                    .entry(shard)
                    .or_default()
                    .insert((job_id, at), claim);
            } else if !p.is_uncertain() {
                // A trigger stays queued in the store for whoever owns the
                // shard; nothing is lost by forgetting it here.
            } else if now_ms - at < self.giveup_ms(&job_id) {
                self.pending.keep(key, p);
            } else {
                record_unresolved(
                    &self.executor,
                    &key,
                    &p,
                    "unresolved_claim",
                    "the claim's reply was lost and its shard could not be held again in time to resolve it",
                );
            }
        }
    }

    /// The job version a pending fire is claimed under: the loaded one when
    /// the job changed since the fire was first tried and the fire is still
    /// one of the new version's (a trigger always is). Claiming it under the
    /// old version would be refused, and a later fire of the same batch could
    /// move the watermark past it for good.
    fn current_version(&self, job_id: &str, at: i64, p: &Pending) -> u64 {
        match self.timetable.get(job_id) {
            Some(e) if e.version != p.version => {
                let still_fires = p.kind == FireKind::Trigger
                    || (!e.job.spec.paused && e.job.next_after(at - 1) == Some(at));
                if still_fires {
                    e.version
                } else {
                    p.version
                }
            }
            _ => p.version,
        }
    }

    /// The promise a batch of `shard`'s fires can make about their job
    /// versions ([`ClaimBatch::loaded_at`]): the version of the shard's
    /// last load, when every fire carries the version its job has in the
    /// timetable under that shard. `install_jobs` sets every entry of a
    /// shard from one load (a job it did not load leaves the timetable), so
    /// those versions were read at that load's shard version or later. A
    /// fire carrying any other version (a pending claim of an older one)
    /// makes no promise: its batch is decided fire by fire.
    fn versions_loaded_at(&self, shard: u32, loaded: u64, fires: &[FireClaim]) -> Option<u64> {
        fires
            .iter()
            .all(|f| {
                self.timetable
                    .get(&f.job_id)
                    .is_some_and(|e| e.shard == shard && e.version == f.job_version)
            })
            .then_some(loaded)
    }

    /// How long an unresolved claim is worth resolving: its job's grace (or
    /// the default), never longer than the claim key lives.
    fn giveup_ms(&self, job_id: &str) -> i64 {
        self.timetable.get(job_id).map_or_else(
            || {
                self.settings
                    .effective_grace(std::time::Duration::from_secs(60))
                    .as_millis() as i64
            },
            |e| e.grace_ms,
        )
    }

    /// Per claimable shard, the latest instant a fire may be claimed at
    /// now: `claim_ahead` from now, but never past the lease's local
    /// validity (a fire claimed ahead must be startable under the lease as
    /// it stands), and nothing ahead for a shard being handed off (its
    /// fires claimed ahead would hold the release back).
    fn claim_horizons(&self, now_ms: i64) -> HashMap<u32, i64> {
        let ahead_ms = self.settings.claim_ahead.as_millis() as i64;
        let now = Instant::now();
        self.held
            .iter()
            .filter(|(_, h)| h.claimable())
            .map(|(&shard, h)| {
                let horizon = if ahead_ms == 0 || h.handoff.is_some() {
                    now_ms
                } else {
                    let valid_ms = h.watch.valid_until().saturating_duration_since(now);
                    now_ms + ahead_ms.min(valid_ms.as_millis() as i64 - 1)
                };
                (shard, horizon.max(now_ms))
            })
            .collect()
    }

    /// Takes timetable fires due now or within their shard's claim-ahead
    /// horizon, as many as the executor has room for.
    fn take_timetable(&mut self, step: &mut StepBatches, now_ms: i64, attempt: u64) {
        let room = self.executor.capacity();
        if room == 0 {
            return;
        }
        let tolerance_ms = self.settings.on_time_tolerance.as_millis() as i64;
        let mut horizons = self.claim_horizons(now_ms);
        self.broadcast_horizon(&mut horizons, now_ms);
        let shard_horizon = |shard: u32| horizons.get(&shard).copied().unwrap_or(now_ms);
        let window = ClaimWindow {
            now_ms,
            furthest_ms: horizons.values().copied().max().unwrap_or(now_ms),
            shard_horizon: &shard_horizon,
            max_ahead: self.executor.ahead_room(),
        };
        for d in self.timetable.take_due(&window, tolerance_ms, room) {
            if d.shard == self.broadcast.shard() {
                self.dispatch_broadcast(d, now_ms);
                continue;
            }
            let Some(held) = self.held.get(&d.shard) else {
                continue;
            };
            if !held.claimable() {
                // Validity ended while this step ran: claim nothing for it.
                self.timetable.rewind(&d.job_id, d.cursor_before);
                continue;
            }
            self.record_misfires(&d, held.token);
            step.cursor_before
                .entry(d.job_id.clone())
                .or_insert(d.cursor_before);
            let track_open = self.tracks_fires(&d.job_id);
            let fires = step.by_shard.entry(d.shard).or_default();
            for &at in &d.run {
                fires
                    .entry((d.job_id.clone(), at))
                    // The same fire is pending (a lost reply, or a trigger
                    // on the same ms): one claim, as a scheduled fire so the
                    // watermark moves, keeping the lost attempts.
                    .and_modify(|c| {
                        c.kind = FireKind::Scheduled;
                        c.track_open |= track_open;
                    })
                    .or_insert_with(|| FireClaim {
                        track_open,
                        ..FireClaim::new(
                            d.job_id.clone(),
                            at,
                            FireKind::Scheduled,
                            d.version,
                            attempt,
                        )
                    });
            }
        }
    }

    fn on_claimed(
        &mut self,
        batch: ClaimBatch,
        codes: Vec<ClaimOutcome>,
        now_ms: i64,
        cursor_before: &HashMap<String, i64>,
    ) {
        let shard = batch.shard;
        let token = batch.token;
        let guard = self
            .held
            .get(&shard)
            .map_or_else(LeaseGuard::ended, |h| h.watch.guard());
        let tolerance_ms = self.settings.on_time_tolerance.as_millis() as i64;
        // A fire followed by a later one of its job in the same batch is
        // being made up (catch-up), as is one past the on-time tolerance.
        let catch_up: Vec<bool> = {
            let mut latest: HashMap<&str, i64> = HashMap::default();
            for fire in &batch.fires {
                let l = latest
                    .entry(fire.job_id.as_str())
                    .or_insert(fire.scheduled_ms);
                *l = (*l).max(fire.scheduled_ms);
            }
            batch
                .fires
                .iter()
                .map(|fire| {
                    now_ms - fire.scheduled_ms > tolerance_ms
                        || latest
                            .get(fire.job_id.as_str())
                            .is_some_and(|&l| fire.scheduled_ms < l)
                })
                .collect()
        };
        let mut dispatch = Vec::new();
        for ((fire, code), catch_up) in batch.fires.into_iter().zip(codes).zip(catch_up) {
            match code {
                ClaimOutcome::Claimed => dispatch.push((fire, catch_up)),
                ClaimOutcome::AlreadyClaimed => {
                    self.report.claim_conflicts += 1;
                    counter!(m::CLAIM_CONFLICTS_TOTAL).increment(1);
                    debug!(job = %fire.job_id, at = fire.scheduled_ms, "already claimed elsewhere");
                }
                ClaimOutcome::JobChanged => {
                    if fire.kind == FireKind::Scheduled {
                        // Go back to where this step's decision started: the
                        // new version may have fires the old one skipped. A
                        // retried fire's decision is older than this step:
                        // go back to the job's watermark (the reload clamps
                        // the cursor to it), past which nothing is claimed.
                        let back = if fire.uncertain.is_empty() {
                            cursor_before.get(&fire.job_id).copied().unwrap_or(i64::MIN)
                        } else {
                            i64::MIN
                        };
                        let r = self.refused.entry(fire.job_id.clone()).or_insert(i64::MAX);
                        *r = (*r).min(back);
                    }
                    self.reload.insert(shard);
                }
                ClaimOutcome::NotYetDue => {
                    counter!(m::CLAIMS_NOT_YET_DUE_TOTAL).increment(1);
                    if let Some(&cursor) = cursor_before.get(&fire.job_id) {
                        self.timetable.rewind(&fire.job_id, cursor);
                    }
                    if !self.clock_suspect {
                        warn!(job = %fire.job_id, at = fire.scheduled_ms, "the store says this fire is not due yet: resampling the clock before claiming again");
                        self.clock_suspect = true;
                        self.control_at = Instant::now();
                    }
                }
            }
        }
        for (fire, catch_up) in dispatch {
            self.dispatch_one(shard, token, &guard, fire, catch_up);
        }
    }

    fn dispatch_one(
        &mut self,
        shard: u32,
        token: u64,
        guard: &LeaseGuard,
        fire: FireClaim,
        catch_up: bool,
    ) {
        let Some(entry) = self.timetable.get(&fire.job_id) else {
            warn!(job = %fire.job_id, at = fire.scheduled_ms, "claimed a fire of a job no longer loaded here; not run");
            self.executor.record_lost(
                RecordFields {
                    job_id: &fire.job_id,
                    scheduled_ms: fire.scheduled_ms,
                    shard,
                    token,
                    job_label: None,
                    open_delivery: fire.track_open.then_some(1),
                },
                "job_removed",
                "claimed, but the job was removed from this node before it could start",
                EntryChange::Close,
            );
            return;
        };
        self.report.claimed += 1;
        let placement = if shard == self.leader_shard {
            "leader"
        } else {
            SHARDED
        };
        self.metrics.claimed(placement);
        if catch_up {
            counter!(m::CATCHUP_FIRES_TOTAL).increment(1);
        }
        let claimed = ClaimedFire {
            job: entry.job.clone(),
            scheduled_ms: fire.scheduled_ms,
            shard,
            token,
            lease: guard.clone(),
            catch_up,
            version: fire.job_version,
            delivery: 1,
            tracked: fire.track_open,
            trigger: fire.kind == FireKind::Trigger,
        };
        self.executor.dispatch(claimed);
    }

    pub(super) fn record_misfires(&self, d: &DueFires, token: u64) {
        let misfires = d.misfired.len() + usize::from(d.beyond_grace.is_some());
        if misfires == 0 {
            return;
        }
        let Some(entry) = self.timetable.get(&d.job_id) else {
            return;
        };
        let mk = |at: i64| ClaimedFire {
            job: entry.job.clone(),
            scheduled_ms: at,
            shard: d.shard,
            token,
            lease: LeaseGuard::ended(),
            catch_up: false,
            version: d.version,
            delivery: 1,
            tracked: false,
            trigger: false,
        };
        counter!(m::MISFIRES_TOTAL).increment(misfires as u64);
        if let Some(first) = d.beyond_grace {
            self.executor.record_not_run(
                &mk(first),
                RunOutcome::Misfired,
                "this and possibly later fires were missed beyond the misfire grace",
            );
        }
        for &at in d.misfired.iter().take(MAX_MISFIRE_RECORDS) {
            self.executor.record_not_run(
                &mk(at),
                RunOutcome::Misfired,
                "not run per misfire policy",
            );
        }
    }
}

fn fire_key(shard: u32, fire: &FireClaim) -> FireKey {
    (shard, fire.job_id.clone(), fire.scheduled_ms)
}

fn pending_of(fire: &FireClaim, token: u64) -> Pending {
    Pending {
        tracked: fire.track_open,
        token,
        kind: fire.kind,
        version: fire.job_version,
        uncertain: fire.uncertain.clone(),
    }
}
