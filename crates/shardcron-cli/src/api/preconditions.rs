//! Optimistic concurrency through HTTP preconditions.
//!
//! A job's version (bumped by every write, never reused) is its entity tag:
//! responses carry `ETag: "<version>"`, and writes may send it back as
//! `If-Match` so that a read-modify-write by one operator cannot silently
//! undo another's change: if the job moved on, the write answers 412 with
//! the current version and changes nothing. The version check happens inside
//! the store's atomic write (`expected_version`), not in a separate read, so
//! no other write can slip in between. `If-None-Match: *` on `PUT` turns it
//! into create-only. Only strong, single tags are understood; anything else
//! is a 400 rather than a precondition silently ignored.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

use super::error::{ApiError, ApiResult};

/// A parsed `If-Match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the job must exist, at any version.
    Any,
    /// The job must be at exactly this version.
    Version(u64),
}

impl IfMatch {
    /// The version the store must see, given the job's `current` version
    /// (0 = absent) as just read.
    pub fn expected(self, current: u64) -> u64 {
        match self {
            Self::Any => current,
            Self::Version(v) => v,
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> ApiResult<Option<&'a str>> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_precondition",
            name.as_str(),
            format!("`{name}` must be a single quoted version such as \"7\", or *"),
        )
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    first
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| invalid())
}

/// Parses `If-Match`: `*`, `"7"` or `7` (quotes optional).
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<IfMatch>> {
    let Some(text) = header_text(headers, &header::IF_MATCH)? else {
        return Ok(None);
    };
    if text == "*" {
        return Ok(Some(IfMatch::Any));
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    match unquoted.parse::<u64>() {
        Ok(v) if v > 0 => Ok(Some(IfMatch::Version(v))),
        _ => Err(ApiError::bad_request(
            "invalid_precondition",
            "If-Match",
            format!(
                "{text:?} is not a job version; send the ETag of a GET (e.g. \"7\") or * (weak tags and lists are not supported)"
            ),
        )),
    }
}

/// Parses `If-None-Match` on `PUT`: only `*` (create only) is meaningful.
pub fn if_none_match_any(headers: &HeaderMap) -> ApiResult<bool> {
    match header_text(headers, &header::IF_NONE_MATCH)? {
        None => Ok(false),
        Some("*") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_precondition",
            "If-None-Match",
            format!("{other:?} is not supported; send * to create only"),
        )),
    }
}

/// The `ETag` header of a job version.
pub fn etag(version: u64) -> (HeaderName, HeaderValue) {
    // Digits and quotes are always a valid header value.
    let value = HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    (header::ETAG, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("value"));
        h
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(if_match(&HeaderMap::new()), Ok(None));
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "*")),
            Ok(Some(IfMatch::Any))
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"12\"")),
            Ok(Some(IfMatch::Version(12)))
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "12")),
            Ok(Some(IfMatch::Version(12)))
        );
        for bad in ["W/\"1\"", "\"1\", \"2\"", "x", "0", "\"\"", ""] {
            let e = if_match(&headers(header::IF_MATCH, bad)).expect_err(bad);
            assert_eq!(e.detail.field.as_deref(), Some("If-Match"));
        }
    }

    #[test]
    fn if_none_match_only_star() {
        assert_eq!(if_none_match_any(&HeaderMap::new()), Ok(false));
        assert_eq!(
            if_none_match_any(&headers(header::IF_NONE_MATCH, "*")),
            Ok(true)
        );
        assert!(if_none_match_any(&headers(header::IF_NONE_MATCH, "\"3\"")).is_err());
    }
}
