//! Response bodies of the API and OpenAPI mirrors of core types.
//!
//! The core [`JobSpec`] lives in a crate that knows nothing about OpenAPI,
//! so its schema is described here by [`JobSpecSchema`], a mirror used only
//! for documentation (published under the name `JobSpec`). A test compares
//! the mirror's properties with the keys the real type serializes and the
//! keys the body parser accepts, so the mirror cannot silently drift. Run
//! records and the status report are documented as objects whose shape is
//! that of `shardcron runs --json` and `shardcron status --json`.

use serde::Serialize;
use shardcron_coord::{RunRecord, StoredJob};
use shardcron_core::JobSpec;
use utoipa::ToSchema;

/// A stored job: its definition, version (also the `ETag`) and last write.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobResponse {
    /// The job definition.
    #[schema(value_type = JobSpecSchema)]
    pub job: JobSpec,
    /// Version; changes on every write and is never reused.
    pub version: u64,
    /// Server time of the last write, Unix ms.
    pub updated_ms: i64,
}

impl From<StoredJob> for JobResponse {
    fn from(stored: StoredJob) -> Self {
        Self {
            job: stored.spec,
            version: stored.version,
            updated_ms: stored.updated_ms,
        }
    }
}

/// One page of job ids, in lexicographic order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Job ids of this page.
    pub jobs: Vec<String>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A queued manual fire.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TriggerResponse {
    /// Fire id, `job@scheduled_ms` (the handler's idempotency key).
    pub fire_id: String,
    /// Scheduled instant of the fire, Unix ms.
    pub scheduled_ms: i64,
}

/// Recent runs, most recent first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunsResponse {
    /// Run records as `shardcron runs --json` prints them.
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<RunRecord>,
}

/// Documentation mirror of the core `JobSpec` (see the module docs).
#[derive(ToSchema)]
#[schema(as = JobSpec)]
#[allow(dead_code)]
pub struct JobSpecSchema {
    /// Job id, 1..=200 bytes of `A-Z a-z 0-9 _ - . : /`. Optional in a PUT
    /// body; if given it must equal the path's id.
    id: Option<String>,
    /// Cron expression (5 or 6 fields), `@hourly`-style macro or `@every 5s`.
    #[schema(example = "@every 5m")]
    schedule: String,
    /// IANA time zone of the schedule (default `UTC`).
    #[schema(example = "Europe/Berlin")]
    tz: Option<String>,
    /// Handler name; must be registered on the node (`exec`, `http`, ...).
    #[schema(example = "exec")]
    handler: String,
    /// Handler arguments (e.g. `{"command": "..."}` for `exec`), at most 32 KiB of JSON.
    #[schema(value_type = Option<Object>)]
    args: Option<serde_json::Value>,
    /// Longest one attempt may run (humantime, e.g. `30s`); none by default.
    #[schema(example = "30s")]
    timeout: Option<String>,
    /// Retries of failed attempts.
    retry: Option<RetrySchema>,
    /// What to do when the previous run is still in flight.
    overlap: Option<OverlapSchema>,
    /// What to do with missed fires.
    misfire: Option<MisfireSchema>,
    /// How old a missed fire may be and still run (humantime, default `1m`).
    #[schema(example = "1m")]
    misfire_grace: Option<String>,
    /// A paused job keeps its definition but does not fire.
    paused: Option<bool>,
    /// Opt-in per-job metrics label (`job_label` on fire metrics).
    #[schema(example = "billing-nightly")]
    metrics_label: Option<String>,
}

/// Documentation mirror of the core `RetryPolicy`.
#[derive(ToSchema)]
#[schema(as = RetryPolicy)]
#[allow(dead_code)]
pub struct RetrySchema {
    /// Extra attempts after the first failure (0..=100).
    max_retries: Option<u32>,
    /// Delay before the first retry (humantime, default `1s`).
    backoff: Option<String>,
    /// Upper bound of the delay between attempts (humantime, default `1m`).
    max_backoff: Option<String>,
}

/// Documentation mirror of the core `OverlapPolicy`.
#[derive(ToSchema)]
#[schema(as = OverlapPolicy, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum OverlapSchema {
    /// Skip the new fire (default).
    Skip,
    /// Run both.
    Allow,
    /// Keep one pending fire.
    QueueOne,
}

/// Documentation mirror of the core `MisfirePolicy`.
#[derive(ToSchema)]
#[schema(as = MisfirePolicy, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MisfireSchema {
    /// Run every missed fire within the grace (default).
    CatchUp,
    /// Run the latest missed fire once.
    RunOnce,
    /// Run none of them.
    Skip,
}
