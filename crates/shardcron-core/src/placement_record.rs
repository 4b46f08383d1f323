//! A placement as the store keeps it, so the next one can start from it.
//!
//! [`ShardMap::rebalance`] is sticky only if every node starts from the same
//! previous placement, so the placement itself is stored: member names plus
//! one owner index per shard. Decoding checks everything (sorted unique
//! members, one owner per shard, indexes in range): a record that fails is
//! ignored and replaced, never trusted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::placement::ShardWeights;
use crate::ring::{RingConfig, ShardMap};

/// A stored placement: sorted member names and the owner index of each shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// Member names, sorted, no duplicates.
    pub members: Vec<String>,
    /// `owners[shard]` indexes `members`.
    pub owners: Vec<u32>,
}

/// Why a stored placement record cannot be used. Callers drop the record
/// and compute a placement afresh; nothing else is needed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unusable placement record: {0}")]
pub struct PlacementRecordError(String);

impl ShardMap {
    /// This placement as a record to store; `None` when it has no members
    /// (there is nothing to keep).
    pub fn to_record(&self) -> Option<PlacementRecord> {
        let owners = (0..self.shard_count())
            .map(|shard| self.owner_index(shard))
            .collect::<Option<Vec<u32>>>()?;
        Some(PlacementRecord {
            members: self.members().iter().map(|m| m.to_string()).collect(),
            owners,
        })
    }

    /// The placement a record describes, carrying `weights` for its load
    /// figures.
    ///
    /// # Errors
    ///
    /// [`PlacementRecordError`] when the record does not fit `config` (shard
    /// count) or is malformed (unsorted or repeated members, an owner index
    /// out of range).
    pub fn from_record(
        record: &PlacementRecord,
        weights: &ShardWeights,
        config: RingConfig,
    ) -> Result<ShardMap, PlacementRecordError> {
        if record.owners.len() != config.shard_count as usize {
            return Err(PlacementRecordError(format!(
                "{} owners for {} shards",
                record.owners.len(),
                config.shard_count
            )));
        }
        if record.members.is_empty() || record.members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PlacementRecordError(
                "members are not sorted, unique and non-empty".to_owned(),
            ));
        }
        if let Some(bad) = record
            .owners
            .iter()
            .find(|&&index| index as usize >= record.members.len())
        {
            return Err(PlacementRecordError(format!(
                "owner index {bad} with {} members",
                record.members.len()
            )));
        }
        let members: Vec<Arc<str>> = record
            .members
            .iter()
            .map(|m| Arc::from(m.as_str()))
            .collect();
        let owners = record.owners.iter().map(|&index| Some(index)).collect();
        Ok(ShardMap::from_parts(
            config,
            members,
            owners,
            Some(weights.dense(config.shard_count)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_bad_ones_are_refused() {
        let config = RingConfig::new(32, 8);
        let weights = ShardWeights::from_pairs(3, [(1, 500), (7, 90)]);
        let map = ShardMap::place(&["b", "a", "c"], &weights, config);
        let record = map.to_record().expect("members");
        let back = ShardMap::from_record(&record, &weights, config).expect("valid");
        assert_eq!(back, map);

        let mut short = record.clone();
        short.owners.pop();
        assert!(ShardMap::from_record(&short, &weights, config).is_err());
        let mut unsorted = record.clone();
        unsorted.members.swap(0, 1);
        assert!(ShardMap::from_record(&unsorted, &weights, config).is_err());
        let mut out_of_range = record;
        out_of_range.owners[0] = 3;
        assert!(ShardMap::from_record(&out_of_range, &weights, config).is_err());
        let empty = ShardMap::place::<&str>(&[], &weights, config);
        assert_eq!(empty.to_record(), None);
    }
}
