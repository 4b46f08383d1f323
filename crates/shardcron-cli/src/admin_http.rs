//! The worker's admin HTTP server (`--listen`): `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! Liveness and readiness are deliberately different: `/healthz` answers 200
//! as long as the process runs (a restart does not fix an unreachable Redis,
//! so an orchestrator must not kill the pod for it), while `/readyz` answers
//! 200 only while the node is registered and holds every shard the ring gives
//! it, so a rollout waits for each new pod to have taken over its share
//! before stopping the next old one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use shardcron_runtime::metrics::{
    FIRE_LATENESS_SECONDS, JOB_PROPAGATION_SECONDS, REDIS_ROUND_TRIP_SECONDS, RUN_DURATION_SECONDS,
    SHARD_HANDOFF_SECONDS,
};
use shardcron_runtime::WorkerStatus;
use tokio::sync::watch;

use crate::exit::CliError;

/// Histogram buckets of fire lateness: 1 ms to 60 s.
pub const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets of run durations: 10 ms to 1 h.
pub const RUN_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Histogram buckets of Redis round trips: 0.1 ms to 5 s.
pub const ROUND_TRIP_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Histogram buckets of shard handoff times: 10 ms to 2 min.
pub const HANDOFF_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Histogram buckets of job change propagation: 1 ms to 1 min.
pub const PROPAGATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the global Prometheus recorder with `node` and `namespace`
/// labels on every series, and describes the runtime's metrics.
pub fn install_metrics(node_id: &str, namespace: &str) -> Result<PrometheusHandle, CliError> {
    let fail = |e: metrics_exporter_prometheus::BuildError| {
        CliError::failure(format!("cannot install the metrics recorder: {e}"))
    };
    let handle = PrometheusBuilder::new()
        .add_global_label("node", node_id)
        .add_global_label("namespace", namespace)
        .set_buckets_for_metric(
            Matcher::Full(FIRE_LATENESS_SECONDS.to_owned()),
            LATENESS_BUCKETS,
        )
        .map_err(fail)?
        .set_buckets_for_metric(
            Matcher::Full(RUN_DURATION_SECONDS.to_owned()),
            RUN_DURATION_BUCKETS,
        )
        .map_err(fail)?
        .set_buckets_for_metric(
            Matcher::Full(REDIS_ROUND_TRIP_SECONDS.to_owned()),
            ROUND_TRIP_BUCKETS,
        )
        .map_err(fail)?
        .set_buckets_for_metric(
            Matcher::Full(SHARD_HANDOFF_SECONDS.to_owned()),
            HANDOFF_BUCKETS,
        )
        .map_err(fail)?
        .set_buckets_for_metric(
            Matcher::Full(JOB_PROPAGATION_SECONDS.to_owned()),
            PROPAGATION_BUCKETS,
        )
        .map_err(fail)?
        .install_recorder()
        .map_err(fail)?;
    shardcron_runtime::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

#[derive(Clone)]
struct AdminState {
    metrics: Option<PrometheusHandle>,
    status: watch::Receiver<WorkerStatus>,
}

/// Body of `/readyz`: the worker status plus the verdict.
#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    #[serde(flatten)]
    status: WorkerStatus,
}

/// The admin routes over a status feed (and a metrics handle, if installed).
pub fn router(metrics: Option<PrometheusHandle>, status: watch::Receiver<WorkerStatus>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AdminState { metrics, status })
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let status = state.status.borrow().clone();
    let ready = status.ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(ReadyBody { ready, status })).into_response()
}

/// Binds `addr` and serves the admin routes in the background. Returns the
/// bound address. An unparsable address is a config error (exit 3); a bind
/// failure (address in use) a runtime failure.
pub async fn start(
    addr: &str,
    metrics: Option<PrometheusHandle>,
    status: watch::Receiver<WorkerStatus>,
) -> Result<SocketAddr, CliError> {
    let mut resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| CliError::config(format!("invalid --listen address {addr:?}: {e}")))?;
    let target = resolved.next().ok_or_else(|| {
        CliError::config(format!(
            "invalid --listen address {addr:?}: resolves to nothing"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(target)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::failure(format!("cannot read the listen address: {e}")))?;
    let app = router(metrics, status);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin HTTP server stopped");
        }
    });
    tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}
