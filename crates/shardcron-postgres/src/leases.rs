//! Shard leases: acquisition with fencing tokens, renewal and release,
//! each for many shards in one statement.

use std::time::Duration;

use shardcron_coord::{CoordResult, LeaseGrant, LeaseInfo};

use crate::coordinator::{duration_ms, PostgresCoordinator};
use crate::error::map_pg;

impl PostgresCoordinator {
    /// [`shardcron_coord::Coordinator::server_time_ms`]: the server's `clock_timestamp()`.
    pub(crate) async fn now_ms(&self) -> CoordResult<i64> {
        let op = "time";
        let row = self
            .query_one(op, "SELECT __SCHEMA__.now_ms()", &[])
            .await?;
        row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))
    }

    /// [`shardcron_coord::Coordinator::acquire_leases`]: `acquire()`, all shards in one call.
    pub(crate) async fn acquire(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "acquire leases";
        let rows = self
            .query(
                op,
                "SELECT granted, cur_holder, cur_token FROM __SCHEMA__.acquire($1, $2, $3)
                 ORDER BY ord",
                &[&shards_param(shards), &holder, &duration_ms(ttl)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let granted: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
            if granted >= 0 {
                out.push(LeaseGrant::Granted {
                    token: granted as u64,
                });
            } else {
                let holder: Option<String> =
                    row.try_get(1).map_err(|e| map_pg(&self.url, op, &e))?;
                let token: Option<i64> = row.try_get(2).map_err(|e| map_pg(&self.url, op, &e))?;
                out.push(LeaseGrant::HeldBy {
                    holder: holder.unwrap_or_default(),
                    token: token.unwrap_or(0).max(0) as u64,
                });
            }
        }
        Ok(out)
    }

    /// [`shardcron_coord::Coordinator::renew_leases`]: one statement that locks the leases still ours in shard order, extends them and answers per requested lease.
    pub(crate) async fn renew(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let op = "renew leases";
        let (shards, tokens) = tokens_param(leases);
        // One statement: lock the rows still ours in shard order, extend
        // them, and answer per requested lease.
        let rows = self
            .query(
                op,
                "WITH want AS (
                     SELECT * FROM unnest($1::integer[], $2::bigint[]) WITH ORDINALITY
                         AS u(shard, token, ord)),
                 mine AS (
                     SELECT l.shard FROM __SCHEMA__.leases l JOIN want w
                         ON l.shard = w.shard AND l.token = w.token
                     WHERE l.holder = $3 AND l.deadline_ms > __SCHEMA__.now_ms()
                     ORDER BY l.shard FOR UPDATE OF l),
                 renewed AS (
                     UPDATE __SCHEMA__.leases l SET deadline_ms = __SCHEMA__.now_ms() + $4
                     FROM mine WHERE l.shard = mine.shard RETURNING l.shard)
                 SELECT renewed.shard IS NOT NULL FROM want
                     LEFT JOIN renewed ON renewed.shard = want.shard ORDER BY want.ord",
                &[&shards, &tokens, &holder, &duration_ms(ttl)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, bool>(0))
            .collect::<Result<Vec<bool>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }

    /// [`shardcron_coord::Coordinator::release_leases`]: `release()`, all leases in one call.
    pub(crate) async fn release(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<bool>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let op = "release leases";
        let (shards, tokens) = tokens_param(leases);
        let rows = self
            .query(
                op,
                "SELECT __SCHEMA__.release($1, $2, $3)",
                &[&shards, &tokens, &holder],
            )
            .await?;
        let released = rows
            .iter()
            .map(|r| r.try_get::<_, i32>(0))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| map_pg(&self.url, op, &e))?;
        Ok(leases
            .iter()
            .map(|&(s, _)| released.contains(&(s as i32)))
            .collect())
    }

    /// [`shardcron_coord::Coordinator::lease_holders`]: the live holders, one statement.
    pub(crate) async fn holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let op = "lease holders";
        let rows = self
            .query(
                op,
                "SELECT l.holder, l.token FROM unnest($1::integer[]) WITH ORDINALITY AS u(shard, ord)
                 LEFT JOIN __SCHEMA__.leases l ON l.shard = u.shard AND l.holder IS NOT NULL
                     AND l.deadline_ms > __SCHEMA__.now_ms()
                 ORDER BY u.ord",
                &[&shards_param(shards)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let holder: Option<String> = row.try_get(0)?;
                let token: Option<i64> = row.try_get(1)?;
                Ok(holder.map(|holder| LeaseInfo {
                    holder,
                    token: token.unwrap_or(0).max(0) as u64,
                }))
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| map_pg(&self.url, op, &e))
    }
}

pub(crate) fn shards_param(shards: &[u32]) -> Vec<i32> {
    shards.iter().map(|&s| s as i32).collect()
}

pub(crate) fn tokens_param(leases: &[(u32, u64)]) -> (Vec<i32>, Vec<i64>) {
    leases.iter().map(|&(s, t)| (s as i32, t as i64)).unzip()
}
