//! Claims, open entries, recovery and hand-back: the steps that decide
//! whether a fire runs, each batch of them one function call.
//!
//! `claim()`, `recover()` and `hand_back()` (sql/0002_functions.sql) take
//! the whole request as one JSON document, so a call of any size is one
//! round trip and one transaction: its lease check (a shared lock on the
//! lease row, held to commit) covers every write of its batch.

use std::time::Duration;

use serde_json::{json, Value};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, ClaimOutcome, CoordResult, FireKind, HandBack, OpenFire,
    RecoverBatch, RecoverOutcome, MAX_EARLY_CLAIM_MS,
};

use crate::coordinator::{duration_ms, PostgresCoordinator};
use crate::error::{corrupt, map_pg};

impl PostgresCoordinator {
    /// `claim()`: all batches, one round trip.
    pub(crate) async fn claim(
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
