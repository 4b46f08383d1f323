//! Bad input to `PUT /v1/jobs/{id}`: each case answers 400 (413, 415) with
//! the offending `field` named, and nothing is stored (checked with GET and
//! the job list). Validation uses the serving node's handler registry.

mod api_support;

use std::sync::Arc;

use api_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardcron_cli::api::ApiAuth;
use shardcron_core::{RingConfig, MAX_ARGS_BYTES, MAX_JOB_ID_LEN};
use shardcron_runtime::{FnHandler, Handler, RunOutput};

struct Case {
    name: &'static str,
    id: String,
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: StatusCode,
    field: &'static str,
}

fn case(name: &'static str, body: Value, field: &'static str) -> Case {
    Case {
        name,
        id: "job".to_owned(),
        body: body.to_string().into_bytes(),
        content_type: Some("application/json"),
        status: StatusCode::BAD_REQUEST,
        field,
    }
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn cases() -> Vec<Case> {
    let good = exec_job("@every 1m");
    let mut cases = vec![
        case(
            "bad cron",
            with(good.clone(), "schedule", json!("not a cron")),
            "schedule",
        ),
        case(
            "bad cron field",
            with(good.clone(), "schedule", json!("61 * * * *")),
            "schedule",
        ),
        case(
            "unknown zone",
            with(good.clone(), "tz", json!("Mars/Olympus_Mons")),
            "tz",
        ),
        case(
            "unknown handler",
            with(good.clone(), "handler", json!("nosuch")),
            "handler",
        ),
        case(
            "handler refuses args",
            with(good.clone(), "args", json!({"cmd": "true"})),
            "args",
        ),
        case(
            "unknown field",
            with(good.clone(), "shedule", json!("@hourly")),
            "shedule",
        ),
        case(
            "unknown nested field",
            with(good.clone(), "retry", json!({"backof": "1s"})),
            "retry.backof",
        ),
        case(
            "wrong type",
            with(good.clone(), "timeout", json!(5)),
            "timeout",
        ),
        case(
            "bad duration",
            with(good.clone(), "misfire_grace", json!("soon")),
            "misfire_grace",
        ),
        case(
            "bad policy",
            with(good.clone(), "overlap", json!("sometimes")),
            "overlap",
        ),
        case(
            "zero timeout",
            with(good.clone(), "timeout", json!("0s")),
            "timeout",
        ),
        case(
            "too many retries",
            with(good.clone(), "retry", json!({"max_retries": 101})),
            "retry.max_retries",
        ),
        case(
            "grace beyond claim retention",
            with(good.clone(), "misfire_grace", json!("20m")),
            "misfire_grace",
        ),
        case(
            "id differs from path",
            with(good.clone(), "id", json!("other")),
            "id",
        ),
        case("id not a string", with(good.clone(), "id", json!(7)), "id"),
        case(
            "missing schedule",
            json!({"handler": "exec", "args": {"command": "true"}}),
            "schedule",
        ),
        case(
            "args over 32 KiB",
            with(
                good.clone(),
                "args",
                json!({"command": "x".repeat(MAX_ARGS_BYTES)}),
            ),
            "args",
        ),
        case("array instead of object", json!([good.clone()]), "body"),
    ];
    cases.push(Case {
        body: b"{\"schedule\": ".to_vec(),
        ..case("not JSON", Value::Null, "body")
    });
    cases.push(Case {
        id: "x".repeat(MAX_JOB_ID_LEN + 1),
        ..case("id too long", good.clone(), "id")
    });
    cases.push(Case {
        id: "bad%40id".to_owned(),
        ..case("id with @", good.clone(), "id")
    });
    cases.push(Case {
        id: "bad%20id".to_owned(),
        ..case("id with a space", good.clone(), "id")
    });
    cases.push(Case {
        id: "%7Bhash%7D".to_owned(),
        ..case("id with braces", good.clone(), "id")
    });
    let padding = "x".repeat(70 * 1024);
    cases.push(Case {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..case(
            "body over 64 KiB",
            with(good.clone(), "args", json!({"command": padding})),
            "body",
        )
    });
    cases.push(Case {
        content_type: Some("text/plain"),
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ..case("text body", good.clone(), "Content-Type")
    });
    cases.push(Case {
        content_type: None,
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ..case("no content type", good, "Content-Type")
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_field_and_nothing_is_stored() {
    let api = TestApi::start().await;
    let cases = cases();
    for c in &cases {
        let mut request = api
            .request(Method::PUT, &format!("/v1/jobs/{}", c.id))
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        let r = send(request).await;
        assert_eq!(r.status, c.status, "{}: {}", c.name, r.text);
        assert_eq!(r.field(), Some(c.field), "{}: {}", c.name, r.text);
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: {}",
            c.name,
            r.text
        );
        let got = api.call(Method::GET, &format!("/v1/jobs/{}", c.id)).await;
        assert!(
            got.status == StatusCode::NOT_FOUND || got.status == StatusCode::BAD_REQUEST,
            "{}: stored? {}",
            c.name,
            got.text
        );
    }
    let list = api.call(Method::GET, "/v1/jobs").await;
    assert_eq!(list.json["jobs"], json!([]), "nothing was stored");
    println!("{} bad-input cases refused", cases.len());

    // The same body with the fault fixed is accepted.
    let ok = api.put_json("job", &exec_job("@every 1m"), None).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_are_checked_against_the_serving_node() {
    let custom: Arc<dyn Handler> = Arc::new(FnHandler(|_ctx| async { Ok(RunOutput::default()) }));
    let api = TestApi::start_with(
        ApiAuth::new(Some(TOKEN.to_owned()), false),
        registry_with(&[("report", custom)]),
        RingConfig::default(),
    )
    .await;
    let body = json!({"schedule": "@hourly", "handler": "report"});
    let r = api.put_json("r", &body, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let plain = TestApi::start().await;
    let r = plain.put_json("r", &body, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), Some("handler"));
    assert_eq!(r.code(), Some("unknown_handler"));
    assert!(r.json["error"]["message"]
        .as_str()
        .expect("message")
        .contains("exec"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_and_queries_name_their_part() {
    let api = TestApi::start().await;
    for (method, path, field) in [
        (Method::GET, "/v1/jobs/bad%40id", "id"),
        (Method::DELETE, "/v1/jobs/bad%40id", "id"),
        (Method::POST, "/v1/jobs/bad%40id/pause", "id"),
        (Method::GET, "/v1/jobs?limit=0", "limit"),
        (Method::GET, "/v1/jobs?limit=1001", "limit"),
        (Method::GET, "/v1/jobs?prefix=a%40", "prefix"),
        (Method::GET, "/v1/jobs?cursor=%7B", "cursor"),
        (Method::GET, "/v1/jobs?page=2", "page"),
    ] {
        let r = api.call(method.clone(), path).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.field(), Some(field), "{method} {path}: {}", r.text);
    }
}
