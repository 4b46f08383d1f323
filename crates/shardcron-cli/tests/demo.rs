//! The demo fleet, shortened: three in-process workers on one memory store,
//! one leaves at 3 s and rejoins at 5 s; every fire must run exactly once.

use std::time::Duration;

use shardcron_cli::cmd::demo::{demo_jobs, render_summary, run_demo, DemoOptions};

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
