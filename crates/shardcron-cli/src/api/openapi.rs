//! The OpenAPI 3 document, generated from the code.
//!
//! Each handler carries its `#[utoipa::path]`, and the router is assembled
//! with `utoipa_axum`'s `OpenApiRouter`, where registering a handler adds it
//! to the axum router and its operation to the document in the same call.
//! `admin_http::router` splits that one value into the router it serves and
//! the document it serves at `/v1/openapi.json` (handed to the handler as a
//! request extension), so what is documented is what is routed; a test also
//! probes the live server with every documented operation and checks that
//! undocumented methods and paths are not served.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use super::error::{ApiError, ErrorBody};

/// The document as served, shared with the `/v1/openapi.json` handler.
pub type SharedDoc = Arc<OpenApiDoc>;

/// Title, description, tags and the bearer security scheme; the paths come
/// from the route table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shardcron admin API",
        description = "Jobs, runs and fleet status of a shardcron namespace, served by every worker on its `--listen` address. Bind it to loopback and put a TLS proxy in front to expose it. Writes need `Authorization: Bearer <token>` ([api] token or SHARDCRON_API_TOKEN); reads too unless [api] open_reads = true. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&BearerSecurity),
    tags(
        (name = "jobs", description = "Job definitions; optimistic concurrency with ETag / If-Match"),
        (name = "fleet", description = "Runs and status"),
        (name = "probes", description = "Unauthenticated probes and metrics"),
        (name = "meta", description = "This document"),
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The base document (no paths yet).
pub fn base() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "OpenAPI 3 document of every route this server serves", body = Object),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or reads not open", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn openapi_json(doc: Option<Extension<SharedDoc>>) -> Response {
    match doc {
        Some(Extension(doc)) => Json(doc.as_ref().clone()).into_response(),
        None => ApiError::internal("the OpenAPI document was not attached to this router")
            .into_response(),
    }
}

/// Fallback for paths no route serves: a JSON 404.
pub async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route; see /v1/openapi.json",
    )
}

/// Fallback for a served path with another method: a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method; see /v1/openapi.json",
    )
}
