//! Bearer-token authentication of the `/v1` routes.
//!
//! The admin API can create jobs that run shell commands on every worker, so
//! writes are never open by default: without a configured token every
//! mutating request answers 403 ("read-only until a token is set"), and with
//! one it needs `Authorization: Bearer <token>`. Reads need the token too
//! unless `[api] open_reads = true`, because job definitions may carry
//! secrets (webhook headers, command lines). `/metrics`, `/healthz` and
//! `/readyz` are outside this layer: probes and scrapers carry no token.
//!
//! The token comes from `SHARDCRON_API_TOKEN` (which wins, so a secret store
//! can inject it without touching the file) or `[api] token`. It is compared
//! in constant time (`subtle`), so response timing does not reveal how much of
//! a guess was right; only the length can leak, which says little about a
//! random token. 401 means "no credentials", 403 "credentials refused".
//!
//! Failed authentication is rate-limited per client address
//! ([`AuthLimiter`]): each address may fail `[api] auth_failures_per_minute`
//! times (a bucket refilled at that rate); past that, every request of that
//! address that needs the token answers 429 with `Retry-After` until the
//! bucket refills, without looking at the token, so guessing gets no faster
//! by sending the right token during the pause.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;

/// Environment variable holding the API token; wins over `[api] token`.
pub const API_TOKEN_ENV: &str = "SHARDCRON_API_TOKEN";

/// Failed authentications allowed per client address and minute when
/// `[api] auth_failures_per_minute` is not set.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 20;

/// The `[api]` table of the config file.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Bearer token from the file (`SHARDCRON_API_TOKEN` overrides it).
    pub token: Option<String>,
    /// Serve `GET /v1/...` without a token.
    pub open_reads: bool,
    /// Handlers jobs written through the API may use (`None`: every handler
    /// of the node).
    pub allow_handlers: Option<Vec<String>>,
    /// Failed authentications per client address and minute before 429.
    pub auth_failures_per_minute: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            token: None,
            open_reads: false,
            allow_handlers: None,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("open_reads", &self.open_reads)
            .field("allow_handlers", &self.allow_handlers)
            .field("auth_failures_per_minute", &self.auth_failures_per_minute)
            .finish()
    }
}

/// Most client addresses tracked; beyond it, addresses whose bucket has
/// refilled are forgotten first.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Per-address budget of failed authentications (a token bucket of
/// `per_minute` refilled at `per_minute` a minute).
#[derive(Debug)]
pub struct AuthLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AuthLimiter {
    /// A limiter allowing `per_minute` failures a minute per address (at
    /// least 1).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let rate = f64::from(self.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.per_minute));
        bucket.at = now;
    }

    /// `Some(seconds)` to wait when `client` has no failure left, else `None`.
    pub fn blocked(&self, client: IpAddr, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get_mut(&client)?;
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            return None;
        }
        let rate = f64::from(self.per_minute) / 60.0;
        // At least 1 s; a float of a few seconds converts exactly enough.
        Some(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
    }

    /// Counts one failed authentication of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&client) {
            let full = f64::from(self.per_minute);
            let rate = full / 60.0;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < full
            });
            if buckets.len() >= MAX_TRACKED_CLIENTS {
                return;
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: f64::from(self.per_minute),
            at: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

/// Who may do what: the resolved token and the read policy.
#[derive(Clone, Default)]
pub struct ApiAuth {
    token: Option<String>,
    open_reads: bool,
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("open_reads", &self.open_reads)
            .finish()
    }
}

impl ApiAuth {
    /// A policy with this token (`None` or empty: no token, read-only API).
    pub fn new(token: Option<String>, open_reads: bool) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
            open_reads,
        }
    }

    /// The policy of a worker: `env_token` (the value of
    /// [`API_TOKEN_ENV`], if set and not empty) wins over the file's token.
    pub fn resolve(config: &ApiConfig, env_token: Option<String>) -> Self {
        let env_token = env_token.filter(|t| !t.trim().is_empty());
        Self::new(
            env_token.or_else(|| config.token.clone()),
            config.open_reads,
        )
    }

    /// [`ApiAuth::resolve`] with the process environment.
    pub fn from_env(config: &ApiConfig) -> Self {
        Self::resolve(config, std::env::var(API_TOKEN_ENV).ok())
    }

    /// Whether a token is configured (writes possible at all).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether reads are served without a token.
    pub fn open_reads(&self) -> bool {
        self.open_reads
    }

    /// Decides a request: `Ok` to serve it, else the 401/403 answer.
    pub fn check(&self, method: &Method, authorization: Option<&str>) -> Result<(), ApiError> {
        let read = method == Method::GET || method == Method::HEAD;
        if read && self.open_reads {
            return Ok(());
        }
        let Some(expected) = &self.token else {
            let message = if read {
                format!(
                    "reads need a token: set [api] token or {API_TOKEN_ENV} (or [api] open_reads = true)"
                )
            } else {
                format!(
                    "the API is read-only until a token is set ([api] token or {API_TOKEN_ENV})"
                )
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, "read_only", message)
                .with_field("Authorization"));
        };
        let Some(given) = authorization.and_then(bearer) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing `Authorization: Bearer <token>`",
            )
            .with_field("Authorization"));
        };
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", "invalid API token")
                    .with_field("Authorization"),
            )
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (the scheme
/// is case-insensitive), or `None` for any other form.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The 429 answer while `client` is rate-limited.
pub fn too_many_failures(retry_after: u64) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_auth_failures",
        format!("too many failed authentications from this address; retry in {retry_after} s"),
    )
    .with_field("Authorization")
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The middleware in front of every `/v1` route.
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let read = request.method() == Method::GET || request.method() == Method::HEAD;
    if read && state.auth().open_reads() {
        return next.run(request).await;
    }
    let now = Instant::now();
    if let Some(retry_after) = state.limiter().blocked(client, now) {
        return too_many_failures(retry_after);
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth().check(request.method(), authorization) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED || e.detail.code == "forbidden" {
                state.limiter().failed(client, now);
            }
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(auth: &ApiAuth, method: Method, header: Option<&str>) -> Option<StatusCode> {
        auth.check(&method, header).err().map(|e| e.status)
    }

    #[test]
    fn writes_are_closed_without_a_token() {
        let auth = ApiAuth::new(None, true);
        assert_eq!(
            status(&auth, Method::PUT, Some("Bearer x")),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(status(&auth, Method::GET, None), None);
        let closed = ApiAuth::new(Some(String::new()), false);
        assert!(!closed.has_token());
        assert_eq!(
            status(&closed, Method::GET, None),
            Some(StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn token_rules() {
        let auth = ApiAuth::new(Some("s3cret".into()), false);
        assert_eq!(
            status(&auth, Method::POST, None),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&auth, Method::POST, Some("Basic czNjcmV0")),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(&auth, Method::POST, Some("Bearer s3cre")),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(status(&auth, Method::POST, Some("bearer  s3cret ")), None);
        assert_eq!(
            status(&auth, Method::GET, None),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn failures_are_limited_per_address() {
        let limiter = AuthLimiter::new(3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.blocked(a, t0), None);
            limiter.failed(a, t0);
        }
        assert_eq!(limiter.blocked(a, t0), Some(20), "1 failure per 20 s");
        assert_eq!(
            limiter.blocked(b, t0),
            None,
            "other addresses are not affected"
        );
        let later = t0 + std::time::Duration::from_secs(20);
        assert_eq!(limiter.blocked(a, later), None, "refilled");
    }

    #[test]
    fn env_wins_over_file() {
        let config = ApiConfig {
            token: Some("file".into()),
            ..ApiConfig::default()
        };
        let auth = ApiAuth::resolve(&config, Some("env".into()));
        assert!(auth.check(&Method::PUT, Some("Bearer env")).is_ok());
        assert!(auth.check(&Method::PUT, Some("Bearer file")).is_err());
        let auth = ApiAuth::resolve(&config, Some(" ".into()));
        assert!(auth.check(&Method::PUT, Some("Bearer file")).is_ok());
        assert!(!format!("{auth:?}").contains("file"));
    }
}
