//! Response bodies of the API and the OpenAPI schemas of what it accepts.
//!
//! The core [`JobSpec`] lives in a crate that knows nothing about OpenAPI,
//! so its schemas are described here by documentation-only mirrors. The
//! document promises no more than the server accepts: every pattern, bound
//! and enum below is a subset of what validation lets through, so a request
//! the document calls valid is never refused for its shape (tests check each
//! pattern's forms against the real validation). Where the server accepts
//! more than a pattern can say (the full cron syntax, any humantime
//! duration, any URL), the description says so.
//!
//! A `PUT` body is one of the [`JobBody`] forms: the stored form (`handler`
//! + `args`) for each handler, or a job file entry (`exec` or `http`). The
//!   handler-dependent parts (which forms exist, the names of other handlers,
//!   the misfire-grace limit) are filled in per server by
//!   [`super::openapi::document`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use shardcron_coord::{RunRecord, StoredJob};
use shardcron_core::{Delivery, JobSpec, Placement};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Job ids: what `validate_job_id` accepts.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.:/-]{1,200}$";

/// Schedules the document guarantees: `@every` in whole s/m/h, the `@`
/// macros, and 5-field cron expressions whose every field combination fires
/// at least once a year (day of month at most 28, and day of month and day
/// of week not restricted together).
pub const SCHEDULE_PATTERN: &str = concat!(
    "^(@every [1-9][0-9]{0,3}(s|m|h)",
    "|@(yearly|annually|monthly|weekly|daily|midnight|hourly)",
    "|(\\*|\\*/([1-9]|[1-5][0-9])|[1-5]?[0-9]) ",
    "(\\*|\\*/([1-9]|1[0-9]|2[0-3])|1?[0-9]|2[0-3]) ",
    "(\\* (\\*|[1-9]|1[0-2]) (\\*|[0-7])|([1-9]|1[0-9]|2[0-8]) (\\*|[1-9]|1[0-2]) \\*))$"
);

/// Positive durations the document guarantees (humantime accepts more).
pub const DURATION_PATTERN: &str = "^[1-9][0-9]{0,3}(s|m|h)$";

/// Misfire graces below one minute; the served document widens it to the
/// whole minutes below the node's claim retention.
pub const GRACE_PATTERN: &str = "^([0-9]|[1-5][0-9])s$";

/// Metrics labels.
pub const LABEL_PATTERN: &str = "^[A-Za-z0-9_:.-]{1,64}$";

/// An `If-Match` value: a version (quoted or not) or `*`.
pub const IF_MATCH_PATTERN: &str = "^(\\*|[1-9][0-9]{0,18}|\"[1-9][0-9]{0,18}\")$";

/// A shell command: not blank, no NUL.
pub const COMMAND_PATTERN: &str = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$";

/// `http` URLs the document guarantees (the server takes any http(s) URL
/// with a host).
pub const URL_PATTERN: &str = concat!(
    "^https?://[a-z][a-z0-9]{0,30}(\\.[a-z][a-z0-9]{0,30}){0,3}",
    "(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,40}){0,4}$"
);

/// A stored job: its definition, version (also the `ETag`) and last write.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobResponse {
    /// The job definition.
    #[schema(value_type = JobSpecSchema)]
    pub job: JobSpec,
    /// Version; changes on every write and is never reused.
    #[schema(minimum = 1)]
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

/// One job of a list page: what an operator scans for.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// Schedule expression.
    pub schedule: String,
    /// Time zone of the schedule.
    pub tz: String,
    /// Handler name.
    pub handler: String,
    /// Whether a fire claimed by a node that dies is lost or run again.
    #[schema(value_type = DeliverySchema)]
    pub delivery: Delivery,
    /// Where the job's fires run.
    #[schema(value_type = PlacementSchema)]
    pub placement: Placement,
    /// Whether the job is paused.
    pub paused: bool,
    /// Version (the job's `ETag`).
    #[schema(minimum = 1)]
    pub version: u64,
    /// Next scheduled fire after the server's clock, Unix ms; null when
    /// paused or when the schedule has no later fire.
    pub next_fire_ms: Option<i64>,
}

/// One page of jobs, in lexicographic order of their ids.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Jobs of this page.
    pub jobs: Vec<JobSummary>,
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
    #[schema(value_type = Vec<RunRecordSchema>)]
    pub runs: Vec<RunRecord>,
}

/// Documentation mirror of a run record (`shardcron runs --json`).
#[derive(ToSchema)]
#[schema(as = RunRecord)]
#[allow(dead_code)]
pub struct RunRecordSchema {
    /// Job id.
    job_id: String,
    /// Fire id (`job@scheduled_ms`).
    fire_id: String,
    /// Node that ran (or skipped) it.
    node_id: String,
    /// Shard of the job.
    shard: u32,
    /// Fencing token under which it was claimed (0 if never claimed).
    fencing_token: u64,
    /// Scheduled instant, Unix ms.
    scheduled_ms: i64,
    /// Start of the first attempt, Unix ms.
    started_ms: i64,
    /// End of the last attempt, Unix ms.
    finished_ms: i64,
    /// Attempts made.
    attempts: u32,
    /// How it ended.
    outcome: RunOutcomeSchema,
    /// Error message, if any.
    #[schema(required = false)]
    error: String,
    /// Output detail (e.g. the tail of a command's output), if any.
    #[schema(required = false)]
    detail: String,
}

/// Documentation mirror of a run's outcome.
#[derive(ToSchema)]
#[schema(as = RunOutcome, rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RunOutcomeSchema {
    /// The handler returned success.
    Succeeded,
    /// The handler returned an error on its last attempt.
    Failed,
    /// The last attempt exceeded the job's timeout.
    TimedOut,
    /// The handler panicked on its last attempt.
    Panicked,
    /// Cancelled: the lease was lost or the node stopped.
    Cancelled,
    /// Not started: the previous run was still in flight.
    SkippedOverlap,
    /// Not started: older than the misfire grace, or coalesced by policy.
    Misfired,
    /// Not started: no handler of that name on the node.
    UnknownHandler,
}

/// Documentation mirror of the stored core `JobSpec`, as responses carry it.
#[derive(ToSchema)]
#[schema(as = JobSpec)]
#[allow(dead_code)]
pub struct JobSpecSchema {
    /// Job id, 1..=200 bytes of `A-Z a-z 0-9 _ - . : /`.
    id: String,
    /// Cron expression (5, 6 or 7 fields), `@hourly`-style macro or `@every 5s`.
    schedule: String,
    /// IANA time zone of the schedule.
    tz: String,
    /// Handler name.
    handler: String,
    /// Handler arguments; absent when the handler takes none.
    #[schema(required = false, value_type = Object)]
    args: serde_json::Value,
    /// Longest one attempt may run (humantime); absent: no limit.
    #[schema(required = false)]
    timeout: String,
    /// Retries of failed attempts; absent: none.
    #[schema(required = false)]
    retry: StoredRetrySchema,
    /// What to do when the previous run is still in flight.
    overlap: OverlapSchema,
    /// What to do with missed fires.
    misfire: MisfireSchema,
    /// How old a missed fire may be and still run (humantime).
    misfire_grace: String,
    /// A paused job keeps its definition but does not fire.
    paused: bool,
    /// Whether a fire claimed by a node that dies is lost
    /// (`at_most_once`) or run again by the shard's next owner
    /// (`at_least_once`).
    delivery: DeliverySchema,
    /// Where the job's fires run; absent: `sharded`.
    #[schema(required = false)]
    placement: PlacementSchema,
    /// Relative cost of one run, for placement; absent: 1.
    #[schema(required = false, exclusive_minimum = 0, maximum = 10000)]
    cost: f64,
    /// Per-job metrics label, if any.
    #[schema(required = false)]
    metrics_label: String,
}

/// The core `RetryPolicy` as responses carry it (durations in humantime's
/// own format, e.g. `2h 42m 26s`).
#[derive(ToSchema)]
#[schema(as = StoredRetryPolicy)]
#[allow(dead_code)]
pub struct StoredRetrySchema {
    /// Extra attempts after the first failure.
    max_retries: u32,
    /// Delay before the first retry.
    backoff: String,
    /// Upper bound of the delay between attempts.
    max_backoff: String,
}

/// Documentation mirror of the core `RetryPolicy`, as requests send it.
#[derive(ToSchema)]
#[schema(as = RetryPolicy)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RetrySchema {
    /// Extra attempts after the first failure.
    #[schema(required = false, minimum = 0, maximum = 100)]
    max_retries: u32,
    /// Delay before the first retry (humantime, default `1s`).
    #[schema(required = false, pattern = "^[0-9]{1,4}(s|m|h)$")]
    backoff: String,
    /// Upper bound of the delay between attempts (humantime, default `1m`).
    #[schema(required = false, pattern = "^[0-9]{1,4}(s|m|h)$")]
    max_backoff: String,
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

// Documentation mirror of the core `Delivery`; its doc comment is the
// description the document gives the field.
/// What happens to a fire claimed by a node that dies (or loses its shard's
/// lease) before the fire ends. `at_most_once` (default): a fire is never
/// started twice, and such a fire is lost. `at_least_once`: the shard's next
/// owner runs it again within the job's `misfire_grace`, with the same fire
/// id and a higher attempt number, so a fire may run twice and the handler
/// must be idempotent (de-duplicate by fire id).
#[derive(ToSchema)]
#[schema(as = Delivery, rename_all = "snake_case", default = "at_most_once")]
#[allow(dead_code)]
pub enum DeliverySchema {
    /// Never started twice; lost if its node dies (default).
    AtMostOnce,
    /// Run again by the next owner if its node dies.
    AtLeastOnce,
}

// Documentation mirror of the core `Placement`; its doc comment is the
// description the document gives the field.
/// Where a job's fires run. `sharded` (default): on the node the ring gives
/// the job's shard to, so jobs spread over the fleet. `leader`: every fire on
/// the fleet's one elected leader (primary/standby: another node takes over
/// when it leaves, at once, or dies, within the lease TTL plus a heartbeat).
/// `broadcast`: every fire on every live member, each run under the fire id
/// `job@ms/node`; a member that joins starts with the next fire and one that
/// was down does not catch up.
#[derive(ToSchema)]
#[schema(as = Placement, rename_all = "snake_case", default = "sharded")]
#[allow(dead_code)]
pub enum PlacementSchema {
    /// On the node that owns the job's shard (default).
    Sharded,
    /// On the elected leader.
    Leader,
    /// On every live member.
    Broadcast,
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

/// IANA time zone names of the bundled tz database.
pub struct TimeZoneSchema;

impl PartialSchema for TimeZoneSchema {
    fn schema() -> RefOr<Schema> {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .description(Some("IANA time zone name (case-sensitive), default `UTC`"))
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for TimeZoneSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TimeZone")
    }
}

/// The one `If-None-Match` value understood: `*`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum IfNoneMatch {
    /// Create only.
    #[schema(rename = "*")]
    Any,
}

/// `exec` handler name.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ExecName {
    /// The `exec` handler.
    Exec,
}

/// `http` handler name.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum HttpName {
    /// The `http` handler.
    Http,
}

/// Arguments of the `exec` handler.
#[derive(ToSchema)]
#[schema(as = ExecArgs)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ExecArgsSchema {
    /// Shell command, run as `sh -c COMMAND`; not blank, no NUL.
    #[schema(pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")]
    command: String,
    /// Extra environment variables (names without `=`).
    #[schema(required = false)]
    env: BTreeMap<String, String>,
    /// Working directory; the worker's own when absent.
    #[schema(required = false, min_length = 1)]
    cwd: String,
    /// Bytes kept from the end of stdout and of stderr each.
    #[schema(required = false, minimum = 0, maximum = 1_048_576)]
    output_tail_bytes: u64,
}

/// Arguments of the `http` handler.
#[derive(ToSchema)]
#[schema(as = HttpArgs)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct HttpArgsSchema {
    /// Target URL (http or https, with a host).
    #[schema(
        pattern = "^https?://[a-z][a-z0-9]{0,30}(\\.[a-z][a-z0-9]{0,30}){0,3}(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,40}){0,4}$"
    )]
    url: String,
    /// Request method (an HTTP token; standard names in any case);
    /// `POST` with a body, `GET` otherwise.
    #[schema(required = false, pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$")]
    method: String,
    /// Extra request headers.
    #[schema(required = false)]
    headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[schema(required = false)]
    body: String,
    /// Accepted status, `N` (`N-M` ranges work too); `200-299` when absent.
    #[schema(required = false, pattern = "^[1-5][0-9][0-9]$")]
    expect_status: String,
    /// Request timeout (humantime).
    #[schema(required = false, pattern = "^[1-9][0-9]{0,3}(s|m|h)$")]
    timeout: String,
}

/// Defines a job body form: the fields every form shares plus its own.
macro_rules! job_form {
    ($(#[$meta:meta])* $name:ident as $schema:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(ToSchema)]
        #[schema(as = $schema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct $name {
            /// Job id; optional, and if given (not null) equal to the path's id.
            #[schema(required = false, nullable, pattern = "^[A-Za-z0-9_.:/-]{1,200}$")]
            id: Option<String>,
            /// Cron expression (5 fields listed here; the server also takes
            /// 6 and 7 fields, ranges, lists and names), `@hourly`-style
            /// macro or `@every 5m`. A schedule that never fires is refused.
            #[schema(pattern = "^(@every [1-9][0-9]{0,3}(s|m|h)|@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\\*|\\*/([1-9]|[1-5][0-9])|[1-5]?[0-9]) (\\*|\\*/([1-9]|1[0-9]|2[0-3])|1?[0-9]|2[0-3]) (\\* (\\*|[1-9]|1[0-2]) (\\*|[0-7])|([1-9]|1[0-9]|2[0-8]) (\\*|[1-9]|1[0-2]) \\*))$", example = "*/5 * * * *")]
            schedule: String,
            /// Time zone of the schedule (default `UTC`).
            #[schema(required = false)]
            tz: TimeZoneSchema,
            /// Longest one attempt may run (humantime; none by default).
            #[schema(required = false, pattern = "^[1-9][0-9]{0,3}(s|m|h)$")]
            timeout: String,
            /// What to do when the previous run is still in flight.
            #[schema(required = false)]
            overlap: OverlapSchema,
            /// What to do with missed fires.
            #[schema(required = false)]
            misfire: MisfireSchema,
            /// How old a missed fire may be and still run (humantime,
            /// default `1m`); shorter than the workers' claim retention.
            #[schema(required = false, pattern = "^([0-9]|[1-5][0-9])s$")]
            misfire_grace: String,
            /// A paused job keeps its definition but does not fire.
            #[schema(required = false)]
            paused: bool,
            /// Whether a fire claimed by a node that dies is lost
            /// (`at_most_once`, default) or run again by the shard's next
            /// owner (`at_least_once`; handlers must be idempotent).
            #[schema(required = false)]
            delivery: DeliverySchema,
            /// Where the job's fires run: `sharded` (default), `leader` or
            /// `broadcast`.
            #[schema(required = false)]
            placement: PlacementSchema,
            /// Relative cost of one run (default 1): placement balances
            /// expected fires per day times cost over the workers.
            #[schema(required = false, exclusive_minimum = 0, maximum = 10000)]
            cost: f64,
            /// Opt-in per-job metrics label.
            #[schema(required = false, pattern = "^[A-Za-z0-9_:.-]{1,64}$")]
            metrics_label: String,
            $($(#[$fmeta])* $field: $ty,)*
        }
    };
}

job_form! {
    /// A job run by the `exec` handler, in the stored form.
    ExecJob as ExecJob {
        /// `exec`.
        handler: ExecName,
        /// The command to run.
        args: ExecArgsSchema,
        /// Retries of failed attempts.
        #[schema(required = false)]
        retry: RetrySchema,
    }
}

job_form! {
    /// A job run by the `http` handler, in the stored form.
    HttpJob as HttpJob {
        /// `http`.
        handler: HttpName,
        /// The request to send.
        args: HttpArgsSchema,
        /// Retries of failed attempts.
        #[schema(required = false)]
        retry: RetrySchema,
    }
}

job_form! {
    /// A job file entry running a shell command (`exec` shorthand).
    ExecEntryJob as ExecEntry {
        /// Shell command (handler `exec`).
        #[schema(pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$")]
        exec: String,
        /// Retries after a failed attempt.
        #[schema(required = false, minimum = 0, maximum = 100)]
        retries: u32,
    }
}

job_form! {
    /// A job file entry calling a URL (`http` shorthand).
    HttpEntryJob as HttpEntry {
        /// The request to send (handler `http`).
        http: HttpArgsSchema,
        /// Retries after a failed attempt.
        #[schema(required = false, minimum = 0, maximum = 100)]
        retries: u32,
    }
}

job_form! {
    /// A job run by another handler registered on the node.
    CustomJob as CustomJob {
        /// Handler name (the served document lists them).
        handler: String,
        /// Handler arguments, checked by the handler.
        #[schema(required = false, value_type = Object)]
        args: serde_json::Value,
        /// Retries of failed attempts.
        #[schema(required = false)]
        retry: RetrySchema,
    }
}

/// The body of `PUT /v1/jobs/{id}`: the stored form (`handler` + `args`)
/// or a job file entry (`exec` or `http`, `retries`).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum JobBody {
    /// `exec` handler, stored form.
    Exec(ExecJob),
    /// `http` handler, stored form.
    Http(HttpJob),
    /// `exec` shorthand.
    ExecEntry(ExecEntryJob),
    /// `http` shorthand.
    HttpEntry(HttpEntryJob),
    /// Any other registered handler.
    Custom(CustomJob),
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn pattern_constants_match_the_field_attributes() {
        let doc = serde_json::to_value(JobBody::schema()).expect("json");
        assert!(doc.is_object());
        let exec = serde_json::to_value(ExecJob::schema()).expect("json");
        let props = &exec["properties"];
        assert_eq!(props["schedule"]["pattern"], SCHEDULE_PATTERN);
        assert_eq!(props["id"]["pattern"].as_str(), Some(ID_PATTERN));
        assert_eq!(props["timeout"]["pattern"], DURATION_PATTERN);
        assert_eq!(props["misfire_grace"]["pattern"], GRACE_PATTERN);
        assert_eq!(props["metrics_label"]["pattern"], LABEL_PATTERN);
        let args = serde_json::to_value(ExecArgsSchema::schema()).expect("json");
        assert_eq!(args["properties"]["command"]["pattern"], COMMAND_PATTERN);
        let http = serde_json::to_value(HttpArgsSchema::schema()).expect("json");
        assert_eq!(http["properties"]["url"]["pattern"], URL_PATTERN);
    }

    #[test]
    fn delivery_is_an_optional_enum_defaulting_to_at_most_once() {
        let delivery = serde_json::to_value(DeliverySchema::schema()).expect("json");
        assert_eq!(delivery["type"], "string", "{delivery}");
        let names: Vec<Value> = [Delivery::AtMostOnce, Delivery::AtLeastOnce]
            .into_iter()
            .map(|d| Value::from(d.as_str()))
            .collect();
        assert_eq!(delivery["enum"], Value::Array(names), "{delivery}");
        assert_eq!(
            delivery["default"],
            Delivery::default().as_str(),
            "{delivery}"
        );
        assert!(
            delivery["description"]
                .as_str()
                .is_some_and(|d| d.contains("at_least_once")),
            "{delivery}"
        );
        for (schema, required) in [
            (ExecJob::schema(), false),
            (HttpJob::schema(), false),
            (ExecEntryJob::schema(), false),
            (HttpEntryJob::schema(), false),
            (CustomJob::schema(), false),
            (JobSpecSchema::schema(), true),
            (JobSummary::schema(), true),
        ] {
            let schema = serde_json::to_value(schema).expect("json");
            let field = &schema["properties"]["delivery"];
            assert_eq!(field["$ref"], "#/components/schemas/Delivery", "{schema}");
            let listed = schema["required"]
                .as_array()
                .expect("required")
                .contains(&"delivery".into());
            assert_eq!(listed, required, "{schema}");
        }
    }

    #[test]
    fn cost_bounds_match_the_validation() {
        let max = shardcron_core::load::MAX_COST;
        for schema in [
            ExecJob::schema(),
            HttpJob::schema(),
            ExecEntryJob::schema(),
            HttpEntryJob::schema(),
            CustomJob::schema(),
            JobSpecSchema::schema(),
        ] {
            let schema = serde_json::to_value(schema).expect("json");
            let cost = &schema["properties"]["cost"];
            assert_eq!(cost["type"], "number", "{schema}");
            assert_eq!(cost["exclusiveMinimum"].as_f64(), Some(0.0), "{schema}");
            assert_eq!(cost["maximum"].as_f64(), Some(max), "{schema}");
            let required = schema["required"].as_array().expect("required");
            assert!(!required.contains(&"cost".into()), "{schema}");
        }
        // Both ends as the core validates them.
        let mut spec = JobSpec::new("j", "@hourly", "noop");
        spec.cost = Some(max);
        spec.validate().expect("the maximum is valid");
        spec.cost = Some(f64::MIN_POSITIVE);
        spec.validate().expect("any positive cost is valid");
        spec.cost = Some(0.0);
        assert_eq!(spec.validate().expect_err("0").field, "cost");
    }
}

#[cfg(test)]
mod pattern_tests {
    //! Every form a pattern admits passes the server's own validation, so
    //! the document never calls a refused request valid.

    use shardcron_core::JobSpec;

    fn minutes() -> Vec<String> {
        let mut v = vec!["*".to_owned()];
        v.extend((1..=59).map(|n| format!("*/{n}")));
        v.extend((0..=59).map(|n| n.to_string()));
        v.extend((0..=9).map(|n| format!("0{n}")));
        v
    }

    fn hours() -> Vec<String> {
        let mut v = vec!["*".to_owned()];
        v.extend((1..=23).map(|n| format!("*/{n}")));
        v.extend((0..=23).map(|n| n.to_string()));
        v.extend((0..=9).map(|n| format!("0{n}")));
        v
    }

    fn months() -> Vec<String> {
        let mut v = vec!["*".to_owned()];
        v.extend((1..=12).map(|n| n.to_string()));
        v
    }

    /// 2025-01-01 and 2030-12-31, 2036-06-15, 2095-03-01 (Unix ms).
    const NOWS: [i64; 4] = [
        1_735_689_600_000,
        1_924_905_600_000,
        2_097_187_200_000,
        3_949_948_800_000,
    ];

    fn accepted(schedule: &str) {
        for now in NOWS {
            let spec = JobSpec::new("j", schedule, "noop");
            if let Err(e) = spec.validate_new(now) {
                panic!("{schedule:?} at {now}: {e}");
            }
        }
    }

    #[test]
    fn every_cron_form_of_the_pattern_is_accepted() {
        for m in minutes() {
            accepted(&format!("{m} * * * *"));
        }
        for h in hours() {
            accepted(&format!("0 {h} * * *"));
        }
        for mon in months() {
            for dow in ["*", "0", "1", "2", "3", "4", "5", "6", "7"] {
                accepted(&format!("0 0 * {mon} {dow}"));
            }
            for dom in 1..=28 {
                accepted(&format!("0 0 {dom} {mon} *"));
            }
        }
        for m in [
            "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ] {
            accepted(&format!("@{m}"));
        }
        for unit in ["s", "m", "h"] {
            for n in [1, 9, 10, 999, 9999] {
                accepted(&format!("@every {n}{unit}"));
            }
        }
    }

    #[test]
    fn durations_of_the_pattern_parse() {
        for unit in ["s", "m", "h"] {
            for n in [1, 9, 10, 999, 9999] {
                let text = format!("{n}{unit}");
                let d = humantime::parse_duration(&text).expect("duration");
                assert!(!d.is_zero(), "{text}");
            }
        }
    }
}
