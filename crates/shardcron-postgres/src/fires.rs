//! Claims, open entries, recovery and hand-back: the steps that decide
//! whether a fire runs, each batch of them one function call.
//!
//! `claim()`, `recover()` and `hand_back()` (sql/0002_functions.sql) take
//! the whole request as one JSON document, so a call is one round trip and
//! one transaction: its lease check (a shared lock on the lease row, held
//! to commit) covers every write of its batch. A claim of more than
//! [`MAX_FIRES_PER_CALL`] fires is split into calls made one after the
//! other, so that no call runs into the statement timeout (each fire is a
//! row write); a batch split across calls whose
//! lease ended between them is answered like a lost reply (see
//! [`PostgresCoordinator::claim`]).

use std::time::Duration;

use serde_json::{json, Value};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordResult, FireKind, HandBack, OpenFire,
    RecoverBatch, RecoverOutcome, MAX_EARLY_CLAIM_MS,
};

use crate::coordinator::{duration_ms, PostgresCoordinator};
use crate::error::{corrupt, map_pg};

/// Most fires one `claim()` call carries.
pub const MAX_FIRES_PER_CALL: usize = 1000;

/// The answer of a batch so far joined with the answer of its next part.
fn join_parts(so_far: Option<BatchOutcome>, next: BatchOutcome) -> CoordResult<BatchOutcome> {
    match (so_far, next) {
        (None, next) => Ok(next),
        (Some(BatchOutcome::LeaseLost), BatchOutcome::LeaseLost) => Ok(BatchOutcome::LeaseLost),
        (Some(BatchOutcome::Claimed(mut codes)), BatchOutcome::Claimed(more)) => {
            codes.extend(more);
            Ok(BatchOutcome::Claimed(codes))
        }
        _ => Err(shardcron_coord::CoordError::Store {
            op: "claim fires",
            message: "the lease ended between the parts of a batch split across calls; \
                      its claims are resolved as after a lost reply"
                .to_owned(),
        }),
    }
}

impl PostgresCoordinator {
    /// `claim()`: the batches in calls of at most [`MAX_FIRES_PER_CALL`]
    /// fires, one round trip each (one in all for a step of ordinary size).
    /// A batch larger than that goes in parts, each with its own lease
    /// check; the parts' answers are joined. If the lease ended between two
    /// parts (some claimed, the rest refused), the call fails as if its
    /// reply were lost: the node then holds every fire of the batch as
    /// uncertain with its attempt, and resolves the claimed ones by taking
    /// its own attempts over or handing them back, as after any lost reply.
    pub(crate) async fn claim(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        // (index of the original batch, part)
        let mut parts: Vec<(usize, ClaimBatch)> = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            if batch.fires.len() <= MAX_FIRES_PER_CALL {
                parts.push((i, batch.clone()));
                continue;
            }
            for fires in batch.fires.chunks(MAX_FIRES_PER_CALL) {
                parts.push((
                    i,
                    ClaimBatch {
                        fires: fires.to_vec(),
                        ..batch.clone()
                    },
                ));
            }
        }
        let mut answers: Vec<Option<BatchOutcome>> = vec![None; batches.len()];
        let mut call: Vec<ClaimBatch> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        let mut size = 0;
        let last = parts.len();
        for (n, (owner, part)) in parts.into_iter().enumerate() {
            size += part.fires.len();
            call.push(part);
            owners.push(owner);
            if size >= MAX_FIRES_PER_CALL || n + 1 == last {
                let outcomes = self.claim_call(&call, retention).await?;
                for (owner, outcome) in owners.drain(..).zip(outcomes) {
                    answers[owner] = Some(join_parts(answers[owner].take(), outcome)?);
                }
                call.clear();
                size = 0;
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| corrupt("claim reply", "a batch without an answer")))
            .collect()
    }

    /// One `claim()` call: the given batches, one round trip.
    async fn claim_call(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let op = "claim fires";
        let request: Vec<Value> = batches
            .iter()
            .map(|b| {
                json!({
                    "shard": b.shard,
                    "holder": b.holder,
                    "token": b.token,
                    "early": MAX_EARLY_CLAIM_MS + b.ahead_ms.max(0),
                    "fires": b.fires.iter().map(|f| json!({
                        "job": f.job_id,
                        "at": f.scheduled_ms,
                        "kind": f.kind.code(),
                        "version": f.job_version,
                        "attempt": f.attempt.to_string(),
                        "uncertain": f.uncertain.iter().map(u64::to_string).collect::<Vec<_>>(),
                        "track": f.track_open,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let request = Value::Array(request);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.claim($1, $2)",
                &[&request, &duration_ms(retention)],
            )
            .await?;
        let reply: Vec<Vec<i64>> = serde_json::from_value(
            row.try_get::<_, Value>(0)
                .map_err(|e| map_pg(&self.url, op, &e))?,
        )
        .map_err(|e| corrupt("claim reply", e))?;
        Ok(reply
            .into_iter()
            .map(|codes| match codes.split_first() {
                Some((1, rest)) => BatchOutcome::Claimed(
                    rest.iter()
                        .map(|c| match c {
                            1 => ClaimOutcome::Claimed,
                            2 => ClaimOutcome::JobChanged,
                            3 => ClaimOutcome::NotYetDue,
                            _ => ClaimOutcome::AlreadyClaimed,
                        })
                        .collect(),
                ),
                _ => BatchOutcome::LeaseLost,
            })
            .collect())
    }

    /// The open entries of several shards, one statement.
    pub(crate) async fn read_open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "open fires";
        let wanted: Vec<i32> = shards.iter().map(|&s| s as i32).collect();
        let rows = self
            .query(
                op,
                "SELECT shard, job_id, at_ms, holder, token, delivery, kind::text, abandoned
                 FROM __SCHEMA__.open_fires WHERE shard = ANY ($1)",
                &[&wanted],
            )
            .await?;
        let mut out: Vec<Vec<OpenFire>> = vec![Vec::new(); shards.len()];
        for row in &rows {
            let parse = || -> Result<_, tokio_postgres::Error> {
                Ok((
                    row.try_get::<_, i32>(0)?,
                    row.try_get::<_, String>(1)?,
                    row.try_get::<_, i64>(2)?,
                    row.try_get::<_, String>(3)?,
                    row.try_get::<_, i64>(4)?,
                    row.try_get::<_, i32>(5)?,
                    row.try_get::<_, String>(6)?,
                    row.try_get::<_, bool>(7)?,
                ))
            };
            let (shard, job_id, at, holder, token, delivery, kind, abandoned) =
                parse().map_err(|e| map_pg(&self.url, op, &e))?;
            let kind = match kind.as_str() {
                "s" => FireKind::Scheduled,
                "t" => FireKind::Trigger,
                // Malformed entries are skipped, as the contract says.
                _ => continue,
            };
            let fire = OpenFire {
                shard: shard as u32,
                job_id,
                scheduled_ms: at,
                kind,
                holder,
                token: token.max(0) as u64,
                delivery: delivery.max(0) as u32,
                abandoned,
            };
            for (i, _) in shards.iter().enumerate().filter(|(_, &s)| s == fire.shard) {
                out[i].push(fire.clone());
            }
        }
        for fires in &mut out {
            fires.sort_by(|a, b| (a.scheduled_ms, &a.job_id).cmp(&(b.scheduled_ms, &b.job_id)));
        }
        Ok(out)
    }

    /// `recover()`: all batches, one round trip.
    pub(crate) async fn recover(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let op = "recover fires";
        let request = Value::Array(
            batches
                .iter()
                .map(|b| {
                    json!({
                        "shard": b.shard,
                        "holder": b.holder,
                        "token": b.token,
                        "fires": b.fires.iter().map(|f| json!({
                            "job": f.job_id,
                            "at": f.scheduled_ms,
                            "seen": f.value(),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.recover($1, $2)",
                &[&request, &duration_ms(retention)],
            )
            .await?;
        let reply: Vec<Vec<i64>> = serde_json::from_value(
            row.try_get::<_, Value>(0)
                .map_err(|e| map_pg(&self.url, op, &e))?,
        )
        .map_err(|e| corrupt("recover reply", e))?;
        Ok(reply
            .into_iter()
            .map(|codes| match codes.split_first() {
                Some((1, rest)) => {
                    RecoverOutcome::Recovered(rest.iter().map(|c| *c == 1).collect())
                }
                _ => RecoverOutcome::LeaseLost,
            })
            .collect())
    }

    /// `hand_back()`: all fires, one round trip; per fire whether it was
    /// handed back.
    pub(crate) async fn hand_back(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let op = "hand back fires";
        let request = Value::Array(
            fires
                .iter()
                .map(|f| {
                    json!({
                        "shard": f.shard,
                        "job": f.job_id,
                        "at": f.scheduled_ms,
                        "kind": f.kind.code(),
                        "token": f.token,
                        "lost": f.lost_attempts.iter().map(u64::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.hand_back($1, $2, $3)",
                &[&holder, &request, &duration_ms(retention)],
            )
            .await?;
        let codes: Vec<i64> = serde_json::from_value(
            row.try_get::<_, Value>(0)
                .map_err(|e| map_pg(&self.url, op, &e))?,
        )
        .map_err(|e| corrupt("hand back reply", e))?;
        if codes.len() != fires.len() {
            return Err(corrupt("hand back reply", format!("{codes:?}")));
        }
        Ok(codes.into_iter().map(|c| c == 1).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_batch_join_or_fail_like_a_lost_reply() {
        let claimed = |codes: &[ClaimOutcome]| BatchOutcome::Claimed(codes.to_vec());
        let one = join_parts(None, claimed(&[ClaimOutcome::Claimed])).expect("first");
        let two = join_parts(Some(one), claimed(&[ClaimOutcome::AlreadyClaimed])).expect("join");
        assert_eq!(
            two,
            claimed(&[ClaimOutcome::Claimed, ClaimOutcome::AlreadyClaimed])
        );
        let lost = join_parts(None, BatchOutcome::LeaseLost).expect("first");
        assert_eq!(
            join_parts(Some(lost), BatchOutcome::LeaseLost).expect("join"),
            BatchOutcome::LeaseLost
        );
        assert!(join_parts(Some(two), BatchOutcome::LeaseLost).is_err());
        assert!(join_parts(Some(BatchOutcome::LeaseLost), claimed(&[])).is_err());
    }
}
