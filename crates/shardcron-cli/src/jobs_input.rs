//! Job definitions as users write them: `job put` flags, `job put --file`
//! (a JSON array or TOML `[[job]]` tables) and the config file's `[[job]]`s.
//!
//! The user-facing format is friendlier than the stored [`JobSpec`]: `exec =
//! "cmd"` or an `http` table instead of a handler name plus JSON args,
//! `retries` instead of a retry table. [`JobInput`] is that format, and
//! [`validate_all`] turns a batch of them into specs.
//!
//! A file is all-or-nothing: every entry is checked (fields, schedule, zone,
//! handler arguments via the handlers' own `validate_args`, duplicate ids)
//! before anything is written, and each problem is reported with the entry's
//! position, its id and the field, because "invalid value at line 40" is of
//! little help in a file of 200 jobs. To be able to name the field in every
//! case, entries are read key by key from a generic value instead of through
//! a derived deserializer (whose type errors do not say which key they are
//! about).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use shardcron_core::{Delivery, JobSpec, MisfirePolicy, OverlapPolicy};
use shardcron_handlers::{ExecArgs, HttpArgs, EXEC_HANDLER_NAME, HTTP_HANDLER_NAME};
use shardcron_runtime::HandlerRegistry;

use crate::exit::CliError;

/// Fields of a job entry, in documentation order.
pub const JOB_FIELDS: &[&str] = &[
    "id",
    "schedule",
    "exec",
    "http",
    "tz",
    "timeout",
    "retries",
    "misfire",
    "overlap",
    "misfire_grace",
    "paused",
    "delivery",
    "placement",
    "cost",
    "metrics_label",
];

/// Fields of an entry's `http` table (those of [`HttpArgs`]).
pub const HTTP_FIELDS: &[&str] = &[
    "url",
    "method",
    "headers",
    "body",
    "expect_status",
    "timeout",
];

/// One job as a user writes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobInput {
    /// Job id.
    pub id: String,
    /// Schedule expression.
    pub schedule: String,
    /// Shell command (handler `exec`).
    pub exec: Option<String>,
    /// Webhook (handler `http`).
    pub http: Option<HttpArgs>,
    /// IANA time zone (default `UTC`).
    pub tz: Option<String>,
    /// Attempt timeout, humantime (`30s`).
    pub timeout: Option<String>,
    /// Retries after a failed attempt.
    pub retries: Option<u32>,
    /// Misfire policy name (`catch_up`, `run_once`, `skip`).
    pub misfire: Option<String>,
    /// Overlap policy name (`skip`, `allow`, `queue_one`).
    pub overlap: Option<String>,
    /// Misfire grace, humantime.
    pub misfire_grace: Option<String>,
    /// Store the job paused.
    pub paused: bool,
    /// Delivery name (`at_most_once`, `at_least_once`).
    pub delivery: Option<String>,
    /// Placement name (`sharded`, `leader`, `broadcast`).
    pub placement: Option<String>,
    /// Relative cost of one run, for placement (default 1.0).
    pub cost: Option<f64>,
    /// Opt-in per-job metrics label.
    pub metrics_label: Option<String>,
}

/// Where a job definition came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `job put` flags.
    Flags,
    /// Entry number `index` (0-based) of a file.
    Entry {
        /// Position in the file, 0-based (shown 1-based).
        index: usize,
    },
}

/// A problem with one job definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobInputError {
    /// Where the job came from.
    pub origin: Origin,
    /// Its id, when it has one.
    pub id: Option<String>,
    /// The field that is wrong (`None` when the entry as a whole is).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JobInputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.origin, &self.id) {
            (Origin::Flags, Some(id)) => write!(f, "job {id:?}")?,
            (Origin::Flags, None) => write!(f, "job")?,
            (Origin::Entry { index }, Some(id)) => write!(f, "job #{} {id:?}", index + 1)?,
            (Origin::Entry { index }, None) => write!(f, "job #{}", index + 1)?,
        }
        match &self.field {
            Some(field) => write!(f, ": field `{field}`: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

/// Every problem found in a batch of job definitions (at least one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidJobs(pub Vec<JobInputError>);

impl fmt::Display for InvalidJobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<InvalidJobs> for CliError {
    fn from(e: InvalidJobs) -> Self {
        let count = e.0.len();
        let mut message = e.to_string();
        if count > 1 {
            message.push_str(&format!("\n({count} invalid jobs; nothing was written)"));
        }
        CliError::config(message)
    }
}

/// Syntax of a jobs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// A JSON array of job objects.
    Json,
    /// TOML `[[job]]` tables.
    Toml,
}

impl FileFormat {
    /// By extension (`.json`, `.toml`), else by content: JSON when the text
    /// starts with `[` but not `[[` (TOML's array-of-tables header).
    pub fn detect(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Self::Toml,
            _ => {
                let trimmed = text.trim_start();
                if trimmed.starts_with('[') && !trimmed.starts_with("[[") {
                    Self::Json
                } else {
                    Self::Toml
                }
            }
        }
    }
}

/// Entries read from a file: those that parsed, and a problem per entry that
/// did not. [`validate_parsed`] checks the former and reports both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedJobs {
    /// Entries that parsed, with their position.
    pub inputs: Vec<(Origin, JobInput)>,
    /// Entries that did not.
    pub errors: Vec<JobInputError>,
}

/// Reads and parses a jobs file (not yet validated: see [`validate_parsed`]).
pub fn load_jobs_file(path: &Path) -> Result<ParsedJobs, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::config(format!("cannot read jobs file {}: {e}", path.display())))?;
    let format = FileFormat::detect(path, &text);
    parse_jobs(&text, format).map_err(|e| e.context(format!("jobs file {}", path.display())))
}

/// Parses the text of a jobs file. Fails only when the file as a whole is
/// unusable; problems of single entries are collected in [`ParsedJobs`].
pub fn parse_jobs(text: &str, format: FileFormat) -> Result<ParsedJobs, CliError> {
    let entries: Vec<Value> = match format {
        FileFormat::Json => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| CliError::config(format!("invalid JSON: {e}")))?;
            match value {
                Value::Array(items) => items,
                _ => {
                    return Err(CliError::config(
                        "expected a JSON array of job objects".to_owned(),
                    ))
                }
            }
        }
        FileFormat::Toml => {
            let table: toml::Table = text
                .parse()
                .map_err(|e| CliError::config(format!("invalid TOML: {e}")))?;
            if let Some(key) = table.keys().find(|k| k.as_str() != "job") {
                return Err(CliError::config(format!(
                    "unknown top-level key `{key}`; a jobs file holds only [[job]] tables"
                )));
            }
            match table.get("job") {
                None => Vec::new(),
                Some(value) => toml_job_entries(value)?,
            }
        }
    };
    Ok(parse_entries(&entries))
}

/// Converts the value of a TOML `job` key (an array of tables) to generic entries.
pub fn toml_job_entries(value: &toml::Value) -> Result<Vec<Value>, CliError> {
    let toml::Value::Array(items) = value else {
        return Err(CliError::config(
            "`job` must be an array of tables, written [[job]]".to_owned(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            if let Some((field, value)) = non_finite_float(item, "") {
                let id = item
                    .get("id")
                    .and_then(toml::Value::as_str)
                    .map_or_else(String::new, |id| format!(" {id:?}"));
                return Err(CliError::config(format!(
                    "job #{}{id}: field `{field}`: {value} is not a finite number",
                    index + 1
                )));
            }
            serde_json::to_value(item)
                .map_err(|e| CliError::config(format!("cannot read a [[job]] table: {e}")))
        })
        .collect()
}

/// The first `nan` or `inf` float in a TOML value, with its dotted path.
/// JSON has no such numbers: converted, they would become null and so
/// silently read as "not given".
fn non_finite_float(value: &toml::Value, path: &str) -> Option<(String, f64)> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        toml::Value::Float(f) if !f.is_finite() => Some((path.to_owned(), *f)),
        toml::Value::Table(table) => table
            .iter()
            .find_map(|(key, inner)| non_finite_float(inner, &join(key))),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, inner)| non_finite_float(inner, &join(&i.to_string()))),
        _ => None,
    }
}

/// Parses generic entries (JSON objects) into job inputs, collecting a
/// problem per bad entry.
pub fn parse_entries(entries: &[Value]) -> ParsedJobs {
    let mut parsed = ParsedJobs::default();
    for (index, entry) in entries.iter().enumerate() {
        match parse_entry(index, entry) {
            Ok(input) => parsed.inputs.push((Origin::Entry { index }, input)),
            Err(e) => parsed.errors.push(e),
        }
    }
    parsed
}

/// Reads one entry key by key so that every error names its field.
pub fn parse_entry(index: usize, entry: &Value) -> Result<JobInput, JobInputError> {
    let origin = Origin::Entry { index };
    let Value::Object(map) = entry else {
        return Err(JobInputError {
            origin,
            id: None,
            field: None,
            message: format!("expected a table/object, found {}", type_name(entry)),
        });
    };
    let id = map.get("id").and_then(Value::as_str).map(str::to_owned);
    let err = |field: &str, message: String| JobInputError {
        origin: origin.clone(),
        id: id.clone(),
        field: Some(field.to_owned()),
        message,
    };
    if let Some(key) = map.keys().find(|k| !JOB_FIELDS.contains(&k.as_str())) {
        return Err(err(
            key,
            format!("unknown field; expected one of: {}", JOB_FIELDS.join(", ")),
        ));
    }
    let input = JobInput {
        id: required_str(map, "id").map_err(|m| err("id", m))?,
        schedule: required_str(map, "schedule").map_err(|m| err("schedule", m))?,
        exec: optional_str(map, "exec").map_err(|m| err("exec", m))?,
        http: match map.get("http") {
            None | Some(Value::Null) => None,
            Some(value) => Some(parse_http(value).map_err(|(f, m)| err(&f, m))?),
        },
        tz: optional_str(map, "tz").map_err(|m| err("tz", m))?,
        timeout: optional_str(map, "timeout").map_err(|m| err("timeout", m))?,
        retries: match map.get("retries") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        err(
                            "retries",
                            format!("expected a non-negative integer, found {v}"),
                        )
                    })?,
            ),
        },
        misfire: optional_str(map, "misfire").map_err(|m| err("misfire", m))?,
        overlap: optional_str(map, "overlap").map_err(|m| err("overlap", m))?,
        misfire_grace: optional_str(map, "misfire_grace").map_err(|m| err("misfire_grace", m))?,
        metrics_label: optional_str(map, "metrics_label").map_err(|m| err("metrics_label", m))?,
        paused: match map.get("paused") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(err("paused", format!("expected true or false, found {v}"))),
        },
        delivery: optional_str(map, "delivery").map_err(|m| err("delivery", m))?,
        placement: optional_str(map, "placement").map_err(|m| err("placement", m))?,
        cost: optional_number(map, "cost").map_err(|m| err("cost", m))?,
    };
    Ok(input)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table/object",
    }
}

/// A number (integer or float); null counts as absent, like elsewhere in a
/// jobs file. Its range is checked by [`JobSpec::validate`].
fn optional_number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{n} is not a number this platform can represent")),
        Some(v) => Err(format!(
            "expected a positive number (e.g. 2.5), found {}",
            type_name(v)
        )),
    }
}

fn required_str(map: &Map<String, Value>, key: &str) -> Result<String, String> {
    optional_str(map, key)?.ok_or_else(|| "missing (required)".to_owned())
}

fn optional_str(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("expected a string, found {}", type_name(v))),
    }
}

/// Parses an entry's `http` table; errors carry the field path (`http.url`).
fn parse_http(value: &Value) -> Result<HttpArgs, (String, String)> {
    let Value::Object(map) = value else {
        return Err((
            "http".to_owned(),
            format!(
                "expected a table/object with `url` (and optionally {}), found {}",
                HTTP_FIELDS[1..].join(", "),
                type_name(value)
            ),
        ));
    };
    if let Some(key) = map.keys().find(|k| !HTTP_FIELDS.contains(&k.as_str())) {
        return Err((
            format!("http.{key}"),
            format!("unknown field; expected one of: {}", HTTP_FIELDS.join(", ")),
        ));
    }
    let field = |key: &str| format!("http.{key}");
    let str_of = |key: &str| optional_str(map, key).map_err(|m| (field(key), m));
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(h)) => {
            let mut headers = std::collections::BTreeMap::new();
            for (k, v) in h {
                match v {
                    Value::String(s) => {
                        headers.insert(k.clone(), s.clone());
                    }
                    other => {
                        return Err((
                            field("headers"),
                            format!(
                                "value of header {k:?} must be a string, found {}",
                                type_name(other)
                            ),
                        ))
                    }
                }
            }
            headers
        }
        Some(v) => {
            return Err((
                field("headers"),
                format!(
                    "expected a table of NAME = \"value\", found {}",
                    type_name(v)
                ),
            ))
        }
    };
    let expect_status = match map.get("expect_status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => {
            return Err((
                field("expect_status"),
                format!("expected \"N\" or \"N-M\", found {}", type_name(v)),
            ))
        }
    };
    Ok(HttpArgs {
        url: str_of("url")?.ok_or_else(|| (field("url"), "missing (required)".to_owned()))?,
        method: str_of("method")?,
        headers,
        body: str_of("body")?,
        expect_status,
        timeout: str_of("timeout")?,
    })
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, (String, String)> {
    humantime::parse_duration(text.trim())
        .map_err(|e| (field.to_owned(), format!("invalid duration {text:?}: {e}")))
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl JobInput {
    /// Builds and validates the spec. `default_misfire_grace` applies when the
    /// job has none (the config file's `[worker] misfire_grace`). `handlers`
    /// checks the handler's arguments. Errors are `(field, message)`.
    pub fn to_spec(
        &self,
        default_misfire_grace: Option<Duration>,
        handlers: &HandlerRegistry,
    ) -> Result<JobSpec, (String, String)> {
        let (spec, args_field) = self.build_spec(default_misfire_grace)?;
        spec.validate_new(now_ms())
            .map_err(|e| (e.field.to_owned(), e.message))?;
        handlers
            .validate(&spec.handler, &spec.args)
            .map_err(|msg| (args_field.to_owned(), msg))?;
        Ok(spec)
    }

    /// The spec this entry describes, before validation, and the entry's
    /// field that holds the handler arguments (`exec` or `http`).
    pub fn build_spec(
        &self,
        default_misfire_grace: Option<Duration>,
    ) -> Result<(JobSpec, &'static str), (String, String)> {
        let (handler, args, args_field) = match (&self.exec, &self.http) {
            (Some(_), Some(_)) => {
                return Err((
                    "exec".to_owned(),
                    "`exec` and `http` are mutually exclusive; give exactly one".to_owned(),
                ))
            }
            (None, None) => {
                return Err((
                    "exec".to_owned(),
                    "one of `exec` (--exec CMD) or `http` (--http URL) is required".to_owned(),
                ))
            }
            (Some(cmd), None) => (
                EXEC_HANDLER_NAME,
                ExecArgs::new(cmd.clone()).to_json(),
                "exec",
            ),
            (None, Some(http)) => (HTTP_HANDLER_NAME, http.to_json(), "http"),
        };
        let mut spec = JobSpec::new(self.id.clone(), self.schedule.clone(), handler);
        spec.args = args;
        if let Some(tz) = &self.tz {
            spec.tz = tz.clone();
        }
        if let Some(t) = &self.timeout {
            spec.timeout = Some(parse_duration("timeout", t)?);
        }
        if let Some(n) = self.retries {
            spec.retry.max_retries = n;
        }
        if let Some(m) = &self.misfire {
            spec.misfire = parse_misfire(m).map_err(|msg| ("misfire".to_owned(), msg))?;
        }
        if let Some(o) = &self.overlap {
            spec.overlap = parse_overlap(o).map_err(|msg| ("overlap".to_owned(), msg))?;
        }
        match (&self.misfire_grace, default_misfire_grace) {
            (Some(g), _) => spec.misfire_grace = parse_duration("misfire_grace", g)?,
            (None, Some(default)) => spec.misfire_grace = default,
            (None, None) => {}
        }
        spec.paused = self.paused;
        if let Some(d) = &self.delivery {
            spec.delivery = parse_delivery(d).map_err(|msg| ("delivery".to_owned(), msg))?;
        }
        if let Some(p) = &self.placement {
            spec.placement = p.parse().map_err(|msg| ("placement".to_owned(), msg))?;
        }
        spec.cost = self.cost;
        spec.metrics_label = self.metrics_label.clone();
        Ok((spec, args_field))
    }
}

/// Parses a misfire policy name.
pub fn parse_misfire(text: &str) -> Result<MisfirePolicy, String> {
    match text {
        "catch_up" => Ok(MisfirePolicy::CatchUp),
        "run_once" => Ok(MisfirePolicy::RunOnce),
        "skip" => Ok(MisfirePolicy::Skip),
        other => Err(format!(
            "unknown policy {other:?}; expected catch_up, run_once or skip"
        )),
    }
}

/// Parses an overlap policy name.
pub fn parse_overlap(text: &str) -> Result<OverlapPolicy, String> {
    match text {
        "skip" => Ok(OverlapPolicy::Skip),
        "allow" => Ok(OverlapPolicy::Allow),
        "queue_one" => Ok(OverlapPolicy::QueueOne),
        other => Err(format!(
            "unknown policy {other:?}; expected skip, allow or queue_one"
        )),
    }
}

/// Parses a delivery name.
pub fn parse_delivery(text: &str) -> Result<Delivery, String> {
    match text {
        "at_most_once" => Ok(Delivery::AtMostOnce),
        "at_least_once" => Ok(Delivery::AtLeastOnce),
        other => Err(format!(
            "unknown delivery {other:?}; expected at_most_once (the default) or at_least_once"
        )),
    }
}

/// Validates a batch: every entry on its own, plus unique ids. Returns the
/// specs in input order, or every problem found.
pub fn validate_all(
    inputs: &[(Origin, JobInput)],
    default_misfire_grace: Option<Duration>,
    handlers: &HandlerRegistry,
) -> Result<Vec<JobSpec>, InvalidJobs> {
    let mut specs = Vec::with_capacity(inputs.len());
    let mut errors = Vec::new();
    let mut first_seen: HashMap<&str, &Origin> = HashMap::new();
    for (origin, input) in inputs {
        let error = |field: String, message: String| JobInputError {
            origin: origin.clone(),
            id: Some(input.id.clone()),
            field: Some(field),
            message,
        };
        if let Some(first) = first_seen.get(input.id.as_str()) {
            let where_ = match first {
                Origin::Entry { index } => format!(" (first defined by job #{})", index + 1),
                Origin::Flags => String::new(),
            };
            errors.push(error(
                "id".to_owned(),
                format!("duplicate id {:?}{where_}", input.id),
            ));
            continue;
        }
        first_seen.insert(input.id.as_str(), origin);
        match input.to_spec(default_misfire_grace, handlers) {
            Ok(spec) => specs.push(spec),
            Err((field, message)) => errors.push(error(field, message)),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(InvalidJobs(errors))
    }
}

/// Validates the entries of a file that parsed and reports every problem of
/// the file (parse and validation), in file order.
pub fn validate_parsed(
    parsed: &ParsedJobs,
    default_misfire_grace: Option<Duration>,
    handlers: &HandlerRegistry,
) -> Result<Vec<JobSpec>, InvalidJobs> {
    let result = validate_all(&parsed.inputs, default_misfire_grace, handlers);
    if parsed.errors.is_empty() {
        return result;
    }
    let mut errors = parsed.errors.clone();
    if let Err(InvalidJobs(more)) = result {
        errors.extend(more);
    }
    errors.sort_by_key(|e| match e.origin {
        Origin::Flags => 0,
        Origin::Entry { index } => index + 1,
    });
    Err(InvalidJobs(errors))
}

/// A handler registry with the built-in handlers (`exec`, `http`), used to
/// check job arguments exactly as a worker would.
pub fn builtin_registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    for (name, handler) in shardcron_handlers::builtin_handlers() {
        registry.insert(name, handler);
    }
    registry
}
