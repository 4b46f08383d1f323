//! The metrics every fire records, registered once per node instead of once
//! per fire.
//!
//! A metric macro (`histogram!`, `counter!`, `gauge!`) asks the installed
//! recorder for the series each time it runs: with the Prometheus recorder
//! `shardcron worker` installs, that is a hash of the name and labels and a
//! lookup in the recorder's registry behind a lock shared by both runtime
//! threads. A fire records five series (its placement when claimed, then
//! lateness, duration, outcome, runs in flight, the last twice), and every
//! turn of the node loop sets two gauges, so at the top of a busy second those lookups are
//! paid tens of thousands of times while later fires of the same second wait
//! to start. The handles are therefore registered when the node is built and
//! used directly afterwards: a record is then an atomic operation on the
//! series itself.
//!
//! A handle belongs to the recorder it was registered with. A recorder
//! installed after the node was built (an embedding service may install its
//! own late) would never see a series recorded through handles of the one
//! before, so every use first checks that the recorder in force is still
//! the one the handles came from, and goes through the macros otherwise.
//! Series with a job's opt-in label (`metrics_label`) are unbounded in
//! number and always go through the macros.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Recorder};
use shardcron_coord::RunOutcome;

use crate::metrics as m;

/// The placement of every fire of a sharded job.
pub const SHARDED: &str = "sharded";

/// The identity of the recorder in force for this thread: its address.
fn recorder_in_force() -> usize {
    metrics::with_recorder(|recorder| (recorder as *const dyn Recorder).cast::<()>() as usize)
}

/// Handles of the series every fire records, and the recorder they belong
/// to.
pub struct FireMetrics {
    recorder: usize,
    lateness: Histogram,
    duration: Histogram,
    succeeded: Counter,
    in_flight: Gauge,
    claimed_sharded: Counter,
    waiting: Gauge,
    claimed_ahead: Gauge,
}

impl FireMetrics {
    /// Registers the handles with the recorder in force now.
    pub fn register() -> Self {
        Self {
            recorder: recorder_in_force(),
            lateness: histogram!(m::FIRE_LATENESS_SECONDS),
            duration: histogram!(m::RUN_DURATION_SECONDS),
            succeeded: counter!(m::FIRES_TOTAL, "outcome" => RunOutcome::Succeeded.as_str()),
            in_flight: gauge!(m::RUNS_IN_FLIGHT),
            claimed_sharded: counter!(m::FIRES_BY_PLACEMENT_TOTAL, "placement" => SHARDED),
            waiting: gauge!(m::RUNS_WAITING),
            claimed_ahead: gauge!(m::FIRES_CLAIMED_AHEAD),
        }
    }

    /// Whether the handles belong to the recorder in force.
    fn current(&self) -> bool {
        self.recorder == recorder_in_force()
    }

    /// Records a start `ms` after the fire's instant.
    pub fn lateness(&self, ms: i64, job_label: Option<&str>) {
        if job_label.is_none() && self.current() {
            self.lateness.record(ms.max(0) as f64 / 1000.0);
        } else {
            m::lateness(ms, job_label);
        }
    }

    /// Records a run's duration.
    pub fn run_duration(&self, d: Duration) {
        if self.current() {
            self.duration.record(d.as_secs_f64());
        } else {
            m::run_duration(d);
        }
    }

    /// Counts a fire's outcome.
    pub fn outcome(&self, outcome: RunOutcome, job_label: Option<&str>) {
        if outcome == RunOutcome::Succeeded && job_label.is_none() && self.current() {
            self.succeeded.increment(1);
        } else {
            m::fire_outcome(outcome, job_label);
        }
    }

    /// Counts a fire claimed by `placement` (`sharded` or `leader`).
    pub fn claimed(&self, placement: &'static str) {
        if placement == SHARDED && self.current() {
            self.claimed_sharded.increment(1);
        } else {
            counter!(m::FIRES_BY_PLACEMENT_TOTAL, "placement" => placement).increment(1);
        }
    }

    /// Sets the node's waiting line and its fires claimed ahead, as every
    /// turn of the node loop does.
    pub fn line(&self, waiting: usize, claimed_ahead: usize) {
        if self.current() {
            self.waiting.set(waiting as f64);
            self.claimed_ahead.set(claimed_ahead as f64);
        } else {
            gauge!(m::RUNS_WAITING).set(waiting as f64);
            gauge!(m::FIRES_CLAIMED_AHEAD).set(claimed_ahead as f64);
        }
    }

    /// Adjusts the runs in flight by `delta` (every node of a process adds
    /// into the one series).
    pub fn in_flight_add(&self, delta: f64) {
        if self.current() {
            self.in_flight.increment(delta);
        } else {
            gauge!(m::RUNS_IN_FLIGHT).increment(delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    /// Every series' value, from one snapshot (a snapshot drains the
    /// histograms).
    fn values(recorder: &DebuggingRecorder) -> Vec<(String, DebugValue)> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, .., value)| (key.key().name().to_owned(), value))
            .collect()
    }

    fn value_of<'a>(values: &'a [(String, DebugValue)], name: &str) -> Option<&'a DebugValue> {
        values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    #[test]
    fn a_recorder_installed_after_the_handles_still_gets_every_series() {
        // Registered while no recorder is in force: the handles are no-ops.
        let fire_metrics = FireMetrics::register();
        let recorder = Arc::new(DebuggingRecorder::new());
        metrics::with_local_recorder(recorder.as_ref(), || {
            fire_metrics.lateness(250, None);
            fire_metrics.run_duration(Duration::from_millis(5));
            fire_metrics.outcome(RunOutcome::Succeeded, None);
            fire_metrics.in_flight_add(3.0);
            fire_metrics.claimed(SHARDED);
            fire_metrics.line(7, 9);
        });
        let values = values(&recorder);
        assert_eq!(
            value_of(&values, m::FIRE_LATENESS_SECONDS),
            Some(&DebugValue::Histogram(vec![0.25.into()]))
        );
        assert_eq!(
            value_of(&values, m::RUN_DURATION_SECONDS),
            Some(&DebugValue::Histogram(vec![0.005.into()]))
        );
        assert_eq!(
            value_of(&values, m::FIRES_TOTAL),
            Some(&DebugValue::Counter(1))
        );
        assert_eq!(
            value_of(&values, m::RUNS_IN_FLIGHT),
            Some(&DebugValue::Gauge(3.0.into()))
        );
        assert_eq!(
            value_of(&values, m::FIRES_BY_PLACEMENT_TOTAL),
            Some(&DebugValue::Counter(1))
        );
        assert_eq!(
            value_of(&values, m::RUNS_WAITING),
            Some(&DebugValue::Gauge(7.0.into()))
        );
        assert_eq!(
            value_of(&values, m::FIRES_CLAIMED_AHEAD),
            Some(&DebugValue::Gauge(9.0.into()))
        );
    }

    #[test]
    fn handles_of_the_recorder_in_force_record_into_it() {
        let recorder = Arc::new(DebuggingRecorder::new());
        metrics::with_local_recorder(recorder.as_ref(), || {
            let fire_metrics = FireMetrics::register();
            assert!(fire_metrics.current());
            fire_metrics.outcome(RunOutcome::Succeeded, None);
            fire_metrics.outcome(RunOutcome::Succeeded, None);
            fire_metrics.outcome(RunOutcome::Failed, None);
        });
        let snapshot = recorder.snapshotter().snapshot().into_vec();
        let count = |outcome: &str| {
            snapshot.iter().find_map(|(key, .., value)| {
                let labelled = key
                    .key()
                    .labels()
                    .any(|l| l.key() == "outcome" && l.value() == outcome);
                (key.key().name() == m::FIRES_TOTAL && labelled).then_some(value)
            })
        };
        assert_eq!(count("succeeded"), Some(&DebugValue::Counter(2)));
        assert_eq!(count("failed"), Some(&DebugValue::Counter(1)));
    }
}
