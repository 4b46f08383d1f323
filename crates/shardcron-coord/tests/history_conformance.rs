//! The store contract of the run history, run against both coordinators:
//! many records written in one call land in order, in the namespace list and
//! per job, trimmed to their caps; a job that runs rarely keeps its last runs
//! however busy the namespace is; a deleted job's history goes once its last
//! run is older than the retention; a job's runs stay in order when its
//! shard changes hands. On Redis also: a write costs a fixed number of
//! commands however many jobs it carries, and per-job lists of an earlier
//! version stay readable.

use std::sync::Arc;

use shardcron_coord::redis_coord::{JOB_RUN_HISTORY_CAP, RUN_HISTORY_CAP};
use shardcron_coord::{Coordinator, RunOutcome, RunRecord};
use shardcron_core::shard_of;

mod common;

use common::{acquire, command_calls, job, raw_redis, Env, RING};

/// A realistic record time (Nov 2023), so hours and days are as in use.
const T0: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

fn run(job: &str, scheduled_ms: i64) -> RunRecord {
    RunRecord {
        job_id: job.into(),
        fire_id: format!("{job}@{scheduled_ms}"),
        node_id: "n1".into(),
        shard: shard_of(job, RING.shard_count),
        fencing_token: 1,
        scheduled_ms,
        started_ms: scheduled_ms,
        finished_ms: scheduled_ms + 5,
        attempts: 1,
        outcome: RunOutcome::Succeeded,
        error: None,
        detail: None,
    }
}

async fn scheduled(c: &Arc<dyn Coordinator>, job: Option<&str>, limit: usize) -> Vec<i64> {
    c.recent_runs(job, limit)
        .await
        .expect("recent runs")
        .iter()
        .map(|r| r.scheduled_ms)
        .collect()
}

async fn many_records_in_one_call_land_in_order_and_trimmed(env: Env) {
    let c = env.coord().await;
    c.record_runs(&[run("rare", T0)]).await.expect("record");
    // One call of more records than the namespace keeps: every tenth is
    // job x's, the rest job busy's.
    let n = RUN_HISTORY_CAP as i64 + 150;
    let batch: Vec<RunRecord> = (1..=n)
        .map(|i| run(if i % 10 == 0 { "x" } else { "busy" }, T0 + i))
        .collect();
    c.record_runs(&batch).await.expect("record");

    let all = scheduled(&c, None, RUN_HISTORY_CAP + 500).await;
    let expected: Vec<i64> = (n - RUN_HISTORY_CAP as i64 + 1..=n)
        .rev()
        .map(|i| T0 + i)
        .collect();
    assert_eq!(
        all, expected,
        "the namespace keeps its newest, newest first"
    );

    let xs = scheduled(&c, Some("x"), 1000).await;
    let expected: Vec<i64> = (1..=n)
        .rev()
        .filter(|i| i % 10 == 0)
        .take(JOB_RUN_HISTORY_CAP)
        .map(|i| T0 + i)
        .collect();
    assert_eq!(xs, expected, "a job keeps its newest, newest first");
    let busy = scheduled(&c, Some("busy"), 1000).await;
    let expected: Vec<i64> = (1..=n)
        .rev()
        .filter(|i| i % 10 != 0)
        .take(JOB_RUN_HISTORY_CAP)
        .map(|i| T0 + i)
        .collect();
    assert_eq!(busy, expected);
    assert_eq!(
        scheduled(&c, Some("rare"), 20).await,
        vec![T0],
        "a job's last run stays readable after many newer runs of others"
    );
    assert_eq!(scheduled(&c, Some("x"), 2).await, expected_x_head(n));
    assert!(scheduled(&c, Some("never"), 20).await.is_empty());

    // Later calls go on where the job's runs left off, one record each or
    // several of one job in one call.
    c.record_runs(&[run("x", T0 + n + 1)])
        .await
        .expect("record");
    c.record_runs(&[
        run("x", T0 + n + 2),
        run("rare", T0 + n + 3),
        run("x", T0 + n + 4),
    ])
    .await
    .expect("record");
    let xs = scheduled(&c, Some("x"), JOB_RUN_HISTORY_CAP + 10).await;
    assert_eq!(xs.len(), JOB_RUN_HISTORY_CAP);
    assert_eq!(
        xs[..5],
        [T0 + n + 4, T0 + n + 2, T0 + n + 1, T0 + n, T0 + n - 10]
    );
    assert_eq!(scheduled(&c, Some("rare"), 20).await, vec![T0 + n + 3, T0]);
    assert_eq!(
        scheduled(&c, None, 4).await,
        vec![T0 + n + 4, T0 + n + 3, T0 + n + 2, T0 + n + 1]
    );
}

fn expected_x_head(n: i64) -> Vec<i64> {
    let last_x = n - n % 10;
    vec![T0 + last_x, T0 + last_x - 10]
}

async fn a_deleted_jobs_history_goes_after_the_retention(env: Env) {
    let c = env.coord().await;
    c.put_job(&job("kept"), None).await.expect("put");
    c.record_runs(&[run("kept", T0), run("gone", T0)])
        .await
        .expect("record");
    c.record_runs(&[run("fresh", T0 + 2 * DAY_MS)])
        .await
        .expect("record");
    assert_eq!(scheduled(&c, Some("gone"), 10).await, vec![T0]);
    // Eight days on: "gone" (not defined, last run 8 days ago) goes;
    // "kept" is defined and "fresh" ran 6 days ago, both stay.
    c.record_runs(&[run("other", T0 + 8 * DAY_MS)])
        .await
        .expect("record");
    assert!(scheduled(&c, Some("gone"), 10).await.is_empty());
    assert_eq!(scheduled(&c, Some("kept"), 10).await, vec![T0]);
    assert_eq!(
        scheduled(&c, Some("fresh"), 10).await,
        vec![T0 + 2 * DAY_MS]
    );
    assert_eq!(
        scheduled(&c, None, 10).await.len(),
        4,
        "the namespace list keeps them all"
    );
    // A defined job is looked at again only a retention later.
    c.record_runs(&[run("other", T0 + 9 * DAY_MS)])
        .await
        .expect("record");
    assert_eq!(scheduled(&c, Some("kept"), 10).await, vec![T0]);
}

async fn a_jobs_runs_stay_in_order_across_lease_holders(env: Env) {
    let a = env.coord().await;
    let b = env.coord().await;
    let shard = shard_of("h", RING.shard_count);
    let write = |c: &Arc<dyn Coordinator>, at: i64| {
        let c = c.clone();
        async move { c.record_runs(&[run("h", T0 + at)]).await.expect("record") }
    };
    let ta = acquire(&a, shard, "a").await;
    write(&a, 1).await;
    write(&a, 2).await;
    a.release_leases(&[(shard, ta)], "a")
        .await
        .expect("release");
    let tb = acquire(&b, shard, "b").await;
    write(&b, 3).await;
    write(&b, 4).await;
    b.release_leases(&[(shard, tb)], "b")
        .await
        .expect("release");
    acquire(&a, shard, "a").await;
    write(&a, 5).await;
    let expected: Vec<i64> = (1..=5).rev().map(|at| T0 + at).collect();
    assert_eq!(scheduled(&a, Some("h"), 10).await, expected);
    assert_eq!(scheduled(&b, Some("h"), 10).await, expected);
}

conformance!(
    many_records_in_one_call_land_in_order_and_trimmed,
    a_deleted_jobs_history_goes_after_the_retention,
    a_jobs_runs_stay_in_order_across_lease_holders,
);

#[tokio::test]
async fn a_write_costs_the_same_commands_for_one_job_or_a_thousand() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    // The first write also takes a step of the sweep; measure the next ones.
    c.record_runs(&[run("warm", T0)]).await.expect("record");
    let mut per_write = Vec::new();
    for (i, jobs) in [1000usize, 1000, 1].into_iter().enumerate() {
        let batch: Vec<RunRecord> = (0..jobs)
            .map(|j| run(&format!("job-{j}"), T0 + 1 + i as i64))
            .collect();
        let () = raw_redis(server, ::redis::cmd("CONFIG").arg("RESETSTAT")).await;
        c.record_runs(&batch).await.expect("record");
        let calls: Vec<(String, u64)> = command_calls(server).await.into_iter().collect();
        per_write.push(calls);
    }
    let calls = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
        list.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    };
    // A job's count is stored the first time this coordinator writes it,
    // then when its next number reaches a multiple of ten: the writes
    // after the first carry only the ring's HSET.
    let steady = calls(&[("hset", 1), ("lpush", 1), ("ltrim", 1)]);
    assert_eq!(
        per_write,
        vec![
            // Jobs this coordinator has not written yet: their counts are
            // read first (one HMGET for all). These have none, so they have
            // no ring to read their next numbers back from.
            calls(&[("hmget", 1), ("hset", 2), ("lpush", 1), ("ltrim", 1)]),
            steady.clone(),
            steady,
        ]
    );
}

/// The stored entry of run `number` of `job` (its ring slot), if any.
async fn ring_entry(
    server: &shardcron_testkit::RedisServer,
    job: &str,
    number: u64,
) -> Option<String> {
    let slot = number % JOB_RUN_HISTORY_CAP as u64;
    raw_redis(
        server,
        ::redis::cmd("HGET")
            .arg("{conf}:jobruns")
            .arg(format!("{slot}:{job}")),
    )
    .await
}

#[tokio::test]
async fn a_jobs_next_number_is_read_back_from_its_ring_past_its_stored_count() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let a = env.coord().await;
    for i in 0..13 {
        a.record_runs(&[run("r", T0 + i * 1000)])
            .await
            .expect("record");
    }
    let hour = T0.div_euclid(3_600_000);
    let count: Option<String> = raw_redis(
        server,
        ::redis::cmd("HGET").arg("{conf}:jobruns:n").arg("r"),
    )
    .await;
    assert_eq!(
        count,
        Some(format!("10|{hour}")),
        "13 runs: the count was stored at 10, not since"
    );
    // A coordinator that has not written the job numbers on from its ring.
    let b = env.coord().await;
    b.record_runs(&[run("r", T0 + 13_000)])
        .await
        .expect("record");
    let entry = ring_entry(server, "r", 13).await.expect("run 13");
    assert!(entry.starts_with("13|"), "run 13 in slot 13: {entry}");
    let expected: Vec<i64> = (0..14).rev().map(|i| T0 + i * 1000).collect();
    assert_eq!(scheduled(&b, Some("r"), 100).await, expected);

    // Entries past the stored count by more than one window of slots (as a
    // flush whose reply was lost would leave them): copies of run 13 as
    // runs 14..=25.
    for number in 14..=25u64 {
        let copy = format!("{number}|{}", entry.split_once('|').expect("number").1);
        let slot = number % JOB_RUN_HISTORY_CAP as u64;
        let () = raw_redis(
            server,
            ::redis::cmd("HSET")
                .arg("{conf}:jobruns")
                .arg(format!("{slot}:r"))
                .arg(copy),
        )
        .await;
    }
    let c = env.coord().await;
    c.record_runs(&[run("r", T0 + 26_000)])
        .await
        .expect("record");
    let entry = ring_entry(server, "r", 26).await.expect("run 26");
    assert!(
        entry.starts_with("26|"),
        "numbered past every entry: {entry}"
    );
    let newest = c.recent_runs(Some("r"), 1).await.expect("runs");
    assert_eq!(newest[0].scheduled_ms, T0 + 26_000);
}

#[tokio::test]
async fn runs_listed_by_an_earlier_version_stay_readable() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    for at in [T0, T0 + 1000] {
        let json = serde_json::to_string(&run("old", at)).expect("json");
        let () = raw_redis(
            server,
            ::redis::cmd("LPUSH").arg("{conf}:runs:old").arg(json),
        )
        .await;
    }
    c.record_runs(&[run("old", T0 + 2000)])
        .await
        .expect("record");
    assert_eq!(
        scheduled(&c, Some("old"), 10).await,
        vec![T0 + 2000, T0 + 1000, T0]
    );
    assert_eq!(
        scheduled(&c, Some("old"), 2).await,
        vec![T0 + 2000, T0 + 1000]
    );
}

#[tokio::test]
async fn the_namespace_list_reads_records_of_an_earlier_version_with_new_entries() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    // Two runs listed as the record's JSON, as earlier versions wrote them,
    // one with an error that holds a `|`.
    let mut failed = run("before", T0);
    failed.outcome = RunOutcome::Failed;
    failed.error = Some("exit 1 | boom".into());
    for record in [failed.clone(), run("before", T0 + 1000)] {
        let json = serde_json::to_string(&record).expect("json");
        let () = raw_redis(server, ::redis::cmd("LPUSH").arg("{conf}:runs").arg(json)).await;
    }
    let mut now = run("after", T0 + 2000);
    now.detail = Some("a|b".into());
    c.record_runs(std::slice::from_ref(&now))
        .await
        .expect("record");
    let newest: String = raw_redis(server, ::redis::cmd("LINDEX").arg("{conf}:runs").arg(0)).await;
    assert!(
        newest.starts_with("after|0|1|"),
        "listed as the ring entry behind its job id: {newest}"
    );
    let listed = c.recent_runs(None, 10).await.expect("runs");
    assert_eq!(listed, vec![now, run("before", T0 + 1000), failed]);
}

#[tokio::test]
async fn ring_entries_of_an_earlier_version_read_with_compact_ones() {
    let env = Env::redis();
    let Env::Redis(server) = &env else {
        unreachable!()
    };
    let c = env.coord().await;
    // Runs 0 and 1 of job "mixed" as an earlier version wrote them
    // (`number|JSON`), and its stored count.
    for (number, at) in [(0, T0), (1, T0 + 1000)] {
        let json = serde_json::to_string(&run("mixed", at)).expect("json");
        let () = raw_redis(
            server,
            ::redis::cmd("HSET")
                .arg("{conf}:jobruns")
                .arg(format!("{number}:mixed"))
                .arg(format!("{number}|{json}")),
        )
        .await;
    }
    let hour = T0.div_euclid(3_600_000);
    let () = raw_redis(
        server,
        ::redis::cmd("HSET")
            .arg("{conf}:jobruns:n")
            .arg("mixed")
            .arg(format!("2|{hour}")),
    )
    .await;
    let mut failed = run("mixed", T0 + 2000);
    failed.outcome = RunOutcome::Failed;
    failed.error = Some("exit status 3 | see log".into());
    c.record_runs(&[failed.clone()]).await.expect("record");
    let stored: Option<String> = raw_redis(
        server,
        ::redis::cmd("HGET").arg("{conf}:jobruns").arg("2:mixed"),
    )
    .await;
    let stored = stored.expect("run 2 in slot 2");
    assert!(
        stored.starts_with("2|1|") && stored.len() < 100,
        "new entries are compact: {stored}"
    );
    let runs = c.recent_runs(Some("mixed"), 10).await.expect("runs");
    assert_eq!(
        runs,
        vec![failed, run("mixed", T0 + 1000), run("mixed", T0)],
        "both forms read back whole, newest first"
    );
}
