//! Loading owned shards: jobs into the timetable, queued triggers into the
//! pending claims, and the versioned poll that backs up change events.
//!
//! A job that cannot be decoded (written by a newer version, or damaged) is
//! skipped on its own, with a log line and the `shardcron_jobs_unreadable`
//! gauge: it never keeps the rest of its shard from being held and run.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{ShardJobs, StoredJob};
use tokio::time::Instant;
use tracing::warn;

use super::Node;
use crate::ahead::AheadRevision;
use crate::metrics as m;
use crate::timetable::JobEntry;

impl Node {
    /// Merges a shard's stored jobs into the timetable. Unchanged jobs keep
    /// their cursor; new or changed ones start after the latest of their
    /// watermark (last claimed fire), the instant they became active
    /// (creation or resume), and the cursor this node already had. Fires a
    /// claim refused because the job changed are decided again: the cursor
    /// goes back to where the refused decision started, never before the
    /// watermark or the activation. So are fires after a claim of the old
    /// version whose reply was lost: the cursor goes back to the watermark.
    pub(super) fn install_jobs(&mut self, shard_jobs: ShardJobs, is_update: bool) {
        let ShardJobs {
            shard,
            version,
            jobs,
            last_fired,
            unreadable,
        } = shard_jobs;
        if let Some(h) = self.held.get_mut(&shard) {
            h.version = version;
        }
        // A broadcast job runs on this node from its first load of the
        // shard on, never before (no catch-up of what it was not there for).
        let joined_ms = if shard == self.broadcast.shard() {
            self.broadcast.joined_ms()
        } else {
            i64::MIN
        };
        self.note_unreadable(shard, unreadable);
        let last: HashMap<String, i64> = last_fired.into_iter().collect();
        let mut stale: BTreeSet<String> = self.timetable.jobs_of_shard(shard).into_iter().collect();
        for stored in jobs {
            let id = stored.spec.id.clone();
            stale.remove(&id);
            let floor = last
                .get(&id)
                .copied()
                .unwrap_or(i64::MIN)
                .max(stored.schedule_floor_ms())
                .max(joined_ms);
            let existing = self.timetable.get(&id);
            if existing.is_some_and(|e| e.version == stored.version) {
                if let Some(back) = self.refused.remove(&id) {
                    self.timetable.rewind(&id, back.max(floor));
                }
                continue;
            }
            if is_update {
                let delay_ms = (self.clock.now_ms() - stored.updated_ms).max(0);
                metrics::histogram!(m::JOB_PROPAGATION_SECONDS).record(delay_ms as f64 / 1000.0);
            }
            let job = match stored.spec.validate() {
                Ok(job) => job,
                Err(e) => {
                    warn!(job = %id, error = %e, "stored job is invalid; not scheduling it");
                    self.timetable.remove(&id);
                    self.refused.remove(&id);
                    continue;
                }
            };
            let mut cursor_ms = existing.map_or(floor, |e| e.cursor_ms.max(floor));
            if let Some(back) = self.refused.remove(&id) {
                cursor_ms = cursor_ms.min(back).max(floor);
            }
            // A claim of the old version whose reply was lost: the cursor
            // went past it and past fires of the new version the old one did
            // not have. Decide again from the watermark, as for a refused
            // retry; the lost fire itself stays pending and merges in.
            if self
                .pending
                .has_uncertain_of_other_version(&id, stored.version)
            {
                cursor_ms = floor;
            }
            let grace = self.settings.effective_grace(job.spec.misfire_grace);
            self.warn_timing(&stored, grace);
            self.timetable.upsert(JobEntry {
                job: Arc::new(job),
                version: stored.version,
                shard,
                cursor_ms,
                next_ms: None,
                grace_ms: grace.as_millis() as i64,
            });
        }
        for id in stale {
            self.timetable.remove(&id);
            self.refused.remove(&id);
        }
        self.revise_claimed_ahead(shard);
    }

    /// Fires of `shard` claimed ahead follow their job's reload: they run
    /// the job as it now stands, or not at all if at their instant it no
    /// longer fires then (removed, paused, schedule changed; a trigger is
    /// not an instant of the schedule and stays).
    fn revise_claimed_ahead(&mut self, shard: u32) {
        let timetable = &self.timetable;
        self.executor.revise_ahead(shard, |fire| {
            let Some(entry) = timetable.get(fire.job.id()) else {
                return AheadRevision::Withdraw("the job was removed after this fire was claimed ahead of its instant");
            };
            if entry.version == fire.version {
                AheadRevision::Keep
            } else if entry.job.spec.paused {
                AheadRevision::Withdraw("the job was paused after this fire was claimed ahead of its instant")
            } else if !fire.trigger
                && entry.job.next_after(fire.scheduled_ms - 1) != Some(fire.scheduled_ms)
            {
                AheadRevision::Withdraw("the job's schedule changed after this fire was claimed ahead; it no longer fires at this instant")
            } else {
                AheadRevision::Update {
                    job: entry.job.clone(),
                    version: entry.version,
                }
            }
        });
    }

    /// Says once per job version when its timing cannot be honoured fully.
    fn warn_timing(&mut self, stored: &StoredJob, grace: Duration) {
        let key = (stored.spec.id.clone(), stored.version);
        let asked = stored.spec.misfire_grace;
        let bound = self.settings.takeover_bound();
        if (grace >= asked && asked >= bound) || !self.warned.insert(key) {
            return;
        }
        if grace < asked {
            warn!(job = %stored.spec.id, ?asked, capped = ?grace, "misfire_grace exceeds claim_retention; capped");
        }
        if asked < bound {
            warn!(job = %stored.spec.id, grace = ?asked, takeover = ?bound, "misfire_grace is shorter than the crash takeover bound: fires due while a crashed owner is replaced will count as misfired");
        }
    }

    fn note_unreadable(&mut self, shard: u32, unreadable: Vec<shardcron_coord::UnreadableJob>) {
        let known = self.unreadable.get(&shard);
        for job in &unreadable {
            if !known.is_some_and(|k| k.contains(job)) {
                warn!(shard, job = %job.job_id, error = %job.error, "stored job cannot be read by this version; skipped, the rest of the shard runs");
            }
        }
        if unreadable.is_empty() {
            self.unreadable.remove(&shard);
        } else {
            self.unreadable.insert(shard, unreadable);
        }
        self.publish_unreadable();
    }

    pub(super) fn forget_unreadable(&mut self, shard: u32) {
        if self.unreadable.remove(&shard).is_some() {
            self.publish_unreadable();
        }
    }

    fn publish_unreadable(&self) {
        let n: usize = self.unreadable.values().map(Vec::len).sum();
        metrics::gauge!(m::JOBS_UNREADABLE).set(n as f64);
    }

    /// Reloads the shards whose jobs changed (events, polls, refused claims).
    pub(super) async fn reload_shards(&mut self) {
        let shards: Vec<u32> = std::mem::take(&mut self.reload)
            .into_iter()
            .filter(|s| self.held.get(s).is_some_and(|h| h.claimable()))
            .collect();
        if shards.is_empty() {
            return;
        }
        let t = Instant::now();
        let coord = self.coord.clone();
        let loaded = self.store(async { coord.load_shards(&shards).await }).await;
        match self.coord_result("load shards", t, loaded) {
            Some(loaded) => {
                for jobs in loaded {
                    if self.held.contains_key(&jobs.shard) {
                        // A version move may be a fire handed back by a
                        // node whose claim reply was lost: it waits as an
                        // open entry.
                        self.recovery.scan_soon(jobs.shard);
                        self.install_jobs(jobs, true);
                    }
                }
                self.read_triggers(&shards).await;
            }
            None => self.reload.extend(shards),
        }
    }

    /// Reads the queued manual triggers of `shards` (they stay queued until
    /// claimed); the next fire step claims and runs them.
    pub(super) async fn read_triggers(&mut self, shards: &[u32]) {
        let leases: Vec<(u32, u64)> = shards
            .iter()
            .filter_map(|s| self.held.get(s).map(|h| (*s, h.token)))
            .collect();
        if leases.is_empty() {
            return;
        }
        let t = Instant::now();
        let (coord, holder) = (self.coord.clone(), self.holder.clone());
        let read = self
            .store(async { coord.read_triggers(&leases, &holder).await })
            .await;
        let Some(triggers) = self.coord_result("read triggers", t, read) else {
            // The triggers are still queued; read them again with the next
            // reload (a lost reply delays a trigger, never loses it).
            self.reload.extend(leases.iter().map(|(s, _)| *s));
            return;
        };
        for trigger in triggers {
            // A job this node could not load stays queued for a node that can.
            if let Some(entry) = self.timetable.get(&trigger.job_id) {
                let version = entry.version;
                self.pending
                    .add_trigger((trigger.shard, trigger.job_id, trigger.at_ms), version);
            }
        }
        if !self.pending.is_empty() {
            self.retry_at = Some(Instant::now());
        }
    }

    /// Reloads held shards whose stored version moved (a missed event).
    /// Returns false when the poll itself failed, so it is retried soon: a
    /// lost event followed by a lost poll must not wait a whole interval.
    pub(super) async fn poll_versions(&mut self) -> bool {
        let mut shards: Vec<u32> = self.held.keys().copied().collect();
        if self.broadcast.version().is_some() {
            shards.push(self.broadcast.shard());
        }
        if shards.is_empty() {
            return true;
        }
        let t = Instant::now();
        let coord = self.coord.clone();
        let versions = self
            .store(async { coord.shard_versions(&shards).await })
            .await;
        let Some(versions) = self.coord_result("shard versions", t, versions) else {
            return false;
        };
        for (shard, version) in shards.into_iter().zip(versions) {
            if self.held.get(&shard).is_some_and(|h| h.version != version) {
                self.reload.insert(shard);
            } else if shard == self.broadcast.shard() && self.broadcast.version() != Some(version) {
                self.broadcast.mark_stale();
            }
        }
        true
    }
}
