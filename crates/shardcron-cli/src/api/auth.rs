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

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;

/// Environment variable holding the API token; wins over `[api] token`.
pub const API_TOKEN_ENV: &str = "SHARDCRON_API_TOKEN";

/// The `[api]` table of the config file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    /// Bearer token from the file (`SHARDCRON_API_TOKEN` overrides it).
    pub token: Option<String>,
    /// Serve `GET /v1/...` without a token.
    pub open_reads: bool,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("open_reads", &self.open_reads)
            .finish()
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

/// The middleware in front of every `/v1` route.
pub async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth().check(request.method(), authorization) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
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
    fn env_wins_over_file() {
        let config = ApiConfig {
            token: Some("file".into()),
            open_reads: false,
        };
        let auth = ApiAuth::resolve(&config, Some("env".into()));
        assert!(auth.check(&Method::PUT, Some("Bearer env")).is_ok());
        assert!(auth.check(&Method::PUT, Some("Bearer file")).is_err());
        let auth = ApiAuth::resolve(&config, Some(" ".into()));
        assert!(auth.check(&Method::PUT, Some("Bearer file")).is_ok());
        assert!(!format!("{auth:?}").contains("file"));
    }
}
