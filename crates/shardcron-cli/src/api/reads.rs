//! Read-only routes over the fleet: recent runs and the status report.
//!
//! Both serve exactly what the CLI prints with `--json` (`shardcron runs`,
//! `shardcron status`), built by the same functions, so a dashboard and an
//! operator at a terminal never see two versions of the truth.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;

use super::error::{ApiResult, ErrorBody};
use super::query::{id_like, parse_limit, query_params};
use super::schema::RunsResponse;
use super::ApiState;
use crate::status_report::{collect, StatusReport};

/// Runs returned when `limit` is not given.
pub const DEFAULT_RUNS: usize = 20;

/// Recent runs, most recent first.
#[utoipa::path(
    get, path = "/v1/runs", tag = "fleet",
    params(
        ("job" = Option<String>, Query, description = "Only runs of this job", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
        ("limit" = Option<u32>, Query, description = "Most runs (default 20)", minimum = 1, maximum = 1000),
    ),
    responses(
        (status = 200, description = "Runs as `shardcron runs --json` prints them", body = RunsResponse),
        (status = 400, description = "Invalid or unknown query parameter", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or reads not open", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn list_runs(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<RunsResponse>> {
    let mut job = None;
    let mut limit = DEFAULT_RUNS;
    for (name, value) in query_params(query, &["job", "limit"])? {
        if name == "limit" {
            limit = parse_limit(&value)?;
        } else {
            id_like("job", &value, false)?;
            job = Some(value);
        }
    }
    let coord = state.coord()?;
    let runs = coord.recent_runs(job.as_deref(), limit).await?;
    Ok(Json(RunsResponse { runs }))
}

/// Members, shard ownership, balance and handoffs of the namespace.
#[utoipa::path(
    get, path = "/v1/status", tag = "fleet",
    responses(
        (status = 200, description = "Exactly `shardcron status --json`", body = StatusReport),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or reads not open", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn status(State(state): State<ApiState>) -> ApiResult<Json<StatusReport>> {
    let coord = state.coord()?;
    Ok(Json(collect(coord.as_ref()).await?))
}
