//! Fires per node: how many runs of the measured window each worker did.
//!
//! The point of weighted placement is that every node carries about the
//! same work, so the live run reports what each worker actually ran and
//! the busiest one against the mean — the end-to-end counterpart of the
//! simulator's load max/mean. Counted from the recorder's log (which names
//! the worker of every run), by scheduled time within the window. Pure and
//! unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::audit::Fire;
use crate::metrics::{load_stats, LoadStats};

/// Runs of the window per worker.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFires {
    /// Runs scheduled in the window, per worker name (workers that ran
    /// nothing included with 0).
    pub per_node: BTreeMap<String, u64>,
    /// Spread over those workers (`max_over_mean` = busiest ÷ mean).
    pub stats: LoadStats,
}

/// Counts the runs of `fires` scheduled in `[from_ms, to_ms)` per worker.
/// `workers` names the recorder's worker indexes ([`Fire::worker`]);
/// `nodes` are the workers that were part of the fleet during the window
/// and count even if they ran nothing.
pub fn fires_per_node(
    fires: &[Fire],
    workers: &[String],
    nodes: &BTreeSet<String>,
    from_ms: i64,
    to_ms: i64,
) -> NodeFires {
    let mut per_node: BTreeMap<String, u64> = nodes.iter().map(|name| (name.clone(), 0)).collect();
    for fire in fires
        .iter()
        .filter(|f| f.scheduled_ms >= from_ms && f.scheduled_ms < to_ms)
    {
        let name = workers
            .get(usize::from(fire.worker))
            .map_or("?", String::as_str);
        *per_node.entry(name.to_owned()).or_default() += 1;
    }
    let counts: Vec<u64> = per_node.values().copied().collect();
    NodeFires {
        stats: load_stats(&counts),
        per_node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(worker: u16, scheduled_ms: i64) -> Fire {
        Fire {
            job: 0,
            scheduled_ms,
            started_ms: scheduled_ms,
            worker,
        }
    }

    #[test]
    fn counts_the_window_per_worker() {
        let workers = vec!["w1".to_owned(), "w0".to_owned()];
        let nodes = BTreeSet::from(["w0".to_owned(), "w1".to_owned(), "w2".to_owned()]);
        let fires = [
            fire(0, 1000),
            fire(0, 1500),
            fire(1, 1000),
            fire(1, 999),
            fire(0, 3000),
        ];
        let result = fires_per_node(&fires, &workers, &nodes, 1000, 3000);
        assert_eq!(
            result.per_node,
            BTreeMap::from([
                ("w0".to_owned(), 1),
                ("w1".to_owned(), 2),
                ("w2".to_owned(), 0)
            ])
        );
        assert_eq!(result.stats.max, 2);
        assert!((result.stats.max_over_mean - 2.0).abs() < 1e-12);
    }
}
