//! Membership, ring settings and placement: who is in the fleet, which
//! ring it agreed on, and the weights and placement every node places
//! shards by.

use std::time::Duration;

use shardcron_coord::{
    CoordError, CoordResult, MemberInfo, Membership, PlacementInputs, StoredPlacement,
};
use shardcron_core::{PlacementRecord, ShardWeights};

use crate::coordinator::{duration_ms, PostgresCoordinator};
use crate::error::{corrupt, map_pg};

impl PostgresCoordinator {
    fn config_args(&self) -> (Vec<String>, Vec<String>) {
        (
            vec![
                "shard_count".to_owned(),
                "vnodes".to_owned(),
                "load_bound_permille".to_owned(),
            ],
            vec![
                self.ring.shard_count.to_string(),
                self.ring.vnodes.to_string(),
                self.ring.load_bound_permille.to_string(),
            ],
        )
    }

    fn mismatch(&self, field: &str, stored: &str, given: &str) -> CoordError {
        CoordError::ConfigMismatch {
            namespace: self.namespace.clone(),
            field: field.to_owned(),
            stored: stored.to_owned(),
            given: given.to_owned(),
        }
    }

    /// `placement_inputs()` of the schema: '' none known, '-' not wanted.
    /// `placement_inputs()`: '' none known, '-' not wanted, else a version.
    pub(crate) async fn read_members(
        &self,
        known_weights: &str,
        known_placement: &str,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        let op = "list members";
        let refresh = i64::try_from(refresh.as_millis()).unwrap_or(i64::MAX);
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.placement_inputs($1, $2, $3)",
                &[&known_weights, &refresh, &known_placement],
            )
            .await?;
        let reply: serde_json::Value = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        let reply: MembersReply =
            serde_json::from_value(reply).map_err(|e| corrupt("member list", e))?;
        let weights = reply.included.then(|| {
            ShardWeights::from_pairs(
                reply.snapshot_version.max(0) as u64,
                reply
                    .weights
                    .iter()
                    .map(|&(shard, units)| (shard, units.max(0) as u64)),
            )
        });
        // A record that does not decode comes back empty (which no
        // placement accepts), so the caller replaces it by compare-and-set.
        let placement = reply.placement_included.then(|| StoredPlacement {
            version: reply.placement_version.max(0) as u64,
            record: serde_json::from_str::<PlacementRecord>(&reply.placement).unwrap_or(
                PlacementRecord {
                    members: Vec::new(),
                    owners: Vec::new(),
                },
            ),
        });
        let mut members = Vec::with_capacity(reply.members.len());
        for (id, info) in &reply.members {
            members.push(
                serde_json::from_str::<MemberInfo>(info)
                    .map_err(|e| corrupt(format!("member {id}"), e))?,
            );
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(PlacementInputs {
            membership: Membership {
                server_ms: reply.now,
                members,
            },
            weights,
            placement,
        })
    }

    /// [`shardcron_coord::Coordinator::ensure_config`]: `check_config()`.
    pub(crate) async fn check_config(&self) -> CoordResult<()> {
        let op = "ensure config";
        let (fields, values) = self.config_args();
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.check_config($1, $2)",
                &[&fields, &values],
            )
            .await?;
        let mismatch: Vec<String> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match mismatch.as_slice() {
            [] => Ok(()),
            [field, stored, given] => Err(self.mismatch(field, stored, given)),
            other => Err(corrupt("config check reply", format!("{other:?}"))),
        }
    }

    /// [`shardcron_coord::Coordinator::heartbeat`]: `heartbeat()`, the ring settings re-asserted in the same step.
    pub(crate) async fn beat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        let op = "heartbeat";
        let info = serde_json::to_string(member).map_err(|e| corrupt("member info", e))?;
        let (fields, values) = self.config_args();
        let row = self
            .query_one(
                op,
                "SELECT __SCHEMA__.heartbeat($1, $2, $3, $4, $5)",
                &[&member.id, &info, &duration_ms(ttl), &fields, &values],
            )
            .await?;
        let reply: Vec<String> = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
        match reply.as_slice() {
            [flag, field, stored, given] if flag == "-1" => {
                Err(self.mismatch(field, stored, given))
            }
            [_, now] => now.parse().map_err(|e| corrupt("heartbeat reply", e)),
            other => Err(corrupt("heartbeat reply", format!("{other:?}"))),
        }
    }

    /// [`shardcron_coord::Coordinator::deregister`]: `deregister()`.
    pub(crate) async fn leave(&self, node_id: &str) -> CoordResult<()> {
        self.query(
            "deregister",
            "SELECT __SCHEMA__.deregister($1)",
            &[&node_id],
        )
        .await?;
        Ok(())
    }

    /// [`shardcron_coord::Coordinator::store_placement`]: one compare-and-set `UPDATE` on the placement version.
    pub(crate) async fn put_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        let op = "store placement";
        let json = serde_json::to_string(record).map_err(|e| corrupt("placement", e))?;
        let rows = self
            .query(
                op,
                "UPDATE __SCHEMA__.state SET placement_version = placement_version + 1,
                     placement = $2
                 WHERE placement_version = $1 RETURNING placement_version",
                &[&(expected as i64), &json],
            )
            .await?;
        match rows.first() {
            Some(row) => {
                let v: i64 = row.try_get(0).map_err(|e| map_pg(&self.url, op, &e))?;
                Ok(Some(v.max(0) as u64))
            }
            None => Ok(None),
        }
    }
}

/// The reply of `placement_inputs()`.
#[derive(serde::Deserialize)]
struct MembersReply {
    now: i64,
    snapshot_version: i64,
    included: bool,
    weights: Vec<(u32, i64)>,
    placement_version: i64,
    placement_included: bool,
    placement: String,
    members: Vec<(String, String)>,
}
