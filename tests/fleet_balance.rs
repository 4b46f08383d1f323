//! Even load in fires, on real worker processes: four workers run a mix of
//! `@every 1s/2s/5s/10s` exec jobs (each period carries a quarter of the
//! fires). The fires each worker ran in a window, counted from the file the
//! jobs append to, must be within the placement's bound of the mean, while
//! the audit of every fire (each exactly once) stays clean.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use shardcron_core::{shard_of, JobSpec, RingConfig, ShardMap, ShardWeights};

/// `(count, period in seconds)` of the job mix: 6 fires/s per period class.
const MIX: [(usize, i64); 4] = [(6, 1), (12, 2), (30, 5), (60, 10)];

fn schedules() -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for (count, period) in MIX {
        for i in 0..count {
            out.push((
                format!("every{period}s-{i:02}"),
                format!("@every {period}s"),
                period * 1000,
            ));
        }
    }
    out
}

/// The placement a fleet of `nodes` would settle on from scratch, and the
/// plain ring's, from the same job weights the workers read. (The workers'
/// own placement depends on the order they joined in, so the test measures
/// it rather than predicting it.)
fn reference_maps(jobs: &[(String, String, i64)], nodes: &[&str]) -> (ShardMap, ShardMap) {
    let ring = RingConfig::default();
    let weights = ShardWeights::from_pairs(
        0,
        jobs.iter().map(|(id, schedule, _)| {
            let units = JobSpec::new(id.as_str(), schedule.as_str(), "exec")
                .validate()
                .expect("valid job")
                .load_units();
            (shard_of(id, ring.shard_count), units)
        }),
    );
    (
        ShardMap::next_placement(None, nodes, &weights, ring),
        ShardMap::compute(nodes, ring),
    )
}

/// Fires each node would run per minute under `map`.
fn predicted_per_minute(map: &ShardMap, jobs: &[(String, String, i64)]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (id, _, period_ms) in jobs {
        let owner = map
            .owner(shard_of(id, map.shard_count()))
            .expect("owner")
            .to_owned();
        *out.entry(owner).or_default() += 60_000.0 / *period_ms as f64;
    }
    out
}

fn max_over_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.into_iter().collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().copied().fold(0.0, f64::max) / mean
}

/// Every fire of every job in `[from, to]` seen exactly once; fires per node.
fn audit(
    text: &str,
    jobs: &[(String, String, i64)],
    from: i64,
    to: i64,
) -> (usize, Vec<String>, BTreeMap<String, usize>) {
    let mut runs: HashMap<(String, i64), Vec<String>> = HashMap::new();
    for line in text.lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        let (Some(job), Some(at), Some(node)) = (p.first(), p.get(1), p.get(2)) else {
            continue;
        };
        let Ok(at) = at.parse::<i64>() else { continue };
        if (from..=to).contains(&at) {
            runs.entry(((*job).to_owned(), at))
                .or_default()
                .push((*node).to_owned());
        }
    }
    let mut expected = 0;
    let mut problems = Vec::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _, period) in jobs {
        let mut t = (from + period - 1) / period * period;
        while t <= to {
            expected += 1;
            match runs.get(&(id.clone(), t)).map(Vec::as_slice) {
                None | Some([]) => problems.push(format!("missing {id}@{t}")),
                Some([node]) => *per_node.entry(node.clone()).or_default() += 1,
                Some(nodes) => problems.push(format!("duplicate {id}@{t} on {nodes:?}")),
            }
            t += period;
        }
    }
    (expected, problems, per_node)
}

#[test]
fn four_processes_share_a_mixed_schedule_evenly_and_exactly_once() {
    let jobs = schedules();
    let pairs: Vec<(String, String)> = jobs
        .iter()
        .map(|(id, schedule, _)| (id.clone(), schedule.clone()))
        .collect();
    let mut f = ProcFleet::with_schedules(Cli::new("fleet-balance"), &pairs);
    let nodes = ["n1", "n2", "n3", "n4"];
    for n in nodes {
        f.start(n);
    }
    let settled = wait_for(Duration::from_secs(30), || fleet_settled(&f.status(), 4));
    assert!(settled.is_some(), "fleet did not settle: {}", f.status());

    // A window of whole 10 s periods, so every job fires exactly
    // window / period times in it and fires per node follow the rates.
    let from = (now_ms() + 1000 + 9_999) / 10_000 * 10_000;
    let to = from + 30_000 - 1;
    let wait_ms = u64::try_from(to + 3000 - now_ms()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(wait_ms));
    f.stop_all();

    let text = std::fs::read_to_string(&f.out).unwrap_or_default();
    let (expected, problems, per_node) = audit(&text, &jobs, from, to);
    let (placed, ring) = reference_maps(&jobs, &nodes);
    let predicted = predicted_per_minute(&placed, &jobs);
    let ring_predicted = predicted_per_minute(&ring, &jobs);
    let measured = max_over_mean(nodes.iter().map(|n| *per_node.get(*n).unwrap_or(&0) as f64));
    println!(
        "mixed-schedule fleet: {expected} fires audited, {} problems; fires per node {per_node:?} (max/mean {measured:.3}); a fresh placement would give fires/min {predicted:?} (max/mean {:.3}); the plain ring would give {ring_predicted:?} (max/mean {:.3})",
        problems.len(),
        max_over_mean(predicted.values().copied()),
        max_over_mean(nodes.iter().map(|n| *ring_predicted.get(*n).unwrap_or(&0.0))),
    );
    assert_eq!(expected, 24 * 30, "30 s of 24 fires/s");
    assert!(
        problems.is_empty(),
        "audit: {:?}",
        &problems[..problems.len().min(10)]
    );
    assert_eq!(per_node.len(), 4, "every worker ran a share: {per_node:?}");
    assert!(
        measured <= 1.10,
        "fires per node {per_node:?}: max/mean {measured:.3} above the 1.10 bound"
    );
}
