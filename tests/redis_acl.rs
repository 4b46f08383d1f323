//! The minimal Redis ACL of a shardcron user (deploy/redis/shardcron.acl,
//! explained in docs/ARCHITECTURE.md, "Redis ACL user") is enough: a private
//! redis-server gets that user (namespace and password filled in) and the
//! real binary's workers, connected as it (`redis://user:password@…`), run
//! every fire. The default user stays unrestricted for the test's own setup
//! and audit, which run as an operator would.

mod common;

use std::time::Duration;

use common::*;
use shardcron_testkit::RedisServer;

/// The ACL line shipped in deploy/, for namespace `ns` and password `pw`.
fn acl_line(ns: &str, pw: &str) -> String {
    include_str!("../deploy/redis/shardcron.acl")
        .trim()
        .replace("CHANGE-ME", pw)
        .replace("{shardcron}", &format!("{{{ns}}}"))
        .replace("{shardcron:", &format!("{{{ns}:"))
}

#[test]
fn workers_run_every_fire_as_a_user_with_the_minimal_acl() {
    let ns = "acl-ns";
    let mut builder = RedisServer::builder();
    for token in acl_line(ns, "s3cret").split_whitespace() {
        builder = builder.arg(if token == "user" { "--user" } else { token });
    }
    let redis = builder.start().expect("redis-server with the ACL user");
    let user_url = format!("redis://shardcron:s3cret@127.0.0.1:{}", redis.port());
    let denied = redis
        .command(&["ACL", "DRYRUN", "shardcron", "FLUSHALL"])
        .expect("ACL DRYRUN");
    assert!(
        denied.contains("no permissions"),
        "the user must not run other commands: {denied}"
    );
    let mut f = ProcFleet::with_cli(Cli::with_store(Store::Redis(redis), ns), 10);
    for n in ["a", "b"] {
        f.store_url.insert(n.to_owned(), user_url.clone());
        f.start(n);
    }
    let from = now_ms() + 2000;
    std::thread::sleep(Duration::from_secs(8));
    let to = now_ms() - 2000;
    f.stop_all();
    for n in ["a", "b"] {
        let log = std::fs::read_to_string(f.cli.path(&format!("{n}.log"))).unwrap_or_default();
        assert!(
            !log.contains("NOPERM") && !log.contains("no permissions"),
            "{n} was refused a command:\n{log}"
        );
    }
    let a = f.audit(from, to);
    assert!(a.expected >= 30, "window too short: {}", a.expected);
    assert!(a.duplicates.is_empty(), "duplicates {:?}", a.duplicates);
    assert!(a.missing.is_empty(), "missing {:?}", a.missing);
    println!(
        "ACL user fleet: {} fires expected, {} seen",
        a.expected, a.seen
    );
}
