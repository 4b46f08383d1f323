//! The job mix: random specs and random edits of them.
//!
//! Schedules, overlap and misfire policies and handler durations are mixed so
//! that every path of the timetable and the executor is exercised: jobs
//! faster than a heartbeat, jobs slower than their own period, cron and
//! `@every` schedules. A job keeps its overlap policy for its whole life
//! (edits and re-creations too), so the overlap check has one rule per job.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use shardcron_core::{Delivery, JobSpec, MisfirePolicy, OverlapPolicy, Placement};

use crate::handler::HANDLER;

/// Schedules and their periods in ms.
const SCHEDULES: &[(&str, u64)] = &[
    ("@every 1s", 1000),
    ("@every 2s", 2000),
    ("@every 3s", 3000),
    ("*/5 * * * * *", 5000),
    ("@every 7s", 7000),
    ("*/10 * * * * *", 10_000),
    ("*/15 * * * * *", 15_000),
    ("0 * * * * *", 60_000),
];

const GRACES: &[u64] = &[10, 20, 30, 60];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn random_overlap(rng: &mut StdRng) -> OverlapPolicy {
    *pick(
        rng,
        &[
            OverlapPolicy::Skip,
            OverlapPolicy::QueueOne,
            OverlapPolicy::Allow,
        ],
    )
}

fn random_misfire(rng: &mut StdRng) -> MisfirePolicy {
    *pick(
        rng,
        &[
            MisfirePolicy::CatchUp,
            MisfirePolicy::RunOnce,
            MisfirePolicy::Skip,
        ],
    )
}

/// A handler duration for a job of `period_ms`: mostly short, sometimes
/// close to the period, sometimes longer than it.
fn random_duration(rng: &mut StdRng, period_ms: u64) -> u64 {
    match rng.random_range(0..10) {
        0..=5 => rng.random_range(5..300),
        6..=8 => rng.random_range(period_ms / 2..period_ms),
        _ => rng.random_range(period_ms * 3 / 2..period_ms * 3),
    }
}

/// Fills the schedule-dependent fields of `spec`.
fn randomize(rng: &mut StdRng, spec: &mut JobSpec) {
    let (schedule, period) = *pick(rng, SCHEDULES);
    spec.schedule = schedule.to_owned();
    spec.misfire = random_misfire(rng);
    spec.misfire_grace = Duration::from_secs(*pick(rng, GRACES));
    spec.args = serde_json::json!({ "ms": random_duration(rng, period) });
}

/// The delivery of job `id`, fixed for its whole life and drawn from the id
/// rather than the seed's random stream: one job in three is
/// `at_least_once`.
fn delivery_of(id: &str) -> Delivery {
    let sum: u32 = id.bytes().map(u32::from).sum();
    if sum % 3 == 0 {
        Delivery::AtLeastOnce
    } else {
        Delivery::AtMostOnce
    }
}

/// The placement of job `id`, fixed for its whole life and drawn from the
/// id: one job in five is a `leader` job, so the election (the leader
/// shard's lease) goes through every fault the seeds draw.
fn placement_of(id: &str) -> Placement {
    let sum: u32 = id.bytes().map(u32::from).sum();
    if sum % 5 == 1 {
        Placement::Leader
    } else {
        Placement::Sharded
    }
}

/// A new job `id` with random settings.
pub fn new_job(rng: &mut StdRng, id: &str) -> JobSpec {
    let mut spec = JobSpec::new(id, "@every 1s", HANDLER);
    spec.overlap = random_overlap(rng);
    spec.delivery = delivery_of(id);
    spec.placement = placement_of(id);
    randomize(rng, &mut spec);
    spec
}

/// A re-creation of `old` after a delete: new settings, same overlap policy.
pub fn recreate(rng: &mut StdRng, old: &JobSpec) -> JobSpec {
    let mut spec = new_job(rng, &old.id);
    spec.overlap = old.overlap;
    spec
}

/// An edit of `spec`: another schedule, duration, misfire policy or grace.
pub fn edit(rng: &mut StdRng, spec: &JobSpec) -> JobSpec {
    let mut next = spec.clone();
    match rng.random_range(0..4) {
        0 => randomize(rng, &mut next),
        1 => {
            let period = SCHEDULES
                .iter()
                .find(|(s, _)| *s == next.schedule)
                .map_or(1000, |(_, p)| *p);
            next.args = serde_json::json!({ "ms": random_duration(rng, period) });
        }
        2 => next.misfire = random_misfire(rng),
        _ => next.misfire_grace = Duration::from_secs(*pick(rng, GRACES)),
    }
    next
}
