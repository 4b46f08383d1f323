//! How a step's claim batches are packed into `claim.lua` calls, and how a
//! call's flat reply is split back into one outcome per batch.
//!
//! A node claims for many shards in one step. One script call per shard
//! cost a call's fixed overhead (the `EVALSHA`, the script's `TIME`, its
//! argument tables) once per shard, which at one job per shard was most of
//! the Redis work of a fire. The script takes any number of batches, each
//! decided on its own exactly as a call of its own would decide it (its own
//! lease check, its own watermarks); the batches only share the call and
//! the server time it read. Calls are capped at [`MAX_FIRES_PER_CALL`]
//! fires so that one script never holds the server long: a 100,000-fire
//! burst becomes a pipeline of calls other clients' commands interleave
//! with. One batch is never split: its fires are decided in order within
//! one atomic step.

use std::time::Duration;

use crate::coordinator::CoordResult;
use crate::error::CoordError;
use crate::keyspace::Keyspace;
use crate::model::{BatchOutcome, ClaimBatch, ClaimOutcome, FireClaim, MAX_EARLY_CLAIM_MS};

use super::claim_marks::{MarkPlan, MarkStatus};

/// Fires one `claim.lua` call carries at most, unless a single batch is
/// larger (a batch is never split).
pub(super) const MAX_FIRES_PER_CALL: usize = 2_000;

/// The batches grouped into calls, in order: each call takes batches until
/// adding the next would pass [`MAX_FIRES_PER_CALL`] fires.
pub(super) fn claim_calls(batches: &[ClaimBatch]) -> Vec<&[ClaimBatch]> {
    let mut calls = Vec::new();
    let mut start = 0;
    let mut fires = 0;
    for (i, batch) in batches.iter().enumerate() {
        if i > start && fires + batch.fires.len() > MAX_FIRES_PER_CALL {
            calls.push(&batches[start..i]);
            start = i;
            fires = 0;
        }
        fires += batch.fires.len();
    }
    if start < batches.len() {
        calls.push(&batches[start..]);
    }
    calls
}

/// How `claim.lua` is given a batch's fires (its `f`): the fewer strings
/// per fire, the less Redis parses and Lua interns, which is most of what a
/// claim costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// Plain fires sharing one attempt id, under the caller's promise of
    /// the shard version their job versions were read at: job id and
    /// instant per fire; the versions are decided from the shard.
    ByShard {
        /// The promised shard version (`ClaimBatch::loaded_at`).
        loaded: u64,
        /// The attempt id every fire carries.
        attempt: u64,
    },
    /// Plain fires: job id, instant, job version, attempt per fire.
    Plain,
    /// Any fire: the four, then kind, uncertain attempts, open entry.
    Full,
}

impl Form {
    fn of(batch: &ClaimBatch) -> Self {
        let Some(first) = batch.fires.first() else {
            return Form::Plain;
        };
        if batch.fires.iter().any(|f| !f.is_plain()) {
            Form::Full
        } else if let Some(loaded) = batch
            .loaded_at
            .filter(|_| batch.fires.iter().all(|f| f.attempt == first.attempt))
        {
            Form::ByShard {
                loaded,
                attempt: first.attempt,
            }
        } else {
            Form::Plain
        }
    }

    fn code(self) -> &'static str {
        match self {
            Form::ByShard { .. } => "2",
            Form::Plain => "4",
            Form::Full => "7",
        }
    }
}

/// The keys and arguments of one `claim.lua` call carrying `call`'s
/// batches, in the layout the script's header describes, and the claim
/// marks each batch was sent with: `plan`'s for a batch in the by-shard
/// form (the only one that carries marks), none for any other.
pub(super) fn claim_call_args(
    keys: &Keyspace,
    call: &[ClaimBatch],
    plan: &mut impl FnMut(&ClaimBatch) -> MarkPlan,
    retention: Duration,
) -> (Vec<String>, Vec<String>, Vec<MarkPlan>) {
    let fires: usize = call.iter().map(|b| b.fires.len()).sum();
    let mut call_keys = Vec::with_capacity(call.len() * 5);
    let mut args = Vec::with_capacity(1 + call.len() * 7 + fires * 4);
    args.push(retention.as_millis().to_string());
    let mut plans = Vec::with_capacity(call.len());
    for batch in call {
        let form = Form::of(batch);
        call_keys.extend([
            keys.lease(batch.shard),
            keys.last_fired(batch.shard),
            keys.triggers(batch.shard),
            keys.open_fires(batch.shard),
        ]);
        args.push(format!("{}|{}", batch.holder, batch.token));
        args.push(keys.claim_prefix(batch.shard));
        args.push((MAX_EARLY_CLAIM_MS + batch.ahead_ms.max(0)).to_string());
        args.push(batch.fires.len().to_string());
        args.push(form.code().to_owned());
        if let Form::ByShard { loaded, attempt } = form {
            call_keys.push(keys.shard_version(batch.shard));
            args.push(loaded.to_string());
            args.push(attempt.to_string());
            let marks = plan(batch);
            args.push(marks.expected.clone().unwrap_or_default());
            args.push(marks.mark.clone());
            plans.push(marks);
            let runs: Vec<&[FireClaim]> = batch
                .fires
                .chunk_by(|a, b| a.scheduled_ms == b.scheduled_ms)
                .collect();
            args.push(runs.len().to_string());
            for run in runs {
                args.push(run[0].scheduled_ms.to_string());
                args.push(run.len().to_string());
                args.extend(run.iter().map(|fire| fire.job_id.clone()));
            }
            continue;
        }
        plans.push(MarkPlan::default());
        for fire in &batch.fires {
            args.push(fire.job_id.clone());
            args.push(fire.scheduled_ms.to_string());
            args.push(fire.job_version.to_string());
            args.push(fire.attempt.to_string());
            if form == Form::Full {
                args.push(fire.kind.code().to_owned());
                args.push(
                    fire.uncertain
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                );
                args.push(if fire.track_open { "1" } else { "" }.to_owned());
            }
        }
    }
    (call_keys, args, plans)
}

/// Appends one outcome and one mark status per batch of `call` from the
/// call's reply: per batch `-1` (lease lost), or a status (1, 2 or 3)
/// followed by one code per fire.
pub(super) fn split_claim_reply(
    call: &[ClaimBatch],
    codes: &[i64],
    outcomes: &mut Vec<(BatchOutcome, MarkStatus)>,
) -> CoordResult<()> {
    let malformed = |message: String| CoordError::Corrupt {
        what: "claim.lua reply".to_owned(),
        message,
    };
    let mut rest = codes;
    for batch in call {
        let status = rest.first().and_then(|&c| MarkStatus::of(c));
        match (rest.split_first(), status) {
            (Some((-1, tail)), _) => {
                outcomes.push((BatchOutcome::LeaseLost, MarkStatus::LeaseLost));
                rest = tail;
            }
            (Some((_, tail)), Some(status)) => {
                let n = batch.fires.len();
                if tail.len() < n {
                    return Err(malformed(format!(
                        "{} codes left for a batch of {n} fires",
                        tail.len()
                    )));
                }
                let (fires, tail) = tail.split_at(n);
                outcomes.push((
                    BatchOutcome::Claimed(fires.iter().map(|&c| claim_outcome(c)).collect()),
                    status,
                ));
                rest = tail;
            }
            (Some((other, _)), None) => {
                return Err(malformed(format!("unexpected batch status {other}")))
            }
            (None, _) => return Err(malformed("reply ended before its batches".to_owned())),
        }
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(malformed(format!(
            "{} codes past the last batch",
            rest.len()
        )))
    }
}

fn claim_outcome(code: i64) -> ClaimOutcome {
    match code {
        1 => ClaimOutcome::Claimed,
        2 => ClaimOutcome::JobChanged,
        3 => ClaimOutcome::NotYetDue,
        _ => ClaimOutcome::AlreadyClaimed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FireKind;

    fn batch(shard: u32, fires: usize) -> ClaimBatch {
        ClaimBatch {
            shard,
            holder: "n".to_owned(),
            token: 1,
            fires: (0..fires)
                .map(|i| FireClaim {
                    job_id: format!("j{i}"),
                    scheduled_ms: 1_000,
                    kind: FireKind::Scheduled,
                    job_version: 1,
                    attempt: 1,
                    uncertain: Vec::new(),
                    track_open: false,
                })
                .collect(),
            ahead_ms: 0,
            loaded_at: None,
        }
    }

    fn plans(expected: Option<&str>) -> impl FnMut(&ClaimBatch) -> MarkPlan + '_ {
        move |_| MarkPlan {
            expected: expected.map(str::to_owned),
            mark: "m2".to_owned(),
        }
    }

    #[test]
    fn a_batch_is_sent_in_the_shortest_form_its_fires_allow() {
        let keys = Keyspace::new("ns");
        let mut by_shard = batch(3, 2);
        by_shard.loaded_at = Some(41);
        let nine = Duration::from_secs(9);
        let (k, args, _) = claim_call_args(&keys, &[by_shard.clone()], &mut plans(None), nine);
        assert_eq!(k.len(), 5, "{k:?}");
        assert_eq!(k[4], keys.shard_version(3));
        // Fire count, form, loaded shard version, the one attempt, the
        // expected mark (none), the batch's mark, then the fires in runs
        // of one instant: one run (instant, two fires).
        assert_eq!(
            &args[4..],
            &["2", "2", "41", "1", "", "m2", "1", "1000", "2", "j0", "j1"].map(str::to_owned),
        );
        // Runs follow the batch's order: an instant met again starts a run.
        let mut three = batch(3, 3);
        three.loaded_at = Some(41);
        three.fires[1].scheduled_ms = 2_000;
        let (_, args, _) = claim_call_args(&keys, &[three], &mut plans(None), nine);
        assert_eq!(
            &args[10..],
            &["3", "1000", "1", "j0", "2000", "1", "j1", "1000", "1", "j2"].map(str::to_owned),
        );
        let (_, args, _) =
            claim_call_args(&keys, &[by_shard.clone()], &mut plans(Some("m1")), nine);
        assert_eq!(&args[8..10], &["m1", "m2"].map(str::to_owned));
        // Attempts that differ need a field each.
        let mut two_attempts = by_shard.clone();
        two_attempts.fires[1].attempt = 2;
        let (k, args, _) = claim_call_args(&keys, &[two_attempts], &mut plans(Some("m1")), nine);
        assert_eq!(k.len(), 4);
        assert_eq!(args[5], "4");
        assert_eq!(&args[6..10], &["j0", "1000", "1", "1"].map(str::to_owned));
        // A fire that is not plain needs all seven.
        let mut full = by_shard;
        full.fires[0].uncertain = vec![7, 8];
        let (k, args, _) = claim_call_args(&keys, &[full], &mut plans(Some("m1")), nine);
        assert_eq!(k.len(), 4);
        assert_eq!(args[5], "7");
        assert_eq!(
            &args[6..13],
            &["j0", "1000", "1", "1", "s", "7,8", ""].map(str::to_owned)
        );
    }

    #[test]
    fn batches_fill_calls_up_to_the_cap_and_a_large_batch_goes_alone() {
        let batches = vec![
            batch(0, 1_500),
            batch(1, 400),
            batch(2, 200),
            batch(3, 5_000),
            batch(4, 1),
        ];
        let sizes: Vec<Vec<u32>> = claim_calls(&batches)
            .iter()
            .map(|call| call.iter().map(|b| b.shard).collect())
            .collect();
        assert_eq!(sizes, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        assert!(claim_calls(&[]).is_empty());
    }

    #[test]
    fn a_flat_reply_splits_into_one_outcome_per_batch() {
        let call = [batch(0, 2), batch(1, 3), batch(2, 2)];
        let mut outcomes = Vec::new();
        split_claim_reply(&call, &[1, 1, 0, -1, 3, 2, 3], &mut outcomes).expect("split");
        assert_eq!(
            outcomes,
            vec![
                (
                    BatchOutcome::Claimed(vec![
                        ClaimOutcome::Claimed,
                        ClaimOutcome::AlreadyClaimed
                    ]),
                    MarkStatus::Unmarked
                ),
                (BatchOutcome::LeaseLost, MarkStatus::LeaseLost),
                (
                    BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged, ClaimOutcome::NotYetDue]),
                    MarkStatus::MarkedOnExpected
                ),
            ]
        );
    }

    #[test]
    fn a_reply_of_the_wrong_length_is_an_error() {
        let call = [batch(0, 2)];
        for reply in [&[1, 1][..], &[1, 1, 1, 1], &[], &[7, 1, 1]] {
            let mut outcomes = Vec::new();
            assert!(
                split_claim_reply(&call, reply, &mut outcomes).is_err(),
                "{reply:?}"
            );
        }
    }
}
