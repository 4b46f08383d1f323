//! Delivery guarantees under crashes and pauses: real worker processes, a
//! real `redis-server`, every fire audited from the exec job's own
//! append-only log, one line per handler start:
//!
//! `job scheduled_ms node started_ms fire_id attempt`
//!
//! * `at_least_once`: a fire claimed by a node that dies is recovered by the
//!   shard's next owner, so nothing is lost; a fire runs twice only when its
//!   first run was on the node that died, around the moment it died.
//! * `at_most_once` (the default): under the same kills nothing runs twice;
//!   fires lost with the dead node are counted.
//!
//! Each scenario prints one row of the delivery table in
//! docs/RELIABILITY.md:
//! `| scenario | expected fires | duplicates | lost | duplicates explained | max lateness |`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use shardcron_coord::{claim_record, Keyspace};
use shardcron_core::{shard_of, DEFAULT_SHARD_COUNT};

/// Jobs of the kill scenarios, each firing every second.
const KILL_JOBS: usize = 150;
/// Workers of the kill scenarios.
const KILL_NODES: [&str; 4] = ["a", "b", "c", "d"];
/// Killed with SIGKILL in this order, each restarted before the next kill.
const VICTIMS: [&str; 3] = ["b", "c", "d"];
/// A run that a kill explains started at most this long before the kill.
const KILL_LOOKBACK_MS: i64 = 2000;
/// ... or this long after it: a handler process forked just before the
/// SIGKILL is not killed with its worker, and writes its start line (with
/// its own clock reading) after the kill instant.
const KILL_CHILD_SLACK_MS: i64 = 1000;

/// The audit line of one handler start.
fn start_line(out: &Path) -> String {
    format!(
        "echo \"$SHARDCRON_JOB_ID $SHARDCRON_SCHEDULED_AT $SHARDCRON_NODE_ID $(date +%s%3N) $SHARDCRON_FIRE_ID $SHARDCRON_ATTEMPT\" >> {}",
        out.display()
    )
}

/// One handler start, read back from the audit log.
#[derive(Clone, Debug)]
struct Start {
    node: String,
    started_ms: i64,
    fire_id: String,
    attempt: String,
}

/// Every start of every fire, by `(job, scheduled_ms)`, in start order.
fn read_starts(path: &Path) -> BTreeMap<(String, i64), Vec<Start>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<(String, i64), Vec<Start>> = BTreeMap::new();
    for line in text.lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        let (Some(job), Some(at), Some(node), Some(started)) =
            (p.first(), p.get(1), p.get(2), p.get(3))
        else {
            continue;
        };
        let (Ok(at), Ok(started_ms)) = (at.parse::<i64>(), started.parse::<i64>()) else {
            continue;
        };
        out.entry(((*job).to_owned(), at)).or_default().push(Start {
            node: (*node).to_owned(),
            started_ms,
            fire_id: p.get(4).copied().unwrap_or("").to_owned(),
            attempt: p.get(5).copied().unwrap_or("").to_owned(),
        });
    }
    for starts in out.values_mut() {
        starts.sort_by_key(|s| s.started_ms);
    }
    out
}

fn settle(f: &ProcFleet, members: usize, limit: Duration) -> Duration {
    wait_for(limit, || fleet_settled(&f.status(), members))
        .unwrap_or_else(|| panic!("fleet did not settle at {members} members: {}", f.status()))
}

fn print_row(name: &str, expected: usize, dups: usize, lost: usize, explained: usize, late: i64) {
    println!("| {name} | {expected} | {dups} | {lost} | {explained} | {late} ms |");
}

/// A SIGKILL: which node, the wall clock just before the signal, the fires
/// the node had claimed and not started then, and its open `at_least_once`
/// fires (claimed, no terminal state in the store) then.
#[derive(Clone, Debug)]
struct Kill {
    node: &'static str,
    at_ms: i64,
    held: BTreeSet<(String, i64)>,
    open: BTreeSet<(String, i64)>,
}

/// Whether `node` has started a fire scheduled at `at` (a cheap scan of the
/// audit log, polled every few ms).
fn started_any(out: &Path, node: &str, at: i64) -> bool {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let at = at.to_string();
    text.lines().rev().take(400).any(|l| {
        let mut p = l.split_whitespace().skip(1);
        p.next() == Some(at.as_str()) && p.next() == Some(node)
    })
}

/// 150 every-second jobs of the given delivery on 4 workers; three times,
/// under load, one worker is killed with SIGKILL, the fleet settles without
/// it, it is restarted and the fleet settles again. Returns the fleet (all
/// workers stopped), the audited window and the kills.
/// Waits until `node` starts a fire scheduled at the next second boundary
/// (it has then claimed that second's fires of its shards); returns the
/// boundary.
fn wait_for_a_start_of_the_next_second(f: &ProcFleet, node: &str) -> i64 {
    let boundary = (now_ms() / 1000 + 1) * 1000;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !started_any(&f.out, node, boundary) {
        assert!(
            Instant::now() < deadline,
            "{node} started no fire of {boundary}: {}",
            f.log_tail(node)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    boundary
}

fn three_kill_nines(namespace: &str, delivery: &str) -> (ProcFleet, i64, i64, Vec<Kill>) {
    let mut f = ProcFleet::with_entries(Cli::new(namespace), |out| {
        (0..KILL_JOBS)
            .map(|i| {
                json!({
                    "id": format!("tick-{i:03}"),
                    "schedule": "@every 1s",
                    "exec": start_line(out),
                    "delivery": delivery,
                })
            })
            .collect()
    });
    for n in KILL_NODES {
        f.start(n);
    }
    settle(&f, KILL_NODES.len(), Duration::from_secs(20));
    let from = now_ms() + 1000;
    let mut kills = Vec::new();
    for victim in VICTIMS {
        std::thread::sleep(Duration::from_secs(2));
        // Kill it while it is starting the fires of a second: it has claimed
        // them (one batch per shard) and started the first few.
        let boundary = wait_for_a_start_of_the_next_second(&f, victim);
        let at_ms = now_ms();
        f.kill(victim);
        // Well within the lease TTL, nobody has taken its claims over yet;
        // handler processes it forked before dying have written their lines.
        std::thread::sleep(Duration::from_millis(200));
        let held = claimed_not_started(&f, victim, &[boundary - 1000, boundary]);
        let open = open_fires_of(&f, victim);
        kills.push(Kill {
            node: victim,
            at_ms,
            held,
            open,
        });
        settle(&f, KILL_NODES.len() - 1, Duration::from_secs(15));
        std::thread::sleep(Duration::from_secs(1));
        f.start(victim);
        settle(&f, KILL_NODES.len(), Duration::from_secs(15));
    }
    // Recovered fires run within a few seconds of their node's death; the
    // window ends 2 s before now so that every fire in it has had its turn.
    std::thread::sleep(Duration::from_secs(4));
    let to = now_ms() - 2000;
    f.stop_all();
    for k in &kills {
        println!(
            "killed {} at {} holding {} claimed, not started fires; open entries naming it: {}",
            k.node,
            k.at_ms,
            k.held.len(),
            k.open.len()
        );
    }
    (f, from, to, kills)
}

/// The fires each kill left claimed and not started, with their starts.
/// A fire with a start line of the killed node written within
/// [`KILL_CHILD_SLACK_MS`] of the kill was being forked then, not waiting:
/// it is left out.
fn held_at_kills(
    kills: &[Kill],
    starts: &BTreeMap<(String, i64), Vec<Start>>,
) -> Vec<(&'static str, String, i64, Vec<Start>)> {
    kills
        .iter()
        .flat_map(|k| {
            k.held.iter().filter_map(move |(job, at)| {
                let s = starts.get(&(job.clone(), *at)).cloned().unwrap_or_default();
                let forked = s
                    .iter()
                    .any(|r| r.node == k.node && r.started_ms <= k.at_ms + KILL_CHILD_SLACK_MS);
                (!forked).then(|| (k.node, job.clone(), *at, s))
            })
        })
        .collect()
}

/// Whether a kill explains every repeated start of the fire `job@at`: each
/// start but the last was on a node killed at most [`KILL_LOOKBACK_MS`]
/// after it, the fire was still open (no terminal state) under that node
/// at the kill, and the next start came after the kill.
fn explained_by_kills(job: &str, at: i64, starts: &[Start], kills: &[Kill]) -> bool {
    let fire = (job.to_owned(), at);
    starts.windows(2).all(|w| {
        kills.iter().any(|k| {
            w[0].node == k.node
                && w[0].started_ms >= k.at_ms - KILL_LOOKBACK_MS
                && w[0].started_ms <= k.at_ms + KILL_CHILD_SLACK_MS
                && k.open.contains(&fire)
                && w[1].started_ms >= k.at_ms
        })
    })
}

#[test]
fn at_least_once_survives_three_kill_nines() {
    let name = "at_least_once, 150 jobs/s on 4 workers, kill -9 ×3 with restarts";
    let (f, from, to, kills) = three_kill_nines("delivery-alo-kill", "at_least_once");
    let a = f.audit(from, to);
    let starts = read_starts(&f.out);
    let mut unexplained = Vec::new();
    let mut rerun_attempts: BTreeMap<String, usize> = BTreeMap::new();
    for (job, at, _) in &a.duplicates {
        let s = &starts[&(job.clone(), *at)];
        for later in &s[1..] {
            *rerun_attempts.entry(later.attempt.clone()).or_default() += 1;
        }
        if !explained_by_kills(job, *at, s, &kills) {
            unexplained.push(s.clone());
        }
    }
    let explained = a.duplicates.len() - unexplained.len();
    let held = held_at_kills(&kills, &starts);
    let late = f.max_lateness_ms(from, to);
    print_row(
        name,
        a.expected,
        a.duplicates.len(),
        a.missing.len(),
        explained,
        late,
    );
    println!(
        "claimed, not started at a kill: {}, of them started since: {}; re-runs by SHARDCRON_ATTEMPT: {rerun_attempts:?}",
        held.len(),
        held.iter().filter(|h| !h.3.is_empty()).count()
    );
    assert!(
        a.expected >= KILL_JOBS * 10,
        "window too short: {} fires",
        a.expected
    );
    // The kills landed while the killed workers held claimed fires.
    assert!(
        !held.is_empty(),
        "no kill left a claimed, not started fire: {kills:?}"
    );
    // (a) Nothing lost: every fire of the window started at least once,
    // including those the killed workers had claimed and not finished.
    if !a.missing.is_empty() {
        let (with_kill, unclaimed) = f.split_missing(&a, &VICTIMS);
        panic!(
            "{name}: {} fires lost ({with_kill} claimed by a killed worker, {} claimed by nobody), e.g. {:?}",
            a.missing.len(),
            unclaimed.len(),
            &a.missing[..a.missing.len().min(10)]
        );
    }
    // Each fire a killed worker held (claimed, not started) was run once,
    // by the node that recovered it.
    let wrong: Vec<_> = held.iter().filter(|h| h.3.len() != 1).collect();
    assert!(
        wrong.is_empty(),
        "{name}: fires held by a killed worker not run exactly once: {wrong:?}"
    );
    // (b) A fire runs again only because its earlier run was on a worker
    // killed right then (claimed, started, no terminal state in the store).
    assert!(
        unexplained.is_empty(),
        "{name}: duplicates no kill explains (kills {kills:?}): {:?}",
        &unexplained[..unexplained.len().min(10)]
    );
    for (job, at, _) in &a.duplicates {
        let s = &starts[&(job.clone(), *at)];
        assert!(
            s.iter().all(|r| r.fire_id == format!("{job}@{at}")),
            "fire id of {job}@{at}: {s:?}"
        );
    }
}

#[test]
fn at_most_once_same_kills_no_duplicate() {
    let name = "at_most_once, 150 jobs/s on 4 workers, kill -9 ×3 with restarts";
    let (f, from, to, kills) = three_kill_nines("delivery-amo-kill", "at_most_once");
    let a = f.audit(from, to);
    // Lost fires are allowed: they must have been claimed by a killed worker,
    // or recorded `cancelled` by a live one whose lease ended under them (a
    // worker starved past its lease validity on a loaded host); a fire
    // nobody claimed would be a scheduling gap, not an at-most-once loss.
    let (with_kill, not_with_kill) = f.split_missing(&a, &VICTIMS);
    let lease_ended = f.cancelled_by_lease(&not_with_kill, &VICTIMS);
    let unclaimed: Vec<_> = not_with_kill
        .into_iter()
        .filter(|fire| !lease_ended.contains(fire))
        .collect();
    let held = held_at_kills(&kills, &read_starts(&f.out));
    let late = f.max_lateness_ms(from, to);
    print_row(
        name,
        a.expected,
        a.duplicates.len(),
        a.missing.len(),
        0,
        late,
    );
    println!(
        "lost with a killed worker: {with_kill}, cancelled by an ended lease on a live worker: {}, claimed by nobody: {}; claimed, not started at a kill: {}",
        lease_ended.len(),
        unclaimed.len(),
        held.len()
    );
    assert!(
        a.expected >= KILL_JOBS * 10,
        "window too short: {} fires",
        a.expected
    );
    assert!(
        !held.is_empty(),
        "no kill left a claimed, not started fire: {kills:?}"
    );
    // A dead worker's claim is never run by anyone else.
    let ran: Vec<_> = held.iter().filter(|h| !h.3.is_empty()).collect();
    assert!(
        ran.is_empty(),
        "{name}: fires claimed by a killed worker ran elsewhere: {ran:?}"
    );
    assert!(
        a.duplicates.is_empty(),
        "{name}: fires started twice {:?}",
        &a.duplicates[..a.duplicates.len().min(10)]
    );
    assert!(
        unclaimed.is_empty(),
        "{name}: fires nobody claimed {:?}",
        &unclaimed[..unclaimed.len().min(10)]
    );
}

/// Jobs of the SIGSTOP scenario.
const STOP_JOBS: usize = 24;
/// Concurrency of the node that is stopped: lower than the number of jobs it
/// owns (about 8), so that right after a second boundary it holds fires it
/// has claimed and not started (waiting for a run slot).
const STOPPED_CONCURRENCY: usize = 3;
/// How long each handler runs after writing its start line.
const HANDLER_SLEEP: &str = "0.3";

#[test]
fn at_least_once_sigstop_past_lease_ttl() {
    let name = "at_least_once, SIGSTOP 4 s (> lease TTL 1.5 s) with claimed fires waiting, SIGCONT";
    let cli = Cli::new("delivery-alo-stop");
    let ends = cli.path("ends.log");
    let stopped_config = cli.write(
        "worker-stopped.toml",
        &format!("{FAST_CONFIG}concurrency = {STOPPED_CONCURRENCY}\n"),
    );
    let mut f = ProcFleet::with_entries(cli, |out| {
        (0..STOP_JOBS)
            .map(|i| {
                json!({
                    "id": format!("slow-{i:02}"),
                    "schedule": "@every 1s",
                    // Runs of one job never overlap in time unless a fire
                    // runs late; they are allowed to so that no fire is
                    // skipped as an overlap.
                    "overlap": "allow",
                    "delivery": "at_least_once",
                    "exec": format!(
                        "{}; sleep {HANDLER_SLEEP}; echo \"$SHARDCRON_JOB_ID $SHARDCRON_SCHEDULED_AT $SHARDCRON_NODE_ID $(date +%s%3N)\" >> {}",
                        start_line(out),
                        ends.display()
                    ),
                })
            })
            .collect()
    });
    // "a" is the node that will be stopped; it alone runs with the low
    // concurrency.
    let stopped = "a";
    let default_config = std::mem::replace(&mut f.config, stopped_config);
    f.start(stopped);
    f.config = default_config;
    for n in ["b", "c"] {
        f.start(n);
    }
    settle(&f, 3, Duration::from_secs(20));
    let from = now_ms() + 1000;
    std::thread::sleep(Duration::from_secs(3));

    // Stop it as soon as it starts the fires of a second: it has claimed
    // them in one step, and all but the first wave wait for a run slot.
    let boundary = wait_for_a_start_of_the_next_second(&f, stopped);
    let stop_ms = now_ms();
    f.signal(stopped, libc::SIGSTOP);

    // Well within the lease TTL (its last renewal was at most a heartbeat
    // before the stop), nobody else can have touched its claims yet. Its
    // handler processes (not stopped with it) have written their start
    // lines by now.
    std::thread::sleep(Duration::from_millis(400));
    let held = claimed_not_started(&f, stopped, &[boundary - 1000, boundary]);
    let open_at_stop = open_fires_of(&f, stopped);
    let before = read_starts(&f.out);
    let runs_of = |at: i64| {
        before
            .iter()
            .filter(|((_, a), s)| *a == at && s.iter().any(|r| r.node == stopped))
            .count()
    };
    println!(
        "{stopped} ran {} fires of {}, started {} of {boundary}, stopped at {stop_ms} holding {} claimed, not started: {held:?}; open entries naming it: {}",
        runs_of(boundary - 1000),
        boundary - 1000,
        runs_of(boundary),
        held.len(),
        open_at_stop.len()
    );

    std::thread::sleep(Duration::from_millis(3600));
    let cont_ms = now_ms();
    f.signal(stopped, libc::SIGCONT);
    settle(&f, 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let to = now_ms() - 2000;
    f.stop_all();

    let a = f.audit(from, to);
    let starts = read_starts(&f.out);
    let ended = read_ends(&ends);

    // What "runs once" means here. A SIGSTOP stops the worker, not the
    // handler processes it already spawned: those run to their end, but the
    // stopped worker cannot record their end, so their fires stay open (no
    // terminal state in the store) and the shard's next owner runs them
    // again. Those fires, already running at the stop, are the only ones
    // allowed a second start: started by the stopped node before the stop
    // (a stopped process spawns nothing, so any start line of it before
    // SIGCONT is a handler forked before the stop) and still open under it
    // at the stop (the open entries were read while it was stopped, before
    // its lease could expire, so they are exactly its fires with no terminal
    // state). The second start is by another node, after the stop. A fire
    // the stopped node had claimed but not started must be run by the node
    // that recovered it, once, and never by the stopped node after SIGCONT
    // (its lease is gone).
    let running_at_stop = |s: &Start, job: &str, at: i64| {
        s.node == stopped && s.started_ms < cont_ms && open_at_stop.contains(&(job.to_owned(), at))
    };
    let mut unexplained = Vec::new();
    for (job, at, _) in &a.duplicates {
        let s = &starts[&(job.clone(), *at)];
        let ok = s.len() == 2
            && running_at_stop(&s[0], job, *at)
            && s[1].node != stopped
            && s[1].started_ms > stop_ms;
        if !ok {
            let end = ended.get(&(job.clone(), *at, stopped.to_owned()));
            unexplained.push((job.clone(), *at, s.clone(), end.copied()));
        }
    }
    let stale: Vec<_> = starts
        .iter()
        .filter(|((_, at), _)| *at < cont_ms)
        .flat_map(|((job, at), s)| {
            s.iter()
                .filter(|r| r.node == stopped && r.started_ms >= cont_ms)
                .map(move |r| (job.clone(), *at, r.clone()))
        })
        .collect();
    // A held fire with a start line of the stopped node written before
    // SIGCONT was being forked at the stop (its line came late): it counts
    // as running at the stop, not as held.
    let held_runs: Vec<_> = held
        .iter()
        .map(|(job, at)| {
            let s = starts.get(&(job.clone(), *at)).cloned().unwrap_or_default();
            (job.clone(), *at, s)
        })
        .filter(|(_, _, s)| {
            !s.iter()
                .any(|r| r.node == stopped && r.started_ms < cont_ms)
        })
        .collect();
    let late = f.max_lateness_ms(from, to);
    print_row(
        name,
        a.expected,
        a.duplicates.len(),
        a.missing.len(),
        a.duplicates.len() - unexplained.len(),
        late,
    );
    println!("held at the stop: {held_runs:?}; SIGCONT at {cont_ms}");

    assert!(
        a.expected >= STOP_JOBS * 6,
        "window too short: {} fires",
        a.expected
    );
    // The scenario happened: the stopped node held claimed fires it had not
    // started.
    assert!(
        !held_runs.is_empty(),
        "{stopped} held no claimed, not started fire at the stop (too few jobs on it?): per node {:?}",
        a.per_node
    );
    // No fire claimed before SIGCONT was started by the stopped node after it.
    assert!(
        stale.is_empty(),
        "{name}: the stopped node started fires claimed before its pause after SIGCONT: {stale:?}"
    );
    // Each fire held at the stop was started once, by another node (or not
    // at all before the recovery lands: checked with the losses below).
    for (job, at, s) in &held_runs {
        assert!(
            s.len() <= 1 && s.iter().all(|r| r.node != stopped),
            "{name}: {job}@{at}, claimed not started by {stopped} at the stop, ran {s:?}"
        );
    }
    // Nothing started twice except a fire already running at the stop.
    assert!(
        unexplained.is_empty(),
        "{name}: fires started twice that were not running at the stop: {unexplained:?}"
    );
    // Nothing lost: every fire of the window started, the held ones by the
    // node that recovered them.
    if !a.missing.is_empty() {
        let (with_stop, unclaimed) = f.split_missing(&a, &[stopped]);
        let held_lost = held_runs.iter().filter(|(_, _, s)| s.is_empty()).count();
        panic!(
            "{name}: {} fires lost ({with_stop} claimed by the stopped node, {held_lost} of them held at the stop; {} claimed by nobody), e.g. {:?}",
            a.missing.len(),
            unclaimed.len(),
            &a.missing[..a.missing.len().min(10)]
        );
    }
}

/// Fires scheduled at `ats` that `node` holds the claim of and has not
/// started: the claim records (claim keys, read in one MGET, else the
/// jobs' watermarks), against the start lines.
fn claimed_not_started(f: &ProcFleet, node: &str, ats: &[i64]) -> BTreeSet<(String, i64)> {
    let keyspace = Keyspace::new(&f.cli.namespace);
    let fires: Vec<(String, i64)> = f
        .jobs
        .iter()
        .flat_map(|job| ats.iter().map(move |at| (job.clone(), *at)))
        .collect();
    let keys: Vec<String> = fires
        .iter()
        .map(|(job, at)| {
            let shard = shard_of(job, DEFAULT_SHARD_COUNT);
            format!("{}{job}@{at}", keyspace.claim_prefix(shard))
        })
        .collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let reply = f.cli.redis().command(&args).expect("MGET claim keys");
    let in_keys: Vec<&str> = reply.split('\n').collect();
    assert_eq!(in_keys.len(), fires.len(), "MGET reply: {reply}");
    let holders: Vec<String> = fires
        .iter()
        .zip(&in_keys)
        .map(|((job, at), in_key)| {
            let shard = shard_of(job, DEFAULT_SHARD_COUNT);
            let watermark = f
                .cli
                .redis()
                .command(&["HGET", &keyspace.last_fired(shard), job])
                .expect("HGET watermark");
            let present = |v: &str| (v != "(nil)" && !v.is_empty()).then(|| v.to_owned());
            claim_record(
                present(in_key).as_deref(),
                present(&watermark).as_deref(),
                *at,
            )
            .unwrap_or_default()
        })
        .collect();
    let starts = read_starts(&f.out);
    let prefix = format!("{node}/");
    fires
        .into_iter()
        .zip(holders)
        .filter(|(fire, holder)| {
            holder.starts_with(&prefix)
                && !starts
                    .get(fire)
                    .is_some_and(|s| s.iter().any(|r| r.node == node))
        })
        .map(|(fire, _)| fire)
        .collect()
}

/// The `at_least_once` fires whose open entry (claimed or recovered, no
/// terminal state yet) names `node`, over the shards of the fleet's jobs.
fn open_fires_of(f: &ProcFleet, node: &str) -> BTreeSet<(String, i64)> {
    let keyspace = Keyspace::new(&f.cli.namespace);
    let shards: BTreeSet<u32> = f
        .jobs
        .iter()
        .map(|job| shard_of(job, DEFAULT_SHARD_COUNT))
        .collect();
    let mut conn = f
        .cli
        .redis()
        .connect(Duration::from_secs(5))
        .expect("connect to redis");
    let prefix = format!("{node}/");
    let mut out = BTreeSet::new();
    for shard in shards {
        let reply = conn
            .command(&["HGETALL", &keyspace.open_fires(shard)])
            .expect("HGETALL open fires");
        let items: Vec<&str> = reply.split('\n').filter(|l| !l.is_empty()).collect();
        for pair in items.chunks(2) {
            if let [field, value] = pair {
                if let (true, Some((job, at))) =
                    (value.starts_with(&prefix), field.rsplit_once('@'))
                {
                    if let Ok(at) = at.parse() {
                        out.insert((job.to_owned(), at));
                    }
                }
            }
        }
    }
    out
}

/// End lines (`job scheduled_ms node ended_ms`): when each run's handler
/// process exited, by `(job, scheduled_ms, node)`.
fn read_ends(path: &Path) -> BTreeMap<(String, i64, String), i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let p: Vec<&str> = line.split_whitespace().collect();
        if let (Some(job), Some(Ok(at)), Some(node), Some(Ok(end))) = (
            p.first(),
            p.get(1).map(|v| v.parse::<i64>()),
            p.get(2),
            p.get(3).map(|v| v.parse::<i64>()),
        ) {
            out.insert(((*job).to_owned(), at, (*node).to_owned()), end);
        }
    }
    out
}
