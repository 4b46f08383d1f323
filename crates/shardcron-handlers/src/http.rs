//! The `http` handler: sends one HTTP request per fire (a webhook).
//!
//! Shardcron runs each fire once, but "once" ends at the network: a request can
//! reach the server and its answer be lost, and the fire is then retried (or a
//! node that lost its lease was still sending). The server is the only party
//! that can collapse those duplicates, so every request carries the fire id as
//! `Idempotency-Key` (the de-facto standard header) and, for servers that want
//! more, `X-Shardcron-Fire-Id`, `X-Shardcron-Scheduled-At` (Unix ms),
//! `X-Shardcron-Fencing-Token` (which only grows across lease changes of a
//! shard, so a server can refuse a stale node), `X-Shardcron-Attempt` and
//! `X-Shardcron-Delivery` (above 1: a recovered `at_least_once` fire).
//!
//! Failures are classified for the retry policy: connection errors, timeouts,
//! `5xx`, `429` and `408` are retryable; any other status outside
//! `expect_status` (other `4xx`, say) is permanent, since sending the same
//! request again cannot change the answer. The request stops promptly when the
//! fire is cancelled (the node lost the shard) or its timeout elapses.
//!
//! TLS is rustls (no system OpenSSL); server certificates are checked against
//! the platform's trust store.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use shardcron_runtime::{FireContext, Handler, HandlerError, RunOutput};

/// Name under which [`HttpHandler`] is registered.
pub const HTTP_HANDLER_NAME: &str = "http";

/// Request timeout used when neither the args nor the job set one, so that a
/// request cannot hang forever.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of the response body kept in the run detail.
pub const RESPONSE_BODY_DETAIL_BYTES: usize = 1024;

/// Arguments of the `http` handler, as stored in a job's `args`.
///
/// JSON form: `{"url": "...", "method": "POST", "headers": {"K": "V"},
/// "body": "...", "expect_status": "200-299", "timeout": "10s"}`; only `url`
/// is required and unknown keys are rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// Target URL; the scheme must be `http` or `https`.
    pub url: String,
    /// Request method; `POST` when a body is given, `GET` otherwise. Standard
    /// methods are accepted in any case and sent upper-case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Extra request headers. The `Idempotency-Key` and `X-Shardcron-*`
    /// headers are set after these and win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Accepted statuses, `N` or `N-M` (inclusive); `200-299` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<String>,
    /// Request timeout in humantime form (`10s`, `1m 30s`); the job's own
    /// timeout still applies when shorter, and [`DEFAULT_HTTP_TIMEOUT`] when
    /// neither is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

impl HttpArgs {
    /// Arguments that `GET` `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Parses and checks a job's `args`.
    pub fn from_json(args: &serde_json::Value) -> Result<Self, String> {
        let parsed: Self =
            serde_json::from_value(args.clone()).map_err(|e| format!("http args: {e}"))?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// The JSON form, suitable as a job's `args`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("url".into(), self.url.clone().into());
        if let Some(m) = &self.method {
            map.insert("method".into(), m.clone().into());
        }
        if !self.headers.is_empty() {
            let headers: serde_json::Map<String, serde_json::Value> = self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
            map.insert("headers".into(), headers.into());
        }
        if let Some(b) = &self.body {
            map.insert("body".into(), b.clone().into());
        }
        if let Some(s) = &self.expect_status {
            map.insert("expect_status".into(), s.clone().into());
        }
        if let Some(t) = &self.timeout {
            map.insert("timeout".into(), t.clone().into());
        }
        serde_json::Value::Object(map)
    }

    /// Checks the values: URL scheme, method token, header names and values,
    /// status range and timeout.
    pub fn validate(&self) -> Result<(), String> {
        self.prepare().map(|_| ())
    }

    fn prepare(&self) -> Result<Prepared, String> {
        let url =
            Url::parse(&self.url).map_err(|e| format!("http args: \"url\" {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "http args: \"url\" scheme must be http or https, not {:?}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("http args: \"url\" {:?} has no host", self.url));
        }
        let method = match &self.method {
            Some(m) => parse_method(m)?,
            None if self.body.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("http args: invalid header name {k:?}"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("http args: invalid value for header {k:?}"))?;
            headers.append(name, value);
        }
        let expect = match &self.expect_status {
            Some(s) => s.parse::<StatusRange>()?,
            None => StatusRange::SUCCESS,
        };
        let timeout = match &self.timeout {
            Some(t) => {
                let d = humantime::parse_duration(t.trim())
                    .map_err(|e| format!("http args: \"timeout\" {t:?}: {e}"))?;
                if d.is_zero() {
                    return Err("http args: \"timeout\" must be positive".into());
                }
                Some(d)
            }
            None => None,
        };
        Ok(Prepared {
            url,
            method,
            headers,
            body: self.body.clone(),
            expect,
            timeout,
        })
    }
}

/// Checked [`HttpArgs`].
struct Prepared {
    url: Url,
    method: Method,
    headers: HeaderMap,
    body: Option<String>,
    expect: StatusRange,
    timeout: Option<Duration>,
}

fn parse_method(m: &str) -> Result<Method, String> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
    ];
    let upper = m.to_ascii_uppercase();
    let m = if STANDARD.contains(&upper.as_str()) {
        upper.as_str()
    } else {
        m
    };
    if m.is_empty() {
        return Err("http args: \"method\" must not be empty".into());
    }
    Method::from_bytes(m.as_bytes()).map_err(|_| format!("http args: invalid \"method\" {m:?}"))
}

/// An inclusive range of HTTP status codes, written `N` or `N-M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub min: u16,
    /// Highest accepted status.
    pub max: u16,
}

impl StatusRange {
    /// `200-299`, the default.
    pub const SUCCESS: StatusRange = StatusRange { min: 200, max: 299 };

    /// Whether `status` lies in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

impl FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("http args: \"expect_status\" {s:?} is not N or N-M with 100 <= N <= M <= 599")
        };
        let code = |part: &str| -> Result<u16, String> {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match part.parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(bad()),
            }
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => {
                let n = code(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err(bad());
        }
        Ok(StatusRange { min, max })
    }
}

/// Sends one HTTP request per fire; see the [module docs](self).
///
/// Success is a status within `expect_status`, with the status and the first
/// [`RESPONSE_BODY_DETAIL_BYTES`] of the body as detail.
#[derive(Debug, Default)]
pub struct HttpHandler {
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl HttpHandler {
    /// A handler whose client, built from [`default_client_builder`], is made
    /// on first use (a failure to build it fails that run, retryably).
    pub fn new() -> Self {
        Self::default()
    }

    /// A handler that sends through `client` (e.g. with a proxy or extra root
    /// certificates); timeouts and headers are still applied per request.
    pub fn with_client(client: reqwest::Client) -> Self {
        Self {
            client: OnceLock::from(Ok(client)),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, HandlerError> {
        self.client
            .get_or_init(|| {
                default_client_builder()
                    .build()
                    .map_err(|e| error_chain(&e))
            })
            .as_ref()
            .map_err(|e| HandlerError::new(format!("cannot build HTTP client: {e}")))
    }
}

/// The client settings [`HttpHandler::new`] uses: a `shardcron/VERSION` user
/// agent (a request's own `User-Agent` header wins), proxies from the
/// environment, up to 10 redirects.
pub fn default_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("shardcron/", env!("CARGO_PKG_VERSION")))
}

#[async_trait]
impl Handler for HttpHandler {
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError> {
        let args = HttpArgs::from_json(&ctx.args).map_err(HandlerError::permanent)?;
        let prepared = args.prepare().map_err(HandlerError::permanent)?;
        let client = self.client()?;

        let timeout = match (prepared.timeout, ctx.timeout) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => DEFAULT_HTTP_TIMEOUT,
        };

        let mut headers = prepared.headers;
        let fire_id = ctx.fire_id.to_string();
        for (name, value) in [
            ("idempotency-key", fire_id.clone()),
            ("x-shardcron-fire-id", fire_id),
            ("x-shardcron-scheduled-at", ctx.scheduled_ms.to_string()),
            ("x-shardcron-fencing-token", ctx.fencing_token.to_string()),
            ("x-shardcron-attempt", ctx.attempt.to_string()),
            ("x-shardcron-delivery", ctx.delivery.to_string()),
        ] {
            let value = HeaderValue::from_str(&value).map_err(|_| {
                HandlerError::permanent(format!(
                    "fire metadata {value:?} is not a valid header value"
                ))
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }

        let mut request = client
            .request(prepared.method.clone(), prepared.url.clone())
            .headers(headers);
        if let Some(body) = prepared.body {
            request = request.body(body);
        }

        let exchange = async {
            let response = request.send().await.map_err(request_error)?;
            let status = response.status();
            let body = read_prefix(response, RESPONSE_BODY_DETAIL_BYTES).await;
            Ok::<_, HandlerError>((status, body))
        };

        let (status, body) = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Err(HandlerError::new("cancelled")),
            r = tokio::time::timeout(timeout, exchange) => match r {
                Ok(r) => r?,
                Err(_) => {
                    return Err(HandlerError::new(format!(
                        "timed out after {}",
                        humantime::format_duration(timeout)
                    )))
                }
            },
        };

        let detail = format_detail(status, &body);
        tracing::debug!(fire = %ctx.fire_id, %status, "http: response");
        if prepared.expect.contains(status.as_u16()) {
            return Ok(RunOutput {
                detail: Some(detail),
            });
        }
        let message = format!(
            "unexpected HTTP status {} (expected {})",
            status_text(status),
            prepared.expect
        );
        let retryable = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        let err = if retryable {
            HandlerError::new(message)
        } else {
            HandlerError::permanent(message)
        };
        Err(err.with_detail(detail))
    }

    fn validate_args(&self, args: &serde_json::Value) -> Result<(), String> {
        HttpArgs::from_json(args).map(|_| ())
    }
}

/// Classifies a send error: a request that could not even be built is
/// permanent, anything on the way (connect, TLS, I/O) is retryable.
fn request_error(e: reqwest::Error) -> HandlerError {
    let message = format!("request failed: {}", error_chain(&e));
    if e.is_builder() {
        HandlerError::permanent(message)
    } else {
        HandlerError::new(message)
    }
}

/// `e` and its sources, joined by `: `.
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// Reads at most `limit` bytes of the body (and no more from the network,
/// beyond the chunk that crosses the limit); the flag says whether there was
/// more. A body error ends the read with what was had.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return (buf, true);
                }
                buf.extend_from_slice(&chunk);
                if buf.len() == limit {
                    // More may follow; peek without reading the rest.
                    let more = matches!(response.chunk().await, Ok(Some(c)) if !c.is_empty());
                    return (buf, more);
                }
            }
            Ok(None) => return (buf, false),
            Err(e) => {
                tracing::debug!(error = %e, "http: reading response body failed");
                return (buf, false);
            }
        }
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn format_detail(status: StatusCode, (body, truncated): &(Vec<u8>, bool)) -> String {
    let mut s = format!("HTTP {}", status_text(status));
    if !body.is_empty() {
        s.push('\n');
        s.push_str(&String::from_utf8_lossy(body));
        if *truncated {
            s.push_str("\n[body truncated]");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_status_ranges() {
        assert_eq!("200".parse(), Ok(StatusRange { min: 200, max: 200 }));
        assert_eq!("200-299".parse(), Ok(StatusRange::SUCCESS));
        assert_eq!(
            " 201 - 204 ".parse(),
            Ok(StatusRange { min: 201, max: 204 })
        );
        for bad in [
            "", "2xx", "300-200", "99", "600", "200-", "-200", "+200", "1-2-3",
        ] {
            assert!(bad.parse::<StatusRange>().is_err(), "{bad:?}");
        }
        assert_eq!(StatusRange { min: 204, max: 204 }.to_string(), "204");
        assert_eq!(StatusRange::SUCCESS.to_string(), "200-299");
    }

    #[test]
    fn validates_args() {
        let h = HttpHandler::new();
        let full = json!({
            "url": "https://example.com/hook",
            "method": "put",
            "headers": {"Authorization": "Bearer x"},
            "body": "{}",
            "expect_status": "200-204",
            "timeout": "1m 30s"
        });
        assert_eq!(h.validate_args(&full), Ok(()));
        assert_eq!(HttpArgs::from_json(&full).unwrap().to_json(), full);
        assert_eq!(
            HttpArgs::new("http://x/").to_json(),
            json!({"url": "http://x/"})
        );

        let err = h
            .validate_args(&json!({"url": "http://x/", "bdy": "1"}))
            .unwrap_err();
        assert!(err.contains("bdy"), "{err}");
        for bad in [
            json!({}),
            json!({"url": "ftp://x/"}),
            json!({"url": "not a url"}),
            json!({"url": "http://x/", "method": "GE T"}),
            json!({"url": "http://x/", "method": ""}),
            json!({"url": "http://x/", "expect_status": "2xx"}),
            json!({"url": "http://x/", "timeout": "soon"}),
            json!({"url": "http://x/", "timeout": "0s"}),
            json!({"url": "http://x/", "headers": {"Bad Name": "v"}}),
            json!({"url": "http://x/", "headers": {"X": "a\nb"}}),
        ] {
            assert!(h.validate_args(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn method_defaults_and_case() {
        let with_body = HttpArgs {
            body: Some("x".into()),
            ..HttpArgs::new("http://x/")
        };
        assert_eq!(with_body.prepare().unwrap().method, Method::POST);
        assert_eq!(
            HttpArgs::new("http://x/").prepare().unwrap().method,
            Method::GET
        );
        assert_eq!(parse_method("delete").unwrap(), Method::DELETE);
        assert_eq!(parse_method("PURGE").unwrap().as_str(), "PURGE");
    }
}
