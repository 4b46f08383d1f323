//! The authenticated admin HTTP API (`/v1/...`), served on the worker's
//! `--api-listen` address, or on its `--listen` address next to `/metrics`,
//! `/healthz` and `/readyz` when no separate API address is given.
//!
//! Why in the worker: every node already has the coordination store and the
//! handler registry, so any node can validate a job exactly as the fleet will
//! run it (a handler unknown to the node is refused at write time instead of
//! failing at fire time) and write it; the change reaches the owning node
//! through the store's change notifications like any other write.
//!
//! Layout:
//! * [`auth`]: bearer token, read/write policy (writes never open by
//!   default), rate limiting of failed authentication.
//! * [`preconditions`]: `If-Match` / `If-None-Match` over job versions.
//! * [`body`]: content type, size limit, JSON and field-level validation.
//! * [`jobs`]: the job routes; [`reads`]: runs and status; [`query`]:
//!   query strings.
//! * [`schema`]: response types and the OpenAPI mirror of `JobSpec`.
//! * [`openapi`]: the document, generated from the same route table that
//!   builds the router ([`routes()`]), so the two cannot drift apart.
//! * [`error`]: the one error shape and the status mapping.
//!
//! The admin server starts before Redis is reached (so probes answer at
//! once); until the worker has connected, the API answers 503.

pub mod auth;
pub mod body;
pub mod error;
pub mod jobs;
pub mod openapi;
pub mod preconditions;
pub mod query;
pub mod reads;
pub mod schema;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use shardcron_coord::Coordinator;
use shardcron_runtime::HandlerRegistry;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{ApiAuth, ApiConfig, AuthLimiter, API_TOKEN_ENV, DEFAULT_AUTH_FAILURES_PER_MINUTE};
pub use body::MAX_BODY_BYTES;
pub use error::{ApiError, ApiResult, ErrorBody, ErrorDetail};

/// What the API handlers share: the store (once connected), the handler
/// registry used for validation, the auth policy and the misfire-grace limit.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    coord: OnceLock<Arc<dyn Coordinator>>,
    handlers: HandlerRegistry,
    auth: ApiAuth,
    max_misfire_grace: Option<Duration>,
    allow_handlers: Option<Vec<String>>,
    limiter: AuthLimiter,
}

impl ApiState {
    /// State validating jobs against `handlers`, not yet connected.
    /// `max_misfire_grace` is the workers' claim retention: a job's misfire
    /// grace must be shorter (`None`: no such check).
    pub fn new(
        auth: ApiAuth,
        handlers: HandlerRegistry,
        max_misfire_grace: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                coord: OnceLock::new(),
                handlers,
                auth,
                max_misfire_grace,
                allow_handlers: None,
                limiter: AuthLimiter::new(DEFAULT_AUTH_FAILURES_PER_MINUTE),
            }),
        }
    }

    /// State with the `[api]` policies of `config` besides the token:
    /// allowed handlers and the failed-authentication rate. Call before
    /// sharing the state.
    pub fn with_config(self, config: &ApiConfig) -> Self {
        let inner = Inner {
            coord: OnceLock::new(),
            handlers: self.inner.handlers.clone(),
            auth: self.inner.auth.clone(),
            max_misfire_grace: self.inner.max_misfire_grace,
            allow_handlers: config.allow_handlers.clone(),
            limiter: AuthLimiter::new(config.auth_failures_per_minute),
        };
        if let Some(coord) = self.inner.coord.get() {
            let _ = inner.coord.set(Arc::clone(coord));
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Connected state (tests and embedders that already have a store).
    pub fn connected(
        coord: Arc<dyn Coordinator>,
        auth: ApiAuth,
        handlers: HandlerRegistry,
        max_misfire_grace: Option<Duration>,
    ) -> Self {
        let state = Self::new(auth, handlers, max_misfire_grace);
        state.connect(coord);
        state
    }

    /// Hands the store to the API once the worker has connected; later calls
    /// are ignored (the first store stays).
    pub fn connect(&self, coord: Arc<dyn Coordinator>) {
        let _ = self.inner.coord.set(coord);
    }

    /// The store, or 503 while the worker is still waiting for it.
    pub fn coord(&self) -> ApiResult<Arc<dyn Coordinator>> {
        self.inner.coord.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this node has not reached the store yet",
            )
        })
    }

    /// The auth policy.
    pub fn auth(&self) -> &ApiAuth {
        &self.inner.auth
    }

    /// The handlers jobs are validated against.
    pub fn handlers(&self) -> &HandlerRegistry {
        &self.inner.handlers
    }

    /// Upper bound (exclusive) of a job's misfire grace, if any.
    pub fn max_misfire_grace(&self) -> Option<Duration> {
        self.inner.max_misfire_grace
    }

    /// Whether jobs written through the API may use `handler`
    /// (`[api] allow_handlers`; every handler when unset).
    pub fn handler_allowed(&self, handler: &str) -> bool {
        self.inner
            .allow_handlers
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|h| h == handler))
    }

    /// The `[api] allow_handlers` list, if set.
    pub fn allow_handlers(&self) -> Option<&[String]> {
        self.inner.allow_handlers.as_deref()
    }

    /// The failed-authentication limiter.
    pub fn limiter(&self) -> &AuthLimiter {
        &self.inner.limiter
    }
}

/// The `/v1` route table: each entry registers its handler in the router
/// *and* its `#[utoipa::path]` in the OpenAPI document.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(jobs::get_job, jobs::put_job, jobs::delete_job))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::pause_job))
        .routes(routes!(jobs::resume_job))
        .routes(routes!(jobs::trigger_job))
        .routes(routes!(reads::list_runs))
        .routes(routes!(reads::status))
        .routes(routes!(openapi::openapi_json))
}

/// The `/v1` routes with their layers (auth, body limit) and state.
pub fn router<S: Clone + Send + Sync + 'static>(state: ApiState) -> OpenApiRouter<S> {
    routes()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        .with_state(state)
}
