//! The real binary on the PostgreSQL store: `--store postgres://…` (winning
//! over `--redis`) runs a fleet of workers on a private PostgreSQL and
//! every fire runs exactly once, also when one worker's replies are lost
//! and it is then cut off past its leases; an unknown scheme is a
//! configuration error (exit 3) naming the supported schemes; bad input
//! (a malformed URL, no server, a role without privileges, a schema from a
//! newer version) gets a clear error, its documented exit code, and changes
//! nothing.

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

/// Stores one job `keep` in `namespace`; returns what `job get keep`
/// prints.
fn put_kept_job(url: &str, namespace: &str) -> Vec<u8> {
    let put = shardcron(url, namespace)
        .args(["job", "put", "--id", "keep", "--schedule", "0 0 * * * *"])
        .args(["--exec", "true"])
        .output()
        .expect("job put");
    assert!(
        put.status.success(),
        "job put: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    job_get_keep(url, namespace)
}

fn job_get_keep(url: &str, namespace: &str) -> Vec<u8> {
    let get = shardcron(url, namespace)
        .args(["job", "get", "keep"])
        .output()
        .expect("job get");
    assert!(
        get.status.success(),
        "job get: {}",
        String::from_utf8_lossy(&get.stderr)
    );
    get.stdout
}

/// Runs a command to completion within `limit`; panics if it hangs.
fn run_within(mut cmd: Command, limit: Duration) -> (Option<i32>, String, Duration) {
    let start = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardcron");
    let Some(status) = wait_exit(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the command did not exit within {limit:?}");
    };
    let elapsed = start.elapsed();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), stderr, elapsed)
}

/// Commands the bad-input tests run against a store they must not change:
/// a delete, a write and a read.
const ONE_SHOT_COMMANDS: [&[&str]; 3] = [
    &["job", "rm", "keep"],
    &[
        "job",
        "put",
        "--id",
        "new",
        "--schedule",
        "@every 1s",
        "--exec",
        "true",
    ],
    &["status"],
];

/// The namespace's rows of `table`, as `psql` prints them.
fn rows(server: &PostgresServer, namespace: &str, table: &str, order: &str) -> String {
    let table = shardcron_postgres::NamespaceSchema::new(namespace).object(table);
    server
        .psql(&format!("SELECT * FROM {table} ORDER BY {order}"))
        .expect("read table")
}

/// A PostgreSQL URL its client cannot parse is a configuration error
/// (exit 3) naming what is wrong, not an unreachable server, and the
/// command touches nothing; the password is never printed.
#[test]
fn a_malformed_postgres_url_exits_3_naming_the_fault_and_changes_nothing() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let before = put_kept_job(&url, "pgbadurl");
    let jobs_before = rows(&server, "pgbadurl", "jobs", "job_id");

    let bad_port = "postgres://postgres:secret@127.0.0.1:notaport/postgres".to_owned();
    let bad_option = format!("{url}?sslmode=sometimes");
    for (bad, names) in [
        (bad_port.as_str(), "invalid value for option `port`"),
        (bad_option.as_str(), "invalid value for option `sslmode`"),
    ] {
        for args in ONE_SHOT_COMMANDS {
            let mut cmd = shardcron(bad, "pgbadurl");
            cmd.args(args);
            let (code, stderr, _) = run_within(cmd, Duration::from_secs(20));
            assert_eq!(code, Some(3), "{args:?} with {bad}: {stderr}");
            if args == ["status"] {
                print!("malformed URL, exit 3: {stderr}");
            }
            assert!(stderr.contains("invalid store URL"), "{stderr}");
            assert!(stderr.contains(names), "{stderr}");
            assert!(!stderr.contains("secret"), "{stderr}");
        }
    }
    assert_eq!(job_get_keep(&url, "pgbadurl"), before);
    assert_eq!(rows(&server, "pgbadurl", "jobs", "job_id"), jobs_before);
}

/// Nothing listening on the port, or a server that accepts connections
/// and never answers: the command exits promptly with exit 4 naming
/// PostgreSQL and the URL (password hidden), instead of hanging.
#[test]
fn an_unreachable_postgres_exits_4_promptly() {
    let port = shardcron_testkit::free_port().expect("free port");
    let closed = format!("postgres://postgres:secret@127.0.0.1:{port}/postgres");
    let mut cmd = shardcron(&closed, "pgdown");
    cmd.args(["job", "ls"]);
    let (code, stderr, took) = run_within(cmd, Duration::from_secs(30));
    print!(
        "nothing listening: exit {code:?} after {} ms: {stderr}",
        took.as_millis()
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "PostgreSQL unreachable at postgres://***@127.0.0.1:{port}/postgres"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let server = PostgresServer::start().expect("start postgres");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = rt
        .block_on(FaultProxy::start(server.addr()))
        .expect("proxy");
    proxy.set_mode(FaultMode::Blackhole);
    let silent = format!("postgres://postgres@{}/postgres", proxy.addr());
    let mut cmd = shardcron(&silent, "pgdown");
    cmd.args(["job", "ls"]);
    let (code, stderr, took) = run_within(cmd, Duration::from_secs(30));
    print!(
        "silent server: exit {code:?} after {} ms: {stderr}",
        took.as_millis()
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("PostgreSQL unreachable at"), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A role without the privileges the namespace needs (it may not create
/// the namespace's schema, nor use the one that exists): every command
/// fails with exit 1 and a store error saying permission was denied, and
/// the stored jobs are unchanged.
#[test]
fn a_role_without_privileges_exits_1_saying_permission_denied_and_changes_nothing() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let before = put_kept_job(&url, "pgpriv");
    let jobs_before = rows(&server, "pgpriv", "jobs", "job_id");
    server
        .psql("CREATE ROLE shardcron_reader LOGIN")
        .expect("create role");
    let limited = format!(
        "postgres://shardcron_reader@127.0.0.1:{}/postgres",
        server.port()
    );
    for args in [
        &["job", "rm", "keep"][..],
        &[
            "job",
            "put",
            "--id",
            "new",
            "--schedule",
            "@every 1s",
            "--exec",
            "true",
        ][..],
        &["job", "ls"][..],
    ] {
        let mut cmd = shardcron(&limited, "pgpriv");
        cmd.args(args);
        let (code, stderr, _) = run_within(cmd, Duration::from_secs(20));
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        print!("role without privileges, {args:?}, exit 1: {stderr}");
        assert!(stderr.contains("store error during"), "{stderr}");
        assert!(stderr.contains("permission denied"), "{stderr}");
        assert!(stderr.contains("42501"), "{stderr}");
    }
    assert_eq!(job_get_keep(&url, "pgpriv"), before);
    assert_eq!(rows(&server, "pgpriv", "jobs", "job_id"), jobs_before);
}

/// A namespace whose schema was migrated by a newer shardcron: commands
/// and workers refuse it with exit 3 and a message naming both versions,
/// and nothing is changed (jobs, migration rows).
#[test]
fn a_schema_newer_than_the_binary_exits_3_and_changes_nothing() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let before = put_kept_job(&url, "pgnewer");
    let newer = shardcron_postgres::SCHEMA_VERSION + 7;
    let migrations =
        shardcron_postgres::NamespaceSchema::new("pgnewer").object("schema_migrations");
    server
        .psql(&format!(
            "INSERT INTO {migrations} (version) VALUES ({newer})"
        ))
        .expect("bump schema version");
    let versions_before = rows(&server, "pgnewer", "schema_migrations", "version");
    let jobs_before = rows(&server, "pgnewer", "jobs", "job_id");
    assert!(
        versions_before.contains(&format!("{newer}|")),
        "{versions_before}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("worker.toml");
    std::fs::write(&config, FAST_CONFIG).expect("config");
    let config = config.to_str().expect("path").to_owned();
    let worker: &[&str] = &["worker", "--node-id", "w", "--config", &config];
    for args in ONE_SHOT_COMMANDS.into_iter().chain([worker]) {
        let mut cmd = shardcron(&url, "pgnewer");
        cmd.args(args);
        let (code, stderr, _) = run_within(cmd, Duration::from_secs(20));
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        print!("newer schema, {:?}, exit 3: {stderr}", args[0]);
        assert!(
            stderr.contains(&format!(
                "store schema version {newer}, newer than this binary's {}",
                shardcron_postgres::SCHEMA_VERSION
            )),
            "{stderr}"
        );
        assert!(stderr.contains("upgrade shardcron"), "{stderr}");
    }
    assert_eq!(
        rows(&server, "pgnewer", "schema_migrations", "version"),
        versions_before
    );
    assert_eq!(rows(&server, "pgnewer", "jobs", "job_id"), jobs_before);
    // Read straight from the table: a command would refuse the schema.
    assert!(jobs_before.contains("keep|"), "{jobs_before}");
    assert!(!before.is_empty());
}

/// A fire's row in the store follows the fire through the real binary:
/// `running` while its command runs, then the outcome of its run.
#[test]
fn a_fire_row_is_running_while_its_command_runs_then_succeeded() {
    let server = PostgresServer::start().expect("start postgres");
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("worker.toml");
    std::fs::write(&config, FAST_CONFIG).expect("config");
    let jobs = dir.path().join("jobs.json");
    let entry = serde_json::json!([{"id": "slow", "schedule": "@every 10s", "exec": "sleep 3"}]);
    std::fs::write(&jobs, entry.to_string()).expect("jobs");
    let put = shardcron(&url, "pgstate")
        .args(["job", "put", "--file", jobs.to_str().expect("path")])
        .output()
        .expect("job put");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let mut workers = vec![(
        "s1",
        start_worker(&url, "pgstate", "s1", &config, dir.path()),
    )];
    let table = shardcron_postgres::NamespaceSchema::new("pgstate").object("fires");
    let state = |sql_filter: &str| {
        server
            .psql(&format!(
                "SELECT at_ms || ' ' || status FROM {table} WHERE job_id = 'slow' {sql_filter} ORDER BY at_ms LIMIT 1"
            ))
            .unwrap_or_default()
    };
    let running = wait_for(Duration::from_secs(20), || {
        state("AND status = 'running'").ends_with("running")
    });
    let seen = state("AND status = 'running'");
    assert!(
        running.is_some(),
        "no fire row went running: {}",
        rows(&server, "pgstate", "fires", "at_ms")
    );
    let at = seen.split(' ').next().unwrap_or_default().to_owned();
    let done = wait_for(Duration::from_secs(10), || {
        state(&format!("AND at_ms = {at}")).ends_with("succeeded")
    });
    stop_workers(&mut workers, dir.path());
    assert!(
        done.is_some(),
        "fire {at} did not end succeeded: {}",
        rows(&server, "pgstate", "fires", "at_ms")
    );
}
