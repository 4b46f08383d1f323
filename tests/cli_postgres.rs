//! The real binary on the PostgreSQL store: `--store postgres://…` (winning
//! over `--redis`) runs a fleet of workers on a private PostgreSQL and
//! every fire runs exactly once, also when one worker's replies are lost
//! and it is then cut off past its leases; an unknown scheme is a
//! configuration error (exit 3) naming the supported schemes.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shardcron_testkit::{FaultMode, FaultProxy, PostgresServer};

fn shardcron(store: &str, namespace: &str) -> Command {
    let mut c = Command::new(bin());
    // --store wins over --redis (and over the environment's Redis URL).
    c.args(["--redis", "redis://127.0.0.1:1", "--store", store])
        .args(["--namespace", namespace])
        .env_remove("SHARDCRON_STORE")
        .env_remove("SHARDCRON_REDIS_URL")
        .env_remove("SHARDCRON_NAMESPACE")
        .stdin(Stdio::null());
    c
}

#[test]
fn an_unknown_store_scheme_exits_3_naming_the_supported_ones() {
    let out = Command::new(bin())
        .args(["--store", "mysql://u:secret@127.0.0.1:1/db", "status"])
        .env_remove("SHARDCRON_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("run shardcron");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("redis://, rediss://, postgres://, postgresql://"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}

/// Stores 20 `@every 1s` exec jobs appending to `fires.log` in `dir`;
/// returns the log's path, the worker config and the job ids.
fn put_jobs(
    url: &str,
    namespace: &str,
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<String>) {
    let out = dir.join("fires.log");
    let config = dir.join("worker.toml");
    std::fs::write(&config, FAST_CONFIG).expect("config");
    let ids: Vec<String> = (0..20).map(|i| format!("tick-{i:02}")).collect();
    let entries: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "schedule": "@every 1s", "exec": exec_line(&out)}))
        .collect();
    let jobs = dir.join("jobs.json");
    std::fs::write(&jobs, serde_json::to_string(&entries).expect("json")).expect("jobs");
    let put = shardcron(url, namespace)
        .args(["job", "put", "--file", jobs.to_str().expect("path")])
        .output()
        .expect("job put");
    assert!(
        put.status.success(),
        "job put: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    (out, config, ids)
}

fn start_worker(
    url: &str,
    namespace: &str,
    node: &str,
    config: &std::path::Path,
    dir: &std::path::Path,
) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("{node}.log"))).expect("log");
    shardcron(url, namespace)
        .args(["worker", "--node-id", node, "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn worker")
}

fn stop_workers(workers: &mut [(&str, std::process::Child)], dir: &std::path::Path) {
    for (_, child) in workers.iter() {
        signal(child, libc::SIGTERM);
    }
    for (node, child) in workers.iter_mut() {
        let status = wait_exit(child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{node} did not stop after SIGTERM"));
        let log = std::fs::read_to_string(dir.join(format!("{node}.log"))).unwrap_or_default();
        assert!(status.success(), "{node}: {status:?}\n{log}");
    }
}

/// Worker `c` reaches PostgreSQL through a proxy that first drops its
/// replies (its statements still commit) for 1.2 s, then black-holes it
/// for 6 s, past its leases; then it heals. Every fire still runs exactly
/// once: the others take its shards over, and it hands back the fires
/// whose claims landed unseen.
#[test]
fn a_worker_losing_replies_then_cut_off_from_postgres_loses_and_doubles_nothing() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = rt
        .block_on(FaultProxy::start(server.addr()))
        .expect("proxy");
    let proxied = format!("postgres://postgres@{}/postgres", proxy.addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, config, ids) = put_jobs(&url, "pgchaos", dir.path());
    let mut workers = vec![
        ("a", start_worker(&url, "pgchaos", "a", &config, dir.path())),
        ("b", start_worker(&url, "pgchaos", "b", &config, dir.path())),
        (
            "c",
            start_worker(&proxied, "pgchaos", "c", &config, dir.path()),
        ),
    ];
    std::thread::sleep(Duration::from_secs(6));
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(2));
    proxy.set_mode(FaultMode::DropReplies);
    std::thread::sleep(Duration::from_millis(1200));
    proxy.set_mode(FaultMode::Blackhole);
    std::thread::sleep(Duration::from_secs(6));
    proxy.set_mode(FaultMode::Pass);
    proxy.cut_connections();
    std::thread::sleep(Duration::from_secs(8));
    let to = now_ms() - 2500;
    stop_workers(&mut workers, dir.path());
    drop(proxy);

    let a = audit_file(&out, &ids, from, to);
    println!(
        "postgres lost replies + partition audit: expected {} seen {} duplicates {} missing {} per node {:?}",
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        a.per_node
    );
    assert!(a.expected >= 20 * 10, "window too short: {}", a.expected);
    assert!(a.duplicates.is_empty(), "ran twice: {:?}", a.duplicates);
    assert!(a.missing.is_empty(), "never ran: {:?}", a.missing);
}

/// PostgreSQL is killed (SIGKILL of every server process), stays down 5 s
/// and restarts from its WAL: the workers ride the outage out and catch up,
/// and every fire still runs exactly once.
#[test]
fn postgres_killed_and_restarted_after_five_seconds_loses_and_doubles_nothing() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, config, ids) = put_jobs(&url, "pgrestart", dir.path());
    let mut workers = vec![
        (
            "a",
            start_worker(&url, "pgrestart", "a", &config, dir.path()),
        ),
        (
            "b",
            start_worker(&url, "pgrestart", "b", &config, dir.path()),
        ),
    ];
    std::thread::sleep(Duration::from_secs(6));
    let from = now_ms();
    std::thread::sleep(Duration::from_secs(2));
    server.kill();
    std::thread::sleep(Duration::from_secs(5));
    server.restart().expect("restart postgres");
    std::thread::sleep(Duration::from_secs(10));
    let to = now_ms() - 2500;
    stop_workers(&mut workers, dir.path());

    let a = audit_file(&out, &ids, from, to);
    println!(
        "postgres restart audit: expected {} seen {} duplicates {} missing {} per node {:?}",
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        a.per_node
    );
    assert!(a.expected >= 20 * 10, "window too short: {}", a.expected);
    assert!(a.duplicates.is_empty(), "ran twice: {:?}", a.duplicates);
    assert!(a.missing.is_empty(), "never ran: {:?}", a.missing);
}

#[test]
fn a_fleet_on_postgres_runs_every_fire_exactly_once() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, config, ids) = put_jobs(&url, "pgfleet", dir.path());
    let from = now_ms() + 3000;
    let mut workers = vec![
        (
            "p1",
            start_worker(&url, "pgfleet", "p1", &config, dir.path()),
        ),
        (
            "p2",
            start_worker(&url, "pgfleet", "p2", &config, dir.path()),
        ),
    ];
    std::thread::sleep(Duration::from_secs(12));
    let to = now_ms() - 2500;
    stop_workers(&mut workers, dir.path());

    let a = audit_file(&out, &ids, from, to);
    println!(
        "postgres fleet audit: expected {} seen {} duplicates {} missing {} per node {:?}",
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        a.per_node
    );
    assert!(a.expected >= 20 * 5, "window too short: {}", a.expected);
    assert!(a.duplicates.is_empty(), "ran twice: {:?}", a.duplicates);
    assert!(a.missing.is_empty(), "never ran: {:?}", a.missing);
    assert_eq!(
        a.per_node.len(),
        2,
        "both workers ran a share: {:?}",
        a.per_node
    );

    // The runs are in the store's history, read through the same flag.
    let runs = shardcron(&url, "pgfleet")
        .args(["runs", "--json", "--limit", "5"])
        .output()
        .expect("runs");
    assert!(
        runs.status.success(),
        "{}",
        String::from_utf8_lossy(&runs.stderr)
    );
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs json");
    assert_eq!(runs.as_array().map(Vec::len), Some(5));
}
