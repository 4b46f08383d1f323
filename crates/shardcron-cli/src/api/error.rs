//! The API's error type and its one JSON shape.
//!
//! Every failure, whatever produced it (a handler, the auth layer, a body
//! extractor, the router's fallback), answers with the same body:
//!
//! ```json
//! { "error": { "code": "invalid_job", "message": "...", "field": "schedule" } }
//! ```
//!
//! `code` is stable and meant for programs, `message` for people, and `field`
//! names the part of the request that is wrong (a job field such as
//! `retry.backoff`, a query parameter, a header, or `body`) so a client can
//! point at it. Keeping the mapping from coordination errors to statuses in one
//! place makes the API's statuses a contract rather than an accident: 503 for
//! an unreachable Redis (retry later), 412 for a lost race (re-read), 400 for
//! anything the caller must fix.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use shardcron_coord::CoordError;
use utoipa::ToSchema;

/// Body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_job`, `unknown_field`,
    /// `unauthorized`, `forbidden`, `read_only`, `not_found`,
    /// `version_conflict`, `body_too_large`, `unsupported_media_type`,
    /// `unavailable`, ...).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request part that is wrong (job field, query parameter, header or
    /// `body`), or null.
    pub field: Option<String>,
    /// On `version_conflict`: the job's current version (0 = absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// An error answer: status plus body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub detail: ErrorDetail,
}

impl ApiError {
    /// An error with a status, code and message and no field.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                current_version: None,
            },
        }
    }

    /// Names the request part that is wrong.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.detail.field = Some(field.into());
        self
    }

    /// 400 with a code, a field and a message.
    pub fn bad_request(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message).with_field(field)
    }

    /// 404 for a job id.
    pub fn job_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id:?} not found"),
        )
    }

    /// 412: the job is at `current`, not what the request expected.
    pub fn version_conflict(id: &str, current: u64, expected: &str) -> Self {
        let mut e = Self::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            format!("job {id:?} is at version {current}, not {expected}; nothing was changed"),
        );
        e.detail.current_version = Some(current);
        e
    }

    /// 500 for a failure that is not the caller's.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<CoordError> for ApiError {
    fn from(error: CoordError) -> Self {
        match &error {
            CoordError::Unreachable { .. } | CoordError::Store { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                crate::exit::coord_error_message(&error),
            ),
            CoordError::VersionConflict {
                job_id,
                expected,
                current,
            } => Self::version_conflict(job_id, *current, &expected.to_string()),
            CoordError::InvalidJob(e) => {
                Self::bad_request("invalid_job", e.field, e.message.clone())
            }
            CoordError::ConfigMismatch { .. } | CoordError::Corrupt { .. } => {
                Self::internal(error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.detail.clone(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shardcron\""),
            );
        }
        if let Some(current) = self.detail.current_version.filter(|v| *v > 0) {
            if let Ok(value) = HeaderValue::from_str(&format!("\"{current}\"")) {
                headers.insert(header::ETAG, value);
            }
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_errors_map_to_statuses() {
        let unreachable = CoordError::Unreachable {
            url: "redis://x".into(),
            message: "refused".into(),
        };
        assert_eq!(
            ApiError::from(unreachable).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let conflict = CoordError::VersionConflict {
            job_id: "a".into(),
            expected: 3,
            current: 5,
        };
        let e = ApiError::from(conflict);
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(e.detail.current_version, Some(5));
    }

    #[test]
    fn error_body_has_the_documented_shape() {
        let e = ApiError::bad_request("invalid_job", "schedule", "bad cron");
        let json = serde_json::to_value(ErrorBody { error: e.detail }).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "invalid_job", "message": "bad cron", "field": "schedule"}})
        );
    }
}
