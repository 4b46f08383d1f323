//! The job routes: create/replace, read, delete, list, pause, resume,
//! trigger.
//!
//! Every write is version-guarded in the store's atomic write, even when the
//! client sent no precondition: `PUT` reads the current version and writes
//! with it as the expected version, so "created" (201) versus "replaced"
//! (200) is exact, and pause/resume never undo a concurrent `PUT` (a lost race
//! is retried from a fresh read, or answered 412 when the client named the
//! version with `If-Match`). A job that does not exist is 404 for every route
//! but `PUT`, where `If-Match` on an absent job is a failed precondition (412,
//! `current_version` 0) since the write would create it.
//!
//! Job ids may contain `/`; clients percent-encode it (`a%2Fb`) so the id
//! stays one path segment.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{StreamExt, TryStreamExt};
use shardcron::{Precondition, Written};
use shardcron_coord::{Coordinator, StoredJob};

use super::body::{body_bytes, check_path_id, parse_job_body, require_json, validate_job};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::preconditions::{etag, if_match, if_none_match_any, IfMatch};
use super::query::{id_like, parse_limit, query_params, DEFAULT_PAGE};
use super::schema::{IfNoneMatch, JobBody, JobList, JobResponse, JobSummary, TriggerResponse};
use super::ApiState;
use crate::jobs_input::now_ms;

/// The path's job id, percent-decoded and checked (400 naming `id`).
fn job_id(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::bad_request("invalid_job", "id", e.body_text()))?;
    check_path_id(&id)?;
    Ok(id)
}

/// `200`/`201` with the job, its `ETag` and (on create) its `Location`.
fn job_response(status: StatusCode, stored: StoredJob) -> Response {
    let mut headers = vec![etag(stored.version)];
    if status == StatusCode::CREATED {
        let location = format!("/v1/jobs/{}", stored.spec.id.replace('/', "%2F"));
        if let Ok(value) = HeaderValue::from_str(&location) {
            headers.push((header::LOCATION, value));
        }
    }
    let mut response = (status, Json(JobResponse::from(stored))).into_response();
    response.headers_mut().extend(headers);
    response
}

/// The stored job or 404.
async fn existing(coord: &dyn Coordinator, id: &str) -> ApiResult<StoredJob> {
    coord
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::job_not_found(id))
}

/// The response to an error of the shared job operations.
fn job_error(error: shardcron::Error) -> ApiError {
    match error {
        shardcron::Error::NotFound { job_id, .. } => ApiError::job_not_found(&job_id),
        shardcron::Error::Conflict {
            job_id,
            expected,
            current,
        } => {
            let expected = match expected {
                Precondition::Version(v) => v.to_string(),
                other => other.to_string(),
            };
            ApiError::version_conflict(&job_id, current, &expected)
        }
        shardcron::Error::Busy { job_id, attempts } => ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            format!("job {job_id:?} kept changing during {attempts} attempts; retry"),
        ),
        shardcron::Error::Store(e) => e.into(),
        shardcron::Error::InvalidJob(e) => ApiError::bad_request("invalid_job", e.field, e.message),
        other => ApiError::internal(other.to_string()),
    }
}

/// Create or replace a job.
#[utoipa::path(
    put, path = "/v1/jobs/{id}", tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
        ("If-Match" = Option<String>, Header, description = "Replace only at this version (the ETag, e.g. `\"7\"`; quotes optional) or, with `*`, only if the job exists", pattern = "^(\\*|[1-9][0-9]{0,18}|\"[1-9][0-9]{0,18}\")$"),
        ("If-None-Match" = inline(Option<IfNoneMatch>), Header, description = "`*`: create only (not together with If-Match)"),
    ),
    request_body(content = JobBody, content_type = "application/json",
        description = "The job in its stored form (`handler` + `args`) or as a jobs-file entry (`exec` or `http`); `id` may be omitted or null. At most 64 KiB."),
    responses(
        (status = 200, description = "Replaced", body = JobResponse,
            headers(("ETag" = String, description = "Quoted version"))),
        (status = 201, description = "Created", body = JobResponse,
            headers(("ETag" = String, description = "Quoted version"), ("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Invalid job, JSON, field or precondition header", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, no token configured (read-only API), or a handler `[api] allow_handlers` does not allow (`field` = `handler`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 409, description = "The job kept changing (retry), or the body's `id` names another job than the path", body = ErrorBody),
        (status = 412, description = "Precondition failed; `current_version` says where the job is", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not declared as JSON", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn put_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = job_id(path)?;
    let precondition = if_match(&headers)?;
    let create_only = if_none_match_any(&headers)?;
    require_json(&headers)?;
    let bytes = body_bytes(body)?;
    let spec = parse_job_body(&id, &bytes)?;
    validate_job(&spec, &state)?;
    if create_only && precondition.is_some() {
        // If-Match is evaluated first (RFC 9110 13.2.2); when it holds, the
        // job exists and `If-None-Match: *` fails, so both can never hold.
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            "If-Match and If-None-Match: * cannot both hold; nothing was changed",
        )
        .with_field("If-None-Match"));
    }
    let coord = state.coord()?;

    let condition = match precondition {
        _ if create_only => Precondition::Absent,
        Some(IfMatch::Version(v)) => Precondition::Version(v),
        Some(IfMatch::Any) => Precondition::Exists,
        None => Precondition::Any,
    };
    let Written {
        job: stored,
        created,
    } = shardcron::jobs::put_job(coord.as_ref(), &spec, condition)
        .await
        .map_err(|e| match e {
            shardcron::Error::Conflict {
                current,
                expected: Precondition::Absent,
                ..
            } => ApiError::version_conflict(&id, current, "absent (If-None-Match: *)"),
            shardcron::Error::Conflict {
                current,
                expected: Precondition::Exists,
                ..
            } => ApiError::version_conflict(&id, current, "any existing version (If-Match: *)"),
            e => job_error(e),
        })?;
    tracing::info!(job = %id, version = stored.version, created, "job stored through the API");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(job_response(status, stored))
}

/// Read a job.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200)),
    responses(
        (status = 200, description = "The job", body = JobResponse,
            headers(("ETag" = String, description = "Quoted version"))),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or reads not open", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = job_id(path)?;
    let coord = state.coord()?;
    let stored = existing(coord.as_ref(), &id).await?;
    Ok(job_response(StatusCode::OK, stored))
}

/// Delete a job.
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
        ("If-Match" = Option<String>, Header, description = "Delete only at this version (the ETag; quotes optional), or `*`", pattern = "^(\\*|[1-9][0-9]{0,18}|\"[1-9][0-9]{0,18}\")$"),
    ),
    responses(
        (status = 204, description = "Deleted; no fire of it starts after this answer"),
        (status = 400, description = "Invalid id or precondition header", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or no token configured", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 412, description = "The job is at another version", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn delete_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let id = job_id(path)?;
    let expected = match if_match(&headers)? {
        Some(IfMatch::Version(v)) => Some(v),
        Some(IfMatch::Any) | None => None,
    };
    let coord = state.coord()?;
    shardcron::jobs::remove_job(coord.as_ref(), &id, expected)
        .await
        .map_err(job_error)?;
    tracing::info!(job = %id, "job deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets `paused` by a version-guarded read-modify-write
/// ([`shardcron::jobs::set_paused`], shared with `shardcron job pause` and
/// embedding programs).
async fn set_paused(
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
    paused: bool,
) -> ApiResult<Response> {
    let expected = match if_match(headers)? {
        Some(IfMatch::Version(v)) => Some(v),
        Some(IfMatch::Any) | None => None,
    };
    let coord = state.coord()?;
    let stored = shardcron::jobs::set_paused(coord.as_ref(), id, paused, expected)
        .await
        .map_err(job_error)?;
    tracing::info!(job = %id, version = stored.version, paused, "job paused/resumed through the API");
    Ok(job_response(StatusCode::OK, stored))
}

/// Pause a job: it keeps its definition but does not fire.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/pause", tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
        ("If-Match" = Option<String>, Header, description = "Only at this version (the ETag; quotes optional), or `*`", pattern = "^(\\*|[1-9][0-9]{0,18}|\"[1-9][0-9]{0,18}\")$"),
    ),
    responses(
        (status = 200, description = "Paused (or already was); no fire starts after this answer", body = JobResponse,
            headers(("ETag" = String, description = "Quoted version"))),
        (status = 400, description = "Invalid id or precondition header", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or no token configured", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job kept changing; retry", body = ErrorBody),
        (status = 412, description = "The job is at another version", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn pause_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = job_id(path)?;
    set_paused(&state, &id, &headers, true).await
}

/// Resume a paused job.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/resume", tag = "jobs",
    params(
        ("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
        ("If-Match" = Option<String>, Header, description = "Only at this version (the ETag; quotes optional), or `*`", pattern = "^(\\*|[1-9][0-9]{0,18}|\"[1-9][0-9]{0,18}\")$"),
    ),
    responses(
        (status = 200, description = "Resumed (or was not paused)", body = JobResponse,
            headers(("ETag" = String, description = "Quoted version"))),
        (status = 400, description = "Invalid id or precondition header", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or no token configured", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job kept changing; retry", body = ErrorBody),
        (status = 412, description = "The job is at another version", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn resume_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = job_id(path)?;
    set_paused(&state, &id, &headers, false).await
}

/// Queue an extra fire of a job now.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/trigger", tag = "jobs",
    params(("id" = String, Path, description = "Job id (percent-encode `/`)", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200)),
    responses(
        (status = 202, description = "Queued; the owner runs it once", body = TriggerResponse),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or no token configured", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "store unreachable, or this node has not reached it yet", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn trigger_job(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = job_id(path)?;
    let coord = state.coord()?;
    let fire = shardcron::jobs::trigger_job(coord.as_ref(), &id)
        .await
        .map_err(job_error)?;
    let fire_id = fire.to_string();
    tracing::info!(job = %id, fire = %fire_id, "job triggered through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(TriggerResponse {
            fire_id,
            scheduled_ms: fire.scheduled_ms,
        }),
    )
        .into_response())
}

/// List jobs, a page at a time, with a summary of each.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(
        ("prefix" = Option<String>, Query, description = "Only ids starting with this", pattern = "^[A-Za-z0-9_.:/-]{0,200}$", max_length = 200),
        ("limit" = Option<u32>, Query, description = "Page size (default 100)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page", pattern = "^[A-Za-z0-9_.:/-]{1,200}$", min_length = 1, max_length = 200),
    ),
    responses(
        (status = 200, description = "One page of jobs in lexicographic order of their ids", body = JobList),
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
pub async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<JobList>> {
    let mut prefix = String::new();
    let mut limit = DEFAULT_PAGE;
    let mut cursor = None;
    for (name, value) in query_params(query, &["prefix", "limit", "cursor"])? {
        match name.as_str() {
            "prefix" => {
                id_like("prefix", &value, true)?;
                prefix = value;
            }
            "limit" => limit = parse_limit(&value)?,
            _ => {
                id_like("cursor", &value, false)?;
                cursor = Some(value);
            }
        }
    }
    let coord = state.coord()?;
    let page = coord.list_jobs(&prefix, cursor.as_deref(), limit).await?;
    let next_cursor = page.next.filter(|_| !page.ids.is_empty());
    let now = now_ms();
    let stored: Vec<Option<StoredJob>> = futures::stream::iter(page.ids)
        .map(|id| {
            let coord = Arc::clone(&coord);
            async move { coord.get_job(&id).await }
        })
        .buffered(SUMMARY_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    // A job deleted between the index read and its own read is left out.
    let jobs = stored
        .into_iter()
        .flatten()
        .map(|j| summary(j, now))
        .collect();
    Ok(Json(JobList { jobs, next_cursor }))
}

/// Job reads in flight while summarising a page.
const SUMMARY_READS_IN_FLIGHT: usize = 64;

/// The list entry of a stored job.
fn summary(stored: StoredJob, now: i64) -> JobSummary {
    let next_fire_ms = if stored.spec.paused {
        None
    } else {
        stored
            .spec
            .validate()
            .ok()
            .and_then(|job| job.next_after(now))
    };
    JobSummary {
        id: stored.spec.id,
        schedule: stored.spec.schedule,
        tz: stored.spec.tz,
        handler: stored.spec.handler,
        delivery: stored.spec.delivery,
        placement: stored.spec.placement,
        paused: stored.spec.paused,
        version: stored.version,
        next_fire_ms,
    }
}
