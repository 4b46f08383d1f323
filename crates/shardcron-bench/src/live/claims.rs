//! Explaining missed fires: which ones were lost with a crashed worker.
//!
//! shardcron runs a fire at most once: a node claims it in Redis before
//! starting it. A worker that crashes between the claim and the start takes
//! those fires with it — nobody else may run them, which is the price of
//! never running one twice. The test suite accepts exactly those misses,
//! and so does the benchmark: every missed fire's claim record is read
//! back, and a miss whose claim belongs to a crashed instance is counted as
//! "lost with the crash" of that event. Any other miss (no claim at all, or
//! a claim by a live or gracefully stopped worker) is unexplained and fails
//! the run.
//!
//! A claim record is the fire's claim key, else its job's watermark when
//! that is at the fire (`ms|holder|token|attempt`). A holder keeps no
//! record of a fire once it claimed a later fire of the job itself, so with
//! a claim-ahead window longer than the period a crash can lose fires whose
//! record is gone; such a miss is put on the holder of the job's first
//! record after it (the claim key the next holder wrote for it, or the
//! watermark), the only worker that can have moved the watermark past it.

use shardcron_coord::{claim_record, Keyspace};
use shardcron_core::shard_of;
use shardcron_testkit::{RespConnection, RespValue};

/// The claim record that explains the missed fire of `job-<job>` at `at`
/// (`holder|token|attempt`): its own, else the first one after it (see the
/// module docs); `None` if the job has none at or after `at`.
pub fn claim_owner(
    connection: &mut RespConnection,
    keys: &Keyspace,
    shard_count: u32,
    job: u32,
    at: i64,
) -> Option<String> {
    let job_id = format!("job-{job}");
    let shard = shard_of(&job_id, shard_count);
    let text = |v: RespValue| v.into_text().ok().filter(|t| t != "(nil)");
    let own_key = connection
        .query(&["GET", &claim_key(keys, shard_count, job, at)])
        .ok()
        .and_then(text);
    let watermark = connection
        .query(&["HGET", &keys.last_fired(shard), &job_id])
        .ok()
        .and_then(text);
    if let Some(own) = claim_record(own_key.as_deref(), watermark.as_deref(), at) {
        return Some(own);
    }
    let pattern = format!("{}{job_id}@*", keys.claim_prefix(shard));
    let Ok(RespValue::Array(found)) = connection.query(&["KEYS", &pattern]) else {
        return None;
    };
    let first_key_after = found
        .into_iter()
        .filter_map(text)
        .filter_map(|key| {
            let ms: i64 = key.rsplit_once('@')?.1.parse().ok()?;
            (ms > at).then_some((ms, key))
        })
        .min();
    let (watermark_ms, watermark_record) = watermark
        .as_deref()
        .and_then(|w| w.split_once('|'))
        .and_then(|(ms, record)| Some((ms.parse::<i64>().ok()?, record.to_owned())))
        .filter(|(ms, _)| *ms > at)
        .unzip();
    match (first_key_after, watermark_ms) {
        (Some((ms, key)), w) if w.is_none_or(|w| ms < w) => {
            connection.query(&["GET", &key]).ok().and_then(text)
        }
        (_, Some(_)) => watermark_record,
        _ => None,
    }
}

/// Redis key of the claim of `job-<job>` at `scheduled_ms`.
pub fn claim_key(keys: &Keyspace, shard_count: u32, job: u32, scheduled_ms: i64) -> String {
    let job_id = format!("job-{job}");
    let shard = shard_of(&job_id, shard_count);
    format!("{}{job_id}@{scheduled_ms}", keys.claim_prefix(shard))
}

/// A crash that may explain misses: its index among the churn events and
/// the prefix its claims' values start with (`node/instance|`, or `node/`
/// when the instance was never learned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashedInstance {
    /// Index of the crash among the churn events.
    pub event: usize,
    /// Prefix of the claim value of this instance's claims.
    pub claim_prefix: String,
}

impl CrashedInstance {
    /// The crash of event `event`, whose lease holder was `holder` (if
    /// known) on node `node`.
    pub fn new(event: usize, node: &str, holder: Option<&str>) -> Self {
        let claim_prefix = match holder {
            Some(holder) => format!("{holder}|"),
            None => format!("{node}/"),
        };
        CrashedInstance {
            event,
            claim_prefix,
        }
    }
}

/// Misses split into those lost with a crash and the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Misses lost with each churn event (index = event; zero for
    /// non-crash events).
    pub lost_per_event: Vec<u64>,
    /// Distinct scheduled instants among the fires lost with each event.
    pub lost_instants_per_event: Vec<u64>,
    /// Misses nothing explains: `(job, scheduled ms, claim value if any)`.
    pub unexplained: Vec<(u32, i64, Option<String>)>,
}

/// Attributes `missing` fires (`(job, scheduled ms)`) to `crashes` of a
/// timeline of `events` events. `claim_of(job, ms)` returns the claim
/// key's value, `None` when there is no claim.
pub fn attribute(
    missing: &[(u32, i64)],
    events: usize,
    crashes: &[CrashedInstance],
    mut claim_of: impl FnMut(u32, i64) -> Option<String>,
) -> Attribution {
    let mut lost_per_event = vec![0u64; events];
    let mut instants: Vec<std::collections::BTreeSet<i64>> = vec![Default::default(); events];
    let mut unexplained = Vec::new();
    for &(job, at) in missing {
        let claim = claim_of(job, at);
        let crash = claim.as_deref().and_then(|value| {
            crashes
                .iter()
                .find(|c| value.starts_with(&c.claim_prefix) && c.event < events)
        });
        match crash {
            Some(crash) => {
                lost_per_event[crash.event] += 1;
                instants[crash.event].insert(at);
            }
            None => unexplained.push((job, at, claim)),
        }
    }
    Attribution {
        lost_per_event,
        lost_instants_per_event: instants.iter().map(|s| s.len() as u64).collect(),
        unexplained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_keys_match_the_coordinator_layout() {
        let keys = Keyspace::new("bench");
        let shard = shard_of("job-7", 1024);
        assert_eq!(
            claim_key(&keys, 1024, 7, 1_000),
            format!("{{bench:{shard}}}:fire:job-7@1000")
        );
    }

    #[test]
    fn misses_claimed_by_a_crashed_instance_are_explained() {
        let crashes = [
            CrashedInstance::new(2, "bench-w3", Some("bench-w3/abc")),
            CrashedInstance::new(4, "bench-w1", None),
        ];
        let missing = [
            (1, 1000),
            (2, 1000),
            (3, 2000),
            (4, 3000),
            (5, 3000),
            (6, 3000),
        ];
        let attribution = attribute(&missing, 5, &crashes, |job, _| match job {
            1 | 2 => Some("bench-w3/abc|17".to_owned()),
            3 => Some("bench-w1/zzz|4".to_owned()),
            // The rejoined w3 (another instance) must not be excused.
            4 => Some("bench-w3/def|18".to_owned()),
            5 => Some("bench-w0/abc|1".to_owned()),
            _ => None,
        });
        assert_eq!(attribution.lost_per_event, vec![0, 0, 2, 0, 1]);
        assert_eq!(attribution.lost_instants_per_event, vec![0, 0, 1, 0, 1]);
        assert_eq!(
            attribution.unexplained,
            vec![
                (4, 3000, Some("bench-w3/def|18".to_owned())),
                (5, 3000, Some("bench-w0/abc|1".to_owned())),
                (6, 3000, None),
            ]
        );
    }
}
