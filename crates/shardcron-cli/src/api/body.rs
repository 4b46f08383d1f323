//! Reading and checking a job from a request: content type, size, JSON,
//! fields, then the same validation every other way in goes through.
//!
//! The body is the stored [`JobSpec`] as JSON, with `id` optional (the path
//! names the job; an `id` in the body must agree). It is read in steps so that
//! each failure has its own status and names its field: 415 for a body that
//! does not claim to be JSON, 413 beyond [`MAX_BODY_BYTES`], 400 for invalid
//! JSON (`body`), an unknown key (`unknown_field`, e.g. `retry.backof`), a
//! value of the wrong type (the serde path, e.g. `timeout`), then
//! [`JobSpec::validate`] (cron, zone, id, args size...) and finally the node's
//! handler registry (`handler` unknown to this node, `args` refused by the
//! handler). Nothing reaches the store unless every step passed.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};
use shardcron_core::{validate_job_id, JobSpec};
use shardcron_runtime::HandlerRegistry;

use super::error::{ApiError, ApiResult};

/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Keys of a job object (those of [`JobSpec`]).
pub const JOB_SPEC_FIELDS: &[&str] = &[
    "id",
    "schedule",
    "tz",
    "handler",
    "args",
    "timeout",
    "retry",
    "overlap",
    "misfire",
    "misfire_grace",
    "paused",
    "metrics_label",
];

/// Keys of a job's `retry` object.
pub const RETRY_FIELDS: &[&str] = &["max_retries", "backoff", "max_backoff"];

/// 415 unless the request says its body is JSON (`application/json` or a
/// `+json` type, parameters such as `charset` allowed).
pub fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected `Content-Type: application/json`, got {content_type:?}"),
        )
        .with_field("Content-Type"))
    }
}

/// The body, or 413 when it exceeds [`MAX_BODY_BYTES`].
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            )
            .with_field("body")
        } else {
            ApiError::bad_request("invalid_body", "body", rejection.body_text())
        }
    })
}

/// Checks a job id taken from the path (400 naming `id`).
pub fn check_path_id(id: &str) -> ApiResult<()> {
    validate_job_id(id)
        .map_err(|m| ApiError::bad_request("invalid_job", "id", format!("job id {id:?} {m}")))
}

fn unknown_key(map: &Map<String, Value>, known: &[&str], prefix: &str) -> ApiResult<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(ApiError::bad_request(
            "unknown_field",
            format!("{prefix}{key}"),
            format!("unknown field; expected one of: {}", known.join(", ")),
        )),
    }
}

/// Parses a job body for the job `path_id` (structure and types only; see
/// [`validate_job`]). Never panics, whatever the bytes.
pub fn parse_job_body(path_id: &str, bytes: &[u8]) -> ApiResult<JobSpec> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", "body", format!("invalid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "body",
            "expected a JSON object (a job)",
        ));
    };
    unknown_key(&map, JOB_SPEC_FIELDS, "")?;
    if let Some(Value::Object(retry)) = map.get("retry") {
        unknown_key(retry, RETRY_FIELDS, "retry.")?;
    }
    if let Some(missing) = ["schedule", "handler"]
        .into_iter()
        .find(|k| !map.contains_key(*k))
    {
        return Err(ApiError::bad_request(
            "missing_field",
            missing,
            "missing (required)",
        ));
    }
    match map.get("id") {
        None => {
            map.insert("id".to_owned(), Value::String(path_id.to_owned()));
        }
        Some(Value::String(id)) if id == path_id => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "id_mismatch",
                "id",
                format!("the body's id {other} differs from the path's {path_id:?}; omit it or make them equal"),
            ))
        }
    }
    serde_path_to_error::deserialize::<_, JobSpec>(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::bad_request("invalid_field", field, e.into_inner().to_string())
    })
}

/// Validates a parsed job like a worker would before storing it: every
/// field ([`JobSpec::validate`]), a handler this node knows and that accepts
/// the args, and (when the node has one) a misfire grace shorter than its
/// claim retention, since older fires could otherwise be claimed twice.
pub fn validate_job(
    spec: &JobSpec,
    handlers: &HandlerRegistry,
    max_misfire_grace: Option<Duration>,
) -> ApiResult<()> {
    spec.validate()
        .map_err(|e| ApiError::bad_request("invalid_job", e.field, e.message))?;
    if handlers.get(&spec.handler).is_none() {
        return Err(ApiError::bad_request(
            "unknown_handler",
            "handler",
            format!(
                "no handler {:?} on this node; registered: {}",
                spec.handler,
                handlers.names().join(", ")
            ),
        ));
    }
    handlers
        .validate(&spec.handler, &spec.args)
        .map_err(|m| ApiError::bad_request("invalid_job", "args", m))?;
    if let Some(limit) = max_misfire_grace {
        if spec.misfire_grace >= limit {
            return Err(ApiError::bad_request(
                "invalid_job",
                "misfire_grace",
                format!(
                    "{} must be shorter than the workers' claim_retention ({})",
                    humantime::format_duration(spec.misfire_grace),
                    humantime::format_duration(limit)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shardcron_core::RetryPolicy;

    use super::*;

    fn field(bytes: &str) -> Option<String> {
        parse_job_body("a", bytes.as_bytes())
            .expect_err(bytes)
            .detail
            .field
    }

    #[test]
    fn field_list_matches_the_serialized_spec() {
        let mut spec = JobSpec::new("a", "@every 1s", "exec");
        spec.args = serde_json::json!({"command": "true"});
        spec.timeout = Some(Duration::from_secs(3));
        spec.retry = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        spec.metrics_label = Some("label".into());
        let Value::Object(map) = serde_json::to_value(&spec).expect("json") else {
            panic!("not an object");
        };
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let mut expected = JOB_SPEC_FIELDS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let Value::Object(retry) = &map["retry"] else {
            panic!("retry not an object");
        };
        let mut keys: Vec<&str> = retry.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = RETRY_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn errors_name_their_field() {
        assert_eq!(field("{"), Some("body".into()));
        assert_eq!(field("[1]"), Some("body".into()));
        assert_eq!(
            field(r#"{"schedule":"@every 1s","handler":"x","shedule":1}"#),
            Some("shedule".into())
        );
        assert_eq!(
            field(r#"{"schedule":"@every 1s","handler":"x","retry":{"backof":"1s"}}"#),
            Some("retry.backof".into())
        );
        assert_eq!(
            field(r#"{"schedule":"@every 1s","handler":"x","timeout":5}"#),
            Some("timeout".into())
        );
        assert_eq!(
            field(r#"{"schedule":"@every 1s","handler":"x","retry":{"backoff":true}}"#),
            Some("retry.backoff".into())
        );
        assert_eq!(
            field(r#"{"id":"b","schedule":"@every 1s","handler":"x"}"#),
            Some("id".into())
        );
        assert_eq!(field(r#"{"handler":"x"}"#), Some("schedule".into()));
    }

    #[test]
    fn id_is_taken_from_the_path() {
        let spec = parse_job_body("a", br#"{"schedule":"@every 1s","handler":"x"}"#).expect("ok");
        assert_eq!(spec.id, "a");
    }
}
