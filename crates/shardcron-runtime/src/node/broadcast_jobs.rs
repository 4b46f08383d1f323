//! `broadcast` jobs: every live member runs each fire once, under its own
//! fire id (`job@ms/node`).
//!
//! Why no claim: a claim decides which one node runs a fire; here every
//! node runs it, so there is nothing to decide between nodes, and a store
//! write per member per fire would buy nothing. The jobs live in their own
//! shard (two past the ring's last), which no node leases and every node
//! loads, so a job write reaches every member through the same version
//! events and polls as any shard's. A node runs fires due from the moment
//! it first loaded the shard on: one that joins starts with the next fire,
//! one that was down does not catch up (no record of what it missed exists
//! to catch up from). While it runs, its own timetable cursor is what keeps
//! a fire from running twice on it, exactly as it keeps a claimed fire from
//! being claimed twice; the overlap, timeout, retry and panic rules are the
//! executor's, the same for every fire.

use foldhash::HashMap;
use std::time::Duration;

use metrics::counter;
use tokio::time::Instant;
use tracing::debug;

use super::Node;
use crate::executor::ClaimedFire;
use crate::lease_watch::LeaseWatch;
use crate::metrics as m;
use crate::timetable::DueFires;

/// How long the stand-in lease of broadcast fires lasts: they hold no
/// lease, so their guard never ends by itself (about a century).
const NO_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// This node's view of the broadcast shard.
pub(super) struct BroadcastJobs {
    shard: u32,
    /// The shard's version as last loaded (`None`: never loaded).
    version: Option<u64>,
    /// Server ms of the first load: fires at or before it are not run.
    joined_ms: Option<i64>,
    /// The shard must be (re)loaded.
    stale: bool,
    /// Stand-in lease of broadcast fires, never lost: their runs end by
    /// themselves, by timeout or by the drain deadline.
    watch: Option<LeaseWatch>,
}

impl BroadcastJobs {
    pub(super) fn new(shard: u32) -> Self {
        Self {
            shard,
            version: None,
            joined_ms: None,
            stale: true,
            watch: None,
        }
    }

    /// The broadcast shard's number.
    pub(super) fn shard(&self) -> u32 {
        self.shard
    }

    /// The shard changed (an event, a poll): load it again.
    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    pub(super) fn is_stale(&self) -> bool {
        self.stale
    }

    /// The earliest instant a broadcast fire may have to run on this node.
    pub(super) fn joined_ms(&self) -> i64 {
        self.joined_ms.unwrap_or(i64::MAX)
    }

    /// The version last loaded, if loaded.
    pub(super) fn version(&self) -> Option<u64> {
        self.version
    }
}

impl Node {
    /// Loads (or reloads) the broadcast shard's jobs into the timetable.
    pub(super) async fn load_broadcast(&mut self) {
        let shard = self.broadcast.shard;
        let t = Instant::now();
        let coord = self.coord.clone();
        let loaded = self
            .store(async { coord.load_shards(&[shard]).await })
            .await;
        let Some(mut loaded) = self.coord_result("load shards", t, loaded) else {
            return;
        };
        let Some(jobs) = loaded.pop() else {
            return;
        };
        let is_update = self.broadcast.version.is_some();
        if self.broadcast.joined_ms.is_none() {
            self.broadcast.joined_ms = Some(self.clock.now_ms());
        }
        self.broadcast.version = Some(jobs.version);
        self.broadcast.stale = false;
        self.install_jobs(jobs, is_update);
    }

    /// Runs broadcast fires due now (or claimed ahead): no claim, straight
    /// to the executor. Misfires are recorded by the policy as for any job.
    pub(super) fn dispatch_broadcast(&mut self, d: DueFires, now_ms: i64) {
        let Some(entry) = self.timetable.get(&d.job_id) else {
            return;
        };
        let job = entry.job.clone();
        let guard = self
            .broadcast
            .watch
            .get_or_insert_with(|| LeaseWatch::start(Instant::now() + NO_LEASE))
            .guard();
        self.record_misfires(&d, 0);
        let tolerance_ms = self.settings.on_time_tolerance.as_millis() as i64;
        let latest = d.run.last().copied();
        for &at in &d.run {
            let catch_up = now_ms - at > tolerance_ms || latest.is_some_and(|l| at < l);
            debug!(job = %d.job_id, at, "broadcast fire");
            counter!(m::FIRES_BY_PLACEMENT_TOTAL, "placement" => "broadcast").increment(1);
            if catch_up {
                counter!(m::CATCHUP_FIRES_TOTAL).increment(1);
            }
            self.executor.dispatch(ClaimedFire {
                job: job.clone(),
                scheduled_ms: at,
                shard: d.shard,
                token: 0,
                lease: guard.clone(),
                catch_up,
                version: d.version,
                delivery: 1,
                tracked: false,
                trigger: false,
            });
        }
    }

    /// The claim horizon of the broadcast shard: as far ahead as fires are
    /// claimed, with no lease to bound it.
    pub(super) fn broadcast_horizon(&self, horizons: &mut HashMap<u32, i64>, now_ms: i64) {
        if self.broadcast.version.is_some() {
            let ahead_ms = self.settings.claim_ahead.as_millis() as i64;
            horizons.insert(self.broadcast.shard, now_ms + ahead_ms);
        }
    }
}
