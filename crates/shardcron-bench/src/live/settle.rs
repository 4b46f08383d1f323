//! Checking in Redis that a fleet has settled: every shard's lease is held
//! by the shard's owner in the expected placement over the running workers
//! (`ShardMap::place` with the jobs' weights, [`super::weights`]; the check
//! itself takes any [`ShardMap`]).
//!
//! The churn driver polls the workers' own statuses (free: no Redis call)
//! and, once they claim to be settled, confirms it against the lease keys
//! with one [`Coordinator::lease_holders`](shardcron_coord::Coordinator)
//! read. The status alone could be fooled in one case that matters here: a
//! worker that rejoins under the node id of a crashed one shares its node
//! id with leases the dead instance still holds. Lease holders are
//! `node/instance` strings, so the check also learns each worker's holder
//! string the first time it settles and rejects leases of known-dead
//! instances. The learned holders are what attributes a missed fire to a
//! crash later ([`super::claims`]).

use std::collections::{BTreeMap, BTreeSet};

use shardcron_coord::LeaseInfo;
use shardcron_core::ShardMap;

/// Verifies `holders` (indexed by shard) against `map`.
///
/// `known` maps node ids to the holder string learned for their current
/// instance; `dead` holds the holder strings of crashed instances. On
/// success returns the holder string of every owner in `map` (learned or
/// confirmed); on failure a description of the first mismatch.
pub fn verify_holders(
    map: &ShardMap,
    holders: &[Option<LeaseInfo>],
    known: &BTreeMap<String, String>,
    dead: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for shard in 0..map.shard_count() {
        let owner = map
            .owner(shard)
            .ok_or_else(|| format!("shard {shard} has no owner in the placement"))?;
        let lease = holders
            .get(shard as usize)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("shard {shard} has no lease"))?;
        if lease.node_id() != owner {
            return Err(format!(
                "shard {shard} is held by {} instead of {owner}",
                lease.holder
            ));
        }
        if dead.contains(&lease.holder) {
            return Err(format!(
                "shard {shard} is still held by crashed instance {}",
                lease.holder
            ));
        }
        let expected = seen
            .get(owner)
            .or_else(|| known.get(owner))
            .cloned()
            .unwrap_or_else(|| lease.holder.clone());
        if expected != lease.holder {
            return Err(format!(
                "shard {shard} is held by {} but {owner} runs as {expected}",
                lease.holder
            ));
        }
        seen.insert(owner.to_owned(), expected);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcron_core::RingConfig;

    const RING: RingConfig = RingConfig::new(64, 16);

    fn leases(map: &ShardMap, instance: impl Fn(&str) -> String) -> Vec<Option<LeaseInfo>> {
        (0..map.shard_count())
            .map(|s| {
                map.owner(s).map(|o| LeaseInfo {
                    holder: format!("{o}/{}", instance(o)),
                    token: 1,
                })
            })
            .collect()
    }

    #[test]
    fn learns_holders_and_rejects_strays() {
        let map = ShardMap::compute(&["bench-w0", "bench-w1"], RING);
        let none = BTreeSet::new();
        let holders = leases(&map, |_| "a".to_owned());
        let learned = verify_holders(&map, &holders, &BTreeMap::new(), &none);
        let expected = BTreeMap::from([
            ("bench-w0".to_owned(), "bench-w0/a".to_owned()),
            ("bench-w1".to_owned(), "bench-w1/a".to_owned()),
        ]);
        assert_eq!(learned, Ok(expected.clone()));
        // Confirmed against what was learned.
        assert!(verify_holders(&map, &holders, &expected, &none).is_ok());

        // A shard without lease, or held by a non-owner.
        let mut missing = holders.clone();
        missing[3] = None;
        assert!(verify_holders(&map, &missing, &expected, &none).is_err());
        let mut wrong = holders.clone();
        let other = if map.owner(5) == Some("bench-w0") {
            "bench-w1/a"
        } else {
            "bench-w0/a"
        };
        wrong[5] = Some(LeaseInfo {
            holder: other.to_owned(),
            token: 2,
        });
        assert!(verify_holders(&map, &wrong, &expected, &none).is_err());
    }

    #[test]
    fn a_crashed_instance_with_the_same_node_id_does_not_count() {
        let map = ShardMap::compute(&["bench-w0", "bench-w1"], RING);
        // w1 crashed as instance "old" and rejoined as "new"; some of its
        // shards are still held by the dead instance.
        let dead = BTreeSet::from(["bench-w1/old".to_owned()]);
        let stale = leases(&map, |o| {
            if o == "bench-w1" { "old" } else { "a" }.to_owned()
        });
        assert!(verify_holders(&map, &stale, &BTreeMap::new(), &dead).is_err());
        // Mixed old and new instance for the same node id.
        let mut mixed = leases(&map, |o| {
            if o == "bench-w1" { "new" } else { "a" }.to_owned()
        });
        let w1_shards = map.shards_of("bench-w1");
        if let Some(&first) = w1_shards.first() {
            mixed[first as usize] = Some(LeaseInfo {
                holder: "bench-w1/other".to_owned(),
                token: 3,
            });
        }
        assert!(verify_holders(&map, &mixed, &BTreeMap::new(), &dead).is_err());
        let fresh = leases(&map, |o| {
            if o == "bench-w1" { "new" } else { "a" }.to_owned()
        });
        let learned = verify_holders(&map, &fresh, &BTreeMap::new(), &dead);
        assert_eq!(
            learned.ok().and_then(|l| l.get("bench-w1").cloned()),
            Some("bench-w1/new".to_owned())
        );
    }
}
