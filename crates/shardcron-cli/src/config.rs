//! The worker's config file (TOML).
//!
//! ```toml
//! [worker]
//! heartbeat = "1s"          # humantime durations
//! drain_timeout = "30s"
//! shard_count = 1024        # must match every other node of the namespace
//! misfire_grace = "5m"      # default for static jobs that set none
//! listen = "0.0.0.0:9090"   # /metrics, /healthz, /readyz (and the API
//!                           # unless api_listen is set)
//! api_listen = "127.0.0.1:9091" # the /v1 API on its own; keep it on loopback
//!
//! [api]                     # the admin API
//! token = "..."             # bearer token; SHARDCRON_API_TOKEN wins
//! open_reads = false        # true: GET /v1/... without a token
//! allow_handlers = ["http"] # handlers the API may write (default: all)
//! auth_failures_per_minute = 20 # per client address, then 429
//!
//! [[job]]                   # static jobs, upserted on start
//! id = "nightly-report"
//! schedule = "0 2 * * *"
//! exec = "/usr/local/bin/report"
//! ```
//!
//! A typo in a config file would otherwise silently fall back to a default
//! (`hearbeat = "5s"` doing nothing), so unknown keys are errors that name the
//! key, and every value error names its key as well. Flags given on the
//! command line override the file.

use std::path::Path;
use std::time::Duration;

use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::{HandlerRegistry, WorkerSettings};

use crate::api::ApiConfig;
use crate::exit::CliError;
use crate::jobs_input::{parse_entries, toml_job_entries, validate_parsed, ParsedJobs};

/// Keys of the `[worker]` table.
pub const WORKER_KEYS: &[&str] = &[
    "heartbeat",
    "member_ttl",
    "lease_ttl",
    "drift_margin",
    "concurrency",
    "drain_timeout",
    "handoff_timeout",
    "rebalance_interval",
    "claim_retention",
    "poll_interval",
    "on_time_tolerance",
    "claim_ahead",
    "shard_count",
    "vnodes",
    "load_bound",
    "misfire_grace",
    "node_id",
    "listen",
    "api_listen",
];

/// Keys of the `[api]` table.
pub const API_KEYS: &[&str] = &[
    "token",
    "open_reads",
    "allow_handlers",
    "auth_failures_per_minute",
];

/// A parsed config file (defaults filled in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerConfig {
    /// Worker timings and limits.
    pub settings: WorkerSettings,
    /// Ring settings; must match the namespace's.
    pub ring: RingConfig,
    /// Default misfire grace of static jobs.
    pub misfire_grace: Option<Duration>,
    /// Node id.
    pub node_id: Option<String>,
    /// Admin listen address.
    pub listen: Option<String>,
    /// Separate address of the `/v1` API.
    pub api_listen: Option<String>,
    /// Static jobs (not yet validated; see [`WorkerConfig::static_jobs`]).
    pub jobs: ParsedJobs,
    /// The `[api]` table.
    pub api: ApiConfig,
}

/// Reads and parses a config file; every error names the file.
pub fn load(path: &Path) -> Result<WorkerConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    parse(&text).map_err(|e| e.context(format!("config file {}", path.display())))
}

fn duration(key: &str, value: &toml::Value) -> Result<Duration, CliError> {
    let text = value.as_str().ok_or_else(|| {
        CliError::config(format!(
            "`worker.{key}`: expected a duration string such as \"1s\", found {value}"
        ))
    })?;
    humantime::parse_duration(text.trim())
        .map_err(|e| CliError::config(format!("`worker.{key}`: invalid duration {text:?}: {e}")))
}

fn positive_u32(key: &str, value: &toml::Value) -> Result<u32, CliError> {
    value
        .as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            CliError::config(format!(
                "`worker.{key}`: expected a positive integer, found {value}"
            ))
        })
}

/// A load bound ε as a fraction in `0.0..=1.0` (e.g. `0.05`), as permille.
fn load_bound(key: &str, value: &toml::Value) -> Result<u32, CliError> {
    let fraction = value
        .as_float()
        .or_else(|| value.as_integer().map(|n| n as f64))
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| {
            CliError::config(format!(
                "`worker.{key}`: expected a fraction between 0.0 and 1.0 (e.g. 0.05), found {value}"
            ))
        })?;
    Ok((fraction * 1000.0).round() as u32)
}

fn string(key: &str, value: &toml::Value) -> Result<String, CliError> {
    value.as_str().map(str::to_owned).ok_or_else(|| {
        CliError::config(format!("`worker.{key}`: expected a string, found {value}"))
    })
}

/// Parses the text of a config file.
pub fn parse(text: &str) -> Result<WorkerConfig, CliError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| CliError::config(format!("invalid TOML: {e}")))?;
    let mut config = WorkerConfig::default();
    for (key, value) in &table {
        match key.as_str() {
            "worker" => parse_worker(value, &mut config)?,
            "api" => config.api = parse_api(value)?,
            "job" => {
                let entries = toml_job_entries(value)?;
                config.jobs = parse_entries(&entries);
            }
            other => {
                return Err(CliError::config(format!(
                    "unknown key `{other}`; expected [worker], [api] and [[job]]"
                )))
            }
        }
    }
    config
        .settings
        .validate()
        .map_err(|e| CliError::config(format!("[worker]: {e}")))?;
    Ok(config)
}

fn parse_worker(value: &toml::Value, config: &mut WorkerConfig) -> Result<(), CliError> {
    let Some(table) = value.as_table() else {
        return Err(CliError::config(
            "`worker` must be a table, written [worker]",
        ));
    };
    let s = &mut config.settings;
    for (key, value) in table {
        match key.as_str() {
            "heartbeat" => s.heartbeat = duration(key, value)?,
            "member_ttl" => s.member_ttl = duration(key, value)?,
            "lease_ttl" => s.lease_ttl = duration(key, value)?,
            "drift_margin" => s.drift_margin = duration(key, value)?,
            "concurrency" => s.concurrency = positive_u32(key, value)? as usize,
            "drain_timeout" => s.drain_timeout = duration(key, value)?,
            "handoff_timeout" => s.handoff_timeout = duration(key, value)?,
            "rebalance_interval" => s.rebalance_interval = duration(key, value)?,
            "claim_retention" => s.claim_retention = duration(key, value)?,
            "poll_interval" => s.poll_interval = duration(key, value)?,
            "on_time_tolerance" => s.on_time_tolerance = duration(key, value)?,
            "claim_ahead" => s.claim_ahead = duration(key, value)?,
            "shard_count" => config.ring.shard_count = positive_u32(key, value)?,
            "vnodes" => config.ring.vnodes = positive_u32(key, value)?,
            "load_bound" => config.ring.load_bound_permille = load_bound(key, value)?,
            "misfire_grace" => config.misfire_grace = Some(duration(key, value)?),
            "node_id" => config.node_id = Some(string(key, value)?),
            "listen" => config.listen = Some(string(key, value)?),
            "api_listen" => config.api_listen = Some(string(key, value)?),
            other => {
                return Err(CliError::config(format!(
                    "unknown key `worker.{other}`; expected one of: {}",
                    WORKER_KEYS.join(", ")
                )))
            }
        }
    }
    Ok(())
}

fn parse_api(value: &toml::Value) -> Result<ApiConfig, CliError> {
    let Some(table) = value.as_table() else {
        return Err(CliError::config("`api` must be a table, written [api]"));
    };
    let mut api = ApiConfig::default();
    for (key, value) in table {
        match key.as_str() {
            "token" => {
                let token = value
                    .as_str()
                    .ok_or_else(|| CliError::config("`api.token`: expected a string".to_owned()))?;
                api.token = Some(token.to_owned());
            }
            "open_reads" => {
                api.open_reads = value.as_bool().ok_or_else(|| {
                    CliError::config(format!(
                        "`api.open_reads`: expected true or false, found {value}"
                    ))
                })?;
            }
            "allow_handlers" => {
                let bad = || {
                    CliError::config(format!(
                        "`api.allow_handlers`: expected an array of handler names, found {value}"
                    ))
                };
                let items = value.as_array().ok_or_else(bad)?;
                let names = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                    .collect::<Result<Vec<_>, _>>()?;
                api.allow_handlers = Some(names);
            }
            "auth_failures_per_minute" => {
                api.auth_failures_per_minute = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        CliError::config(format!(
                            "`api.auth_failures_per_minute`: expected a positive integer, found {value}"
                        ))
                    })?;
            }
            other => {
                return Err(CliError::config(format!(
                    "unknown key `api.{other}`; expected one of: {}",
                    API_KEYS.join(", ")
                )))
            }
        }
    }
    Ok(api)
}

impl WorkerConfig {
    /// Checks `[api] allow_handlers` against the node's handlers, so a typo
    /// does not silently forbid (or seem to allow) a handler.
    pub fn check_api(&self, handlers: &HandlerRegistry) -> Result<(), CliError> {
        for name in self.api.allow_handlers.iter().flatten() {
            if handlers.get(name).is_none() {
                return Err(CliError::config(format!(
                    "`api.allow_handlers`: no handler {name:?} on this node; registered: {}",
                    handlers.names().join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Validates every static job (all of them, before anything is written):
    /// fields, handler arguments, unique ids, and a misfire grace shorter than
    /// the claim retention (an older fire could otherwise be claimed twice).
    pub fn static_jobs(&self, handlers: &HandlerRegistry) -> Result<Vec<JobSpec>, CliError> {
        let specs =
            validate_parsed(&self.jobs, self.misfire_grace, handlers).map_err(CliError::from)?;
        for (index, spec) in specs.iter().enumerate() {
            if spec.misfire_grace >= self.settings.claim_retention {
                return Err(CliError::config(format!(
                    "job #{} {:?}: field `misfire_grace`: {} must be shorter than worker.claim_retention ({})",
                    index + 1,
                    spec.id,
                    humantime::format_duration(spec.misfire_grace),
                    humantime::format_duration(self.settings.claim_retention),
                )));
            }
        }
        Ok(specs)
    }
}
