//! The `embedded` example's scheduler as two nodes of one process against a
//! private `redis-server`: jobs added at run time through a node's handle
//! fire exactly once across both nodes (every fire id is audited: none twice,
//! none missing over the window), a trigger fires once, a pause and a
//! removal stop the fires scheduled after they were acknowledged; and a
//! node leaving with `shutdown()` (what SIGTERM does in the daemon) hands
//! its jobs over without losing or repeating a fire.

#[allow(dead_code)]
#[path = "../examples/embedded.rs"]
mod embedded;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardcron::{Job, OverlapPolicy, RunOutput, SchedulerHandle, WorkerSettings};
use shardcron_testkit::RedisServer;

/// Fires seen: (fire id, scheduled ms, node) in the order they ran.
type Audit = Arc<Mutex<Vec<(String, i64, String)>>>;

const JOBS: usize = 6;
const PERIOD_MS: i64 = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn node(url: &str, id: &str, audit: &Audit) -> SchedulerHandle {
    let audit = Arc::clone(audit);
    embedded::scheduler(url)
        .node_id(id)
        .settings(WorkerSettings::fast())
        .handler("audit", move |ctx| {
            let audit = Arc::clone(&audit);
            async move {
                audit.lock().expect("audit").push((
                    ctx.fire_id.to_string(),
                    ctx.fire_id.scheduled_ms,
                    ctx.node_id.clone(),
                ));
                Ok(RunOutput::default())
            }
        })
        .start()
        .await
        .expect("start a node")
}

/// Fires of `job` recorded so far: fire id -> how many times it ran.
fn fires_of(audit: &Audit, job: &str) -> Vec<(String, i64, usize)> {
    let mut counts: HashMap<String, (i64, usize)> = HashMap::new();
    for (fire, ms, _) in audit.lock().expect("audit").iter() {
        if fire.rsplit_once('@').map(|(j, _)| j) == Some(job) {
            counts.entry(fire.clone()).or_insert((*ms, 0)).1 += 1;
        }
    }
    let mut fires: Vec<_> = counts.into_iter().map(|(f, (ms, n))| (f, ms, n)).collect();
    fires.sort_by_key(|(_, ms, _)| *ms);
    fires
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_jobs_fire_once_across_two_embedded_nodes_and_stop_when_removed() {
    let redis = RedisServer::start().expect("start redis-server");
    let url = redis.url();
    let audit: Audit = Arc::default();
    let a = node(&url, "node-a", &audit).await;
    let b = node(&url, "node-b", &audit).await;
    wait_members(&a, 2).await;
    wait_members(&b, 2).await;

    // Jobs added at run time, half through each node's handle.
    let mut added = Vec::new();
    for i in 0..JOBS {
        let id = format!("audited-{i}");
        // Overlaps allowed: a trigger 1 ms after a scheduled fire runs too
        // (under the default policy it would be recorded as skipped).
        let job = Job::every(&id, Duration::from_millis(PERIOD_MS as u64))
            .handler("audit")
            .overlap(OverlapPolicy::Allow);
        let handle = if i % 2 == 0 { &a } else { &b };
        handle.add_job(job).await.expect("add job");
        added.push((id, now_ms()));
    }
    // A second add of the same id is refused, naming the stored version.
    let again = a
        .add_job(Job::every("audited-0", Duration::from_secs(1)).handler("audit"))
        .await
        .expect_err("the job exists");
    assert!(
        matches!(again, shardcron::Error::Conflict { .. }),
        "{again}"
    );
    // A job whose handler no node has is refused before it is written.
    let unknown = a
        .add_job(Job::every("nobody", Duration::from_secs(1)).handler("missing"))
        .await
        .expect_err("unknown handler");
    assert!(
        matches!(&unknown, shardcron::Error::InvalidJob(e) if e.field == "handler"),
        "{unknown}"
    );
    assert!(a.get_job("nobody").await.expect("read").is_none());

    tokio::time::sleep(Duration::from_secs(6)).await;

    // One extra fire, once.
    let triggered = b.trigger_job("audited-1").await.expect("trigger");

    // Pause one job; its fires after the pause's acknowledgement stop.
    a.pause_job("audited-2").await.expect("pause");
    let paused_at = now_ms();

    tokio::time::sleep(Duration::from_secs(2)).await;

    // Remove every job; note when each removal was acknowledged.
    let mut removed = HashMap::new();
    for (i, (id, _)) in added.iter().enumerate() {
        let started = now_ms();
        let handle = if i % 2 == 0 { &b } else { &a };
        handle.remove_job(id).await.expect("remove");
        removed.insert(id.clone(), (started, now_ms()));
    }
    let missing = a
        .remove_job("audited-0")
        .await
        .expect_err("already removed");
    assert!(
        matches!(missing, shardcron::Error::NotFound { .. }),
        "{missing}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen_after_removal = audit.lock().expect("audit").len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        audit.lock().expect("audit").len(),
        seen_after_removal,
        "fires kept coming after every job was removed"
    );

    let report_a = a.shutdown().await.expect("node a stops");
    let report_b = b.shutdown().await.expect("node b stops");

    // The audit.
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for (_, _, node) in audit.lock().expect("audit").iter() {
        *by_node.entry(node.clone()).or_default() += 1;
    }
    let mut total = 0;
    for (id, added_at) in &added {
        let fires = fires_of(&audit, id);
        let twice: Vec<_> = fires.iter().filter(|(_, _, n)| *n > 1).collect();
        assert!(
            twice.is_empty(),
            "{id}: fires ran more than once: {twice:?}"
        );
        let (remove_started, remove_acked) = removed[id];
        let late: Vec<_> = fires
            .iter()
            .filter(|(f, ms, _)| *ms > remove_acked && *f != triggered.to_string())
            .collect();
        assert!(late.is_empty(), "{id}: fired after its removal: {late:?}");
        // Every scheduled instant from its creation to a second before its
        // removal (or its pause) ran.
        let end = if id == "audited-2" {
            let after_pause: Vec<_> = fires.iter().filter(|(_, ms, _)| *ms > paused_at).collect();
            assert!(
                after_pause.is_empty(),
                "{id}: fired while paused: {after_pause:?}"
            );
            paused_at - 1000
        } else {
            remove_started - 1000
        };
        let missed = missed(&audit, id, *added_at, end);
        assert!(
            missed.is_empty(),
            "{id}: scheduled fires never ran: {missed:?}"
        );
        assert!(
            fires.len() >= 5,
            "{id}: only {} fires over the window",
            fires.len()
        );
        total += fires.len();
    }
    let trigger_runs = audit
        .lock()
        .expect("audit")
        .iter()
        .filter(|(f, _, _)| *f == triggered.to_string())
        .count();
    assert_eq!(
        trigger_runs, 1,
        "the triggered fire {triggered} ran {trigger_runs} times"
    );
    println!(
        "{total} fires of {JOBS} jobs audited; per node {by_node:?}; claimed a={} b={}",
        report_a.claimed, report_b.claimed
    );
}

/// Scheduled instants of `job` in `(from, to]` that never ran.
fn missed(audit: &Audit, job: &str, from: i64, to: i64) -> Vec<i64> {
    let ran: std::collections::HashSet<i64> =
        fires_of(audit, job).iter().map(|(_, ms, _)| *ms).collect();
    let first = (from / PERIOD_MS + 1) * PERIOD_MS;
    (0..)
        .map(|k| first + k * PERIOD_MS)
        .take_while(|ms| *ms <= to)
        .filter(|ms| !ran.contains(ms))
        .collect()
}

async fn wait_members(handle: &SchedulerHandle, members: usize) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            handle.ready().await;
            if handle.status().members.len() == members {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the fleet settles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_hands_its_jobs_over_without_losing_or_repeating_a_fire() {
    let redis = RedisServer::start().expect("start redis-server");
    let url = redis.url();
    let audit: Audit = Arc::default();
    let a = node(&url, "node-a", &audit).await;
    let b = node(&url, "node-b", &audit).await;
    wait_members(&a, 2).await;
    wait_members(&b, 2).await;

    let mut added = Vec::new();
    for i in 0..JOBS {
        let id = format!("handed-{i}");
        a.add_job(Job::every(&id, Duration::from_millis(PERIOD_MS as u64)).handler("audit"))
            .await
            .expect("add job");
        added.push((id, now_ms()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Node b leaves gracefully while every job keeps firing.
    let report_b = b.shutdown().await.expect("node b leaves");
    let left_at = now_ms();
    wait_members(&a, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut removal = HashMap::new();
    for (id, _) in &added {
        removal.insert(id.clone(), now_ms());
        a.remove_job(id).await.expect("remove");
    }
    let report_a = a.shutdown().await.expect("node a stops");

    let mut on_b = 0;
    for (id, added_at) in &added {
        let fires = fires_of(&audit, id);
        let twice: Vec<_> = fires.iter().filter(|(_, _, n)| *n > 1).collect();
        assert!(
            twice.is_empty(),
            "{id}: fires ran more than once: {twice:?}"
        );
        let missed = missed(&audit, id, *added_at, removal[id] - 1000);
        assert!(
            missed.is_empty(),
            "{id}: scheduled fires never ran: {missed:?}"
        );
        assert!(
            fires.iter().any(|(_, ms, _)| *ms > left_at),
            "{id}: no fire after node b left"
        );
    }
    for (fire, _, node) in audit.lock().expect("audit").iter() {
        if node == "node-b" && fire.starts_with("handed-") {
            on_b += 1;
        }
    }
    println!(
        "node b ran {on_b} fires before leaving (claimed {}, cancelled at shutdown {}); node a claimed {}",
        report_b.claimed, report_b.cancelled_at_shutdown, report_a.claimed
    );
}
