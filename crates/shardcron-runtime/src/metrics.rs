//! Metric names and recording helpers.
//!
//! Names follow Prometheus conventions (base units, `_total` counters,
//! `_seconds` histograms) and live in one place so dashboards and alert rules
//! can be checked against them. Labels are bounded: outcome, operation, never
//! the job id (unbounded cardinality).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};
use shardcron_coord::RunOutcome;

/// Fires by outcome.
pub const FIRES_TOTAL: &str = "shardcron_fires_total";
/// Start minus scheduled time.
pub const FIRE_LATENESS_SECONDS: &str = "shardcron_fire_lateness_seconds";
/// Run duration (all attempts).
pub const RUN_DURATION_SECONDS: &str = "shardcron_run_duration_seconds";
/// Runs in flight.
pub const RUNS_IN_FLIGHT: &str = "shardcron_runs_in_flight";
/// Members this node sees.
pub const MEMBERS: &str = "shardcron_members";
/// Shards the ring assigns to this node.
pub const SHARDS_DESIRED: &str = "shardcron_shards_desired";
/// Expected fires per minute (times job cost) of the shards the placement
/// assigns to this node: its share of the fleet's work.
pub const EXPECTED_FIRES_PER_MINUTE: &str = "shardcron_expected_fires_per_minute";
/// Shards whose lease this node holds.
pub const SHARDS_OWNED: &str = "shardcron_shards_owned";
/// Jobs in owned shards.
pub const JOBS_OWNED: &str = "shardcron_jobs_owned";
/// Lease acquisitions.
pub const LEASE_ACQUISITIONS_TOTAL: &str = "shardcron_lease_acquisitions_total";
/// Leases lost (renewal refused, local validity expired, claim refused).
pub const LEASE_LOSSES_TOTAL: &str = "shardcron_lease_losses_total";
/// Renewal round trips that failed (store unreachable).
pub const LEASE_RENEWAL_FAILURES_TOTAL: &str = "shardcron_lease_renewal_failures_total";
/// Ring recomputations that changed this node's shards.
pub const REBALANCES_TOTAL: &str = "shardcron_rebalances_total";
/// Fires another node had already claimed.
pub const CLAIM_CONFLICTS_TOTAL: &str = "shardcron_claim_conflicts_total";
/// Late fires run by catch-up.
pub const CATCHUP_FIRES_TOTAL: &str = "shardcron_catchup_fires_total";
/// Time from the ring assigning a shard to this node until it holds the lease.
pub const SHARD_HANDOFF_SECONDS: &str = "shardcron_shard_handoff_seconds";
/// Time from a job write (server time) until the owner applied it.
pub const JOB_PROPAGATION_SECONDS: &str = "shardcron_job_propagation_seconds";
/// Fires not run because they were older than the misfire grace or coalesced.
pub const MISFIRES_TOTAL: &str = "shardcron_misfires_total";
/// Coordination errors by operation.
pub const REDIS_ERRORS_TOTAL: &str = "shardcron_redis_errors_total";
/// Coordination round-trip latency by operation.
pub const REDIS_ROUND_TRIP_SECONDS: &str = "shardcron_redis_round_trip_seconds";

/// 1 while this node is the fleet's leader (holds the leader shard's
/// lease), else 0.
pub const LEADER: &str = "shardcron_leader";
/// Times this node became the leader; summed over the fleet, the number of
/// leader changes.
pub const LEADER_CHANGES_TOTAL: &str = "shardcron_leader_changes_total";
/// Fires this node started or dispatched, by job placement (`sharded`,
/// `leader`, `broadcast`).
pub const FIRES_BY_PLACEMENT_TOTAL: &str = "shardcron_fires_by_placement_total";

/// Claimed fires that did not run, by reason (`lease_ended_before_start`,
/// `unresolved_claim`, `job_removed`, `shutdown`): each is also in the run
/// history, so a loss is never silent.
pub const FIRES_LOST_TOTAL: &str = "shardcron_fires_lost_total";
/// Claimed fires waiting to start on this node (permit, overlap queue or
/// catch-up line).
pub const RUNS_WAITING: &str = "shardcron_runs_waiting";
/// Fires claimed ahead of their instant, waiting on this node for it.
pub const FIRES_CLAIMED_AHEAD: &str = "shardcron_fires_claimed_ahead";
/// 1 while this node's waiting line has stayed full for longer than the
/// on-time tolerance: it claims nothing new, and the fires it leaves run
/// late (catch-up) or count as misfires by policy.
pub const OVERLOADED: &str = "shardcron_overloaded";
/// Times claiming paused because the waiting line was full. A release of
/// many fires claimed ahead for one instant does this for as long as their
/// runs take to start; only a line that stays full is overload.
pub const CLAIM_PAUSES_TOTAL: &str = "shardcron_claim_pauses_total";
/// Stored jobs in owned shards that this node cannot decode (skipped).
pub const JOBS_UNREADABLE: &str = "shardcron_jobs_unreadable";
/// Fire claims refused because the store's clock says they are not yet due.
pub const CLAIMS_NOT_YET_DUE_TOTAL: &str = "shardcron_claims_not_yet_due_total";
/// `at_least_once` fires this node gave up without a terminal state (lease
/// ended, node stopping), left in the store for recovery.
pub const FIRES_ABANDONED_TOTAL: &str = "shardcron_fires_abandoned_total";
/// `at_least_once` fires this node took over from a holder that died or
/// abandoned them, by what became of them (`run`, `misfired`, `cancelled`).
pub const FIRES_RECOVERED_TOTAL: &str = "shardcron_fires_recovered_total";
/// Fires whose claim reply was lost, handed back to the shard's lease holder
/// once this node could no longer claim the shard, by whether the lost claim
/// had landed (`handed_back`) or not (`never_landed`).
pub const FIRES_HANDED_BACK_TOTAL: &str = "shardcron_fires_handed_back_total";

/// Registers descriptions (call once per process, after installing a recorder).
pub fn describe() {
    describe_gauge!(LEADER, "1 while this node is the fleet's leader, else 0.");
    describe_counter!(
        LEADER_CHANGES_TOTAL,
        "Times this node became the leader (summed over the fleet: leader changes)."
    );
    describe_counter!(
        FIRES_BY_PLACEMENT_TOTAL,
        "Fires dispatched on this node, by job placement."
    );
    describe_counter!(FIRES_TOTAL, "Fires by outcome.");
    describe_counter!(
        FIRES_ABANDONED_TOTAL,
        "at_least_once fires given up without a terminal state, left for recovery."
    );
    describe_counter!(
        FIRES_RECOVERED_TOTAL,
        "at_least_once fires taken over from a dead or abandoning holder, by result."
    );
    describe_counter!(
        FIRES_HANDED_BACK_TOTAL,
        "Fires whose claim reply was lost, handed back to the shard's holder, by whether the claim had landed."
    );
    describe_histogram!(
        FIRE_LATENESS_SECONDS,
        Unit::Seconds,
        "Start minus scheduled time of a fire."
    );
    describe_histogram!(
        RUN_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of a run, all attempts."
    );
    describe_gauge!(RUNS_IN_FLIGHT, "Runs in flight on this node.");
    describe_gauge!(MEMBERS, "Members this node sees.");
    describe_gauge!(SHARDS_DESIRED, "Shards the ring assigns to this node.");
    describe_gauge!(
        EXPECTED_FIRES_PER_MINUTE,
        "Expected fires per minute (times job cost) of the shards assigned to this node."
    );
    describe_gauge!(SHARDS_OWNED, "Shards whose lease this node holds.");
    describe_gauge!(JOBS_OWNED, "Jobs in the shards this node owns.");
    describe_counter!(LEASE_ACQUISITIONS_TOTAL, "Shard leases acquired.");
    describe_counter!(LEASE_LOSSES_TOTAL, "Shard leases lost.");
    describe_counter!(
        LEASE_RENEWAL_FAILURES_TOTAL,
        "Lease renewal round trips that failed."
    );
    describe_counter!(
        REBALANCES_TOTAL,
        "Ring changes that changed this node's shards."
    );
    describe_counter!(CLAIM_CONFLICTS_TOTAL, "Fires already claimed elsewhere.");
    describe_counter!(CATCHUP_FIRES_TOTAL, "Late fires run by catch-up.");
    describe_histogram!(
        SHARD_HANDOFF_SECONDS,
        Unit::Seconds,
        "Time from ring assignment to lease acquisition of a shard."
    );
    describe_histogram!(
        JOB_PROPAGATION_SECONDS,
        Unit::Seconds,
        "Time from a job write until its owner applied it."
    );
    describe_counter!(
        MISFIRES_TOTAL,
        "Fires not run: beyond the misfire grace or coalesced by policy."
    );
    describe_counter!(REDIS_ERRORS_TOTAL, "Coordination errors by operation.");
    describe_counter!(
        FIRES_LOST_TOTAL,
        "Claimed fires that did not run, by reason (each also recorded in the run history)."
    );
    describe_gauge!(RUNS_WAITING, "Claimed fires waiting to start on this node.");
    describe_gauge!(
        FIRES_CLAIMED_AHEAD,
        "Fires claimed ahead of their instant, waiting on this node for it."
    );
    describe_gauge!(
        OVERLOADED,
        "1 while this node's waiting line has stayed full for longer than the on-time tolerance."
    );
    describe_counter!(
        CLAIM_PAUSES_TOTAL,
        "Times claiming paused because the waiting line was full (not overload by itself)."
    );
    describe_gauge!(
        JOBS_UNREADABLE,
        "Stored jobs in owned shards this node cannot decode."
    );
    describe_counter!(
        CLAIMS_NOT_YET_DUE_TOTAL,
        "Fire claims refused because the store's clock says they are not yet due."
    );
    describe_histogram!(
        REDIS_ROUND_TRIP_SECONDS,
        Unit::Seconds,
        "Coordination round trips by operation."
    );
}

/// Label carrying a job's opt-in `metrics_label` (`job` is Prometheus' own).
pub const JOB_LABEL: &str = "job_label";

/// Counts a fire's outcome; with the job's opt-in label when it has one.
pub fn fire_outcome(outcome: RunOutcome, job_label: Option<&str>) {
    match job_label {
        None => counter!(FIRES_TOTAL, "outcome" => outcome.as_str()).increment(1),
        Some(l) => counter!(FIRES_TOTAL, "outcome" => outcome.as_str(), JOB_LABEL => l.to_owned())
            .increment(1),
    }
}

/// Records lateness in ms; with the job's opt-in label when it has one.
pub fn lateness(ms: i64, job_label: Option<&str>) {
    let seconds = ms.max(0) as f64 / 1000.0;
    match job_label {
        None => histogram!(FIRE_LATENESS_SECONDS).record(seconds),
        Some(l) => histogram!(FIRE_LATENESS_SECONDS, JOB_LABEL => l.to_owned()).record(seconds),
    }
}

/// Records a run's duration.
pub fn run_duration(d: Duration) {
    histogram!(RUN_DURATION_SECONDS).record(d.as_secs_f64());
}

/// Records one coordination round trip.
pub fn round_trip(op: &'static str, d: Duration, ok: bool) {
    histogram!(REDIS_ROUND_TRIP_SECONDS, "op" => op).record(d.as_secs_f64());
    if !ok {
        counter!(REDIS_ERRORS_TOTAL, "op" => op).increment(1);
    }
}

/// Counts a claimed fire that did not run.
pub fn fire_lost(reason: &'static str) {
    counter!(FIRES_LOST_TOTAL, "reason" => reason).increment(1);
}

/// Counts an `at_least_once` fire given up for recovery.
pub fn fire_abandoned() {
    counter!(FIRES_ABANDONED_TOTAL).increment(1);
}

/// Counts recovered `at_least_once` fires by what became of them.
pub fn fires_recovered(result: &'static str, n: usize) {
    if n > 0 {
        counter!(FIRES_RECOVERED_TOTAL, "result" => result).increment(n as u64);
    }
}
