//! Turning the recorded run into per-event results: which missed fires a
//! crash explains (claim keys read back from the still-running
//! redis-server) and what each churn event did to lateness.
//!
//! Separate from the run itself because it happens after the fleet has
//! stopped and only reads what the run left behind: the recorder's log,
//! the driver's event timings and the claim keys in Redis.

use std::time::Duration;

use shardcron_coord::redis_coord::JOB_RUN_HISTORY_CAP;
use shardcron_coord::Keyspace;
use shardcron_testkit::RedisServer;

use super::audit::Fire;
use super::bar;
use super::churn::{node_id, ChurnAction};
use super::claims::{attribute, claim_owner, Attribution, CrashedInstance};
use super::driver::EventTiming;
use super::fleet::NAMESPACE;
use super::output::EventReport;
use super::timeline;
use crate::error::BenchError;

/// Most claim keys read back to explain misses; beyond, misses stay
/// unexplained (a run that misses this much is broken anyway).
const MAX_CLAIM_LOOKUPS: usize = 200_000;

/// Misses that the run history accounts for: a worker claimed the fire (or
/// decided it) and recorded why it did not run, as the job's misfire or
/// overlap policy allows (an overloaded node, a lease that ended before the
/// start). Keyed by outcome.
pub(super) type RecordedMisses = std::collections::BTreeMap<String, u64>;

/// Splits the misses nothing else explains into those with a run record
/// saying why they did not run (per outcome) and those without: reads each
/// missed job's history once (its slots of `{ns}:jobruns`, its last 100
/// runs).
pub(super) fn explain_by_records(
    server: &RedisServer,
    attribution: &mut Attribution,
) -> Result<RecordedMisses, BenchError> {
    let mut recorded = RecordedMisses::new();
    if attribution.unexplained.is_empty() {
        return Ok(recorded);
    }
    let mut connection = server
        .connect(Duration::from_secs(5))
        .map_err(|e| BenchError::live("connecting to read run records", e))?;
    let keys = Keyspace::new(NAMESPACE);
    let mut outcomes: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let jobs: std::collections::BTreeSet<u32> = attribution
        .unexplained
        .iter()
        .map(|(job, _, _)| *job)
        .collect();
    let history = keys.job_history();
    for job in jobs {
        let job_id = format!("job-{job}");
        let fields: Vec<String> = (0..JOB_RUN_HISTORY_CAP)
            .map(|slot| Keyspace::job_history_slot(slot, &job_id))
            .collect();
        let mut args = vec!["HMGET", history.as_str()];
        args.extend(fields.iter().map(String::as_str));
        let Ok(shardcron_testkit::RespValue::Array(items)) = connection.query(&args) else {
            continue;
        };
        for item in items {
            let Ok(text) = item.into_text() else { continue };
            if let Ok((_, run)) = shardcron_coord::redis_coord::ring_entry::decode(&job_id, &text) {
                outcomes.insert(run.fire_id, run.outcome.as_str().to_owned());
            }
        }
    }
    attribution.unexplained.retain(
        |(job, at, _)| match outcomes.get(&format!("job-{job}@{at}")) {
            Some(outcome) => {
                *recorded.entry(outcome.clone()).or_default() += 1;
                false
            }
            None => true,
        },
    );
    Ok(recorded)
}

/// The crashes of a timeline, with the holder string each crashed
/// instance's claims start with.
pub(super) fn crashes(timings: &[EventTiming]) -> Vec<CrashedInstance> {
    timings
        .iter()
        .enumerate()
        .filter(|(_, t)| t.event.action == ChurnAction::Crash)
        .map(|(index, t)| {
            CrashedInstance::new(
                index,
                &node_id(&t.event.worker),
                t.crashed_holder.as_deref(),
            )
        })
        .collect()
}

/// Reads the claim record of every missed fire and attributes it to a crash.
pub(super) fn attribute_misses(
    server: &RedisServer,
    shard_count: u32,
    missing: &[(u32, i64)],
    timings: &[EventTiming],
) -> Result<Attribution, BenchError> {
    let crashes = crashes(timings);
    if missing.is_empty() {
        return Ok(Attribution {
            lost_per_event: vec![0; timings.len()],
            lost_instants_per_event: vec![0; timings.len()],
            unexplained: Vec::new(),
        });
    }
    let mut connection = server
        .connect(Duration::from_secs(5))
        .map_err(|e| BenchError::live("connecting to read claim keys", e))?;
    let keys = Keyspace::new(NAMESPACE);
    let progress = bar(
        missing.len().min(MAX_CLAIM_LOOKUPS) as u64,
        "claims",
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} missed fires looked up",
    );
    let mut lookups = 0usize;
    let attribution = attribute(missing, timings.len(), &crashes, |job, at| {
        lookups += 1;
        if lookups > MAX_CLAIM_LOOKUPS {
            return None;
        }
        progress.inc(1);
        claim_owner(&mut connection, &keys, shard_count, job, at)
    });
    progress.finish_and_clear();
    Ok(attribution)
}

pub(super) fn event_reports(
    timings: &[EventTiming],
    attribution: &Attribution,
    fires: &[Fire],
    from_ms: i64,
    to_ms: i64,
) -> Vec<EventReport> {
    timings
        .iter()
        .enumerate()
        .map(|(index, t)| {
            // Spans start at the event's scheduled instant: an event at a
            // fire instant is applied a millisecond or so after it, while
            // that instant's fires are being claimed, so they are its fires.
            let due = |t: &EventTiming| {
                from_ms.saturating_add(i64::try_from(t.event.at.as_millis()).unwrap_or(i64::MAX))
            };
            let next_ms = timings.get(index + 1).map_or(to_ms, due);
            let settled_until = t.settled_ms.unwrap_or(to_ms);
            EventReport {
                event: t.event.clone(),
                kind: t.event.action.settle_kind(),
                started_offset_ms: t.started_ms - from_ms,
                settle_ms: t.settled_ms.map(|s| s - t.started_ms),
                overlapped: t.overlapped,
                while_settling: timeline::span(fires, due(t), settled_until),
                until_next_event: timeline::span(fires, due(t), next_ms - 1),
                lost_with_crash: attribution.lost_per_event.get(index).copied().unwrap_or(0),
                lost_instants: attribution
                    .lost_instants_per_event
                    .get(index)
                    .copied()
                    .unwrap_or(0),
                crashed_holder: t.crashed_holder.clone(),
            }
        })
        .collect()
}
