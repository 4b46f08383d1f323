//! Load and movement metrics.
//!
//! *Load* is measured as `max / mean` (what sizes a node: the busiest member
//! must cope with it) and the standard deviation; with indivisible units the
//! best reachable `max / mean` can be above 1 ([`ideal_max_over_mean`]). *Movement* counts units
//! whose owner id differs before and after a membership change; each moved
//! shard is a lease hand-over and a reload of that shard's jobs.

use serde::Serialize;

use crate::strategy::UNOWNED;

/// Distribution of load over the members of a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LoadStats {
    /// Largest load of any member.
    pub max: u64,
    /// Smallest load of any member.
    pub min: u64,
    /// Mean load per member.
    pub mean: f64,
    /// Population standard deviation of the loads.
    pub stddev: f64,
    /// `max / mean`; 1.0 is a perfect spread (0 when there is no load).
    pub max_over_mean: f64,
}

/// Statistics of `loads` (one entry per member).
pub fn load_stats(loads: &[u64]) -> LoadStats {
    if loads.is_empty() {
        return LoadStats {
            max: 0,
            min: 0,
            mean: 0.0,
            stddev: 0.0,
            max_over_mean: 0.0,
        };
    }
    let count = loads.len() as f64;
    let total: u64 = loads.iter().sum();
    let mean = total as f64 / count;
    let variance = loads
        .iter()
        .map(|&load| {
            let delta = load as f64 - mean;
            delta * delta
        })
        .sum::<f64>()
        / count;
    let max = loads.iter().copied().max().unwrap_or(0);
    LoadStats {
        max,
        min: loads.iter().copied().min().unwrap_or(0),
        mean,
        stddev: variance.sqrt(),
        max_over_mean: if mean > 0.0 { max as f64 / mean } else { 0.0 },
    }
}

/// Load per member when each unit weighs `weights[unit]` (1 when `weights`
/// is `None`). `owners` are member indexes; unowned units are skipped.
pub fn member_loads(owners: &[u32], members: usize, weights: Option<&[u64]>) -> Vec<u64> {
    let mut loads = vec![0u64; members];
    for (unit, &owner) in owners.iter().enumerate() {
        if owner == UNOWNED {
            continue;
        }
        let weight = weights.map_or(1, |w| w.get(unit).copied().unwrap_or(0));
        if let Some(load) = loads.get_mut(owner as usize) {
            *load = load.saturating_add(weight);
        }
    }
    loads
}

/// Units (weighted by `weights`, or 1 each) whose owner id differs between
/// `before` and `after`. Both are owner *ids* (not fleet indexes).
pub fn moved(before: &[u32], after: &[u32], weights: Option<&[u64]>) -> u64 {
    before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .map(|(unit, _)| weights.map_or(1, |w| w.get(unit).copied().unwrap_or(0)))
        .fold(0u64, u64::saturating_add)
}

/// A lower bound on the best `max / mean` any placement of indivisible
/// units can reach on `members` members (1.0 without load): the busiest
/// member carries at least the heaviest unit, and at least the mean rounded
/// up to a whole multiple of the weights' greatest common divisor (801
/// equal jobs on 100 members put 9 on some member: 9 / 8.01 = 1.124).
pub fn ideal_max_over_mean(weights: &[u64], members: usize) -> f64 {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 || members == 0 {
        return 1.0;
    }
    let granule = shardcron_core::placement::weight_granule(weights.iter().map(|&w| u128::from(w)));
    let n = members as u128;
    let whole = total.div_ceil(n * granule) * granule;
    let mean = total as f64 / members as f64;
    let heaviest = weights.iter().copied().max().unwrap_or(0) as f64;
    heaviest.max(whole as f64).max(mean) / mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_an_uneven_spread() {
        let stats = load_stats(&[2, 4, 6]);
        assert_eq!((stats.max, stats.min), (6, 2));
        assert!((stats.mean - 4.0).abs() < 1e-12);
        assert!((stats.max_over_mean - 1.5).abs() < 1e-12);
        assert!((stats.stddev - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(load_stats(&[]).max_over_mean, 0.0);
    }

    #[test]
    fn the_ideal_counts_whole_units() {
        // 9 equal units on 4 members: someone carries 3 (mean 2.25).
        assert!((ideal_max_over_mean(&[5; 9], 4) - 3.0 / 2.25).abs() < 1e-12);
        // One unit outweighs the mean.
        assert!((ideal_max_over_mean(&[10, 1, 1], 3) - 10.0 / 4.0).abs() < 1e-12);
        // Coprime weights: only the mean and the heaviest bound it.
        assert!((ideal_max_over_mean(&[3, 2, 3, 2], 2) - 1.0).abs() < 1e-12);
        assert_eq!(ideal_max_over_mean(&[], 3), 1.0);
    }

    #[test]
    fn weighted_loads_and_moves() {
        let owners = [0, 1, 1, UNOWNED];
        assert_eq!(member_loads(&owners, 2, None), vec![1, 2]);
        assert_eq!(member_loads(&owners, 2, Some(&[5, 1, 2, 9])), vec![5, 3]);
        assert_eq!(moved(&[7, 7, 8], &[7, 9, 9], None), 2);
        assert_eq!(moved(&[7, 7, 8], &[7, 9, 9], Some(&[1, 10, 100])), 110);
    }

    #[test]
    fn ideal_spread_of_indivisible_units() {
        assert!((ideal_max_over_mean(&[1, 1, 1, 1], 2) - 1.0).abs() < 1e-12);
        // Total 10 on 4 members: mean 2.5, the 7 cannot be split.
        assert!((ideal_max_over_mean(&[7, 1, 1, 1], 4) - 2.8).abs() < 1e-12);
        assert_eq!(ideal_max_over_mean(&[], 3), 1.0);
    }
}
