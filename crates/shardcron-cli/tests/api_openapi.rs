//! The OpenAPI document matches the routes the server actually serves.
//!
//! Router and document are produced together by one `OpenApiRouter`, so they
//! agree by construction; this test checks it from the outside anyway:
//! the documented operations equal the intended route table, every
//! documented operation is served (the live server answers it with
//! something other than its no-route / wrong-method fallbacks), every
//! undocumented method on a documented path is 405, and paths outside the
//! document are 404. It also checks the `JobSpec` mirror schema against the
//! keys the real type uses, and that every `/v1` operation asks for the
//! bearer token while the probes do not.

mod api_support;

use std::collections::BTreeSet;

use api_support::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shardcron_cli::api::body::{JOB_SPEC_FIELDS, RETRY_FIELDS};

/// The intended route table.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/readyz"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/{id}"),
    ("put", "/v1/jobs/{id}"),
    ("delete", "/v1/jobs/{id}"),
    ("post", "/v1/jobs/{id}/pause"),
    ("post", "/v1/jobs/{id}/resume"),
    ("post", "/v1/jobs/{id}/trigger"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/runs"),
    ("get", "/v1/status"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "options"];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) || method == "head" {
                ops.insert((method.clone(), path.clone()));
            }
        }
    }
    ops
}

fn keys(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_and_router_serve_the_same_routes() {
    let api = TestApi::start().await;
    api.put_json("probe", &exec_job("@hourly"), None).await;
    let r = api.call(Method::GET, "/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let doc = r.json;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));

    let ops = documented(&doc);
    let intended: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(ops, intended, "documented operations vs the route table");

    // Every documented operation is served (deletes last, so the probe job
    // exists for the others).
    let (deletes, others): (Vec<_>, Vec<_>) = ops.iter().partition(|(m, _)| m == "delete");
    for (method, path) in others.into_iter().chain(deletes) {
        let concrete = path.replace("{id}", "probe");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut request = api.request(m, &concrete);
        if method == "put" {
            request = request
                .header("content-type", "application/json")
                .body(exec_job("@hourly").to_string());
        }
        let reply = send(request).await;
        assert_ne!(reply.code(), Some("no_route"), "{method} {path} not routed");
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            reply.status.is_success()
                || reply.status == StatusCode::SERVICE_UNAVAILABLE
                || (path == "/metrics" && reply.status == StatusCode::NOT_FOUND),
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }

    // No undocumented method is served on a documented path.
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    let mut refused = 0;
    for path in paths {
        for method in METHODS {
            if ops.contains(&((*method).to_owned(), path.clone())) {
                continue;
            }
            let concrete = path.replace("{id}", "probe");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let reply = send(api.request(m, &concrete)).await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {}",
                reply.text
            );
            assert_eq!(reply.code(), Some("method_not_allowed"));
            refused += 1;
        }
    }

    // Paths outside the document are not served.
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v1/job",
        "/v1/jobs/probe/delete",
        "/v1/jobs/probe/pause/now",
        "/v1/jobs/a/b",
        "/v2/jobs",
        "/metrics/x",
        "/v1/openapi.yaml",
    ] {
        let reply = send(api.request(Method::GET, path)).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.code(), Some("no_route"), "{path}");
    }
    println!(
        "{} documented operations served, {refused} undocumented methods refused",
        ops.len()
    );

    // Security: the token on every /v1 operation, none on the probes.
    for (method, path) in &ops {
        let security = &doc["paths"][path][method]["security"];
        if path.starts_with("/v1/") {
            assert_eq!(
                security[0]["bearer"],
                serde_json::json!([]),
                "{method} {path}"
            );
        } else {
            assert!(security.is_null(), "{method} {path}: {security}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_schema_mirrors_the_core_type() {
    let api = TestApi::start().await;
    let doc = api.call(Method::GET, "/v1/openapi.json").await.json;
    let schemas = &doc["components"]["schemas"];
    let job_keys = keys(&schemas["JobSpec"]);
    let expected: BTreeSet<String> = JOB_SPEC_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(job_keys, expected);
    let retry_keys = keys(&schemas["RetryPolicy"]);
    let expected: BTreeSet<String> = RETRY_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(retry_keys, expected);
    for required in ["schedule", "handler"] {
        assert!(
            schemas["JobSpec"]["required"]
                .as_array()
                .expect("required")
                .contains(&Value::from(required)),
            "{required}"
        );
    }
    assert_eq!(
        schemas["OverlapPolicy"]["enum"],
        serde_json::json!(["skip", "allow", "queue_one"])
    );
    assert_eq!(
        schemas["MisfirePolicy"]["enum"],
        serde_json::json!(["catch_up", "run_once", "skip"])
    );
    let delivery = &schemas["Delivery"];
    assert_eq!(delivery["type"], "string", "{delivery}");
    assert_eq!(
        delivery["enum"],
        serde_json::json!(["at_most_once", "at_least_once"]),
        "{delivery}"
    );
    assert_eq!(delivery["default"], "at_most_once", "{delivery}");
    let description = delivery["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("at_least_once") && description.contains("idempotent"),
        "{delivery}"
    );
    // Every job form a PUT may send takes it, optionally; responses always
    // carry it.
    for (form, required) in [
        ("ExecJob", false),
        ("HttpJob", false),
        ("ExecEntry", false),
        ("HttpEntry", false),
        ("JobSpec", true),
        ("JobSummary", true),
    ] {
        let schema = &schemas[form];
        assert_eq!(
            schema["properties"]["delivery"]["$ref"], "#/components/schemas/Delivery",
            "{form}: {schema}"
        );
        let listed = schema["required"]
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("delivery")));
        assert_eq!(listed, required, "{form}: {schema}");
    }
    for name in [
        "JobResponse",
        "JobList",
        "TriggerResponse",
        "RunsResponse",
        "ErrorBody",
    ] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    let put = &doc["paths"]["/v1/jobs/{id}"]["put"];
    assert_eq!(
        put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobBody"
    );
    for status in [
        "200", "201", "400", "401", "403", "412", "413", "415", "503",
    ] {
        assert!(
            put["responses"][status].is_object(),
            "PUT documents {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_schema_documents_the_load_it_serves() {
    let api = TestApi::start().await;
    api.put_json("probe", &exec_job("@every 1s"), None).await;
    let doc = api.call(Method::GET, "/v1/openapi.json").await.json;
    let schemas = &doc["components"]["schemas"];
    let status = api.call(Method::GET, "/v1/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    let served = &status.json;
    let served_keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().expect("object").keys().cloned().collect()
    };
    assert_eq!(keys(&schemas["StatusReport"]), served_keys(served));
    assert_eq!(keys(&schemas["LoadReport"]), served_keys(&served["load"]));
    for key in ["load_units", "fires_per_minute", "load_percent"] {
        assert!(
            schemas["MemberStatus"]["properties"][key].is_object(),
            "MemberStatus.{key} undocumented"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/StatusReport"
    );
    assert_eq!(served["placement"], "bounded-load ring (e=0.050)");
    let per_minute = served["load"]["fires_per_minute"].as_f64().expect("rate");
    assert!((per_minute - 60.0).abs() < 1e-9, "{}", status.text);
    // No member: nothing placed, so no ratio.
    assert!(served["load"]["max_over_mean"].is_null(), "{}", status.text);
}
