//! Four real worker processes, 100 every-second exec jobs appending to one
//! file; one worker gets SIGTERM and one SIGKILL mid-run and both restart. The
//! file must show every fire of the window exactly once. And one worker
//! logging in JSON: a line logged inside a fire names its job and node.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn four_processes_survive_sigterm_and_sigkill_without_duplicate_or_miss() {
    let mut f = ProcFleet::new("cli-fleet", 100);
    let from = now_ms() + 2000;
    for n in ["n1", "n2", "n3", "n4"] {
        f.start(n);
    }
    std::thread::sleep(Duration::from_secs(6));

    // Graceful stop of n2 (asserts a clean exit), then restart.
    f.stop("n2");
    std::thread::sleep(Duration::from_secs(2));
    f.start("n2");
    std::thread::sleep(Duration::from_secs(3));

    // Crash of n3, then restart with the same node id.
    f.kill("n3");
    std::thread::sleep(Duration::from_secs(2));
    f.start("n3");
    std::thread::sleep(Duration::from_secs(8));

    let to = now_ms() - 2500;
    f.stop_all();
    std::thread::sleep(Duration::from_millis(500));

    let a = f.audit(from, to);
    // A fire the killed worker had claimed but not started dies with it.
    let (lost_with_crash, unclaimed) = f.split_missing(&a, &["n3"]);
    println!(
        "multi-process audit: expected {} seen {} duplicates {} missing {} (claimed by the killed worker before it died: {}) per node {:?}",
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        lost_with_crash,
        a.per_node
    );
    assert!(a.expected >= 100 * 15, "window too short: {}", a.expected);
    assert_exactly_once("multi-process fleet", &a, &unclaimed, 1);
    assert_eq!(
        a.per_node.len(),
        4,
        "every worker ran a share: {:?}",
        a.per_node
    );
}

/// `--log-format json`: a line logged while a fire runs carries the fields
/// of the spans it is logged in (the `fire` span's job and fire id, the
/// `worker` span's node), as the text format shows them; without them a
/// handler's JSON lines could not be told apart.
#[test]
fn json_log_lines_inside_a_fire_name_its_job_and_node() {
    let f = ProcFleet::new("cli-json-logs", 1);
    let log_path = f.cli.path("json.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let store = f.cli.store.url();
    let mut worker = Command::new(bin())
        .args(["--store", &store, "--namespace", &f.cli.namespace])
        .args([
            "--log-format",
            "json",
            "worker",
            "--node-id",
            "j1",
            "--config",
        ])
        .arg(&f.config)
        // `exec: started` is a debug line of the exec handler, logged
        // inside the fire.
        .env("RUST_LOG", "info,shardcron_handlers=debug")
        .env_remove("SHARDCRON_STORE")
        .env_remove("SHARDCRON_REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("exec: started")) {
            break line.to_owned();
        }
        if Instant::now() > deadline {
            signal(&worker, libc::SIGKILL);
            panic!("no fire started within 30 s; log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    signal(&worker, libc::SIGTERM);
    let status = wait_exit(&mut worker, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    println!("{line}");
    let logged: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
    let spans = logged["spans"]
        .as_array()
        .unwrap_or_else(|| panic!("no span list: {line}"));
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` span: {line}"))
    };
    assert_eq!(span("fire")["job"], "tick-000", "{line}");
    assert!(
        span("fire")["fire"]
            .as_str()
            .is_some_and(|id| id.starts_with("tick-000@")),
        "{line}"
    );
    assert_eq!(span("worker")["node"], "j1", "{line}");
}
