//! The fleet status report: members, shard ownership, balance and handoffs.
//!
//! Each node computes the ring on its own, so "who should own shard 17" is a
//! pure function of the member list, while "who does own it" is whoever holds
//! the lease. Showing both, and every shard where they differ, is how an
//! operator sees a rebalance in progress (or stuck). The report is a plain
//! serde struct so `shardcron status --json` and the HTTP API's `GET
//! /v1/status` serve the same data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardcron_coord::{CoordError, Coordinator};
use shardcron_core::{shard_of, ShardMap};
use utoipa::ToSchema;

/// Page size used when reading the job index.
const JOB_PAGE: usize = 1000;

/// One live member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberStatus {
    /// Node id.
    pub id: String,
    /// Software version the node reports.
    pub version: String,
    /// When it started, Unix ms.
    pub started_ms: i64,
    /// Server time minus start time, ms.
    pub age_ms: i64,
    /// Admin address it publishes, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Shards the ring assigns to it.
    pub shards: u32,
    /// Shards whose lease it holds right now.
    pub leases: u32,
    /// Jobs in the shards the ring assigns to it.
    pub jobs: usize,
}

/// Shard counts per member over the ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BalanceReport {
    /// Most shards of one member.
    pub max: u32,
    /// Fewest shards of one member.
    pub min: u32,
    /// Shards per member on average.
    pub mean: f64,
    /// `max / mean` (1.0 is a perfect spread; 0 without members).
    pub max_over_mean: f64,
}

/// A shard whose lease holder is not its ring owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardChurn {
    /// Shard number.
    pub shard: u32,
    /// Owner by the ring over the live members (`None` without members).
    pub ring_owner: Option<String>,
    /// Node holding the lease (`None`: nobody).
    pub lease_holder: Option<String>,
    /// Fencing token of the current lease, if any.
    pub token: Option<u64>,
}

/// Status of a namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    /// Namespace.
    pub namespace: String,
    /// Server time of the member read, Unix ms.
    pub server_time_ms: i64,
    /// Shard count of the namespace.
    pub shard_count: u32,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Live members, sorted by id.
    pub members: Vec<MemberStatus>,
    /// Jobs in the namespace.
    pub jobs: usize,
    /// Shard balance over the ring.
    pub balance: BalanceReport,
    /// Shards leased by a node that holds no ring assignment for them, or
    /// not leased at all.
    pub churn: Vec<ShardChurn>,
    /// True when `churn` is not empty: a handoff is in progress (or stuck).
    pub churn_in_progress: bool,
    /// Leases held by nodes that are not live members, per node.
    pub leases_of_non_members: BTreeMap<String, u32>,
}

/// Reads members, the job index and every shard's lease holder (one
/// pipeline) and builds the report.
pub async fn collect(coord: &dyn Coordinator) -> Result<StatusReport, CoordError> {
    let ring = coord.ring_config();
    let membership = coord.members().await?;
    let ids: Vec<&str> = membership.members.iter().map(|m| m.id.as_str()).collect();
    let map = ShardMap::compute(&ids, ring);

    let mut jobs_per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    let mut jobs = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page = coord.list_jobs("", after.as_deref(), JOB_PAGE).await?;
        for id in &page.ids {
            *jobs_per_shard
                .entry(shard_of(id, ring.shard_count))
                .or_default() += 1;
            jobs += 1;
        }
        match page.next {
            Some(next) if !page.ids.is_empty() => after = Some(next),
            _ => break,
        }
    }

    let shards: Vec<u32> = (0..ring.shard_count).collect();
    let holders = coord.lease_holders(&shards).await?;

    let counts = map.counts();
    let mut leases: BTreeMap<String, u32> = BTreeMap::new();
    let mut jobs_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut churn = Vec::new();
    for (&shard, holder) in shards.iter().zip(&holders) {
        let owner = map.owner(shard);
        let holder_node = holder.as_ref().map(|h| h.node_id().to_owned());
        if let Some(node) = &holder_node {
            *leases.entry(node.clone()).or_default() += 1;
        }
        if let Some(owner) = owner {
            *jobs_of.entry(owner.to_owned()).or_default() +=
                jobs_per_shard.get(&shard).copied().unwrap_or(0);
        }
        if owner != holder_node.as_deref() {
            churn.push(ShardChurn {
                shard,
                ring_owner: owner.map(str::to_owned),
                lease_holder: holder_node,
                token: holder.as_ref().map(|h| h.token),
            });
        }
    }

    let members: Vec<MemberStatus> = membership
        .members
        .iter()
        .map(|m| MemberStatus {
            id: m.id.clone(),
            version: m.version.clone(),
            started_ms: m.started_ms,
            age_ms: (membership.server_ms - m.started_ms).max(0),
            addr: m.addr.clone(),
            shards: counts.get(&m.id).copied().unwrap_or(0),
            leases: leases.get(&m.id).copied().unwrap_or(0),
            jobs: jobs_of.get(&m.id).copied().unwrap_or(0),
        })
        .collect();
    let leases_of_non_members = leases
        .into_iter()
        .filter(|(node, _)| !map.contains_member(node))
        .collect();
    let balance = map.balance();
    Ok(StatusReport {
        namespace: coord.namespace().to_owned(),
        server_time_ms: membership.server_ms,
        shard_count: ring.shard_count,
        vnodes: ring.vnodes,
        members,
        jobs,
        balance: BalanceReport {
            max: balance.max,
            min: balance.min,
            mean: balance.mean,
            max_over_mean: balance.max_over_mean,
        },
        churn_in_progress: !churn.is_empty(),
        churn,
        leases_of_non_members,
    })
}
