//! The worker config file: keys, defaults, unknown keys and static jobs.

use std::time::Duration;

use shardcron_cli::config::{load, parse};
use shardcron_cli::jobs_input::builtin_registry;
use shardcron_cli::ExitKind;
use shardcron_runtime::WorkerSettings;

#[test]
fn full_config_is_read() {
    let text = r#"
[worker]
heartbeat = "500ms"
member_ttl = "3s"
lease_ttl = "4s"
drift_margin = "1s"
concurrency = 16
drain_timeout = "20s"
claim_retention = "30m"
poll_interval = "10s"
on_time_tolerance = "1s"
shard_count = 256
vnodes = 64
misfire_grace = "2m"
node_id = "box-1"
listen = "127.0.0.1:9090"

[[job]]
id = "static"
schedule = "@every 5s"
exec = "true"
"#;
    let c = parse(text).expect("valid config");
    assert_eq!(c.settings.heartbeat, Duration::from_millis(500));
    assert_eq!(c.settings.member_ttl, Duration::from_secs(3));
    assert_eq!(c.settings.lease_ttl, Duration::from_secs(4));
    assert_eq!(c.settings.drift_margin, Duration::from_secs(1));
    assert_eq!(c.settings.concurrency, 16);
    assert_eq!(c.settings.drain_timeout, Duration::from_secs(20));
    assert_eq!(c.settings.claim_retention, Duration::from_secs(1800));
    assert_eq!(c.settings.poll_interval, Duration::from_secs(10));
    assert_eq!(c.settings.on_time_tolerance, Duration::from_secs(1));
    assert_eq!((c.ring.shard_count, c.ring.vnodes), (256, 64));
    assert_eq!(c.misfire_grace, Some(Duration::from_secs(120)));
    assert_eq!(c.node_id.as_deref(), Some("box-1"));
    assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9090"));
    let jobs = c.static_jobs(&builtin_registry()).expect("valid jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].misfire_grace,
        Duration::from_secs(120),
        "worker default applies"
    );
}

#[test]
fn empty_config_means_defaults() {
    let c = parse("").expect("empty");
    assert_eq!(c.settings, WorkerSettings::default());
    assert_eq!(c.ring, shardcron_core::RingConfig::default());
    assert!(c.static_jobs(&builtin_registry()).expect("none").is_empty());
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err = parse("[worker]\nhartbeat = \"1s\"\n").expect_err("typo");
    assert_eq!(err.kind, ExitKind::Config);
    assert!(err.message.contains("`worker.hartbeat`"), "{err}");
    let err = parse("[wroker]\nheartbeat = \"1s\"\n").expect_err("typo in table");
    assert!(err.message.contains("`wroker`"), "{err}");
    let err =
        parse("[[job]]\nid = \"a\"\nschedule = \"@every 1s\"\nexec = \"true\"\nretires = 2\n")
            .expect("jobs are checked by static_jobs")
            .static_jobs(&builtin_registry())
            .expect_err("unknown job key");
    assert!(
        err.message.contains("job #1 \"a\": field `retires`"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_key() {
    for (text, needle) in [
        ("[worker]\nheartbeat = \"soon\"\n", "`worker.heartbeat`"),
        ("[worker]\nheartbeat = 5\n", "`worker.heartbeat`"),
        ("[worker]\nshard_count = 0\n", "`worker.shard_count`"),
        ("[worker]\nconcurrency = -1\n", "`worker.concurrency`"),
        ("[worker]\nnode_id = 7\n", "`worker.node_id`"),
        ("[worker]\nheartbeat = \"3s\"\n", "member_ttl"),
        ("worker = 1\n", "`worker`"),
        ("[worker\n", "invalid TOML"),
    ] {
        let err = parse(text).expect_err(text);
        assert_eq!(err.kind, ExitKind::Config, "{text}");
        assert!(err.message.contains(needle), "{text}: {err}");
    }
}

#[test]
fn any_bad_static_job_rejects_them_all() {
    let text = r#"
[[job]]
id = "good"
schedule = "@every 1s"
exec = "true"

[[job]]
id = "bad"
schedule = "@every 1s"
exec = "true"
tz = "Nowhere/Land"

[[job]]
id = "old"
schedule = "@every 1s"
exec = "true"
misfire_grace = "1h"
"#;
    let err = parse(text)
        .expect("parses")
        .static_jobs(&builtin_registry())
        .expect_err("bad");
    assert_eq!(err.kind, ExitKind::Config);
    assert!(err.message.contains("job #2 \"bad\": field `tz`"), "{err}");
    assert!(err.message.contains("Nowhere/Land"), "{err}");
    let text = "[[job]]\nid = \"old\"\nschedule = \"@every 1s\"\nexec = \"true\"\nmisfire_grace = \"1h\"\n";
    let err = parse(text)
        .expect("parses")
        .static_jobs(&builtin_registry())
        .expect_err("grace");
    assert!(
        err.message.contains("`misfire_grace`") && err.message.contains("claim_retention"),
        "{err}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.toml");
    std::fs::write(&path, "[worker]\nbogus = 1\n").expect("write");
    let err = load(&path).expect_err("unknown key");
    assert!(
        err.message
            .starts_with(&format!("config file {}", path.display())),
        "{err}"
    );
    let err = load(&dir.path().join("missing.toml")).expect_err("missing");
    assert_eq!(err.kind, ExitKind::Config);
    assert!(err.message.contains("missing.toml"), "{err}");
}
