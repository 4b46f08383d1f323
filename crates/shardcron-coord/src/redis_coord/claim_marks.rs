//! What a coordinator knows of the watermarks its own claims wrote, so that
//! `claim.lua` can decide a batch without reading them (docs/ARCHITECTURE.md,
//! "Claim marks").
//!
//! Why: reading each fire's watermark, parsing it and checking whose record
//! it holds was most of the claim script's Redis CPU per fire (measured in
//! docs/BENCHMARKS.md §4y). A lease holder claiming every second already
//! knows those watermarks: they are the ones its previous claim wrote. The
//! store only has to confirm that nothing else wrote one since, which the
//! shard's claim mark (`|c`) and shard version say in one read per batch.
//!
//! The knowledge is kept per shard and replaced whole from the replies:
//!
//! * a batch the script decided by its per-fire checks and marked (status
//!   2) leaves exactly what that batch claimed, under its mark;
//! * a batch decided on its expected mark (status 3) adds what it claimed
//!   to the knowledge it was sent on, if that is still the shard's;
//! * anything else (a lost lease, an unmarked batch, a failed or lost
//!   reply) forgets the shard, and its next batch is read in full.
//!
//! So a shard's knowledge always describes the watermarks right after the
//! call that wrote its mark, and the script uses it only while that mark is
//! still the shard's.

use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::model::{BatchOutcome, ClaimBatch, ClaimOutcome};

/// How `claim.lua` reports a batch it decided (the status before its codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MarkStatus {
    /// The lease was not the batch's: nothing written.
    LeaseLost,
    /// Decided; no mark of this batch written.
    Unmarked,
    /// Decided by the per-fire checks; the batch's mark written.
    Marked,
    /// Decided on the expected mark; the batch's mark written.
    MarkedOnExpected,
}

impl MarkStatus {
    /// The status of a reply code, `None` for one the script never sends.
    pub(super) fn of(code: i64) -> Option<Self> {
        match code {
            -1 => Some(Self::LeaseLost),
            1 => Some(Self::Unmarked),
            2 => Some(Self::Marked),
            3 => Some(Self::MarkedOnExpected),
            _ => None,
        }
    }
}

/// The marks one batch is sent with (none, for a batch in a form that
/// carries no marks: `MarkPlan::default()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct MarkPlan {
    /// The mark the batch may be decided on: the shard's mark as this
    /// coordinator's knowledge has it, given only when every fire of the
    /// batch is after its job's known watermark and no job appears twice.
    pub(super) expected: Option<String>,
    /// The batch's own new mark, unique to this coordinator and batch.
    pub(super) mark: String,
}

/// One shard's watermarks as the call that wrote `mark` left them.
struct Known {
    holder: String,
    token: u64,
    /// The shard version the batch was decided at (its `loaded_at`).
    loaded: u64,
    mark: String,
    /// Per job, the ms of the watermark that call (or one before it, under
    /// the same mark chain) wrote with this holder's record.
    watermarks: HashMap<String, i64>,
}

/// The knowledge of one coordinator, for every shard it claimed in.
pub(super) struct ClaimMarks {
    /// Random per coordinator: a node restarted under the same id may keep
    /// its lease and token, and must not write a mark its earlier process
    /// wrote.
    instance: u64,
    next: AtomicU64,
    shards: Mutex<HashMap<u32, Known>>,
}

impl ClaimMarks {
    /// Empty knowledge, with a random instance id.
    pub(super) fn new() -> Self {
        let mut seed = RandomState::new().build_hasher();
        seed.write_u64(std::process::id().into());
        Self {
            instance: seed.finish(),
            next: AtomicU64::new(1),
            shards: Mutex::new(HashMap::new()),
        }
    }

    fn shards(&self) -> MutexGuard<'_, HashMap<u32, Known>> {
        self.shards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The marks `batch` is sent with.
    pub(super) fn plan(&self, batch: &ClaimBatch) -> MarkPlan {
        let mark = format!(
            "{:x}.{}",
            self.instance,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let expected = batch
            .loaded_at
            .and_then(|loaded| self.expected(batch, loaded));
        MarkPlan { expected, mark }
    }

    fn expected(&self, batch: &ClaimBatch, loaded: u64) -> Option<String> {
        let shards = self.shards();
        let known = shards.get(&batch.shard)?;
        if known.token != batch.token || known.loaded != loaded || known.holder != batch.holder {
            return None;
        }
        for fire in &batch.fires {
            let watermark = known.watermarks.get(fire.job_id.as_str())?;
            if !fire.is_plain() || fire.scheduled_ms <= *watermark {
                return None;
            }
        }
        // Each job once: a step sends its fires sorted by job, which shows
        // it without a set.
        let sorted = batch.fires.windows(2).all(|w| w[0].job_id < w[1].job_id);
        if !sorted {
            let mut jobs = HashSet::with_capacity(batch.fires.len());
            if !batch.fires.iter().all(|fire| jobs.insert(&fire.job_id)) {
                return None;
            }
        }
        Some(known.mark.clone())
    }

    /// Takes in the script's verdict on `batch`, sent with `plan`.
    pub(super) fn learn(
        &self,
        batch: &ClaimBatch,
        plan: &MarkPlan,
        status: MarkStatus,
        outcome: &BatchOutcome,
    ) {
        let (BatchOutcome::Claimed(codes), Some(loaded)) = (outcome, batch.loaded_at) else {
            self.forget(batch.shard);
            return;
        };
        let mut shards = self.shards();
        match status {
            MarkStatus::Marked => {
                let known = match shards.entry(batch.shard) {
                    Entry::Occupied(e) => {
                        let known = e.into_mut();
                        known.watermarks.clear();
                        known.holder.clone_from(&batch.holder);
                        known
                    }
                    Entry::Vacant(e) => e.insert(Known {
                        holder: batch.holder.clone(),
                        token: batch.token,
                        loaded,
                        mark: String::new(),
                        watermarks: HashMap::with_capacity(batch.fires.len()),
                    }),
                };
                known.token = batch.token;
                known.loaded = loaded;
                known.mark.clone_from(&plan.mark);
                record_claimed(&mut known.watermarks, batch, codes);
            }
            MarkStatus::MarkedOnExpected => {
                let still = shards.get_mut(&batch.shard).filter(|known| {
                    Some(&known.mark) == plan.expected.as_ref()
                        && known.token == batch.token
                        && known.loaded == loaded
                });
                match still {
                    Some(known) => {
                        known.mark.clone_from(&plan.mark);
                        record_claimed(&mut known.watermarks, batch, codes);
                    }
                    None => {
                        shards.remove(&batch.shard);
                    }
                }
            }
            MarkStatus::LeaseLost | MarkStatus::Unmarked => {
                shards.remove(&batch.shard);
            }
        }
    }

    /// Forgets what is known of `shard`: its next batch is read in full.
    pub(super) fn forget(&self, shard: u32) {
        self.shards().remove(&shard);
    }
}

/// Sets each claimed fire's job's watermark to the fire's instant (the
/// latest, should a job have two).
fn record_claimed(
    watermarks: &mut HashMap<String, i64>,
    batch: &ClaimBatch,
    codes: &[ClaimOutcome],
) {
    for (fire, code) in batch.fires.iter().zip(codes) {
        if *code != ClaimOutcome::Claimed {
            continue;
        }
        match watermarks.get_mut(fire.job_id.as_str()) {
            Some(at) => *at = (*at).max(fire.scheduled_ms),
            None => {
                watermarks.insert(fire.job_id.clone(), fire.scheduled_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FireClaim, FireKind};

    fn batch(token: u64, fires: &[(&str, i64)]) -> ClaimBatch {
        ClaimBatch {
            shard: 3,
            holder: "n1".to_owned(),
            token,
            fires: fires
                .iter()
                .map(|&(job, at)| FireClaim::new(job, at, FireKind::Scheduled, 1, 7))
                .collect(),
            ahead_ms: 0,
            loaded_at: Some(9),
        }
    }

    fn claimed(n: usize) -> BatchOutcome {
        BatchOutcome::Claimed(vec![ClaimOutcome::Claimed; n])
    }

    #[test]
    fn nothing_is_expected_before_a_marked_reply() {
        let marks = ClaimMarks::new();
        let b = batch(5, &[("a", 1000)]);
        assert_eq!(marks.plan(&b).expected, None);
        let plan = marks.plan(&b);
        marks.learn(&b, &plan, MarkStatus::Unmarked, &claimed(1));
        assert_eq!(marks.plan(&batch(5, &[("a", 2000)])).expected, None);
    }

    #[test]
    fn a_marked_reply_lets_the_next_fires_of_its_jobs_expect_its_mark() {
        let marks = ClaimMarks::new();
        let b = batch(5, &[("a", 1000), ("b", 1000)]);
        let plan = marks.plan(&b);
        marks.learn(&b, &plan, MarkStatus::Marked, &claimed(2));
        let next = batch(5, &[("a", 2000), ("b", 2000)]);
        let plan2 = marks.plan(&next);
        assert_eq!(plan2.expected.as_ref(), Some(&plan.mark));
        assert_ne!(plan2.mark, plan.mark);
        marks.learn(&next, &plan2, MarkStatus::MarkedOnExpected, &claimed(2));
        assert_eq!(
            marks.plan(&batch(5, &[("b", 3000)])).expected,
            Some(plan2.mark.clone())
        );
        // Jobs out of order, each once, are as good.
        assert_eq!(
            marks.plan(&batch(5, &[("b", 3000), ("a", 3000)])).expected,
            Some(plan2.mark)
        );
    }

    #[test]
    fn a_fire_not_after_its_known_watermark_or_of_an_unknown_job_expects_nothing() {
        let marks = ClaimMarks::new();
        let b = batch(5, &[("a", 1000)]);
        let plan = marks.plan(&b);
        marks.learn(&b, &plan, MarkStatus::Marked, &claimed(1));
        assert_eq!(marks.plan(&batch(5, &[("a", 1000)])).expected, None);
        assert_eq!(
            marks.plan(&batch(5, &[("a", 2000), ("z", 2000)])).expected,
            None
        );
        assert_eq!(
            marks.plan(&batch(5, &[("a", 2000), ("a", 3000)])).expected,
            None
        );
        assert_eq!(marks.plan(&batch(6, &[("a", 2000)])).expected, None);
        let mut other_load = batch(5, &[("a", 2000)]);
        other_load.loaded_at = Some(10);
        assert_eq!(marks.plan(&other_load).expected, None);
    }

    #[test]
    fn a_fire_not_claimed_leaves_its_jobs_watermark() {
        let marks = ClaimMarks::new();
        let b = batch(5, &[("a", 1000), ("b", 1000)]);
        let plan = marks.plan(&b);
        let codes =
            BatchOutcome::Claimed(vec![ClaimOutcome::Claimed, ClaimOutcome::AlreadyClaimed]);
        marks.learn(&b, &plan, MarkStatus::Marked, &codes);
        assert!(marks.plan(&batch(5, &[("a", 2000)])).expected.is_some());
        assert_eq!(marks.plan(&batch(5, &[("b", 2000)])).expected, None);
    }

    #[test]
    fn a_reply_on_knowledge_replaced_meanwhile_or_a_lost_lease_forgets_the_shard() {
        let marks = ClaimMarks::new();
        let b = batch(5, &[("a", 1000)]);
        let plan = marks.plan(&b);
        marks.learn(&b, &plan, MarkStatus::Marked, &claimed(1));
        let x = batch(5, &[("a", 2000)]);
        let plan_x = marks.plan(&x);
        let y = batch(5, &[("a", 3000)]);
        let plan_y = marks.plan(&y);
        // y's reply (decided in full) comes first, then x's on the old mark.
        marks.learn(&y, &plan_y, MarkStatus::Marked, &claimed(1));
        marks.learn(&x, &plan_x, MarkStatus::MarkedOnExpected, &claimed(1));
        assert_eq!(marks.plan(&batch(5, &[("a", 4000)])).expected, None);

        let plan = marks.plan(&b);
        marks.learn(&b, &plan, MarkStatus::Marked, &claimed(1));
        marks.learn(&b, &plan, MarkStatus::LeaseLost, &BatchOutcome::LeaseLost);
        assert_eq!(marks.plan(&batch(5, &[("a", 4000)])).expected, None);
    }

    #[test]
    fn two_coordinators_never_make_one_mark() {
        let (a, b) = (ClaimMarks::new(), ClaimMarks::new());
        let x = batch(5, &[("a", 1000)]);
        assert_ne!(a.plan(&x).mark, b.plan(&x).mark);
    }
}
