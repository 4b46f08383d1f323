//! The chaos scenarios of tests/chaos.rs that do not depend on the store,
//! run by the same code on a private etcd: real worker processes, every
//! fire audited from the exec job's own append-only log, misses split by
//! the claim records in the shards' state documents. Each scenario prints
//! one markdown row. Two more are etcd's own: the server killed and
//! restarted on its data, and a three-member cluster losing its leader.

mod common;
mod scenarios;

use std::time::{Duration, Instant};

use common::*;
use scenarios::{row, settle_time, JOBS};
use shardcron_testkit::EtcdServer;

/// Every worker of three stopped with SIGTERM and restarted in turn.
#[test]
fn rolling_restart_of_every_worker_on_etcd() {
    scenarios::rolling_restart_of_every_worker(StoreKind::Etcd);
}

/// One worker SIGKILLed, then restarted.
#[test]
fn kill_dash_nine_and_restart_on_etcd() {
    scenarios::kill_dash_nine_and_restart(StoreKind::Etcd);
}

/// One worker paused past its lease TTL, then resumed.
#[test]
fn sigstop_past_the_lease_ttl_then_sigcont_on_etcd() {
    scenarios::sigstop_past_the_lease_ttl_then_sigcont(StoreKind::Etcd);
}

/// Three workers joining a fleet of three, then leaving.
#[test]
fn scale_out_three_to_six_and_back_on_etcd() {
    scenarios::scale_out_three_to_six_and_back(StoreKind::Etcd);
}

/// WARN lines in each worker's log: logged once per state change, not once
/// per tick, however long the store is away.
fn warnings_per_worker(f: &ProcFleet, nodes: &[&str]) -> Vec<(String, usize)> {
    nodes
        .iter()
        .map(|n| {
            let log = std::fs::read_to_string(f.cli.path(&format!("{n}.log"))).unwrap_or_default();
            (
                (*n).to_owned(),
                log.lines().filter(|l| l.contains("WARN")).count(),
            )
        })
        .collect()
}

/// The one etcd member is SIGKILLed under a firing fleet, stays down 5 s
/// (past every lease and member TTL), and is started again on the same
/// ports and data directory. Nothing may run twice (a worker must not run
/// fires from a lease that lapsed while etcd was away) and every fire of
/// the window must run (fires due during the outage are not expected to
/// run on time, but the audit only allows late, not missing ones).
#[test]
fn etcd_killed_down_five_seconds_and_restarted() {
    let etcd = EtcdServer::start().expect("etcd");
    let cli = Cli::with_store(Store::Etcd(etcd), "chaos-etcd-restart");
    let mut f = ProcFleet::with_cli(cli, JOBS);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(3));
    f.cli.etcd().kill();
    std::thread::sleep(Duration::from_secs(5));
    let t = Instant::now();
    f.cli.etcd().restart().expect("restart etcd");
    let recovered = settle_time(&f, 3, Duration::from_secs(20)).min(t.elapsed());
    std::thread::sleep(Duration::from_secs(5));
    let to = now_ms() - 2000;
    for n in ["a", "b", "c"] {
        assert!(f.workers.contains_key(n), "{n} exited during the outage");
    }
    f.stop_all();
    let warnings = warnings_per_worker(&f, &["a", "b", "c"]);
    println!("etcd outage: WARN lines per worker {warnings:?}");
    for (n, count) in &warnings {
        assert!(
            *count <= 8,
            "{n} logged {count} warnings during one outage:\n{}",
            f.log_tail(n)
        );
    }
    row(
        "etcd killed, down 5 s, restarted (same data)",
        &f,
        from,
        to,
        &[],
        Some(recovered),
    );
}

/// `etcdctl endpoint status` of the members other than `down`: the index
/// (in the order of `EtcdServer::addrs`) of the member that is leader.
fn leader_index(etcd: &EtcdServer, down: Option<usize>) -> Option<usize> {
    let endpoints: Vec<String> = etcd.addrs().iter().map(|a| a.to_string()).collect();
    let asked: Vec<&str> = endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != down)
        .map(|(_, e)| e.as_str())
        .collect();
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &asked.join(","),
            "--command-timeout",
            "2s",
            "endpoint",
            "status",
            "-w",
            "json",
        ])
        .output()
        .expect("run etcdctl (apt-get install etcd-client)");
    let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let statuses = statuses.as_array()?;
    let leader = statuses
        .iter()
        .find_map(|s| s["Status"]["leader"].as_u64())?;
    let endpoint = statuses
        .iter()
        .find(|s| s["Status"]["header"]["member_id"].as_u64() == Some(leader))?["Endpoint"]
        .as_str()?
        .to_owned();
    endpoints.iter().position(|e| *e == endpoint)
}

/// A three-member etcd cluster (the workers given all three endpoints)
/// loses its leader to SIGKILL under a firing fleet: the other two elect a
/// new one and keep the quorum, the workers' requests move to the live
/// members, and every fire still runs exactly once. The member is started
/// again on its data afterwards and rejoins. The reaction time is how long
/// the fleet took to be settled again (three members, every shard leased)
/// as seen through the surviving members.
#[test]
fn etcd_cluster_losing_its_leader() {
    let etcd = EtcdServer::start_cluster().expect("etcd cluster");
    assert_eq!(etcd.addrs().len(), 3);
    let cli = Cli::with_store(Store::Etcd(etcd), "chaos-etcd-member");
    let mut f = ProcFleet::with_cli(cli, JOBS);
    assert_eq!(f.cli.store.url().matches(',').count(), 2);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(3));
    let leader = leader_index(f.cli.etcd(), None).expect("the cluster's leader");
    let t = Instant::now();
    f.cli.etcd().kill_member(leader);
    let new_leader = wait_for(Duration::from_secs(10), || {
        leader_index(f.cli.etcd(), Some(leader)).is_some_and(|l| l != leader)
    });
    let elected = new_leader.map(|_| t.elapsed());
    let recovered = settle_time(&f, 3, Duration::from_secs(15)).max(Duration::ZERO);
    let recovered = recovered.min(t.elapsed());
    std::thread::sleep(Duration::from_secs(6));
    f.cli.etcd().restart().expect("restart the killed member");
    std::thread::sleep(Duration::from_secs(3));
    let to = now_ms() - 2000;
    for n in ["a", "b", "c"] {
        assert!(f.workers.contains_key(n), "{n} exited");
    }
    f.stop_all();
    println!(
        "etcd cluster: killed leader m{leader}, new leader after {:?}, fleet settled after {} ms",
        elected,
        recovered.as_millis()
    );
    assert!(elected.is_some(), "no new leader within 10 s");
    row(
        "etcd cluster of 3, leader kill -9 (then restarted)",
        &f,
        from,
        to,
        &[],
        Some(recovered),
    );
}
