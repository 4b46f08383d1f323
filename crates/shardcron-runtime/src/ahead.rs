//! The ahead line: fires claimed before their instant, waiting for it.
//!
//! Claiming ahead moves the claim's round trip out of the way of the start:
//! the store is asked while there is time, and the fire starts from a local
//! timer at its instant, so start lateness does not grow with the number of
//! fires due at once. Between the claim and the instant three things can
//! happen, and the line answers each:
//!
//! - *the instant comes*: [`AheadLine::take_due`] hands the fire to the
//!   executor, which applies the overlap policy then, against the runs going
//!   on at that moment, as for a fire claimed when due;
//! - *the job changes*: [`AheadLine::revise`] makes the fire run the job as
//!   it stands, or marks it withdrawn (job removed, paused, no longer firing
//!   at that instant). The mark is lifted by a later revision that finds the
//!   job firing at that instant again (a pause undone before the instant),
//!   and a fire still withdrawn at its instant ends `cancelled`;
//! - *the lease ends*: [`AheadLine::take_ended`] gives the fire up at once
//!   (the executor's start check records it `cancelled`, abandoning a
//!   tracked fire's open entry for the shard's next owner to recover).

use std::collections::btree_map::IntoValues;
use std::collections::BTreeMap;
use std::sync::Arc;

use shardcron_core::Job;

use crate::executor::ClaimedFire;

/// Most fires a node holds claimed ahead of their instant.
pub const MAX_CLAIMED_AHEAD: usize = 100_000;

/// What a reload of its job does to a fire claimed ahead.
#[derive(Clone, Debug)]
pub enum AheadRevision {
    /// The job is unchanged.
    Keep,
    /// The job changed and fires at this instant: run the job as it is now.
    Update {
        /// The job as it stands now.
        job: Arc<Job>,
        /// Its stored version.
        version: u64,
    },
    /// The job is gone, paused, or no longer fires at this instant: unless
    /// a later revision restores it, the fire ends `cancelled` at its
    /// instant, saying why.
    Withdraw(&'static str),
}

/// A fire in the ahead line.
#[derive(Debug)]
pub struct AheadFire {
    /// The claimed fire.
    pub fire: ClaimedFire,
    /// Why the fire will not run, if its job no longer fires at its instant.
    pub withdrawn: Option<&'static str>,
}

/// Fires claimed ahead, by (instant, arrival).
#[derive(Debug, Default)]
pub struct AheadLine {
    fires: BTreeMap<(i64, u64), AheadFire>,
    seq: u64,
}

impl AheadLine {
    /// Fires waiting.
    pub fn len(&self) -> usize {
        self.fires.len()
    }

    /// Whether no fire waits.
    pub fn is_empty(&self) -> bool {
        self.fires.is_empty()
    }

    /// How many more fires may wait.
    pub fn room(&self) -> usize {
        MAX_CLAIMED_AHEAD.saturating_sub(self.fires.len())
    }

    /// Adds a claimed fire.
    pub fn push(&mut self, fire: ClaimedFire) {
        self.seq += 1;
        self.fires.insert(
            (fire.scheduled_ms, self.seq),
            AheadFire {
                fire,
                withdrawn: None,
            },
        );
    }

    /// The earliest instant waited for.
    pub fn next_instant(&self) -> Option<i64> {
        self.fires.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Takes every fire whose instant is at or before `now_ms`, in order of
    /// (instant, arrival). The line is split at `now_ms` and the due part
    /// read out front to back: taking the first entry one at a time moves
    /// the rest of its tree node up each time, a copy of several fires per
    /// fire when thousands are released at one instant.
    pub fn take_due(&mut self, now_ms: i64) -> IntoValues<(i64, u64), AheadFire> {
        let later = self.fires.split_off(&(now_ms.saturating_add(1), 0));
        std::mem::replace(&mut self.fires, later).into_values()
    }

    /// Applies a reload of `shard`'s jobs to its waiting fires.
    pub fn revise(&mut self, shard: u32, revise: impl Fn(&ClaimedFire) -> AheadRevision) {
        for waiting in self.fires.values_mut().filter(|w| w.fire.shard == shard) {
            match revise(&waiting.fire) {
                AheadRevision::Keep => {}
                AheadRevision::Update { job, version } => {
                    waiting.fire.job = job;
                    waiting.fire.version = version;
                    waiting.withdrawn = None;
                }
                AheadRevision::Withdraw(why) => waiting.withdrawn = Some(why),
            }
        }
    }

    /// Takes every fire (of `shard`, or of all shards) that `ended` says can
    /// no longer start.
    pub fn take_ended(
        &mut self,
        shard: Option<u32>,
        ended: impl Fn(&ClaimedFire) -> bool,
    ) -> Vec<ClaimedFire> {
        let keys: Vec<(i64, u64)> = self
            .fires
            .iter()
            .filter(|(_, w)| shard.is_none_or(|s| s == w.fire.shard) && ended(&w.fire))
            .map(|(k, _)| *k)
            .collect();
        keys.iter()
            .filter_map(|k| self.fires.remove(k))
            .map(|w| w.fire)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease_watch::LeaseGuard;
    use shardcron_core::JobSpec;

    fn fire(id: &str, shard: u32, at: i64) -> ClaimedFire {
        let job = JobSpec::new(id, "@every 1s", "noop")
            .validate()
            .expect("valid");
        ClaimedFire {
            job: Arc::new(job),
            scheduled_ms: at,
            shard,
            token: 1,
            lease: LeaseGuard::ended(),
            catch_up: false,
            version: 1,
            delivery: 1,
            tracked: false,
            trigger: false,
        }
    }

    #[test]
    fn fires_leave_in_order_of_their_instants_once_due() {
        let mut line = AheadLine::default();
        line.push(fire("b", 0, 2000));
        line.push(fire("a", 0, 1000));
        line.push(fire("c", 0, 2000));
        line.push(fire("d", 0, 3000));
        assert_eq!(line.next_instant(), Some(1000));
        assert_eq!(line.take_due(999).count(), 0);
        let order: Vec<String> = line
            .take_due(2000)
            .map(|w| w.fire.job.id().to_owned())
            .collect();
        assert_eq!(order, ["a", "b", "c"], "same instant: in order of arrival");
        assert_eq!(line.len(), 1, "the later fire waits");
        assert_eq!(line.next_instant(), Some(3000));
        assert_eq!(line.take_due(i64::MAX).count(), 1);
        assert!(line.is_empty());
    }

    #[test]
    fn a_withdrawal_is_undone_by_a_later_revision_and_only_hits_its_shard() {
        let mut line = AheadLine::default();
        line.push(fire("a", 0, 1000));
        line.push(fire("b", 1, 1000));
        line.revise(0, |_| AheadRevision::Withdraw("paused"));
        line.revise(1, |_| AheadRevision::Keep);
        let mut due = line.take_due(1000);
        let a = due.next().expect("a");
        assert_eq!(a.withdrawn, Some("paused"));
        let b = due.next().expect("b");
        assert_eq!(b.withdrawn, None);
        line.push(fire("a", 0, 2000));
        line.revise(0, |_| AheadRevision::Withdraw("paused"));
        let resumed = Arc::new(
            JobSpec::new("a", "@every 1s", "other")
                .validate()
                .expect("valid"),
        );
        line.revise(0, |_| AheadRevision::Update {
            job: resumed.clone(),
            version: 3,
        });
        let a = line.take_due(2000).next().expect("a");
        assert_eq!(a.withdrawn, None, "resumed before its instant: it runs");
        assert_eq!(
            (a.fire.version, a.fire.job.spec.handler.as_str()),
            (3, "other")
        );
    }

    #[test]
    fn ended_fires_of_one_shard_leave_at_once() {
        let mut line = AheadLine::default();
        line.push(fire("a", 0, 5000));
        line.push(fire("b", 1, 5000));
        let ended = line.take_ended(Some(0), |_| true);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].job.id(), "a");
        assert_eq!(line.len(), 1);
        assert!(line.take_ended(None, |_| false).is_empty());
        assert_eq!(line.take_ended(None, |_| true).len(), 1);
        assert_eq!(line.room(), MAX_CLAIMED_AHEAD);
    }
}
