//! What `shardcron worker` observes itself with, as one call for those who
//! run workers some other way and want a fire to cost what it costs in the
//! daemon: the live benchmark's `--observe`, the `observed_fire` criterion
//! bench, an embedding service that wants the daemon's logs and series.
//!
//! The daemon itself makes the same two calls at two places (the log
//! subscriber before the command is known, the recorder once the worker's
//! node id is), so it does not go through here.

use metrics_exporter_prometheus::PrometheusHandle;

use crate::args::LogFormat;
use crate::exit::CliError;
use crate::{admin_http, logging};

/// Installs the daemon's text log subscriber at the worker's default filter
/// (`RUST_LOG` overrides it) and its Prometheus recorder, labelled with
/// `node_id` and `namespace`. Both are global: call once per process, from
/// within a Tokio runtime (the recorder's upkeep task is spawned on it).
///
/// # Errors
///
/// The recorder could not be installed (one is installed already, or its
/// buckets were refused).
pub fn as_a_worker(node_id: &str, namespace: &str) -> Result<PrometheusHandle, CliError> {
    logging::init(LogFormat::Text, logging::WORKER_DEFAULT_FILTER);
    admin_http::install_metrics(node_id, namespace)
}
