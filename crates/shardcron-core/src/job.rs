//! The job model: what a user stores, and the validated form the runtime uses.
//!
//! A [`JobSpec`] is plain data (serde, JSON or TOML) so jobs can live in Redis,
//! come from a config file, the CLI or the HTTP API, and be diffed and versioned.
//! [`JobSpec::validate`] turns it into a [`Job`], which carries the parsed
//! schedule and time zone. Validation happens *before* anything is written, and
//! every error names the field that is wrong, so bad input never reaches the
//! store and a user always knows what to fix.

use std::time::Duration;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::schedule::{parse_time_zone, Schedule};

/// Longest accepted job id, in bytes.
pub const MAX_JOB_ID_LEN: usize = 200;

/// How far ahead a job being written must fire at least once: 5 years of
/// 366 days, so yearly schedules and February 29 (every 4 years until 2096)
/// pass, while a day that never exists (`0 0 31 2 *`) or a year field that
/// has passed is refused.
pub const FIRE_HORIZON: Duration = Duration::from_secs(5 * 366 * 24 * 3600);

/// Largest accepted serialized `args` payload, in bytes.
pub const MAX_ARGS_BYTES: usize = 32 * 1024;

/// What happens when a fire comes due while the previous run of the same job is
/// still in flight on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Do not start the new fire; it is recorded as skipped (default).
    #[default]
    Skip,
    /// Start it anyway; runs of the job may overlap.
    Allow,
    /// Keep at most one pending fire and start it when the running one ends.
    QueueOne,
}

/// Where the fires of a job run.
///
/// `sharded` spreads jobs over the fleet by the ring; `leader` runs them all
/// on one elected node (primary/standby: a standby takes over when the
/// leader leaves or dies); `broadcast` runs every fire on every live member.
/// See "Placement per job" in docs/ARCHITECTURE.md.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The job's shard (from its id) runs on whichever node the ring gives
    /// it to (default).
    #[default]
    Sharded,
    /// Every fire runs on the fleet's leader, elected by a lease.
    Leader,
    /// Every live member runs each fire once (fire id `job@ms/node`).
    Broadcast,
}

impl Placement {
    /// Every placement, in the order they are documented.
    pub const ALL: [Placement; 3] = [Placement::Sharded, Placement::Leader, Placement::Broadcast];

    /// The name used in job files, flags, the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Sharded => "sharded",
            Placement::Leader => "leader",
            Placement::Broadcast => "broadcast",
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Placement::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a placement; use sharded, leader or broadcast"))
    }
}

/// What happens to a claimed fire whose node dies (or loses its lease)
/// before the fire reaches a terminal state.
///
/// `at_most_once` never repeats a fire and may lose it; `at_least_once`
/// keeps an open entry in the store from the claim to the terminal record,
/// so the shard's next owner runs it again (same fire id, a higher attempt)
/// within `misfire_grace`, and a rare fire runs twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A fire is never started twice; one claimed by a node that dies
    /// before finishing it is lost (default).
    #[default]
    AtMostOnce,
    /// A fire is never lost to a dead node: it is recovered and run again,
    /// so handlers must be idempotent (de-duplicate by fire id).
    AtLeastOnce,
}

impl Delivery {
    /// The name used in job files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::AtMostOnce => "at_most_once",
            Delivery::AtLeastOnce => "at_least_once",
        }
    }

    /// Whether claimed fires are tracked until a terminal state.
    pub fn tracks_fires(self) -> bool {
        self == Delivery::AtLeastOnce
    }
}

/// What a node does with fires that were missed (no owner, node paused, Redis
/// unreachable) when it finds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Run every missed fire still within `misfire_grace` (default).
    #[default]
    CatchUp,
    /// Run the latest missed fire within `misfire_grace` once; count the rest.
    RunOnce,
    /// Run none of them; count them as misfired.
    Skip,
}

/// Retries of a failed run: `max_retries` extra attempts, waiting
/// `backoff * 2^(attempt-1)` capped at `max_backoff` between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Extra attempts after the first failure (0 = no retry).
    pub max_retries: u32,
    /// Delay before the first retry.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Upper bound of the delay between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 0,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt number `next_attempt` (2 = first retry).
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(20);
        self.backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

fn default_tz() -> String {
    "UTC".to_owned()
}

fn default_misfire_grace() -> Duration {
    Duration::from_secs(60)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A job as users write it and as it is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique id: 1..=200 bytes of `A-Z a-z 0-9 _ - . : /`.
    pub id: String,
    /// Cron expression (5 or 6 fields), `@hourly`-style macro or `@every 5s`.
    pub schedule: String,
    /// IANA time zone the schedule is evaluated in (default `UTC`).
    #[serde(default = "default_tz")]
    pub tz: String,
    /// Name of the handler that runs the job (e.g. `exec`, `http` or a
    /// handler registered by the embedding program).
    pub handler: String,
    /// Arguments handed to the handler as JSON.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
    /// Longest a single attempt may run; `None` means no limit.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Retries of failed attempts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retry: RetryPolicy,
    /// What to do when the previous run is still in flight.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// What to do with missed fires.
    #[serde(default)]
    pub misfire: MisfirePolicy,
    /// How old a missed fire may be and still run (default 60 s).
    #[serde(default = "default_misfire_grace", with = "humantime_serde")]
    pub misfire_grace: Duration,
    /// A paused job keeps its definition but does not fire.
    #[serde(default)]
    pub paused: bool,
    /// Whether a fire claimed by a node that dies is lost
    /// (`at_most_once`, default) or run again by the next owner
    /// (`at_least_once`).
    #[serde(default)]
    pub delivery: Delivery,
    /// Where the job's fires run: `sharded` (default), `leader` or
    /// `broadcast`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// Relative cost of one run, for placement: a job known to be heavy
    /// weighs `cost` times a plain one of the same schedule. A positive
    /// number up to [`crate::load::MAX_COST`]; absent means 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Opt-in per-job metrics label (`job_label`): 1..=64 of `A-Z a-z 0-9 _ : . -`.
    /// Absent by default so metric cardinality stays bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_label: Option<String>,
}

/// A validation failure that names the offending field. Nothing was
/// written: fix that field (the message says how) and write again;
/// retrying unchanged cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id:?}: field `{field}`: {message}")]
pub struct JobValidationError {
    /// Id of the job as given (may itself be the invalid part).
    pub job_id: String,
    /// Name of the field that is wrong.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Checks a job id: non-empty, at most [`MAX_JOB_ID_LEN`] bytes, only
/// `A-Z a-z 0-9 _ - . : /`. `@` is excluded because it separates the job id from
/// the time in a fire id; braces are excluded because they are Redis hash tags.
pub fn validate_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if id.len() > MAX_JOB_ID_LEN {
        return Err(format!(
            "is {} bytes long; the limit is {MAX_JOB_ID_LEN}",
            id.len()
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')))
    {
        return Err(format!(
            "contains {bad:?}; allowed are A-Z a-z 0-9 and _ - . : /"
        ));
    }
    Ok(())
}

impl JobSpec {
    /// A job with the given id, schedule and handler and every other field at
    /// its default.
    pub fn new(
        id: impl Into<String>,
        schedule: impl Into<String>,
        handler: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            schedule: schedule.into(),
            tz: default_tz(),
            handler: handler.into(),
            args: serde_json::Value::Null,
            timeout: None,
            retry: RetryPolicy::default(),
            overlap: OverlapPolicy::default(),
            misfire: MisfirePolicy::default(),
            misfire_grace: default_misfire_grace(),
            paused: false,
            delivery: Delivery::default(),
            placement: Placement::default(),
            cost: None,
            metrics_label: None,
        }
    }

    /// The run cost used for placement ([`JobSpec::cost`], default 1.0).
    pub fn cost(&self) -> f64 {
        self.cost.unwrap_or(1.0)
    }

    fn invalid(&self, field: &'static str, message: impl Into<String>) -> JobValidationError {
        JobValidationError {
            job_id: self.id.clone(),
            field,
            message: message.into(),
        }
    }

    /// Validates every field and returns the runnable form.
    pub fn validate(&self) -> Result<Job, JobValidationError> {
        validate_job_id(&self.id).map_err(|m| self.invalid("id", m))?;
        let schedule =
            Schedule::parse(&self.schedule).map_err(|e| self.invalid("schedule", e.to_string()))?;
        let tz = parse_time_zone(&self.tz).map_err(|e| self.invalid("tz", e.to_string()))?;
        if self.handler.is_empty() {
            return Err(self.invalid("handler", "must not be empty"));
        }
        let args_len = serde_json::to_vec(&self.args)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if args_len > MAX_ARGS_BYTES {
            return Err(self.invalid(
                "args",
                format!("is {args_len} bytes of JSON; the limit is {MAX_ARGS_BYTES}"),
            ));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(self.invalid("timeout", "must be greater than zero"));
        }
        if self.retry.max_retries > 100 {
            return Err(self.invalid("retry.max_retries", "must be at most 100"));
        }
        if let Some(label) = &self.metrics_label {
            let ok_chars = label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'));
            if label.is_empty() || label.len() > 64 || !ok_chars {
                return Err(self.invalid(
                    "metrics_label",
                    "must be 1-64 characters of A-Z a-z 0-9 _ : . -",
                ));
            }
        }
        if let Some(cost) = self.cost {
            if !(cost.is_finite() && cost > 0.0 && cost <= crate::load::MAX_COST) {
                return Err(self.invalid(
                    "cost",
                    format!(
                        "is {cost}; it must be a positive number up to {}",
                        crate::load::MAX_COST
                    ),
                ));
            }
        }
        if self.placement == Placement::Broadcast && self.delivery == Delivery::AtLeastOnce {
            return Err(self.invalid(
                "delivery",
                "a broadcast job runs on every member without a claim, so no other node can recover its fires: use at_most_once (the default)",
            ));
        }
        if self.misfire_grace > Duration::from_secs(7 * 24 * 3600) {
            return Err(self.invalid("misfire_grace", "must be at most 7 days"));
        }
        Ok(Job {
            spec: self.clone(),
            schedule,
            tz,
        })
    }
}

impl JobSpec {
    /// Validates a job about to be written at `now_ms` (Unix ms):
    /// [`JobSpec::validate`] plus a schedule that fires at least once within
    /// [`FIRE_HORIZON`] after `now_ms`; a schedule that never fires is
    /// refused naming the `schedule` field.
    ///
    /// Kept apart from [`JobSpec::validate`], which also checks jobs read back
    /// from the store: a stored job whose last fire has passed is not
    /// corrupt, it simply does not fire again. The caller passes the time, so
    /// this crate still reads no clock.
    pub fn validate_new(&self, now_ms: i64) -> Result<Job, JobValidationError> {
        let job = self.validate()?;
        if job
            .schedule
            .first_fire_within(now_ms, job.tz, FIRE_HORIZON)
            .is_none()
        {
            return Err(self.invalid(
                "schedule",
                format!(
                    "{:?} never fires: no fire in the next 5 years (time zone {}); check the day of month against the month (e.g. February has no 30th or 31st) and any year field",
                    self.schedule, self.tz
                ),
            ));
        }
        Ok(job)
    }
}

/// A validated job: its spec plus the parsed schedule and time zone.
#[derive(Clone, Debug)]
pub struct Job {
    /// The spec as stored.
    pub spec: JobSpec,
    /// Parsed schedule.
    pub schedule: Schedule,
    /// Parsed time zone.
    pub tz: Tz,
}

impl Job {
    /// The job id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// First fire strictly after `after_ms` (Unix milliseconds).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.schedule.next_after(after_ms, self.tz)
    }

    /// Fires in `(from_exclusive_ms, to_inclusive_ms]`, at most `limit`.
    pub fn fires_between(
        &self,
        from_exclusive_ms: i64,
        to_inclusive_ms: i64,
        limit: usize,
    ) -> Vec<i64> {
        self.schedule
            .fires_between(from_exclusive_ms, to_inclusive_ms, self.tz, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_from_minimal_json() {
        let spec: JobSpec =
            serde_json::from_str(r#"{"id":"a","schedule":"@every 5s","handler":"noop"}"#)
                .expect("parse");
        assert_eq!(spec.tz, "UTC");
        assert_eq!(spec.overlap, OverlapPolicy::Skip);
        assert_eq!(spec.misfire, MisfirePolicy::CatchUp);
        assert_eq!(spec.misfire_grace, Duration::from_secs(60));
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<JobSpec>(
            r#"{"id":"a","schedule":"@every 5s","handler":"noop","shedule":"x"}"#,
        )
        .expect_err("unknown field must fail");
        assert!(err.to_string().contains("shedule"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut spec = JobSpec::new("ok", "not a cron", "noop");
        assert_eq!(spec.validate().expect_err("bad cron").field, "schedule");
        spec.schedule = "@every 5s".into();
        spec.tz = "Mars/Base".into();
        assert_eq!(spec.validate().expect_err("bad tz").field, "tz");
        spec.tz = "Europe/Berlin".into();
        spec.id = "has@at".into();
        assert_eq!(spec.validate().expect_err("bad id").field, "id");
        spec.id = "x".repeat(MAX_JOB_ID_LEN + 1);
        assert_eq!(spec.validate().expect_err("long id").field, "id");
        spec.id = "fine".into();
        spec.args = serde_json::Value::String("x".repeat(MAX_ARGS_BYTES));
        assert_eq!(spec.validate().expect_err("big args").field, "args");
        spec.args = serde_json::Value::Null;
        spec.metrics_label = Some("has space".into());
        assert_eq!(
            spec.validate().expect_err("bad label").field,
            "metrics_label"
        );
        spec.metrics_label = Some("billing.nightly".into());
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn schedules_that_never_fire_are_refused_for_new_jobs() {
        // 2025-03-01T00:00:00Z: the next February 29 is in 2028.
        let now = 1_740_787_200_000;
        for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *", "0 0 0 1 1 * 2020"] {
            let spec = JobSpec::new("j", never, "noop");
            assert!(spec.validate().is_ok(), "{never}: stored jobs still load");
            let err = spec.validate_new(now).expect_err(never);
            assert_eq!(err.field, "schedule", "{never}");
            assert!(err.message.contains("never fires"), "{}", err.message);
        }
        for fires in [
            "0 0 29 2 *",
            "@yearly",
            "@every 5s",
            "0 0 31 * *",
            "0 0 28 2 *",
        ] {
            let spec = JobSpec::new("j", fires, "noop");
            assert!(spec.validate_new(now).is_ok(), "{fires}");
        }
        // Just after a February 29, the next one is 4 years away.
        let after_leap_day = 1_709_251_200_000; // 2024-03-01T00:00:00Z
        assert!(JobSpec::new("j", "0 0 29 2 *", "noop")
            .validate_new(after_leap_day)
            .is_ok());
    }

    #[test]
    fn toml_round_trip() {
        let text = r#"
id = "report"
schedule = "0 9 * * 1-5"
tz = "America/New_York"
handler = "exec"
args = { command = "echo hi" }
timeout = "30s"
misfire = "run_once"
overlap = "queue_one"
retry = { max_retries = 3, backoff = "2s" }
"#;
        let spec: JobSpec = toml::from_str(text).expect("toml");
        assert_eq!(spec.timeout, Some(Duration::from_secs(30)));
        assert_eq!(spec.retry.max_retries, 3);
        assert_eq!(spec.retry.max_backoff, Duration::from_secs(60));
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            max_retries: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(r.delay_before(2), Duration::from_secs(1));
        assert_eq!(r.delay_before(3), Duration::from_secs(2));
        assert_eq!(r.delay_before(4), Duration::from_secs(4));
        assert_eq!(r.delay_before(5), Duration::from_secs(5));
    }
}
