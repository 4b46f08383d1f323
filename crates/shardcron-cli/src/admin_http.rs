//! The worker's admin HTTP servers: `/metrics`, `/healthz`, `/readyz`
//! without auth on `--listen`, and the authenticated admin API under `/v1`
//! (see [`crate::api`]) on `--api-listen`, or on `--listen` too when no
//! separate API address is given. Keeping them apart lets probes and
//! scrapers reach `0.0.0.0` while the API stays on loopback.
//!
//! Liveness and readiness are deliberately different: `/healthz` answers 200
//! as long as the process runs (a restart does not fix an unreachable Redis,
//! so an orchestrator must not kill the pod for it), while `/readyz` answers
//! 200 only while the node is registered and holds every shard the ring gives
//! it, so a rollout waits for each new pod to have taken over its share
//! before stopping the next old one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use shardcron_runtime::metrics::{
    FIRE_LATENESS_SECONDS, JOB_PROPAGATION_SECONDS, REDIS_ROUND_TRIP_SECONDS, RUN_DURATION_SECONDS,
    SHARD_HANDOFF_SECONDS,
};
use shardcron_runtime::WorkerStatus;
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, ApiState};
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

/// The admin routes over a status feed (and a metrics handle, if installed),
/// plus the `/v1` API. Router and OpenAPI document come out of one
/// `OpenApiRouter`, and the document is served at `/v1/openapi.json`.
pub fn router(
    metrics: Option<PrometheusHandle>,
    status: watch::Receiver<WorkerStatus>,
    api: ApiState,
) -> Router {
    build(Some(AdminState { metrics, status }), Some(api))
}

/// Only the probes and `/metrics` (the `--listen` address when the API has
/// its own).
pub fn probes_router(
    metrics: Option<PrometheusHandle>,
    status: watch::Receiver<WorkerStatus>,
) -> Router {
    build(Some(AdminState { metrics, status }), None)
}

/// Only the `/v1` API (the `--api-listen` address).
pub fn api_router(api: ApiState) -> Router {
    build(None, Some(api))
}

fn build(probes: Option<AdminState>, api: Option<ApiState>) -> Router {
    let mut routes = OpenApiRouter::with_openapi(api::openapi::base());
    if let Some(state) = probes {
        routes = routes.merge(
            OpenApiRouter::new()
                .routes(routes!(metrics_handler))
                .routes(routes!(healthz))
                .routes(routes!(readyz))
                .with_state(state),
        );
    }
    let document = match &api {
        Some(state) => {
            routes = routes.merge(api::router(state.clone()));
            Some(state.clone())
        }
        None => None,
    };
    let (router, doc) = routes.split_for_parts();
    let doc = match &document {
        Some(state) => api::openapi::document(&doc, state),
        None => serde_json::to_value(&doc).unwrap_or_default(),
    };
    router
        .layer(Extension::<api::openapi::SharedDoc>(Arc::new(doc)))
        .fallback(api::openapi::no_route)
        .method_not_allowed_fallback(api::openapi::method_not_allowed)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "probes", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
    (status = 404, description = "No metrics recorder installed"),
))]
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

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "probes", responses(
    (status = 200, description = "Alive", content_type = "text/plain", body = String),
))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: 200 while registered and holding every shard the ring gives.
#[utoipa::path(get, path = "/readyz", tag = "probes", responses(
    (status = 200, description = "Ready; the worker status", body = Object),
    (status = 503, description = "Not ready; the worker status", body = Object),
))]
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

/// Binds `addr` and serves the admin routes and the API in the background.
/// Returns the bound address. An unparsable address is a config error (exit
/// 3); a bind failure (address in use) a runtime failure.
pub async fn start(
    addr: &str,
    metrics: Option<PrometheusHandle>,
    status: watch::Receiver<WorkerStatus>,
    api: ApiState,
) -> Result<SocketAddr, CliError> {
    let bound = serve("--listen", addr, router(metrics, status, api)).await?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz and the /v1 API");
    Ok(bound)
}

/// Binds `addr` (named `flag` in messages) and serves `app` in the
/// background, with each request's peer address available to the API's
/// rate limiting. Returns the bound address.
pub async fn serve(flag: &str, addr: &str, app: Router) -> Result<SocketAddr, CliError> {
    let mut resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| CliError::config(format!("invalid {flag} address {addr:?}: {e}")))?;
    let target = resolved.next().ok_or_else(|| {
        CliError::config(format!(
            "invalid {flag} address {addr:?}: resolves to nothing"
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(target)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::failure(format!("cannot read the listen address: {e}")))?;
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "admin HTTP server stopped");
        }
    });
    Ok(bound)
}
