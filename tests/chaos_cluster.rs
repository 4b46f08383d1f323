//! The chaos scenarios on a Redis Cluster (three masters, one replica
//! each): real worker processes given `--store redis+cluster://…`, every
//! fire audited from the exec job's own append-only log. Besides exactly
//! once, a cluster must really spread the namespace: every master ends up
//! holding shard keys.

mod common;
mod scenarios;

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
