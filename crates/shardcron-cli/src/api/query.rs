//! Query-string parsing shared by the list routes.
//!
//! Parameters are read as raw pairs rather than through a derived struct so
//! that every problem names its parameter in the error's `field`, and so that
//! an unknown parameter (`limt=5`) or a repeated one is a 400 instead of being
//! silently ignored, which would hand back a default-sized page to a caller
//! who thinks they asked for something else.

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

use super::error::{ApiError, ApiResult};

/// Page size of `GET /v1/jobs` when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// Largest accepted `limit` of `GET /v1/jobs` and `GET /v1/runs`.
pub const MAX_PAGE: usize = 1000;

/// Query parameters as `(name, value)` pairs; unknown or repeated names are
/// 400 so that a typo (`limt=5`) is not silently ignored.
pub fn query_params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    known: &[&str],
) -> ApiResult<Vec<(String, String)>> {
    let Query(pairs) =
        query.map_err(|e| ApiError::bad_request("invalid_query", "query", e.body_text()))?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_field",
                name.clone(),
                format!(
                    "unknown query parameter; expected one of: {}",
                    known.join(", ")
                ),
            ));
        }
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(
                "invalid_query",
                name.clone(),
                "given more than once",
            ));
        }
    }
    Ok(pairs)
}

/// Parses a `limit` in `1..=MAX_PAGE`.
pub fn parse_limit(value: &str) -> ApiResult<usize> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "limit",
            format!("{value:?} is not a number in 1..={MAX_PAGE}"),
        )),
    }
}

/// Checks an optional id-like query value (empty allowed for `prefix`).
pub fn id_like(name: &str, value: &str, allow_empty: bool) -> ApiResult<()> {
    if allow_empty && value.is_empty() {
        return Ok(());
    }
    shardcron_core::validate_job_id(value)
        .map_err(|m| ApiError::bad_request("invalid_query", name, format!("{value:?} {m}")))
}
