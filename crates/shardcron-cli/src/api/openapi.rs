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
//!
//! [`document`] then fills in what only the serving node knows, so the
//! document is exact for that node: which job forms exist (the handlers it
//! has and `[api] allow_handlers` lets through) and the misfire-grace limit
//! (its claim retention).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use shardcron_handlers::{EXEC_HANDLER_NAME, HTTP_HANDLER_NAME};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};

use super::error::{ApiError, ErrorBody};
use super::ApiState;

/// The document as served, shared with the `/v1/openapi.json` handler.
pub type SharedDoc = Arc<Value>;

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

/// Handler names a job written through the API may use on this node.
pub fn writable_handlers(state: &ApiState) -> Vec<String> {
    state
        .handlers()
        .names()
        .into_iter()
        .filter(|name| state.handler_allowed(name))
        .collect()
}

/// `^(([0-9]|[1-5][0-9])s|(1|2|...)m)$`: the misfire graces below `limit`
/// in whole seconds under a minute and whole minutes.
pub fn grace_pattern(limit: Option<Duration>) -> String {
    let limit_secs = limit.map_or(7 * 24 * 3600, |l| l.as_secs().max(1));
    let seconds = "([0-9]|[1-5][0-9])s";
    let max_minutes = ((limit_secs - 1) / 60).min(59);
    if max_minutes == 0 {
        return format!("^{seconds}$");
    }
    let minutes: Vec<String> = (1..=max_minutes).map(|m| m.to_string()).collect();
    format!("^({seconds}|({})m)$", minutes.join("|"))
}

/// Optional parameters are generated as nullable (`Option<T>`), but a
/// header or query value cannot be null: it is absent or a string. Drops
/// `null` from their types.
fn non_null_parameters(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters {
                let schema = &mut parameter["schema"];
                let single = schema
                    .get("oneOf")
                    .and_then(Value::as_array)
                    .map(|forms| {
                        forms
                            .iter()
                            .filter(|f| f.get("type").and_then(Value::as_str) != Some("null"))
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .filter(|kept| kept.len() == 1)
                    .and_then(|mut kept| kept.pop());
                if let Some(only) = single {
                    *schema = only;
                }
                if let Some(types) = schema["type"].as_array() {
                    let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                    schema["type"] = match kept.as_slice() {
                        [only] => only.clone(),
                        _ => Value::Array(kept),
                    };
                }
            }
        }
    }
}

/// The document as this node serves it: the generated one with the job
/// forms and limits of `state` filled in.
pub fn document(doc: &OpenApiDoc, state: &ApiState) -> Value {
    let mut value = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    non_null_parameters(&mut value);
    let handlers = writable_handlers(state);
    let others: Vec<&String> = handlers
        .iter()
        .filter(|h| h.as_str() != EXEC_HANDLER_NAME && h.as_str() != HTTP_HANDLER_NAME)
        .collect();
    let has = |name: &str| handlers.iter().any(|h| h == name);
    let grace = grace_pattern(state.max_misfire_grace());
    let schemas = &mut value["components"]["schemas"];
    let mut forms = Vec::new();
    for (form, present) in [
        ("ExecJob", has(EXEC_HANDLER_NAME)),
        ("HttpJob", has(HTTP_HANDLER_NAME)),
        ("ExecEntry", has(EXEC_HANDLER_NAME)),
        ("HttpEntry", has(HTTP_HANDLER_NAME)),
        ("CustomJob", !others.is_empty()),
    ] {
        if present {
            forms.push(json!({"$ref": format!("#/components/schemas/{form}")}));
            schemas[form]["properties"]["misfire_grace"]["pattern"] = json!(grace);
            // A broadcast job runs without a claim, so nothing could recover
            // its fires: the one pair of field values the API refuses
            // together (400 `invalid_job` on `delivery`), stated here so the
            // document calls no request valid that the API refuses.
            schemas[form]["not"] = json!({
                "description": "placement broadcast with delivery at_least_once",
                "required": ["placement", "delivery"],
                "properties": {
                    "placement": {"const": "broadcast"},
                    "delivery": {"const": "at_least_once"}
                }
            });
        } else if let Some(map) = schemas.as_object_mut() {
            map.remove(form);
        }
    }
    if !others.is_empty() {
        schemas["CustomJob"]["properties"]["handler"] = json!({"type": "string", "enum": others});
    }
    schemas["JobBody"] = if forms.is_empty() {
        json!({"description": "No handler may be written through the API on this node.", "not": {}})
    } else {
        json!({
            "description": "The stored form (`handler` + `args`) or a job file entry (`exec` or `http`, with `retries`).",
            "oneOf": forms,
        })
    };
    // Map keys the derive cannot constrain.
    if schemas.get("ExecArgs").is_some() {
        let env = &mut schemas["ExecArgs"]["properties"]["env"];
        env["propertyNames"] = json!({"pattern": "^[^=\\u0000]+$"});
        env["additionalProperties"] = json!({"type": "string", "pattern": "^[^\\u0000]*$"});
    }
    if schemas.get("HttpArgs").is_some() {
        let headers = &mut schemas["HttpArgs"]["properties"]["headers"];
        headers["propertyNames"] = json!({"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"});
        headers["additionalProperties"] = json!({
            "type": "string",
            "pattern": "^[^\\u0000-\\u0008\\u000A-\\u001F\\u007F]*$",
        });
    }
    value
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "OpenAPI 3 document of every route this server serves", body = Object),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token, or reads not open", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn openapi_json(doc: Option<Extension<SharedDoc>>) -> Response {
    match doc {
        Some(Extension(doc)) => Json(doc.as_ref()).into_response(),
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

/// Whether a concrete path matches a documented template (`{id}` stands for
/// one segment).
fn matches_template(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') || ts == ps => {}
            _ => return false,
        }
    }
}

/// Fallback for a served path with another method: a JSON 405 with the
/// `Allow` header listing the documented methods of that path.
pub async fn method_not_allowed(doc: Option<Extension<SharedDoc>>, uri: Uri) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method; see /v1/openapi.json",
    )
    .into_response();
    let Some(Extension(doc)) = doc else {
        return response;
    };
    let mut allowed: Vec<String> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (template, item) in paths {
            if !matches_template(template, uri.path()) {
                continue;
            }
            for method in item.as_object().map(|m| m.keys()).into_iter().flatten() {
                if Method::from_bytes(method.to_ascii_uppercase().as_bytes()).is_ok() {
                    allowed.push(method.to_ascii_uppercase());
                }
            }
        }
    }
    if allowed.iter().any(|m| m == "GET") {
        allowed.push("HEAD".to_owned());
    }
    if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
