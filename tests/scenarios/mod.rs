//! Chaos scenarios shared by the stores: the same code runs a fleet of real
//! worker processes on a private Redis (tests/chaos.rs), a private
//! PostgreSQL (tests/chaos_postgres.rs) and a private etcd
//! (tests/chaos_etcd.rs), audits every fire from the exec job's own
//! append-only log, and prints one markdown row per scenario.

use std::time::{Duration, Instant};

use crate::common::*;

/// Jobs of every scenario, each `@every 1s`.
pub const JOBS: usize = 40;

/// Time until every shard is leased by its ring owner among `members` live members.
pub fn settle_time(f: &ProcFleet, members: usize, limit: Duration) -> Duration {
    wait_for(limit, || fleet_settled(&f.status(), members))
        .unwrap_or_else(|| panic!("fleet did not settle: {}", f.status()))
}

/// The row label: as it is on Redis, with the store named on any other.
fn label(f: &ProcFleet, name: &str) -> String {
    match f.cli.store.kind() {
        StoreKind::Redis => name.to_owned(),
        other => format!("{name} [{}]", other.name()),
    }
}

/// Audits the window, prints the scenario's row and asserts exactly once:
/// no duplicate, no fire missed unless a node in `dead` had claimed it.
pub fn row(
    name: &str,
    f: &ProcFleet,
    from: i64,
    to: i64,
    dead: &[&str],
    reaction: Option<Duration>,
) {
    let name = label(f, name);
    let a = f.audit(from, to);
    let (lost, unclaimed) = f.split_missing(&a, dead);
    let lateness = f.max_lateness_ms(from, to);
    println!(
        "| {name} | {} | {} | {} | {} | {} ms | {} |",
        a.expected,
        a.duplicates.len(),
        unclaimed.len(),
        lost,
        lateness,
        reaction.map_or("-".to_owned(), |d| format!("{} ms", d.as_millis()))
    );
    assert!(
        a.expected >= JOBS * 4,
        "{name}: window too short ({})",
        a.expected
    );
    for (job, at) in unclaimed.iter().take(3) {
        let holder = claim_holder(&f.cli.store, &f.cli.namespace, job, *at, 1024);
        let runs = f.cli.run(&["runs", "--job", job, "--limit", "40"]);
        println!(
            "{name}: missed {job}@{at}, claim {holder:?}; runs:\n{}",
            String::from_utf8_lossy(&runs.stdout)
        );
    }
    assert_exactly_once(&name, &a, &unclaimed, dead.len());
}

/// Audits the window of a failover run without `WAIT` (`min_replicas=0`)
/// and prints its row for docs/RELIABILITY.md, without asserting exactly
/// once: a claim the lost master acknowledged but never replicated may be
/// forgotten, and whether one is depends on timing. Each caller asserts
/// what must hold anyway. Only the stores with replicas use it.
#[allow(dead_code)]
pub fn unconfirmed_failover_row(
    name: &str,
    f: &ProcFleet,
    from: i64,
    to: i64,
    promoted: Duration,
) -> FileAudit {
    let name = label(f, name);
    let a = f.audit(from, to);
    println!(
        "| {name} | {} | {} duplicates | {} missing | {} ms max lateness | promoted in {} ms |",
        a.expected,
        a.duplicates.len(),
        a.missing.len(),
        f.max_lateness_ms(from, to),
        promoted.as_millis()
    );
    a
}

/// Every worker of three is stopped with SIGTERM and restarted in turn.
/// The fleet is handed back (stopped) for checks of the store after it.
pub fn rolling_restart_of_every_worker(store: StoreKind) -> ProcFleet {
    let mut f = ProcFleet::new_on(store, "chaos-rolling", JOBS);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let from = now_ms() + 1000;
    let mut worst = Duration::ZERO;
    for n in ["a", "b", "c"] {
        std::thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        f.stop(n);
        settle_time(&f, 2, Duration::from_secs(10));
        worst = worst.max(t.elapsed());
        f.start(n);
        settle_time(&f, 3, Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_secs(5));
    let to = now_ms() - 2000;
    f.stop_all();
    row(
        "rolling restart (3 workers, SIGTERM each in turn)",
        &f,
        from,
        to,
        &[],
        Some(worst),
    );
    f
}

/// Leader jobs of the crash and pause scenarios, besides the sharded ones.
pub const LEADER_JOBS: usize = 4;

/// One worker of three, the leader, is SIGKILLed: the others take its
/// shards and its leader jobs over; then it is started again.
pub fn kill_dash_nine_and_restart(store: StoreKind) {
    let mut f = ProcFleet::new_on_with_leader_jobs(store, "chaos-kill", JOBS, LEADER_JOBS);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let leader = wait_for(Duration::from_secs(10), || f.leader().is_some())
        .and_then(|_| f.leader())
        .expect("a leader");
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    f.kill(&leader);
    let takeover = settle_time(&f, 2, Duration::from_secs(15)) + Duration::ZERO;
    let takeover = takeover.max(t.elapsed().min(takeover + Duration::from_millis(50)));
    std::thread::sleep(Duration::from_secs(1));
    f.start(&leader);
    settle_time(&f, 3, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(5));
    let to = now_ms() - 2000;
    f.stop_all();
    let leader_jobs = f.jobs.iter().filter(|j| j.starts_with("lead-")).count();
    row(
        &format!("kill -9 of the leader (with {leader_jobs} leader jobs), restarted"),
        &f,
        from,
        to,
        &[leader.as_str()],
        Some(takeover),
    );
}

/// The worker running a long job, the leader (the long job is a leader
/// job), is paused with SIGSTOP past its lease TTL and member TTL, then
/// resumed: its running handler must see cancellation, another node must
/// take the leader jobs over, and it must not run fires late from a stale
/// lease.
pub fn sigstop_past_the_lease_ttl_then_sigcont(store: StoreKind) {
    let mut f = ProcFleet::new_on_with_leader_jobs(store, "chaos-stop", JOBS, LEADER_JOBS);
    let marks = f.cli.path("long.log");
    let long = format!(
        "echo START $SHARDCRON_NODE_ID >> {m}; trap 'echo CANCELLED $SHARDCRON_NODE_ID >> {m}; exit 1' TERM; sleep 60 & wait",
        m = marks.display()
    );
    let put = f.cli.run(&[
        "job",
        "put",
        "--id",
        "long",
        "--schedule",
        "@every 1s",
        "--exec",
        &long,
        "--placement",
        if store == StoreKind::RedisCluster {
            "sharded"
        } else {
            "leader"
        },
    ]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let from = now_ms() + 1000;
    let owner = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&marks).is_ok_and(|t| t.contains("START"))
    })
    .map(|_| {
        let t = std::fs::read_to_string(&marks).unwrap_or_default();
        t.split_whitespace().nth(1).unwrap_or("a").to_owned()
    })
    .expect("long job started");
    std::thread::sleep(Duration::from_secs(2));
    f.signal(&owner, libc::SIGSTOP);
    let t = Instant::now();
    // Longer than the 1.5 s lease TTL and the member TTL.
    std::thread::sleep(Duration::from_secs(4));
    f.signal(&owner, libc::SIGCONT);
    let cancelled = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&marks).is_ok_and(|t| t.contains(&format!("CANCELLED {owner}")))
    });
    assert!(
        cancelled.is_some(),
        "the paused node's running handler must see cancellation"
    );
    settle_time(&f, 3, Duration::from_secs(15));
    let rejoin = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let to = now_ms() - 2000;
    f.stop_all();
    // Fires the paused node had claimed but not started when it stopped are
    // not run by anyone: it must not run them late from a stale lease.
    row(
        if store == StoreKind::RedisCluster {
            "SIGSTOP 4 s (> lease TTL 1.5 s), SIGCONT"
        } else {
            "SIGSTOP of the leader 4 s (> lease TTL 1.5 s), SIGCONT"
        },
        &f,
        from,
        to,
        &[owner.as_str()],
        Some(rejoin),
    );
}

/// Three workers join a fleet of three, then leave again with SIGTERM.
pub fn scale_out_three_to_six_and_back(store: StoreKind) {
    let mut f = ProcFleet::new_on(store, "chaos-scale", JOBS);
    for n in ["a", "b", "c"] {
        f.start(n);
    }
    settle_time(&f, 3, Duration::from_secs(15));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    for n in ["d", "e", "f"] {
        f.start(n);
    }
    let out = settle_time(&f, 6, Duration::from_secs(20)).max(t.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    for n in ["d", "e", "f"] {
        f.stop(n);
    }
    let scale_in = t.elapsed() + settle_time(&f, 3, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    let to = now_ms() - 2000;
    f.stop_all();
    println!(
        "{}: scale-out settled in {} ms, scale-in in {} ms",
        store.name(),
        out.as_millis(),
        scale_in.as_millis()
    );
    row(
        "scale-out 3→6, scale-in 6→3",
        &f,
        from,
        to,
        &[],
        Some(out.max(scale_in)),
    );
}
