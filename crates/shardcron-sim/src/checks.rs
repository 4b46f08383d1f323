//! The guarantees, checked over a run's recorded history.
//!
//! Each checker reads only what was observed (handler starts and ends, claims
//! and grants as the store applied them, run records as nodes produced them,
//! admin writes), never the runtime's own bookkeeping, so a bug in the
//! runtime cannot hide itself. The rules:
//!
//! 1. no fire id starts twice; a fire of an `at_least_once` job may start
//!    again only in a later delivery, and only after its earlier delivery's
//!    run ended without a terminal state (crashed, cancelled), its node
//!    crashed or paused (store calls hanging) after that start, or its
//!    lease lapsed (another holder was granted the shard without a release);
//! 2. no fire is missed: every *required* fire (see [`required_fires`]) started,
//!    or some node produced a visible record of it (`skipped_overlap`,
//!    `misfired`, ...), or, for an `at_most_once` job only, its loss is a
//!    documented limit: its claim applied but the reply was lost and its
//!    process crashed before it could hand the fire back (or the run ended
//!    first), or its node crashed between the claim reply and the start. An
//!    `at_least_once` fire has neither excuse (except a crash in the last
//!    20 s of the run, too late for the recovery to show, of its claimant or
//!    of a node that recovered it), and a `cancelled`
//!    record of it (given up for recovery) does not count as its record
//!    unless written in those last 20 s;
//! 3. no two handlers of a job with overlap `skip` or `queue_one` run at once;
//! 4. fencing tokens strictly increase per shard, in the order the store
//!    granted them (grants whose reply was lost included);
//! 5. no fire starts before its time (100 ms of slack).

use std::collections::{BTreeMap, BTreeSet};

use shardcron_coord::{ClaimOutcome, RunOutcome};
use shardcron_core::{shard_of, Delivery, JobSpec, OverlapPolicy};

use crate::history::{Event, Fate, Observed};
use crate::time::rel;
use crate::world::RunInfo;

/// Which guarantee a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// A fire id started more than once.
    DuplicateStart,
    /// A required fire neither ran nor left a record, and no excuse applies.
    MissedFire,
    /// Two runs of a `skip` / `queue_one` job overlapped.
    Overlap,
    /// A shard's fencing token did not increase.
    Fencing,
    /// A fire started before its scheduled time.
    EarlyStart,
    /// A claim batch promised job versions read at a shard load they were
    /// not read at (the store refused the fire; deciding from the shard
    /// would have run a stale version).
    VersionPromise,
    /// The scenario itself could not run (setup error).
    Setup,
}

impl Check {
    /// Short stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::DuplicateStart => "duplicate-start",
            Self::MissedFire => "missed-fire",
            Self::Overlap => "overlap",
            Self::Fencing => "fencing",
            Self::EarlyStart => "early-start",
            Self::VersionPromise => "version-promise",
            Self::Setup => "setup",
        }
    }
}

/// One broken guarantee, with the events that touch it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The guarantee.
    pub check: Check,
    /// What happened.
    pub message: String,
    /// Job concerned, if any.
    pub job: Option<String>,
    /// Instant of interest (a fire's scheduled time), Unix ms.
    pub at: i64,
    /// More violations of the same check on the same job that were folded in.
    pub more: usize,
    /// Events touching the job, its shard and the nodes involved, around `at`.
    pub trace: Vec<String>,
}

/// Counts from the checkers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Handler starts (first attempts).
    pub started: usize,
    /// Fires the rules required.
    pub required: usize,
    /// Required fires that were not run but are excused, by reason.
    pub excused: BTreeMap<String, usize>,
}

struct Found {
    check: Check,
    job: Option<String>,
    shard: Option<u32>,
    at: i64,
    message: String,
}

/// Runs every checker.
pub fn check_all(obs: &Observed, info: &RunInfo, shard_count: u32) -> (Vec<Violation>, CheckStats) {
    let mut stats = CheckStats {
        started: obs.starts.iter().filter(|s| s.attempt == 1).count(),
        ..CheckStats::default()
    };
    let mut found = Vec::new();
    duplicate_starts(obs, &mut found);
    late_deliveries(obs, &mut found);
    missed_fires(obs, info, &mut found, &mut stats);
    overlaps(obs, info, &mut found);
    fencing(obs, &mut found);
    early_starts(obs, &mut found);
    for message in &info.broken_version_promises {
        found.push(Found {
            check: Check::VersionPromise,
            job: None,
            shard: None,
            at: 0,
            message: message.clone(),
        });
    }
    (fold(found, &obs.events, shard_count), stats)
}

/// Keeps the first violation per (check, job), counting the rest, and cuts a
/// trace for each.
fn fold(found: Vec<Found>, events: &[Event], shard_count: u32) -> Vec<Violation> {
    let mut by: BTreeMap<(Check, Option<String>), (Found, usize)> = BTreeMap::new();
    for f in found {
        let key = (f.check, f.job.clone());
        match by.get_mut(&key) {
            Some((first, more)) => {
                *more += 1;
                if f.at < first.at {
                    *first = f;
                }
            }
            None => {
                by.insert(key, (f, 0));
            }
        }
    }
    let mut out: Vec<Violation> = by
        .into_values()
        .map(|(f, more)| {
            let shard = f
                .shard
                .or_else(|| f.job.as_deref().map(|j| shard_of(j, shard_count)));
            Violation {
                trace: trace(events, f.job.as_deref(), shard, f.at),
                check: f.check,
                message: f.message,
                job: f.job,
                at: f.at,
                more,
            }
        })
        .collect();
    out.sort_by_key(|v| (v.at, v.check));
    out
}

/// Events touching `job` or `shard` from 20 s before `at` to 70 s after, and
/// the life events (start, pause, clock step, leave, crash) of the nodes
/// that appear in them.
pub fn trace(events: &[Event], job: Option<&str>, shard: Option<u32>, at: i64) -> Vec<String> {
    let (from, to) = (at - 20_000, at + 70_000);
    let window = || events.iter().filter(move |e| e.t >= from && e.t <= to);
    let touches = |e: &Event| match (&e.job, e.shard) {
        (Some(j), _) => Some(j.as_str()) == job,
        (None, Some(s)) => Some(s) == shard,
        (None, None) => false,
    };
    let nodes: BTreeSet<&str> = window()
        .filter(|e| touches(e))
        .filter_map(|e| e.node.as_deref())
        .collect();
    window()
        .filter(|e| {
            touches(e)
                || (e.job.is_none()
                    && e.shard.is_none()
                    && e.node.as_deref().is_some_and(|n| nodes.contains(n)))
        })
        .map(Event::line)
        .collect()
}

fn fire(job: &str, ms: i64) -> String {
    format!("{job}@{}", rel(ms))
}

/// The delivery of each job (constant over its life in the scenario).
fn delivery_of(obs: &Observed) -> BTreeMap<&str, Delivery> {
    obs.writes
        .iter()
        .filter_map(|w| w.spec.as_ref().map(|s| (w.job.as_str(), s.delivery)))
        .collect()
}

/// Whether the first attempt of a delivery (sim jobs never retry: attempt
/// numbers go up by one per delivery).
fn first_of_delivery(s: &crate::history::StartObs) -> bool {
    s.attempt == s.delivery
}

fn duplicate_starts(obs: &Observed, found: &mut Vec<Found>) {
    // Deliveries of one fire: more than one first delivery is a duplicate
    // for every job; later deliveries are `late_deliveries`' to judge.
    let mut by: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, s) in obs.starts.iter().enumerate() {
        if first_of_delivery(s) && s.delivery == 1 {
            by.entry((s.job.as_str(), s.sched)).or_default().push(i);
        }
    }
    for ((job, sched), runs) in by {
        if runs.len() > 1 {
            let who: Vec<String> = runs
                .iter()
                .map(|&i| {
                    let s = &obs.starts[i];
                    format!("{}/{} token {} at {}", s.node, s.inst, s.token, rel(s.t))
                })
                .collect();
            found.push(Found {
                check: Check::DuplicateStart,
                job: Some(job.to_owned()),
                shard: Some(obs.starts[runs[0]].shard),
                at: sched,
                message: format!(
                    "{} started {} times: {}",
                    fire(job, sched),
                    runs.len(),
                    who.join("; ")
                ),
            });
        }
    }
}

/// A later delivery of a fire is allowed only for an `at_least_once` job,
/// once per delivery number, and only after the previous delivery's run
/// ended without a terminal state or its node crashed or paused after
/// starting it.
fn late_deliveries(obs: &Observed, found: &mut Vec<Found>) {
    let delivery = delivery_of(obs);
    let mut by: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, s) in obs.starts.iter().enumerate() {
        if first_of_delivery(s) {
            by.entry((s.job.as_str(), s.sched)).or_default().push(i);
        }
    }
    for ((job, sched), mut runs) in by {
        if runs.len() < 2 {
            continue;
        }
        runs.sort_by_key(|&i| (obs.starts[i].t, obs.starts[i].delivery));
        let tracked = delivery.get(job) == Some(&Delivery::AtLeastOnce);
        for pair in runs.windows(2) {
            let (a, b) = (&obs.starts[pair[0]], &obs.starts[pair[1]]);
            if a.delivery == 1 && b.delivery == 1 {
                continue; // duplicate_starts reports it
            }
            let holder = format!("{}/{}", a.node, a.inst);
            let gave_up = matches!(a.how.as_deref(), Some("crashed" | "cancelled"))
                && a.end.is_some_and(|e| e <= b.t);
            let crashed = obs
                .crashes
                .iter()
                .any(|(t, h)| *h == holder && *t >= a.t && *t <= b.t);
            let paused = obs
                .pauses
                .iter()
                .any(|(from, until, h)| *h == holder && *until >= a.t && *from <= b.t);
            let lapsed = lease_lapsed(obs, &holder, a, b.t);
            let why = if !tracked {
                Some("an at_most_once fire was delivered again")
            } else if b.delivery <= a.delivery {
                Some("a later start has no higher delivery")
            } else if !(gave_up || crashed || paused || lapsed) {
                Some("the earlier run was not given up, its node did not crash or pause, and its lease did not lapse")
            } else {
                None
            };
            if let Some(why) = why {
                found.push(Found {
                    check: Check::DuplicateStart,
                    job: Some(job.to_owned()),
                    shard: Some(a.shard),
                    at: sched,
                    message: format!(
                        "{} delivered again: {}/{} token {} delivery {} at {} ({}), then {}/{} token {} delivery {} at {}: {why}",
                        fire(job, sched),
                        a.node,
                        a.inst,
                        a.token,
                        a.delivery,
                        rel(a.t),
                        a.how.as_deref().unwrap_or("still running"),
                        b.node,
                        b.inst,
                        b.token,
                        b.delivery,
                        rel(b.t)
                    ),
                });
            }
        }
    }
}

/// Whether the shard lease under which `a` started lapsed (another holder
/// was granted the shard by `until` without `a`'s holder releasing it
/// first): the run's terminal record may not have reached the store while
/// the lease stood.
fn lease_lapsed(obs: &Observed, holder: &str, a: &crate::history::StartObs, until: i64) -> bool {
    obs.grants
        .iter()
        .filter(|g| g.shard == a.shard && g.holder != holder && g.t >= a.t && g.t <= until)
        .any(|g| {
            !obs.releases.iter().any(|(t, h, s, tok)| {
                h == holder && *s == a.shard && *tok == a.token && *t >= a.t && *t <= g.t
            })
        })
}

fn early_starts(obs: &Observed, found: &mut Vec<Found>) {
    for s in &obs.starts {
        if s.t < s.sched - 100 {
            found.push(Found {
                check: Check::EarlyStart,
                job: Some(s.job.clone()),
                shard: Some(s.shard),
                at: s.sched,
                message: format!(
                    "{} started at {} on {}/{}, {} ms early",
                    fire(&s.job, s.sched),
                    rel(s.t),
                    s.node,
                    s.inst,
                    s.sched - s.t
                ),
            });
        }
    }
}

fn fencing(obs: &Observed, found: &mut Vec<Found>) {
    let mut last: BTreeMap<u32, (&str, u64)> = BTreeMap::new();
    for g in &obs.grants {
        if let Some(&(holder, token)) = last.get(&g.shard) {
            let renewal = token == g.token && holder == g.holder;
            if !renewal && g.token <= token {
                found.push(Found {
                    check: Check::Fencing,
                    job: None,
                    shard: Some(g.shard),
                    at: g.t,
                    message: format!(
                        "shard {} granted token {} to {} after token {} to {}",
                        g.shard, g.token, g.holder, token, holder
                    ),
                });
            }
        }
        last.insert(g.shard, (g.holder.as_str(), g.token));
    }
}

/// The overlap policy of each job (constant over its life in the scenario).
fn overlap_of(obs: &Observed) -> BTreeMap<&str, OverlapPolicy> {
    obs.writes
        .iter()
        .filter_map(|w| w.spec.as_ref().map(|s| (w.job.as_str(), s.overlap)))
        .collect()
}

fn overlaps(obs: &Observed, info: &RunInfo, found: &mut Vec<Found>) {
    let policy = overlap_of(obs);
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in obs.starts.iter().enumerate() {
        if matches!(
            policy.get(s.job.as_str()),
            Some(OverlapPolicy::Skip | OverlapPolicy::QueueOne)
        ) {
            by.entry(s.job.as_str()).or_default().push(i);
        }
    }
    for (job, runs) in by {
        // Runs are recorded in start order.
        let mut open: Option<usize> = None;
        for i in runs {
            let s = &obs.starts[i];
            if let Some(p) = open {
                let prev = &obs.starts[p];
                let prev_end = prev.end.unwrap_or(info.end_ms);
                if s.t < prev_end && s.sched != prev.sched {
                    found.push(Found {
                        check: Check::Overlap,
                        job: Some(job.to_owned()),
                        shard: Some(s.shard),
                        at: s.sched,
                        message: format!(
                            "{} started at {} on {}/{} (token {}) while {} ran on {}/{} (token {}, {} to {})",
                            fire(job, s.sched),
                            rel(s.t),
                            s.node,
                            s.inst,
                            s.token,
                            fire(job, prev.sched),
                            prev.node,
                            prev.inst,
                            prev.token,
                            rel(prev.t),
                            prev.end.map_or("still running".to_owned(), rel)
                        ),
                    });
                }
            }
            let keep_prev = open.is_some_and(|p| {
                obs.starts[p].end.unwrap_or(info.end_ms) >= s.end.unwrap_or(info.end_ms)
            });
            if !keep_prev {
                open = Some(i);
            }
        }
    }
}

/// How long before the end of a run a crash may still leave an
/// `at_least_once` fire unrecovered when the run stops (lease TTL, member
/// TTL and a heartbeat, with room).
const RECOVERY_MARGIN_MS: i64 = 20_000;

/// Excuse categories of required fires that did not run.
const EXCUSE_LOST_REPLY: &str = "claim applied but its reply was lost and never resolved";
const EXCUSE_CRASH: &str = "claiming node crashed between the claim reply and the start";
const EXCUSE_RECOVERER_CRASH: &str =
    "recovering node crashed in the run's last 20 s, too late for the next recovery to show";
const COVER_BEYOND_GRACE: &str = "covered by one beyond-grace misfire record";
const COVER_CAPPED: &str = "covered by a capped batch of misfire records";
const NOT_REQUIRED_SHARED_ID: &str = "trigger on a scheduled fire's millisecond (shares its id)";

const EXCUSE_UNOWNED: &str =
    "job deleted or paused before any node claimed a fire of it again (no working owner)";

/// A known gap: the fire's shard had no working owner (nobody claimed any
/// fire of the job from the fire's time on) until the job was deleted or
/// paused, so the next owner, loading the job as deleted or paused, writes
/// no misfire record for it.
fn unowned_until_removed(obs: &Observed, req: &Required) -> bool {
    let Some(removed) = obs
        .writes
        .iter()
        .filter(|w| w.job == req.job && w.t > req.at)
        .find(|w| w.spec.as_ref().is_none_or(|s| s.paused))
        .map(|w| w.t)
    else {
        return false;
    };
    !obs.claims
        .iter()
        .any(|c| c.job == req.job && c.t >= req.at && c.t <= removed)
}

/// Spans of fires a node declared misfired in bulk, per job.
fn bulk_misfires(obs: &Observed) -> BTreeMap<&str, Vec<(i64, i64, &'static str)>> {
    let mut spans: BTreeMap<&str, Vec<(i64, i64, &'static str)>> = BTreeMap::new();
    let mut batches: BTreeMap<(&str, &str, i64), Vec<i64>> = BTreeMap::new();
    for r in &obs.records {
        if r.outcome != RunOutcome::Misfired {
            continue;
        }
        let why = r.error.as_deref().unwrap_or("");
        if why.starts_with("this and possibly later") {
            spans.entry(r.job.as_str()).or_default().push((
                r.sched,
                r.t - 5_000,
                COVER_BEYOND_GRACE,
            ));
        } else if why.starts_with("not run per misfire policy") {
            batches
                .entry((r.node.as_str(), r.job.as_str(), r.t))
                .or_default()
                .push(r.sched);
        }
    }
    for ((_, job, t), mut scheds) in batches {
        scheds.sort_unstable();
        scheds.dedup();
        if scheds.len() >= 10 {
            spans
                .entry(job)
                .or_default()
                .push((scheds[0], t, COVER_CAPPED));
        }
    }
    spans
}

/// A required fire: `(job, scheduled ms)` with its grace and whether it is a trigger.
pub struct Required {
    job: String,
    at: i64,
    trigger: bool,
}

fn in_schedule(spec: &JobSpec, t: i64) -> bool {
    spec.validate().ok().and_then(|j| j.next_after(t - 1)) == Some(t)
}

/// The fires the rules require, with counts of those ruled out.
///
/// A scheduled fire `(job, t)` is required when the version active at `t`
/// (the last write before `t`) is unpaused and has `t` in its schedule, every
/// write in `[t, t + grace]` keeps the job unpaused, undeleted and `t` in its
/// schedule, and `t < end - grace`. A trigger at `ms` is required when the
/// job is unpaused at `ms`, not written in `(ms, ms + grace]`, and
/// `ms < end - grace`; one on the exact millisecond of a scheduled fire shares
/// that fire's id (a documented limit) and is not required separately.
pub fn required_fires(obs: &Observed, info: &RunInfo, stats: &mut CheckStats) -> Vec<Required> {
    let mut writes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in obs.writes.iter().enumerate() {
        writes.entry(w.job.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (job, idx) in &writes {
        let ws: Vec<_> = idx.iter().map(|&i| &obs.writes[i]).collect();
        for (k, w) in ws.iter().enumerate() {
            let Some(spec) = &w.spec else { continue };
            if spec.paused {
                continue;
            }
            let Ok(parsed) = spec.validate() else {
                continue;
            };
            let grace = spec.misfire_grace.as_millis() as i64;
            let next = ws.get(k + 1).map_or(info.end_ms, |n| n.t);
            let until = next.min(info.end_ms - grace - 1);
            if until <= w.t {
                continue;
            }
            for t in parsed.fires_between(w.t, until, 1_000_000) {
                let kept = ws[k + 1..]
                    .iter()
                    .filter(|l| l.t >= t && l.t <= t + grace)
                    .all(|l| {
                        l.spec
                            .as_ref()
                            .is_some_and(|s| !s.paused && in_schedule(s, t))
                    });
                if kept {
                    out.push(Required {
                        job: (*job).to_owned(),
                        at: t,
                        trigger: false,
                    });
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for tr in &obs.triggers {
        if !seen.insert((tr.job.as_str(), tr.ms)) {
            continue;
        }
        let Some(ws) = writes.get(tr.job.as_str()) else {
            continue;
        };
        let ws: Vec<_> = ws.iter().map(|&i| &obs.writes[i]).collect();
        let Some(active) = ws.iter().rev().find(|w| w.t <= tr.ms) else {
            continue;
        };
        let Some(spec) = &active.spec else { continue };
        if spec.paused {
            continue;
        }
        let grace = spec.misfire_grace.as_millis() as i64;
        if tr.ms >= info.end_ms - grace || ws.iter().any(|w| w.t > tr.ms && w.t <= tr.ms + grace) {
            continue;
        }
        if in_schedule(spec, tr.ms) {
            *stats
                .excused
                .entry(NOT_REQUIRED_SHARED_ID.to_owned())
                .or_default() += 1;
            continue;
        }
        out.push(Required {
            job: tr.job.clone(),
            at: tr.ms,
            trigger: true,
        });
    }
    out
}

fn missed_fires(obs: &Observed, info: &RunInfo, found: &mut Vec<Found>, stats: &mut CheckStats) {
    let started: BTreeSet<(&str, i64)> = obs
        .starts
        .iter()
        .map(|s| (s.job.as_str(), s.sched))
        .collect();
    let delivery = delivery_of(obs);
    let tracked = |job: &str| delivery.get(job) == Some(&Delivery::AtLeastOnce);
    // A tracked fire given up for recovery is not done: only a terminal
    // record (or a start) covers it.
    let recorded: BTreeSet<(&str, i64)> = obs
        .records
        .iter()
        .filter(|r| !gave_up_unresolved(r))
        .filter(|r| {
            !tracked(&r.job)
                || r.outcome != RunOutcome::Cancelled
                || r.t > info.end_ms - RECOVERY_MARGIN_MS
                || r.error.as_deref().is_some_and(|e| {
                    e.starts_with("recovered, but")
                        || e.starts_with("claimed, but the job was removed")
                })
        })
        .map(|r| (r.job.as_str(), r.sched))
        .collect();
    let mut claims: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, c) in obs.claims.iter().enumerate() {
        claims.entry((c.job.as_str(), c.sched)).or_default().push(i);
    }
    let spans = bulk_misfires(obs);
    let required = required_fires(obs, info, stats);
    stats.required = required.len();
    for req in required {
        let key = (req.job.as_str(), req.at);
        if started.contains(&key) || recorded.contains(&key) {
            continue;
        }
        if let Some((_, _, why)) = spans.get(req.job.as_str()).and_then(|s| {
            s.iter()
                .find(|(from, to, _)| req.at >= *from && req.at <= *to)
        }) {
            *stats.excused.entry((*why).to_owned()).or_default() += 1;
            continue;
        }
        if unowned_until_removed(obs, &req) {
            *stats.excused.entry(EXCUSE_UNOWNED.to_owned()).or_default() += 1;
            continue;
        }
        let attempts: Vec<usize> = claims.get(&key).cloned().unwrap_or_default();
        // An at_least_once fire is recovered after its node crashes, which
        // takes a lease TTL and a heartbeat: only a crash too close to the
        // end of the run for that excuses it.
        let is_tracked = tracked(&req.job);
        let excuse = attempts.iter().find_map(|&i| {
            let c = &obs.claims[i];
            if c.outcome != Some(ClaimOutcome::Claimed) {
                return None;
            }
            match obs.fates.get(&c.call) {
                // The claimant knows it never ran the fire and hands it
                // back once it reaches the store again: the loss is
                // excused only if that process crashed (its claims were
                // all sent before; one may apply after), or the run ended
                // before a hand-back could show.
                Some((_, Fate::Lost)) | None => (!is_tracked
                    && (c.t > info.end_ms - RECOVERY_MARGIN_MS
                        || obs.crashes.iter().any(|(_, h)| h == &c.holder)))
                .then_some(EXCUSE_LOST_REPLY),
                Some((replied, Fate::Delivered)) => obs
                    .crashes
                    .iter()
                    .any(|(t, h)| {
                        h == &c.holder
                            && t >= replied
                            && (!is_tracked || *t > info.end_ms - RECOVERY_MARGIN_MS)
                    })
                    .then_some(EXCUSE_CRASH),
            }
        });
        // The same for the node that last recovered it: a recovered fire
        // waits on its recoverer, and a recoverer that crashed too close to
        // the end leaves it for a recovery the run does not show.
        let excuse = excuse.or_else(|| {
            (is_tracked
                && obs
                    .recoveries
                    .iter()
                    .filter(|r| r.job == req.job && r.sched == req.at)
                    .any(|r| {
                        obs.crashes.iter().any(|(t, h)| {
                            h == &r.holder && *t >= r.t && *t > info.end_ms - RECOVERY_MARGIN_MS
                        })
                    }))
            .then_some(EXCUSE_RECOVERER_CRASH)
        });
        if let Some(why) = excuse {
            *stats.excused.entry(why.to_owned()).or_default() += 1;
            continue;
        }
        found.push(Found {
            check: Check::MissedFire,
            job: Some(req.job.clone()),
            shard: None,
            at: req.at,
            message: format!(
                "required {} {} never started and has no record; {}",
                if req.trigger { "trigger" } else { "fire" },
                fire(&req.job, req.at),
                hint(obs, &attempts, &req)
            ),
        });
    }
}

/// A record that admits a claim's fate was never learned (its reply was
/// lost and the node gave up): it does not decide the fire, so it is not
/// the fire's record; only the lost-reply excuse can cover the fire.
fn gave_up_unresolved(r: &crate::history::RecordObs) -> bool {
    r.outcome == RunOutcome::Cancelled
        && r.error.as_deref().is_some_and(|e| {
            e.starts_with("the claim's reply was lost")
                || e.starts_with("the node stopped before it could learn")
        })
}

/// What the history says about a missed fire, for the report.
fn hint(obs: &Observed, attempts: &[usize], req: &Required) -> String {
    let mut parts = Vec::new();
    for &i in attempts {
        let c = &obs.claims[i];
        let fate = match obs.fates.get(&c.call) {
            Some((_, Fate::Delivered)) => "delivered",
            Some((_, Fate::Lost)) => "reply lost",
            None => "no reply",
        };
        parts.push(format!(
            "claim#{} by {} {:?} -> {} ({fate})",
            c.call,
            c.holder,
            c.kind,
            c.outcome
                .map_or("lease lost".to_owned(), |o| format!("{o:?}"))
        ));
    }
    if req.trigger {
        for t in obs
            .takes
            .iter()
            .filter(|t| t.job == req.job && t.ms == req.at)
        {
            let fate = match obs.fates.get(&t.call) {
                Some((_, Fate::Delivered)) => "delivered",
                _ => "reply lost",
            };
            parts.push(format!(
                "read by {} in read_triggers#{} ({fate})",
                t.holder, t.call
            ));
        }
    }
    if parts.is_empty() {
        "no claim was ever attempted".to_owned()
    } else {
        parts.join("; ")
    }
}
