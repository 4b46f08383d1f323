//! Fleets on TLS-only Redis that requires client certificates: the real
//! binary's workers, given `rediss://…?tls_ca=…&tls_cert=…&tls_key=…` (one
//! server) or `rediss+cluster://…` with the same options (a cluster of
//! three masters with a replica each), run every fire exactly once,
//! audited from the fires they append to a file. The servers have no
//! plain TCP port, so every connection of a worker (its commands, the
//! cluster's slot map, its event listener) and of the one-shot commands
//! that put the jobs and read the status went through TLS with the test
//! CA; the cluster's nodes meet and replicate over TLS too.

mod common;

use std::time::Duration;

use common::*;
use shardcron_testkit::{ClientAuth, RedisCluster, RedisServer};

#[test]
fn a_fleet_on_a_tls_only_redis_runs_every_fire_once() {
    let redis = RedisServer::builder()
        .tls(ClientAuth::Required)
        .start()
        .expect("TLS-only redis-server");
    assert!(redis.url().starts_with("rediss://"));
    run_fleet("TLS fleet", Store::Redis(redis), "tls-ns");
}

#[test]
fn a_fleet_on_a_tls_only_redis_cluster_runs_every_fire_once() {
    let cluster =
        RedisCluster::start_tls(3, 1, ClientAuth::Required).expect("TLS-only redis cluster");
    assert!(cluster.url().starts_with("rediss+cluster://"));
    run_fleet(
        "TLS cluster fleet",
        Store::RedisCluster(cluster),
        "tls-cluster-ns",
    );
}

/// Three workers on `store` running ten `@every 1s` jobs: settles, audits
/// a 10 s window (0 duplicates, 0 missing, no store error in any worker's
/// log) and prints the figures under `label`.
fn run_fleet(label: &str, store: Store, namespace: &str) {
    let mut f = ProcFleet::with_cli(Cli::with_store(store, namespace), 10);
    let nodes = ["a", "b", "c"];
    for n in nodes {
        f.start(n);
    }
    let settled = wait_for(Duration::from_secs(15), || fleet_settled(&f.status(), 3));
    assert!(settled.is_some(), "fleet not settled:\n{}", f.log_tail("a"));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(10));
    let to = now_ms() - 2000;
    f.stop_all();
    for n in nodes {
        let log = std::fs::read_to_string(f.cli.path(&format!("{n}.log"))).unwrap_or_default();
        assert!(
            !log.contains("unreachable") && !log.contains("TLS"),
            "{n} had store errors:\n{log}"
        );
    }
    let a = f.audit(from, to);
    assert!(a.expected >= 60, "window too short: {}", a.expected);
    assert!(a.duplicates.is_empty(), "duplicates {:?}", a.duplicates);
    assert!(a.missing.is_empty(), "missing {:?}", a.missing);
    let per_node: Vec<String> = a.per_node.values().map(usize::to_string).collect();
    println!(
        "{label}: 3 workers, {} jobs, {} fires expected, {} seen, {} duplicates, {} missing, per node {}, max lateness {} ms",
        f.jobs.len(),
        a.expected,
        a.seen,
        a.duplicates.len(),
        a.missing.len(),
        per_node.join(" / "),
        f.max_lateness_ms(from, to)
    );
}
