//! The real binary on the etcd store: `--store etcd://…` (winning over
//! `--redis`) stores, lists and removes jobs on a private etcd; bad input
//! gets a clear error and its documented exit code (a malformed URL: 3,
//! without echoing the password; nothing listening: 4, naming etcd). The
//! fleet scenarios on etcd are in tests/chaos_etcd.rs.

mod common;

use std::process::{Command, Stdio};

use common::*;
use shardcron_testkit::EtcdServer;

fn shardcron(store: &str, namespace: &str) -> Command {
    let mut c = Command::new(bin());
    c.args(["--redis", "redis://127.0.0.1:1", "--store", store])
        .args(["--namespace", namespace])
        .env_remove("SHARDCRON_STORE")
        .env_remove("SHARDCRON_REDIS_URL")
        .env_remove("SHARDCRON_NAMESPACE")
        .stdin(Stdio::null());
    c
}

#[test]
fn jobs_are_stored_listed_and_removed_on_etcd() {
    let server = EtcdServer::start().expect("etcd");
    let url = server.url();
    let put = shardcron(&url, "cli")
        .args([
            "job",
            "put",
            "--id",
            "nightly",
            "--schedule",
            "0 3 * * *",
            "--exec",
            "true",
        ])
        .output()
        .expect("run");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let ls = shardcron(&url, "cli")
        .args(["job", "ls", "--json"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.status.success() && text.contains("nightly"), "{text}");
    let rm = shardcron(&url, "cli")
        .args(["job", "rm", "nightly"])
        .output()
        .expect("run");
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    let ls = shardcron(&url, "cli")
        .args(["job", "ls", "--json"])
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("nightly"));
}

#[test]
fn a_malformed_etcd_url_exits_3_and_no_server_exits_4() {
    let bad = shardcron("etcd://u:secret@127.0.0.1:notaport", "cli")
        .arg("status")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("invalid port"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");

    let port = shardcron_testkit::free_port().expect("port");
    let down = shardcron(&format!("etcd://127.0.0.1:{port}"), "cli")
        .arg("status")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("etcd unreachable at etcd://127.0.0.1:"),
        "{stderr}"
    );
}
