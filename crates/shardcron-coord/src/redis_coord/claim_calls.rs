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

use crate::coordinator::CoordResult;
use crate::error::CoordError;
use crate::model::{BatchOutcome, ClaimBatch, ClaimOutcome};

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

/// Appends one outcome per batch of `call` from the call's reply: per
/// batch `-1` (lease lost), or `1` followed by one code per fire.
pub(super) fn split_claim_reply(
    call: &[ClaimBatch],
    codes: &[i64],
    outcomes: &mut Vec<BatchOutcome>,
) -> CoordResult<()> {
    let malformed = |message: String| CoordError::Corrupt {
        what: "claim.lua reply".to_owned(),
        message,
    };
    let mut rest = codes;
    for batch in call {
        match rest.split_first() {
            Some((1, tail)) => {
                let n = batch.fires.len();
                if tail.len() < n {
                    return Err(malformed(format!(
                        "{} codes left for a batch of {n} fires",
                        tail.len()
                    )));
                }
                let (fires, tail) = tail.split_at(n);
                outcomes.push(BatchOutcome::Claimed(
                    fires.iter().map(|&c| claim_outcome(c)).collect(),
                ));
                rest = tail;
            }
            Some((-1, tail)) => {
                outcomes.push(BatchOutcome::LeaseLost);
                rest = tail;
            }
            Some((other, _)) => return Err(malformed(format!("unexpected batch status {other}"))),
            None => return Err(malformed("reply ended before its batches".to_owned())),
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
    use crate::model::{FireClaim, FireKind};

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
        }
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
        split_claim_reply(&call, &[1, 1, 0, -1, 1, 2, 3], &mut outcomes).expect("split");
        assert_eq!(
            outcomes,
            vec![
                BatchOutcome::Claimed(vec![ClaimOutcome::Claimed, ClaimOutcome::AlreadyClaimed]),
                BatchOutcome::LeaseLost,
                BatchOutcome::Claimed(vec![ClaimOutcome::JobChanged, ClaimOutcome::NotYetDue]),
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
