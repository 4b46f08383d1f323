//! The `Coordinator` trait: every operation the runtime, CLI and API need from
//! the shared store, with one Redis implementation and one in-memory one.
//!
//! The trait is deliberately small and batch-oriented: renewals, acquisitions
//! and claims take many shards at once so an implementation can do them in one
//! round trip. Both implementations pass the same conformance suite, so the
//! in-memory one is a faithful stand-in for demos and unit tests of the runtime,
//! while every guarantee is also tested on a real Redis.

use std::time::Duration;

use async_trait::async_trait;
use shardcron_core::{JobSpec, PlacementRecord, RingConfig, ShardWeights};
use tokio::sync::broadcast;

use crate::error::CoordError;
use crate::model::{
    BatchOutcome, ClaimBatch, CloseFire, CoordEvent, HandBack, JobPage, LeaseGrant, LeaseInfo,
    MemberInfo, Membership, OpenFire, PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome,
    RunRecord, ShardJobs, StartedFire, StoredJob,
};

/// Result type of the coordination layer.
pub type CoordResult<T> = Result<T, CoordError>;

/// Shared state of a namespace: members, leases, claims, jobs and runs.
#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The namespace this coordinator works in.
    fn namespace(&self) -> &str;

    /// Ring settings of the namespace.
    fn ring_config(&self) -> RingConfig;

    /// Stores the ring settings on first use; fails with
    /// [`CoordError::ConfigMismatch`] if the namespace has other ones.
    async fn ensure_config(&self) -> CoordResult<()>;

    /// Server clock, Unix ms.
    async fn server_time_ms(&self) -> CoordResult<i64>;

    /// Registers or refreshes `member` for `ttl`, and re-asserts the ring
    /// settings in the same step (storing them if they were lost): fails with
    /// [`CoordError::ConfigMismatch`], registering nothing, if the namespace
    /// now has other ones. Returns the server time in Unix ms.
    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64>;

    /// Removes a member at once (graceful leave).
    async fn deregister(&self, node_id: &str) -> CoordResult<()>;

    /// Live members, in one round trip.
    async fn members(&self) -> CoordResult<Membership>;

    /// Live members and the shard weights placement balances, in one round
    /// trip: [`Coordinator::placement_inputs`] without the stored placement.
    async fn members_and_weights(
        &self,
        known_weights: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<(Membership, Option<ShardWeights>)> {
        let inputs = self
            .placement_inputs(known_weights, Some(u64::MAX), refresh)
            .await?;
        Ok((inputs.membership, inputs.weights))
    }

    /// Everything a node places shards by, in one round trip: the live
    /// members, the shard weights and the stored placement.
    ///
    /// Job writes keep the store's live weights exact; placement uses a
    /// snapshot of them that the store refreshes in this same step when the
    /// live weights changed and the last refresh is at least `refresh` old,
    /// so a burst of job writes moves shards once, and every node reads the
    /// same snapshot. The snapshot is returned only when its version differs
    /// from `known_weights`, the stored placement only when its version
    /// differs from `known_placement` (`None`: always; `Some(u64::MAX)`:
    /// never, no placement has that version).
    async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs>;

    /// Stores the next placement if the stored one still has version
    /// `expected` (0: none stored yet); returns the new version, or `None`
    /// (nothing written) if another node stored one first.
    async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>>;

    /// Tries to acquire the leases of `shards` for `holder`, in one round trip.
    /// A new grant's fencing token is greater than every token the shard had
    /// before, and at least the server time in microseconds, so tokens keep
    /// increasing even if the store lost its counter.
    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>>;

    /// Extends leases `(shard, token)` still held by `holder`, in one round trip.
    /// Returns, per lease, whether it was still ours.
    async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>>;

    /// Releases leases `(shard, token)` still held by `holder`; returns per lease
    /// whether it was released (false: it was no longer ours).
    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>>;

    /// Current holders of `shards`.
    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>>;

    /// Claims fires, one atomic check-and-set per batch, all batches in one
    /// round trip. A fire whose claim fails must never run. Per fire, in
    /// order: a lost earlier attempt of the caller's found in the claim key
    /// is taken over (`Claimed`); a job whose version changed is
    /// `JobChanged`; a fire later than server time plus
    /// [`crate::MAX_EARLY_CLAIM_MS`] is `NotYetDue`; otherwise the claim key
    /// is set if absent (scheduled fires must also be later than the job's
    /// watermark, which they advance). Claiming a trigger, or finding it
    /// claimed, removes it from the trigger queue.
    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>>;

    /// Creates or replaces a job, indexes it and updates its shard's live
    /// weight (the job's [`shardcron_core::Job::load_units`]), in one atomic
    /// step. With
    /// `expected_version` (0 = must not exist) the write happens only if the
    /// stored version matches.
    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob>;

    /// Reads one job.
    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>>;

    /// Removes a job, its index entry and its share of its shard's live
    /// weight in one atomic step; returns whether it existed.
    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool>;

    /// Queues an extra fire of a job now. Returns its scheduled ms (the fire
    /// id is `job@ms`; two triggers of one job never share a millisecond), or
    /// `None` if the job does not exist.
    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>>;

    /// Reads, without removing them, the queued triggers of shards whose
    /// lease `holder` holds under the given tokens. A trigger leaves the queue
    /// only inside the claim of its fire, so a lost reply or a crash between
    /// reading and claiming loses nothing. Triggers of jobs that no longer
    /// exist are dropped here.
    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>>;

    /// Job ids starting with `prefix`, after `after`, at most `limit`.
    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage>;

    /// Loads the jobs and last-fired times of several shards. A stored job
    /// that cannot be decoded is listed in [`ShardJobs::unreadable`] instead
    /// of failing the load.
    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>>;

    /// Current job versions of several shards, in one round trip.
    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>>;

    /// Appends `runs` (oldest first) to the capped run history: the
    /// namespace keeps its last `RUN_HISTORY_CAP` runs, each job its last
    /// `JOB_RUN_HISTORY_CAP` for as long as the job is defined (a deleted
    /// job's until its last run is `JOB_RUN_HISTORY_RETENTION_HOURS` old).
    /// A store writes any number of runs with a fixed number of commands.
    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()>;

    /// Removes the open entries of `at_least_once` fires that reached a
    /// terminal state, each only if it still names the closer's holder and
    /// token (one another node recovered meanwhile stays open for it).
    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()>;

    /// [`Coordinator::record_runs`] and [`Coordinator::close_fires`]
    /// together; a store overrides it to do both in one round trip, so a
    /// terminal state costs no round trip of its own.
    async fn record_and_close(&self, runs: &[RunRecord], closes: &[CloseFire]) -> CoordResult<()> {
        self.record_runs(runs).await?;
        self.close_fires(closes).await
    }

    /// Moves fires from `claimed` to `running`, where the store keeps a
    /// state per fire: only a fire still `claimed` under the given holder
    /// and token changes, so a late notice never undoes an outcome already
    /// written. One round trip. The default does nothing: the Redis and
    /// in-memory stores keep no state per fire beyond its claim record.
    async fn mark_running(&self, fires: &[StartedFire]) -> CoordResult<()> {
        let _ = fires;
        Ok(())
    }

    /// Whether the store keeps a state per fire, so that the runtime
    /// reports starts to [`Coordinator::mark_running`]. A store that does
    /// not (the default) costs the runtime nothing for them.
    fn keeps_fire_states(&self) -> bool {
        false
    }

    /// The open entries of `at_least_once` fires of several shards (claimed
    /// or recovered, not yet closed), in one round trip. Malformed entries
    /// are skipped.
    async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>>;

    /// Takes over open fires whose holder is gone, one atomic step per
    /// batch, all batches in one round trip: under the caller's live lease,
    /// each fire whose entry is still exactly as read is rewritten to name
    /// the caller with one more delivery, and its claim key is rewritten too
    /// (so a lost claim reply of the old holder can no longer take it
    /// over). An entry that changed is not recovered: no fire is recovered
    /// twice from the same entry.
    async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>>;

    /// Hands back fires whose claim replies `holder` never saw, all shards
    /// in one round trip, one atomic step per shard. Per fire: if its claim
    /// key holds one of the lost attempts (the claim landed, and the caller
    /// never started the fire), the key is rewritten so no attempt can take
    /// it over and the fire gets an abandoned open entry of delivery 0 (a
    /// tracked claim's own entry is marked abandoned), for the shard's lease
    /// holder to recover; `true`. A key that already reads as handed back by
    /// `holder` is `true` too (an earlier hand-back whose reply was lost).
    /// Anything else is `false` and writes nothing: the attempt never
    /// landed, or the fire is another claim's. Shards where something was
    /// handed back get a new version and a `JobsChanged` event.
    async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>>;

    /// Most recent runs first (in the order written), at most `limit`,
    /// optionally of one job.
    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>>;

    /// Subscribes to namespace events. A `Resync` event (or a lagged receiver)
    /// means events may have been missed.
    fn subscribe(&self) -> broadcast::Receiver<CoordEvent>;
}
