//! The chaos scenarios on a Redis Cluster (three masters, one replica
//! each): real worker processes given `--store redis+cluster://…`, every
//! fire audited from the exec job's own append-only log. Besides exactly
//! once, a cluster must really spread the namespace: every master ends up
//! holding shard keys.

mod common;
mod scenarios;

use std::time::{Duration, Instant};

use common::*;
use scenarios::JOBS;

/// Every worker of three stopped with SIGTERM and restarted in turn; then
/// each master holds some of the namespace's keys.
#[test]
fn rolling_restart_of_every_worker_on_a_redis_cluster() {
    let f = scenarios::rolling_restart(ProcFleet::new_on(
        StoreKind::RedisCluster,
        "chaos-rolling",
        JOBS,
    ));
    let Store::RedisCluster(cluster) = &f.cli.store else {
        unreachable!("the fleet runs on a cluster")
    };
    let sizes: Vec<i64> = cluster
        .masters()
        .iter()
        .map(|m| {
            m.command(&["DBSIZE"])
                .expect("DBSIZE")
                .parse()
                .expect("a count")
        })
        .collect();
    println!("keys per master: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| n > 20),
        "every master holds shard keys: {sizes:?}"
    );
}

/// A master SIGKILLed under a fleet firing every second: its replica is
/// promoted (after `cluster-node-timeout`, 2 s) and the workers follow it.
/// Claims were confirmed by `WAIT 1` (the default on a cluster with
/// replicas), so the promoted replica holds every claim that ran: no fire
/// runs twice, and the fires due during the failover are claimed late,
/// once the lost node is back as the promoted master's replica.
#[test]
fn a_master_killed_and_its_replica_promoted() {
    let mut f = ProcFleet::new_on(StoreKind::RedisCluster, "chaos-failover", JOBS);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    scenarios::settle_time(&f, 3, Duration::from_secs(20));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(3));
    let Store::RedisCluster(cluster) = &f.cli.store else {
        unreachable!("the fleet runs on a cluster")
    };
    let t = Instant::now();
    let killed = &cluster.masters()[0];
    killed.kill();
    cluster
        .wait_failover(killed.port())
        .expect("the replica is promoted");
    let promoted = t.elapsed();
    // The promoted master has no replica until the lost node is back: with
    // min_replicas = 1 its shards' claims wait for it (they are never run
    // unconfirmed). It comes back on its data as the new master's replica.
    killed.restart().expect("restart the lost master");
    cluster
        .wait_replicas()
        .expect("the lost master is a replica again");
    std::thread::sleep(Duration::from_secs(8));
    let to = now_ms() - 2000;
    f.stop_all();
    if std::env::var_os("SHARDCRON_SHOW_LOGS").is_some() {
        let log = std::fs::read_to_string(f.cli.path("a.log")).unwrap_or_default();
        println!("{log}");
    }
    scenarios::row(
        "cluster master SIGKILLed, its replica promoted",
        &f,
        from,
        to,
        &[],
        Some(promoted),
    );
}
