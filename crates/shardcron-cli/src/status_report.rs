//! The fleet status report: members, shard ownership, load, balance and
//! handoffs.
//!
//! Every node computes the next placement on its own, so "who should own
//! shard 17" is a pure function of the stored placement, the member list and
//! the store's snapshot of shard weights ([`ShardMap::rebalance`] of the
//! stored placement, or of [`ShardMap::place`] before one is stored: the
//! same computation the workers make), while "who does own it" is whoever
//! holds the lease. Showing both, and every shard
//! where they differ, is how an operator sees a rebalance in progress (or
//! stuck). Placement balances *work* (expected fires per day times each
//! job's cost), so the report shows per member the expected fires per minute
//! and its share of the load next to its shard count. The report is a plain
//! serde struct so `shardcron status --json` and the HTTP API's `GET
//! /v1/status` serve the same data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shardcron_coord::{CoordError, Coordinator, LeaseInfo, Membership, StoredPlacement};
use shardcron_core::load::{units_to_fires_per_minute, UNITS_PER_DAILY_FIRE};
use shardcron_core::{broadcast_shard, leader_shard, shard_of, RingConfig, ShardMap, ShardWeights};
use utoipa::ToSchema;

/// Page size used when reading the job index.
const JOB_PAGE: usize = 1000;

/// How old the store's weights snapshot may be before status refreshes it
/// (see [`Coordinator::placement_inputs`]): zero, so status shows the
/// newest weights, which the workers adopt on their next membership read.
const WEIGHTS_REFRESH: Duration = Duration::ZERO;

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
    /// Shards the placement assigns to it.
    pub shards: u32,
    /// Shards whose lease it holds right now.
    pub leases: u32,
    /// Jobs in the shards the placement assigns to it.
    pub jobs: usize,
    /// Load of the shards the placement assigns to it: expected fires per
    /// day times each job's cost, in thousandths.
    #[schema(minimum = 0)]
    pub load_units: u64,
    /// The same load as expected fires per minute, each weighted by its
    /// job's cost (a job of cost 2 counts twice).
    #[schema(minimum = 0)]
    pub fires_per_minute: f64,
    /// Its share of the namespace's load, percent (0 when there is no load).
    #[schema(minimum = 0, maximum = 100)]
    pub load_percent: f64,
}

/// Shard counts per member over the placement.
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

/// Load per member over the placement, in expected fires per minute
/// (each weighted by its job's cost).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoadReport {
    /// Version of the store's weights snapshot the placement used.
    pub weights_version: u64,
    /// Load of the namespace, in load units (0: no job fires).
    #[schema(minimum = 0)]
    pub total_units: u64,
    /// Load of the namespace, fires per minute.
    #[schema(minimum = 0)]
    pub fires_per_minute: f64,
    /// Most fires per minute of one member.
    #[schema(minimum = 0)]
    pub max_fires_per_minute: f64,
    /// Fewest fires per minute of one member.
    #[schema(minimum = 0)]
    pub min_fires_per_minute: f64,
    /// Fires per minute per member on average.
    #[schema(minimum = 0)]
    pub mean_fires_per_minute: f64,
    /// `max / mean` of the members' load (1.0 is a perfect spread); null
    /// when there is no load or no member.
    pub max_over_mean: Option<f64>,
    /// Fires per minute of the heaviest shard: a shard is never split, so
    /// its owner carries at least that much.
    #[schema(minimum = 0)]
    pub heaviest_shard_fires_per_minute: f64,
}

/// A shard whose lease holder is not its expected owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardChurn {
    /// Shard number.
    pub shard: u32,
    /// Owner by the placement over the live members (`None` without members).
    pub ring_owner: Option<String>,
    /// Node holding the lease (`None`: nobody).
    pub lease_holder: Option<String>,
    /// Fencing token of the current lease, if any.
    pub token: Option<u64>,
}

/// The fleet's leader: the holder of the leader shard's lease, which runs
/// every `leader` job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaderStatus {
    /// Node id of the leader.
    pub node: String,
    /// Its lease holder string (`node/instance`).
    pub holder: String,
    /// Fencing token of its leadership: higher for every later leader.
    pub token: u64,
    /// Since when it leads, Unix ms (server time). Read from the fencing
    /// token, which is the grant's server time in microseconds unless the
    /// shard's counter was ahead of that clock (after the store's clock
    /// stepped back); never later than `server_time_ms`.
    pub since_ms: i64,
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
    /// How shards are placed on members, e.g. `bounded-load ring (e=0.050)`.
    pub placement: String,
    /// Version of the stored placement the expected owners are computed
    /// from (0: none stored yet).
    pub placement_version: u64,
    /// Live members, sorted by id.
    pub members: Vec<MemberStatus>,
    /// Jobs in the namespace.
    pub jobs: usize,
    /// Load balance over the placement, in fires per minute.
    pub load: LoadReport,
    /// Shard-count balance over the placement.
    pub balance: BalanceReport,
    /// Shards leased by a node that holds no placement assignment for them,
    /// or not leased at all.
    pub churn: Vec<ShardChurn>,
    /// True when `churn` is not empty: a handoff is in progress (or stuck).
    pub churn_in_progress: bool,
    /// Leases held by nodes that are not live members, per node.
    pub leases_of_non_members: BTreeMap<String, u32>,
    /// The current leader, if a node holds the leader shard's lease.
    pub leader: Option<LeaderStatus>,
    /// Jobs of placement `leader` (run by the leader).
    pub leader_jobs: usize,
    /// Jobs of placement `broadcast` (run by every member).
    pub broadcast_jobs: usize,
}

/// Reads members, the weights snapshot and the stored placement (one round
/// trip), the job index and every shard's lease holder (one pipeline),
/// computes the next placement exactly as the workers do (without storing
/// it) and builds the report.
pub async fn collect(coord: &dyn Coordinator) -> Result<StatusReport, CoordError> {
    let ring = coord.ring_config();
    let inputs = coord.placement_inputs(None, None, WEIGHTS_REFRESH).await?;
    let membership = inputs.membership;
    let weights = inputs.weights.unwrap_or_default();
    let ids: Vec<&str> = membership.members.iter().map(|m| m.id.as_str()).collect();
    let stored = inputs.placement;
    let map = expected_placement(&ids, &weights, stored.as_ref(), ring);
    let special = [
        leader_shard(ring.shard_count),
        broadcast_shard(ring.shard_count),
    ];
    let placed_apart = coord.load_shards(&special).await?;
    let apart: BTreeSet<&str> = placed_apart
        .iter()
        .flat_map(|s| s.jobs.iter().map(|j| j.spec.id.as_str()))
        .collect();
    let (jobs, jobs_per_shard) = jobs_per_shard(coord, ring, &apart).await?;
    let mut shards: Vec<u32> = (0..ring.shard_count).collect();
    shards.push(special[0]);
    let mut holders = coord.lease_holders(&shards).await?;
    shards.pop();
    let leader = holders.pop().flatten().map(|lease| LeaderStatus {
        node: lease.node_id().to_owned(),
        since_ms: i64::try_from(lease.token / 1000)
            .unwrap_or(i64::MAX)
            .min(membership.server_ms),
        holder: lease.holder,
        token: lease.token,
    });
    let ownership = ownership(&map, &shards, &holders, &jobs_per_shard);
    let members = member_rows(&membership, &map, &ownership);
    let leases_of_non_members = ownership
        .leases
        .into_iter()
        .filter(|(node, _)| !map.contains_member(node))
        .collect();
    Ok(StatusReport {
        namespace: coord.namespace().to_owned(),
        server_time_ms: membership.server_ms,
        shard_count: ring.shard_count,
        vnodes: ring.vnodes,
        placement: map.placement_name(),
        placement_version: stored.map_or(0, |p| p.version),
        members,
        jobs,
        load: load_report(&map, &weights),
        balance: balance_report(&map),
        churn_in_progress: !ownership.churn.is_empty(),
        churn: ownership.churn,
        leases_of_non_members,
        leader,
        leader_jobs: placed_apart.first().map_or(0, |s| s.jobs.len()),
        broadcast_jobs: placed_apart.get(1).map_or(0, |s| s.jobs.len()),
    })
}

/// The placement the workers converge to ([`ShardMap::next_placement`], the
/// same call their placement step makes), never stored: status only reads.
pub fn expected_placement(
    ids: &[&str],
    weights: &ShardWeights,
    stored: Option<&StoredPlacement>,
    ring: RingConfig,
) -> ShardMap {
    ShardMap::next_placement(stored.map(|s| &s.record), ids, weights, ring)
}

/// Jobs in the namespace, and per ring shard (all but those placed
/// `apart`, the leader and broadcast jobs), from one pass over the job
/// index.
async fn jobs_per_shard(
    coord: &dyn Coordinator,
    ring: RingConfig,
    apart: &BTreeSet<&str>,
) -> Result<(usize, BTreeMap<u32, usize>), CoordError> {
    let mut per_shard: BTreeMap<u32, usize> = BTreeMap::new();
    let mut jobs = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page = coord.list_jobs("", after.as_deref(), JOB_PAGE).await?;
        for id in &page.ids {
            if !apart.contains(id.as_str()) {
                *per_shard.entry(shard_of(id, ring.shard_count)).or_default() += 1;
            }
            jobs += 1;
        }
        match page.next {
            Some(next) if !page.ids.is_empty() => after = Some(next),
            _ => return Ok((jobs, per_shard)),
        }
    }
}

/// Leases and placed jobs per node, and the shards in churn.
struct Ownership {
    leases: BTreeMap<String, u32>,
    jobs_of: BTreeMap<String, usize>,
    churn: Vec<ShardChurn>,
}

/// Compares every shard's expected owner with its lease holder.
fn ownership(
    map: &ShardMap,
    shards: &[u32],
    holders: &[Option<LeaseInfo>],
    jobs_per_shard: &BTreeMap<u32, usize>,
) -> Ownership {
    let mut result = Ownership {
        leases: BTreeMap::new(),
        jobs_of: BTreeMap::new(),
        churn: Vec::new(),
    };
    for (&shard, holder) in shards.iter().zip(holders) {
        let owner = map.owner(shard);
        let holder_node = holder.as_ref().map(|h| h.node_id().to_owned());
        if let Some(node) = &holder_node {
            *result.leases.entry(node.clone()).or_default() += 1;
        }
        if let Some(owner) = owner {
            *result.jobs_of.entry(owner.to_owned()).or_default() +=
                jobs_per_shard.get(&shard).copied().unwrap_or(0);
        }
        if owner != holder_node.as_deref() {
            result.churn.push(ShardChurn {
                shard,
                ring_owner: owner.map(str::to_owned),
                lease_holder: holder_node,
                token: holder.as_ref().map(|h| h.token),
            });
        }
    }
    result
}

/// `units` as a `u64` (saturating; a namespace's load is far below).
fn units_u64(units: u128) -> u64 {
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// Minutes in a day (load units count fires per day).
const MINUTES_PER_DAY: f64 = 1440.0;

/// Load units as fires per minute.
fn fires_per_minute(units: u128) -> f64 {
    units_to_fires_per_minute(units_u64(units))
}

/// `part` as a percentage of `total`, within `0..=100` (0 for a zero total).
fn percent(part: u128, total: u128) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (part as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
}

/// One row per live member.
fn member_rows(
    membership: &Membership,
    map: &ShardMap,
    ownership: &Ownership,
) -> Vec<MemberStatus> {
    let counts = map.counts();
    let loads = map.loads();
    let total: u128 = loads.values().sum();
    membership
        .members
        .iter()
        .map(|m| {
            let units = loads.get(&m.id).copied().unwrap_or(0);
            MemberStatus {
                id: m.id.clone(),
                version: m.version.clone(),
                started_ms: m.started_ms,
                age_ms: (membership.server_ms - m.started_ms).max(0),
                addr: m.addr.clone(),
                shards: counts.get(&m.id).copied().unwrap_or(0),
                leases: ownership.leases.get(&m.id).copied().unwrap_or(0),
                jobs: ownership.jobs_of.get(&m.id).copied().unwrap_or(0),
                load_units: units_u64(units),
                fires_per_minute: fires_per_minute(units),
                load_percent: percent(units, total),
            }
        })
        .collect()
}

/// The load statistics of a weighted placement.
fn load_report(map: &ShardMap, weights: &ShardWeights) -> LoadReport {
    let balance = map.load_balance();
    let total = weights.total();
    let placed = balance.max > 0;
    LoadReport {
        weights_version: weights.version,
        total_units: units_u64(total),
        fires_per_minute: fires_per_minute(total),
        max_fires_per_minute: fires_per_minute(balance.max),
        min_fires_per_minute: fires_per_minute(balance.min),
        mean_fires_per_minute: balance.mean / UNITS_PER_DAILY_FIRE / MINUTES_PER_DAY,
        max_over_mean: placed.then_some(balance.max_over_mean),
        heaviest_shard_fires_per_minute: fires_per_minute(balance.heaviest_shard),
    }
}

/// The shard-count statistics of a placement.
fn balance_report(map: &ShardMap) -> BalanceReport {
    let balance = map.balance();
    BalanceReport {
        max: balance.max,
        min: balance.min,
        mean: balance.mean,
        max_over_mean: balance.max_over_mean,
    }
}
