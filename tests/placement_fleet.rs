//! Placements on a fleet of real worker processes, audited from outside.
//!
//! Leader jobs all run on one node while sharded jobs spread over all; a
//! kill -9 of the leader moves them to another node within the lease TTL
//! plus a heartbeat, and a graceful stop hands them over at once (both
//! measured and printed). Broadcast jobs run once per live member per fire,
//! and a member joining mid-way starts with the next fire.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

const LEADER_JOBS: usize = 4;
const SHARDED_JOBS: usize = 24;

/// `(job, scheduled_ms) -> nodes that ran it`, from the audit file.
fn runs(f: &ProcFleet) -> BTreeMap<(String, i64), Vec<String>> {
    let text = std::fs::read_to_string(&f.out).unwrap_or_default();
    let mut runs: BTreeMap<(String, i64), Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(job), Some(at), Some(node)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<i64>() else { continue };
        runs.entry((job.to_owned(), at))
            .or_default()
            .push(node.to_owned());
    }
    runs
}

fn leader_of(f: &ProcFleet) -> Option<String> {
    f.status()["leader"]["node"].as_str().map(str::to_owned)
}

/// Nodes that ran leader-job fires in `[from, to]`.
fn leader_job_nodes(f: &ProcFleet, from: i64, to: i64) -> BTreeSet<String> {
    runs(f)
        .into_iter()
        .filter(|((job, at), _)| job.starts_with("lead-") && *at >= from && *at <= to)
        .flat_map(|(_, nodes)| nodes)
        .collect()
}

/// When a node other than `old` first started a leader-job run after
/// `after` (the audit line's start time, ms).
fn first_start_elsewhere(f: &ProcFleet, old: &str, after: i64) -> Option<i64> {
    let text = std::fs::read_to_string(&f.out).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [job, _at, node, started] = parts.as_slice() else {
                return None;
            };
            let started: i64 = started.parse().ok()?;
            (job.starts_with("lead-") && *node != old && started > after).then_some(started)
        })
        .min()
}

#[test]
fn leader_jobs_run_on_one_node_and_fail_over_exactly_once() {
    let cli = Cli::new("placement-leader");
    let mut f = ProcFleet::with_entries(cli, |out| {
        let mut entries: Vec<serde_json::Value> = (0..LEADER_JOBS)
            .map(|i| {
                serde_json::json!({"id": format!("lead-{i}"), "schedule": "@every 1s",
                    "exec": exec_line(out), "placement": "leader"})
            })
            .collect();
        entries.extend((0..SHARDED_JOBS).map(|i| {
            serde_json::json!({"id": format!("spread-{i:02}"), "schedule": "@every 1s",
                "exec": exec_line(out)})
        }));
        entries
    });
    // `job ls` shows the placement.
    let ls = f.cli.run(&["job", "ls"]);
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        ls.contains("PLACEMENT") && ls.contains("leader") && ls.contains("sharded"),
        "{ls}"
    );
    let from = now_ms() + 3000;
    for n in ["n1", "n2", "n3"] {
        f.start(n);
    }
    assert!(
        wait_for(Duration::from_secs(20), || fleet_settled(&f.status(), 3)
            && leader_of(&f).is_some())
        .is_some(),
        "fleet did not settle: {}",
        f.status()
    );
    std::thread::sleep(Duration::from_secs(6));
    let leader = leader_of(&f).expect("a leader");
    let status = f.status();
    assert!(
        status["leader"]["token"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert_eq!(status["leader_jobs"], LEADER_JOBS, "{status}");
    let settled_to = now_ms() - 1500;
    let nodes = leader_job_nodes(&f, from, settled_to);
    assert_eq!(
        nodes,
        BTreeSet::from([leader.clone()]),
        "every leader-job fire on the leader"
    );
    let spread: BTreeSet<String> = runs(&f)
        .into_iter()
        .filter(|((job, at), _)| job.starts_with("spread-") && *at >= from && *at <= settled_to)
        .flat_map(|(_, nodes)| nodes)
        .collect();
    assert_eq!(spread.len(), 3, "sharded jobs spread over all: {spread:?}");

    // kill -9 the leader: another node runs its jobs within the bound.
    let killed_at = now_ms();
    f.kill(&leader);
    assert!(
        wait_for(Duration::from_secs(15), || leader_of(&f)
            .is_some_and(|l| l != leader))
        .is_some(),
        "no new leader after the kill: {}",
        f.status()
    );
    std::thread::sleep(Duration::from_secs(4));
    let second = leader_of(&f).expect("new leader");
    let took_over = first_start_elsewhere(&f, &leader, killed_at).expect("runs after the kill");
    println!(
        "leader kill -9: {leader} killed, {second} leads; its first leader-job run started {} ms after the kill (bound: lease_ttl 1500 ms + heartbeat 250 ms)",
        took_over - killed_at
    );
    assert!(
        took_over - killed_at <= 1500 + 250 + 1000,
        "takeover took {} ms",
        took_over - killed_at
    );

    // Graceful stop of the new leader: the handoff is at once.
    let stop_sent = now_ms();
    f.stop(&second);
    let third = wait_for(Duration::from_secs(10), || {
        leader_of(&f).is_some_and(|l| l != second)
    });
    assert!(third.is_some(), "no leader after a graceful leave");
    std::thread::sleep(Duration::from_secs(4));
    let handoff = first_start_elsewhere(&f, &second, stop_sent).expect("runs after the leave");
    println!(
        "leader graceful leave: SIGTERM to {second}; {} started its first leader-job run {} ms later",
        leader_of(&f).unwrap_or_default(),
        handoff - stop_sent
    );
    let to = now_ms() - 2500;
    f.stop_all();
    std::thread::sleep(Duration::from_millis(500));

    // Every leader-job fire exactly once across both failovers.
    let all = runs(&f);
    let mut duplicates = Vec::new();
    let mut missing = Vec::new();
    let first = (from + 999) / 1000 * 1000;
    for i in 0..LEADER_JOBS {
        let job = format!("lead-{i}");
        let mut t = first;
        while t <= to {
            match all.get(&(job.clone(), t)) {
                None => missing.push(t),
                Some(nodes) if nodes.len() > 1 => duplicates.push((t, nodes.clone())),
                Some(_) => {}
            }
            t += 1000;
        }
    }
    let lost_with_kill: BTreeSet<i64> = missing.iter().copied().collect();
    println!(
        "leader jobs audit: {} job(s) x {} s, duplicates {}, missing {} (instants {:?})",
        LEADER_JOBS,
        (to - first) / 1000 + 1,
        duplicates.len(),
        missing.len(),
        lost_with_kill
    );
    assert!(duplicates.is_empty(), "duplicates {duplicates:?}");
    // A fire the killed leader had claimed (ahead, or just started) dies
    // with it: at most the fires of one instant.
    assert!(lost_with_kill.len() <= 1, "missing {missing:?}");
}

#[test]
fn broadcast_jobs_run_once_on_every_live_member_and_a_joiner_starts_with_the_next_fire() {
    let cli = Cli::new("placement-broadcast");
    let mut f = ProcFleet::with_entries(cli, |out| {
        vec![
            serde_json::json!({"id": "everywhere", "schedule": "@every 1s",
                "exec": exec_line(out), "placement": "broadcast"}),
            serde_json::json!({"id": "once", "schedule": "@every 1s",
                "exec": exec_line(out)}),
        ]
    });
    // A broadcast job cannot be triggered, with a clear error.
    let trig = f.cli.run(&["job", "trigger", "everywhere"]);
    assert!(!trig.status.success());
    let err = String::from_utf8_lossy(&trig.stderr).to_string();
    assert!(
        err.contains("placement") && err.contains("broadcast"),
        "{err}"
    );
    let from = now_ms() + 3000;
    f.start("n1");
    f.start("n2");
    assert!(wait_for(Duration::from_secs(20), || fleet_settled(&f.status(), 2)).is_some());
    std::thread::sleep(Duration::from_secs(5));
    let joined_at = now_ms();
    f.start("n3");
    std::thread::sleep(Duration::from_secs(6));
    let to = now_ms() - 2000;
    f.stop_all();
    std::thread::sleep(Duration::from_millis(500));

    let all = runs(&f);
    let first = (from + 999) / 1000 * 1000;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut t = first;
    while t <= to {
        let nodes = all
            .get(&("everywhere".to_owned(), t))
            .cloned()
            .unwrap_or_default();
        let distinct: BTreeSet<&String> = nodes.iter().collect();
        assert_eq!(
            distinct.len(),
            nodes.len(),
            "a member ran {t} twice: {nodes:?}"
        );
        for must in ["n1", "n2"] {
            assert!(
                nodes.iter().any(|n| n == must),
                "{must} missed {t}: {nodes:?}"
            );
        }
        if t > joined_at + 3000 {
            assert!(nodes.iter().any(|n| n == "n3"), "n3 missed {t}: {nodes:?}");
        }
        if t <= joined_at {
            assert!(
                !nodes.iter().any(|n| n == "n3"),
                "n3 ran {t}, a fire from before it joined: {nodes:?}"
            );
        }
        for n in nodes {
            *per_node.entry(n).or_default() += 1;
        }
        let once = all.get(&("once".to_owned(), t)).map_or(0, Vec::len);
        assert_eq!(once, 1, "the sharded job runs once per fire at {t}");
        t += 1000;
    }
    let n3_first = all
        .iter()
        .filter(|((job, _), nodes)| job == "everywhere" && nodes.iter().any(|n| n == "n3"))
        .map(|((_, at), _)| *at)
        .min()
        .expect("n3 ran broadcast fires");
    println!(
        "broadcast audit: {} fire instants, runs per node {per_node:?}; n3 joined at {joined_at}, its first broadcast fire is scheduled {} ms later",
        (to - first) / 1000 + 1,
        n3_first - joined_at
    );
    assert!(n3_first > joined_at, "a joiner starts with the next fire");
    // The fire ids handed to the handler name the member.
    let history = f.cli.run(&["runs", "--job", "everywhere", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).expect("runs json");
    let ids: Vec<&str> = runs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["fire_id"].as_str())
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        let (_, member) = id
            .rsplit_once('/')
            .expect("a broadcast fire id names its member");
        assert!(["n1", "n2", "n3"].contains(&member), "{id}");
    }
}
