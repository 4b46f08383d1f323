//! Claims to make at the next fire step that are not in the timetable:
//! manual triggers read from the store, and fires whose claim reply was lost.
//!
//! Entries are keyed by fire id, so one fire is never in a batch twice. A
//! fire whose reply was lost keeps the ids of its lost attempts: the next
//! claim carries them, and the store hands the claim over only if the claim
//! key holds one of them, rewriting it with the new attempt. Each lost
//! attempt can therefore be taken over once, by one later attempt, and this
//! node runs a fire only on seeing a `Claimed` reply; after that the fire is
//! never claimed again, because it leaves this table when its batch is built
//! and only a lost reply puts it back.

use std::collections::BTreeMap;

use shardcron_coord::{FireClaim, FireKind};

/// The identity of a fire: shard, job id, scheduled ms.
pub(super) type FireKey = (u32, String, i64);

/// What is known of a fire still to claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) kind: FireKind,
    pub(super) version: u64,
    /// Attempts whose reply was lost; empty for a trigger not tried yet.
    pub(super) uncertain: Vec<u64>,
    /// A lost attempt was tracked (delivery `at_least_once`): if it landed,
    /// the fire has an open entry naming this node.
    pub(super) tracked: bool,
    /// Fencing token of the last lost attempt (0 if none).
    pub(super) token: u64,
}

impl Pending {
    /// Whether an earlier attempt may have landed, so only this node can
    /// resolve the fire.
    pub(super) fn is_uncertain(&self) -> bool {
        !self.uncertain.is_empty()
    }
}

/// Records a fire whose claim this node gave up resolving (the claim may
/// have landed, so the fire may never run): one run record, one count. A
/// tracked fire's open entry, if the claim landed, is abandoned for the
/// shard's next holder to recover.
pub(super) fn record_unresolved(
    executor: &crate::executor::Executor,
    (shard, job_id, at): &FireKey,
    pending: &Pending,
    reason: &'static str,
    why: &str,
) {
    tracing::warn!(job = %job_id, at, reason, "claim outcome never learned; given up");
    executor.record_lost(
        crate::executor::RecordFields {
            job_id,
            scheduled_ms: *at,
            shard: *shard,
            token: pending.token,
            job_label: None,
            open_delivery: pending.tracked.then_some(1),
        },
        reason,
        why,
        crate::executor::EntryChange::Abandon,
    );
}

/// Fires to claim that the timetable does not produce, one entry per fire.
#[derive(Debug, Default)]
pub(super) struct PendingClaims {
    by_fire: BTreeMap<FireKey, Pending>,
}

impl PendingClaims {
    /// True when nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.by_fire.is_empty()
    }

    /// Whether an unresolved claim of `shard` waits (the shard must not be
    /// released before it is resolved, or nobody could resolve it).
    pub(super) fn has_uncertain(&self, shard: u32) -> bool {
        self.by_fire
            .range((shard, String::new(), i64::MIN)..)
            .take_while(|((s, _, _), _)| *s == shard)
            .any(|(_, p)| p.is_uncertain())
    }

    /// Adds a trigger read from the store, unless that fire already waits.
    /// Whether a fire of `job_id` claimed under a version other than
    /// `version` is still unresolved (its reply was lost).
    pub(super) fn has_uncertain_of_other_version(&self, job_id: &str, version: u64) -> bool {
        self.by_fire
            .iter()
            .any(|((_, job, _), p)| job == job_id && p.version != version && p.is_uncertain())
    }

    pub(super) fn add_trigger(&mut self, key: FireKey, version: u64) {
        self.by_fire.entry(key).or_insert(Pending {
            kind: FireKind::Trigger,
            version,
            uncertain: Vec::new(),
            tracked: false,
            token: 0,
        });
    }

    /// Remembers a claim made under `token` whose reply was lost: its
    /// attempt joins the fire's uncertain attempts.
    pub(super) fn lost_reply(&mut self, key: FireKey, claim: &FireClaim, token: u64) {
        let entry = self.by_fire.entry(key).or_insert(Pending {
            kind: claim.kind,
            version: claim.job_version,
            uncertain: Vec::new(),
            tracked: false,
            token,
        });
        entry.tracked |= claim.track_open;
        entry.token = token;
        for &a in claim
            .uncertain
            .iter()
            .chain(std::iter::once(&claim.attempt))
        {
            if !entry.uncertain.contains(&a) {
                entry.uncertain.push(a);
            }
        }
    }

    /// Puts an entry back unchanged (its shard could not be claimed now).
    pub(super) fn keep(&mut self, key: FireKey, pending: Pending) {
        self.by_fire.insert(key, pending);
    }

    /// Takes every entry, for the next fire step to sort.
    pub(super) fn take_all(&mut self) -> BTreeMap<FireKey, Pending> {
        std::mem::take(&mut self.by_fire)
    }

    /// Takes the uncertain entries of the shards `claimable` says this node
    /// cannot claim now: only a hand-back resolves them.
    pub(super) fn take_uncertain_unclaimable(
        &mut self,
        claimable: impl Fn(u32) -> bool,
    ) -> Vec<(FireKey, Pending)> {
        let (out, keep): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.by_fire)
            .into_iter()
            .partition(|((shard, _, _), p)| p.is_uncertain() && !claimable(*shard));
        self.by_fire = keep;
        out.into_iter().collect()
    }

    /// Drops every entry that is not uncertain (leaving: triggers stay
    /// queued in the store for the next owner).
    pub(super) fn forget_all_certain(&mut self) {
        self.by_fire.retain(|_, p| p.is_uncertain());
    }

    /// Drops the entries of a shard that are not uncertain (triggers still
    /// queued in the store, which the next owner reads).
    pub(super) fn forget_certain(&mut self, shard: u32) {
        self.by_fire
            .retain(|(s, _, _), p| *s != shard || p.is_uncertain());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(attempt: u64, uncertain: Vec<u64>) -> FireClaim {
        FireClaim {
            uncertain,
            ..FireClaim::new("j", 1000, FireKind::Scheduled, 1, attempt)
        }
    }

    #[test]
    fn one_entry_per_fire_and_lost_attempts_accumulate() {
        let mut p = PendingClaims::default();
        let key: FireKey = (3, "j".into(), 1000);
        p.lost_reply(key.clone(), &claim(1, vec![]), 1);
        p.lost_reply(key.clone(), &claim(2, vec![1]), 1);
        p.add_trigger(key.clone(), 1);
        let all = p.take_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[&key].uncertain, vec![1, 2]);
        assert!(p.is_empty());
    }

    #[test]
    fn uncertain_entries_are_found_per_shard() {
        let mut p = PendingClaims::default();
        p.add_trigger((2, "a".into(), 1), 1);
        assert!(!p.has_uncertain(2));
        p.lost_reply((2, "b".into(), 5), &claim(7, vec![]), 1);
        assert!(p.has_uncertain(2));
        assert!(!p.has_uncertain(1) && !p.has_uncertain(3));
        p.forget_certain(2);
        assert_eq!(p.take_all().len(), 1);
    }
}
