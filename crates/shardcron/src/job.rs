//! [`Job`]: a job definition written in Rust.

use std::time::Duration;

use shardcron_core::{Delivery, JobSpec, MisfirePolicy, OverlapPolicy, Placement, RetryPolicy};

/// A job definition, built in Rust and stored as a [`JobSpec`].
///
/// A job is data: an id, a schedule and the name of a handler, plus
/// policies. It is stored in the fleet's store, so any node (or the CLI, or
/// the admin API) can add, change or remove it while the fleet runs. Every
/// field is the [`JobSpec`] field of the same name, with the same defaults,
/// and is checked by the same validation ([`JobSpec::validate_new`]) when
/// the job is written.
///
/// ```
/// use std::time::Duration;
/// use shardcron::{Delivery, Job, MisfirePolicy, OverlapPolicy};
///
/// let job = Job::cron("invoices", "0 */5 * * * *")
///     .handler("send-invoices")
///     .tz("America/New_York")
///     .timeout(Duration::from_secs(30))
///     .retries(2)
///     .misfire(MisfirePolicy::RunOnce)
///     .overlap(OverlapPolicy::Skip)
///     .delivery(Delivery::AtLeastOnce)
///     .args(serde_json::json!({"batch": 100}));
/// assert_eq!(job.spec().retry.max_retries, 2);
/// assert!(job.check().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    spec: JobSpec,
}

impl Job {
    /// A job `id` on a cron `schedule`: 5 fields (minute first), 6 (second
    /// first), 7 (with a year), a macro such as `@hourly`, or
    /// `@every 10s`. Name its handler with [`Job::handler`].
    pub fn cron(id: impl Into<String>, schedule: impl Into<String>) -> Self {
        Self {
            spec: JobSpec::new(id, schedule, String::new()),
        }
    }

    /// A job `id` firing at every multiple of `period` since the Unix epoch
    /// (`@every`), so every node computes the same instants. The period is
    /// taken in whole milliseconds; a period under 1 s is refused when the
    /// job is written.
    pub fn every(id: impl Into<String>, period: Duration) -> Self {
        Self::cron(id, format!("@every {}ms", period.as_millis()))
    }

    /// The name of the handler that runs the job: one registered with
    /// [`crate::SchedulerBuilder::handler`] (on every node of the fleet), or
    /// `exec` / `http` with [`crate::SchedulerBuilder::builtin_handlers`].
    pub fn handler(mut self, name: impl Into<String>) -> Self {
        self.spec.handler = name.into();
        self
    }

    /// Arguments handed to the handler as [`crate::FireContext::args`] (at
    /// most [`shardcron_core::MAX_ARGS_BYTES`] of JSON).
    pub fn args(mut self, args: serde_json::Value) -> Self {
        self.spec.args = args;
        self
    }

    /// The IANA time zone the schedule is evaluated in (default `UTC`);
    /// daylight-saving gaps and repeats follow the rules in
    /// `docs/ARCHITECTURE.md`.
    pub fn tz(mut self, zone: impl Into<String>) -> Self {
        self.spec.tz = zone.into();
        self
    }

    /// The longest one attempt may run; the handler's cancellation token
    /// trips when it is reached and the attempt counts as timed out.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout = Some(timeout);
        self
    }

    /// Extra attempts after a failed one (default 0), with the default
    /// backoff (1 s doubling, capped at 60 s).
    pub fn retries(mut self, retries: u32) -> Self {
        self.spec.retry.max_retries = retries;
        self
    }

    /// The whole retry policy: attempts and backoff.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.spec.retry = retry;
        self
    }

    /// What happens when a fire comes due while the previous run of the job
    /// is still going (default [`OverlapPolicy::Skip`]).
    pub fn overlap(mut self, overlap: OverlapPolicy) -> Self {
        self.spec.overlap = overlap;
        self
    }

    /// What happens to fires missed while no node could run them (default
    /// [`MisfirePolicy::CatchUp`]).
    pub fn misfire(mut self, misfire: MisfirePolicy) -> Self {
        self.spec.misfire = misfire;
        self
    }

    /// How late a missed fire may still run (default 60 s, at most 7 days
    /// and less than the workers' `claim_retention`).
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.spec.misfire_grace = grace;
        self
    }

    /// Whether a fire claimed by a node that dies is lost
    /// ([`Delivery::AtMostOnce`], default) or run again by the shard's next
    /// owner ([`Delivery::AtLeastOnce`]; de-duplicate by fire id).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.spec.delivery = delivery;
        self
    }

    /// Where the job's fires run: [`Placement::Sharded`] (default) on the
    /// node owning the job's shard, [`Placement::Leader`] on the fleet's
    /// elected leader, [`Placement::Broadcast`] on every live member (fire
    /// id `job@ms/node`).
    pub fn placement(mut self, placement: Placement) -> Self {
        self.spec.placement = placement;
        self
    }

    /// Stores the job paused (it keeps its definition but does not fire).
    pub fn paused(mut self, paused: bool) -> Self {
        self.spec.paused = paused;
        self
    }

    /// Relative cost of one run for placement (default 1.0, at most
    /// 10,000): a job known to be heavy weighs that many plain ones.
    pub fn cost(mut self, cost: f64) -> Self {
        self.spec.cost = Some(cost);
        self
    }

    /// Opt-in per-job metrics label (`job_label`), 1-64 characters of
    /// `A-Z a-z 0-9 _ : . -`.
    pub fn metrics_label(mut self, label: impl Into<String>) -> Self {
        self.spec.metrics_label = Some(label.into());
        self
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The definition as it will be stored.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Checks every field as a write would ([`JobSpec::validate_new`] at
    /// the current time), without a store and without checking that the
    /// handler is registered.
    pub fn check(&self) -> Result<(), shardcron_core::JobValidationError> {
        self.spec.validate_new(crate::jobs::now_ms()).map(|_| ())
    }
}

impl From<Job> for JobSpec {
    fn from(job: Job) -> Self {
        job.spec
    }
}

impl From<JobSpec> for Job {
    fn from(spec: JobSpec) -> Self {
        Self { spec }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_is_an_every_schedule_in_ms() {
        let job = Job::every("a", Duration::from_millis(1500)).handler("h");
        assert_eq!(job.spec().schedule, "@every 1500ms");
        assert!(job.check().is_ok());
    }

    #[test]
    fn a_bad_field_is_named_by_the_shared_validation() {
        let err = Job::cron("a", "0 0 31 2 *")
            .handler("h")
            .check()
            .expect_err("never fires");
        assert_eq!(err.field, "schedule");
        let err = Job::cron("a", "* * * * *").check().expect_err("no handler");
        assert_eq!(err.field, "handler");
    }
}
