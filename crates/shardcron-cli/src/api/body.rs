//! Reading and checking a job from a request: content type, size, JSON,
//! fields, then the same validation every other way in goes through.
//!
//! The body is the stored [`JobSpec`] as JSON, with `id` optional (the path
//! names the job; an `id` in the body must agree; null counts as absent), or
//! a job file entry: `exec = "cmd"` or an `http` table instead of `handler` +
//! `args`, `retries` instead of `retry` (so an entry of a jobs file can be
//! sent as is; see [`crate::jobs_input`]). It is read in steps so that
//! each failure has its own status and names its field: 415 for a body that
//! does not claim to be JSON, 413 beyond [`MAX_BODY_BYTES`], 400 for invalid
//! JSON (`body`), an unknown key (`unknown_field`, e.g. `retry.backof`), a
//! value of the wrong type (the serde path, e.g. `timeout`), then
//! [`JobSpec::validate_new`] (cron, zone, id, args size, a schedule that
//! fires...), then `[api] allow_handlers` (403 naming a handler the API may
//! not write) and finally the node's handler registry (`handler` unknown to
//! this node, `args` refused by the handler). Nothing reaches the store
//! unless every step passed.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{Map, Value};
use shardcron_core::{validate_job_id, JobSpec};
use shardcron_handlers::{EXEC_HANDLER_NAME, HTTP_HANDLER_NAME};

use super::error::{ApiError, ApiResult};
use super::ApiState;
use crate::jobs_input::{self, now_ms};

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
    "delivery",
    "placement",
    "cost",
    "metrics_label",
];

/// Keys of a job file entry that the stored form does not have.
pub const ENTRY_ONLY_FIELDS: &[&str] = &["exec", "http", "retries"];

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

/// JSON does not tell `2` from `2.0`, and JSON Schema calls both integers;
/// serde does not. Rewrites every float with no fractional part that fits an
/// integer as that integer, so `"retries": 2.0` means 2.
fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // Exactly representable range of integers in an f64.
                const LIMIT: f64 = 9_007_199_254_740_992.0;
                if f.fract() == 0.0 && f.abs() <= LIMIT {
                    // In range and integral, so the conversion is exact.
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Parses a job body for the job `path_id` (structure and types only; see
/// [`validate_job`]). Never panics, whatever the bytes.
pub fn parse_job_body(path_id: &str, bytes: &[u8]) -> ApiResult<JobSpec> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", "body", format!("invalid JSON: {e}")))?;
    let mut value = value;
    integral_floats_to_integers(&mut value);
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "body",
            "expected a JSON object (a job)",
        ));
    };
    if matches!(map.get("id"), Some(Value::Null)) {
        map.remove("id");
    }
    refuse_nulls(&map)?;
    if map.contains_key("exec") || map.contains_key("http") {
        return parse_entry_body(path_id, map);
    }
    if let Some(key) = map.keys().find(|k| !JOB_SPEC_FIELDS.contains(&k.as_str())) {
        let message = if ENTRY_ONLY_FIELDS.contains(&key.as_str()) {
            "`retries` belongs to the job file form (with `exec` or `http`); with `handler` + `args` use `retry.max_retries`".to_owned()
        } else {
            format!(
                "unknown field; expected one of: {}, or a job file entry with exec/http",
                JOB_SPEC_FIELDS.join(", ")
            )
        };
        return Err(ApiError::bad_request("unknown_field", key.clone(), message));
    }
    if let Some(Value::Object(retry)) = map.get("retry") {
        unknown_key(retry, RETRY_FIELDS, "retry.")?;
    }
    if let Some(missing) = ["schedule", "handler"]
        .into_iter()
        .find(|k| !map.contains_key(*k))
    {
        let message = if missing == "handler" {
            "missing (required): give `handler` (with `args`), or `exec` or `http` as in a jobs file"
        } else {
            "missing (required)"
        };
        return Err(ApiError::bad_request("missing_field", missing, message));
    }
    body_id(path_id, &mut map)?;
    serde_path_to_error::deserialize::<_, JobSpec>(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::bad_request("invalid_field", field, e.into_inner().to_string())
    })
}

/// Refuses null values (a null `id` was already removed): serde and the
/// jobs-file reader would take some of them as "not given", but the
/// document declares no nullable field, so a null is refused like any other
/// wrong type, one level deep too (`retry`, `http`, and the `args` of the
/// built-in handlers, whose arguments the document describes).
fn refuse_nulls(map: &Map<String, Value>) -> ApiResult<()> {
    let builtin = matches!(
        map.get("handler").and_then(Value::as_str),
        Some(EXEC_HANDLER_NAME | HTTP_HANDLER_NAME)
    );
    for (key, value) in map {
        let nested = match (key.as_str(), value) {
            ("retry" | "http", Value::Object(inner)) => inner.iter().find(|(_, v)| v.is_null()),
            ("args", Value::Object(inner)) if builtin => inner.iter().find(|(_, v)| v.is_null()),
            _ => None,
        };
        let field = match (value.is_null(), nested) {
            (true, _) => key.clone(),
            (false, Some((inner, _))) => format!("{key}.{inner}"),
            (false, None) => continue,
        };
        return Err(ApiError::bad_request(
            "invalid_field",
            field,
            "null is not a value here; omit the field instead",
        ));
    }
    Ok(())
}

/// Fills in the path's id when the body has none; a body naming another job
/// is 409 (the request's body and target disagree), an id that is not a
/// string 400.
fn body_id(path_id: &str, map: &mut Map<String, Value>) -> ApiResult<()> {
    match map.get("id") {
        None => {
            map.insert("id".to_owned(), Value::String(path_id.to_owned()));
            Ok(())
        }
        Some(Value::String(id)) if id == path_id => Ok(()),
        Some(Value::String(id)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "id_mismatch",
            format!("the body's id {id:?} names another job than the path's {path_id:?}; omit it or make them equal"),
        )
        .with_field("id")),
        Some(other) => Err(ApiError::bad_request(
            "invalid_field",
            "id",
            format!("expected the job id as a string, found {other}"),
        )),
    }
}

/// A job file entry (`exec` or `http`): read like an entry of a jobs file,
/// with the path's id when the body has none.
fn parse_entry_body(path_id: &str, mut map: Map<String, Value>) -> ApiResult<JobSpec> {
    body_id(path_id, &mut map)?;
    let input = jobs_input::parse_entry(0, &Value::Object(map)).map_err(|e| {
        let field = e.field.unwrap_or_else(|| "body".to_owned());
        let code = if e.message.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_field"
        };
        ApiError::bad_request(code, field, e.message)
    })?;
    input
        .build_spec(None)
        .map(|(spec, _)| spec)
        .map_err(|(field, message)| ApiError::bad_request("invalid_job", field, message))
}

/// Validates a parsed job like a worker would before storing it: every
/// field ([`JobSpec::validate_new`], including a schedule that fires), a
/// handler the API may write (`[api] allow_handlers`, else 403 naming it)
/// that this node knows and that accepts the args, and (when the node has
/// one) a misfire grace shorter than its claim retention, since older fires
/// could otherwise be claimed twice.
pub fn validate_job(spec: &JobSpec, state: &ApiState) -> ApiResult<()> {
    let handlers = state.handlers();
    let max_misfire_grace: Option<Duration> = state.max_misfire_grace();
    spec.validate_new(now_ms())
        .map_err(|e| ApiError::bad_request("invalid_job", e.field, e.message))?;
    if !state.handler_allowed(&spec.handler) {
        let allowed = state.allow_handlers().unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "handler_forbidden",
            format!(
                "handler {:?} may not be written through the API on this node ([api] allow_handlers = [{}])",
                spec.handler,
                allowed
                    .iter()
                    .map(|h| format!("{h:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_field("handler"));
    }
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
        spec.cost = Some(2.5);
        spec.placement = shardcron_core::Placement::Leader;
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
        assert_eq!(
            field(r#"{"schedule":"@every 1s","handler":"x","retries":2}"#),
            Some("retries".into())
        );
        assert_eq!(
            field(r#"{"schedule":"@every 1s","exec":"true","retry":{}}"#),
            Some("retry".into())
        );
        assert_eq!(
            field(r#"{"schedule":"@every 1s","exec":"true","http":{"url":"http://x"}}"#),
            Some("exec".into())
        );
        for delivery in [r#""maybe""#, "1", "null", r#""AT_LEAST_ONCE""#] {
            assert_eq!(
                field(&format!(
                    r#"{{"schedule":"@every 1s","handler":"x","delivery":{delivery}}}"#
                )),
                Some("delivery".into()),
                "stored form, {delivery}"
            );
            assert_eq!(
                field(&format!(
                    r#"{{"schedule":"@every 1s","exec":"true","delivery":{delivery}}}"#
                )),
                Some("delivery".into()),
                "entry form, {delivery}"
            );
        }
    }

    #[test]
    fn delivery_is_read_in_both_forms() {
        use shardcron_core::Delivery;
        for (body, expected) in [
            (
                r#"{"schedule":"@hourly","handler":"x"}"#,
                Delivery::AtMostOnce,
            ),
            (
                r#"{"schedule":"@hourly","handler":"x","delivery":"at_least_once"}"#,
                Delivery::AtLeastOnce,
            ),
            (
                r#"{"schedule":"@hourly","handler":"x","delivery":"at_most_once"}"#,
                Delivery::AtMostOnce,
            ),
            (
                r#"{"schedule":"@hourly","exec":"true"}"#,
                Delivery::AtMostOnce,
            ),
            (
                r#"{"schedule":"@hourly","exec":"true","delivery":"at_least_once"}"#,
                Delivery::AtLeastOnce,
            ),
        ] {
            let spec = parse_job_body("a", body.as_bytes()).expect(body);
            assert_eq!(spec.delivery, expected, "{body}");
        }
    }

    #[test]
    fn integral_floats_are_integers() {
        let spec = parse_job_body(
            "a",
            br#"{"schedule":"@hourly","handler":"x","retry":{"max_retries":3.0}}"#,
        )
        .expect("3.0 is 3");
        assert_eq!(spec.retry.max_retries, 3);
        assert_eq!(
            field(r#"{"schedule":"@hourly","handler":"x","retry":{"max_retries":3.5}}"#),
            Some("retry.max_retries".into())
        );
    }

    #[test]
    fn job_file_entries_are_accepted() {
        let spec = parse_job_body(
            "a",
            br#"{"id":null,"schedule":"@hourly","exec":"echo hi","retries":2,"tz":"Europe/Berlin"}"#,
        )
        .expect("entry");
        assert_eq!(spec.handler, "exec");
        assert_eq!(spec.args, serde_json::json!({"command": "echo hi"}));
        assert_eq!(spec.retry.max_retries, 2);
        assert_eq!(spec.tz, "Europe/Berlin");
        let spec = parse_job_body(
            "a",
            br#"{"schedule":"@hourly","http":{"url":"https://example.com/hook","method":"POST"}}"#,
        )
        .expect("entry");
        assert_eq!(spec.handler, "http");
        assert_eq!(spec.args["url"], "https://example.com/hook");
        let spec =
            parse_job_body("a", br#"{"id":null,"schedule":"@hourly","handler":"x"}"#).expect("ok");
        assert_eq!(spec.id, "a", "a null id is an absent one");
    }

    #[test]
    fn id_is_taken_from_the_path() {
        let spec = parse_job_body("a", br#"{"schedule":"@every 1s","handler":"x"}"#).expect("ok");
        assert_eq!(spec.id, "a");
    }
}
