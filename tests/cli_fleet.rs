//! Four real worker processes, 100 every-second exec jobs appending to one
//! file; one worker gets SIGTERM and one SIGKILL mid-run and both restart. The
//! file must show every fire of the window exactly once.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn four_processes_survive_sigterm_and_sigkill_without_duplicate_or_miss() {
    let cli = Cli::new("cli-fleet");
    let out = cli.path("fires.log");
    let jobs: Vec<String> = (0..100).map(|i| format!("tick-{i:03}")).collect();
    let entries: Vec<serde_json::Value> = jobs
        .iter()
        .map(|id| {
            serde_json::json!({
                "id": id,
                "schedule": "@every 1s",
                "exec": format!(
                    "echo \"$SHARDCRON_JOB_ID $SHARDCRON_SCHEDULED_AT $SHARDCRON_NODE_ID\" >> {}",
                    out.display()
                ),
            })
        })
        .collect();
    let file = cli.write("jobs.json", &serde_json::to_string(&entries).expect("json"));
    let put = cli.run(&["job", "put", "--file", file.to_str().expect("path")]);
    assert!(
        put.status.success(),
        "job put --file: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let config = cli.write("worker.toml", FAST_CONFIG);

    let from = now_ms() + 2000;
    let mut workers: Vec<(String, std::process::Child)> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| (n.to_string(), cli.worker(n, &config)))
        .collect();
    std::thread::sleep(Duration::from_secs(6));

    // Graceful stop of n2, then restart.
    signal(&workers[1].1, libc::SIGTERM);
    let status =
        wait_exit(&mut workers[1].1, Duration::from_secs(15)).expect("n2 exits after SIGTERM");
    assert!(status.success(), "SIGTERM exit status {status:?}");
    std::thread::sleep(Duration::from_secs(2));
    workers[1].1 = cli.worker("n2", &config);
    std::thread::sleep(Duration::from_secs(3));

    // Crash of n3, then restart with the same node id.
    signal(&workers[2].1, libc::SIGKILL);
    let _ = wait_exit(&mut workers[2].1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    workers[2].1 = cli.worker("n3", &config);
    std::thread::sleep(Duration::from_secs(8));

    let to = now_ms() - 2500;
    for (_, w) in &workers {
        signal(w, libc::SIGTERM);
    }
    for (name, w) in &mut workers {
        let status =
            wait_exit(w, Duration::from_secs(15)).unwrap_or_else(|| panic!("{name} did not stop"));
        assert!(status.success(), "{name} exit status {status:?}");
    }
    std::thread::sleep(Duration::from_millis(500));

    let a = audit_file(&out, &jobs, from, to);
    let (lost_with_crash, unclaimed): (Vec<_>, Vec<_>) = a.missing.iter().partition(|(job, at)| {
        claim_holder(&cli.redis, &cli.namespace, job, *at, 1024)
            .is_some_and(|h| h.starts_with("n3/"))
    });
    println!(
        "multi-process audit: expected {} seen {} duplicates {} missing {} (claimed by the killed worker before it died: {}) per node {:?}",
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        lost_with_crash.len(),
        a.per_node
    );
    for (job, at) in unclaimed.iter().take(10) {
        println!(
            "missing {job}@{at}: claim {:?}",
            claim_holder(&cli.redis, &cli.namespace, job, *at, 1024)
        );
    }
    if let Some((job, _)) = unclaimed.first() {
        let runs = cli.run(&["runs", "--job", job, "--limit", "30"]);
        println!("runs of {job}:\n{}", String::from_utf8_lossy(&runs.stdout));
    }
    assert!(a.expected >= 100 * 15, "window too short: {}", a.expected);
    assert!(
        a.duplicates.is_empty(),
        "duplicates: {:?}",
        &a.duplicates[..a.duplicates.len().min(10)]
    );
    assert!(
        unclaimed.is_empty(),
        "fires nobody ran: {:?}",
        &unclaimed[..unclaimed.len().min(10)]
    );
    let instants: std::collections::BTreeSet<i64> =
        lost_with_crash.iter().map(|(_, t)| *t).collect();
    assert!(
        instants.len() <= 1,
        "fires lost with the crash must all be from its instant: {instants:?}"
    );
    assert_eq!(
        a.per_node.len(),
        4,
        "every worker ran a share: {:?}",
        a.per_node
    );
}
