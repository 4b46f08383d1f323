//! The demo fleet, shortened: three in-process workers on one memory store,
//! one leaves at 3 s and rejoins at 5 s; every fire must run exactly once.

use std::time::Duration;

use shardcron_cli::cmd::demo::{
    demo_jobs, max_over_mean, render_summary, run_demo, DemoOptions, DEMO_NODES,
};
use shardcron_core::{shard_of, RingConfig, ShardMap, ShardWeights};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_demo_has_no_duplicates_and_no_misses() {
    let mut options = DemoOptions::new(Duration::from_secs(8));
    options.leave_at = Duration::from_secs(3);
    options.rejoin_at = Duration::from_secs(5);
    let mut out: Vec<u8> = Vec::new();
    let summary = run_demo(&options, &mut out).await.expect("demo runs");
    let text = String::from_utf8_lossy(&out);
    println!("{text}");
    assert_eq!(summary.jobs, demo_jobs().len());
    assert!(summary.expected >= 40, "window too short: {summary:?}");
    assert_eq!(summary.duplicates, 0, "{summary:?}");
    assert_eq!(summary.missed, 0, "{summary:?}");
    assert_eq!(summary.seen, summary.expected);
    assert!(summary.passed());
    assert_eq!(
        summary.per_node.len(),
        3,
        "every worker ran a share: {summary:?}"
    );
    assert!(
        summary.leave_handoff.is_some() && summary.rejoin_handoff.is_some(),
        "{summary:?}"
    );
    assert!(
        text.contains("node-2 leaves") && text.contains("node-2 rejoins"),
        "{text}"
    );
    assert!(text.contains("ownership:"), "{text}");
    assert!(text.contains(&render_summary(&summary)), "{text}");
    let ratio = max_over_mean(&summary.per_node).expect("fires ran");
    assert!(
        text.contains(&format!("(max/mean {ratio:.2})")),
        "the per-worker line ends with its max/mean: {text}"
    );
    assert!(
        !summary.full_fleet_spans.is_empty() && summary.full_fleet_per_node.len() == 3,
        "fires while all three were up are counted apart: {summary:?}"
    );
    assert!(text.contains("  all 3 up    node-1 "), "{text}");
}

#[test]
fn max_over_mean_counts_idle_workers_as_zero() {
    let mut per_node = std::collections::BTreeMap::new();
    assert_eq!(max_over_mean(&per_node), None);
    per_node.insert("node-1".to_owned(), 30);
    assert_eq!(max_over_mean(&per_node), Some(3.0));
    per_node.insert("node-2".to_owned(), 30);
    per_node.insert("node-3".to_owned(), 30);
    assert_eq!(max_over_mean(&per_node), Some(1.0));
}

#[test]
fn demo_jobs_place_evenly_by_fires() {
    let ring = RingConfig::default();
    let jobs = demo_jobs();
    let weights = ShardWeights::from_pairs(
        0,
        jobs.iter().map(|spec| {
            let units = spec.validate().expect("valid").load_units();
            (shard_of(&spec.id, ring.shard_count), units)
        }),
    );
    // What the workers compute before a placement is stored.
    let map = ShardMap::place(&DEMO_NODES, &weights, ring).rebalance(&DEMO_NODES, &weights, ring);
    let balance = map.load_balance();
    println!("demo placement: {:?} {balance:?}", map.loads());
    assert!(
        balance.max_over_mean <= 1.05,
        "the demo's jobs spread within the load bound: {balance:?}"
    );
    // No single job dominates: the heaviest shard is well below a worker's mean.
    assert!(
        (balance.heaviest_shard as f64) < balance.mean / 2.0,
        "{balance:?}"
    );
}

#[tokio::test]
async fn demo_timings_must_be_in_order() {
    let mut options = DemoOptions::new(Duration::from_secs(8));
    options.leave_at = Duration::from_secs(6);
    options.rejoin_at = Duration::from_secs(5);
    let err = run_demo(&options, &mut std::io::sink())
        .await
        .expect_err("bad order");
    assert_eq!(err.kind, shardcron_cli::ExitKind::Config);
}

#[test]
fn demo_jobs_are_valid_and_mixed() {
    let jobs = demo_jobs();
    assert_eq!(jobs.len(), 20);
    for job in &jobs {
        job.validate().expect("valid demo job");
    }
    assert!(jobs.iter().any(|j| j.schedule == "*/3 * * * * *"));
    assert!(jobs.iter().any(|j| j.handler == "exec"));
    assert!(jobs.iter().any(|j| j.handler == "demo"));
}
