//! Bad input to `PUT /v1/jobs/{id}`: each case answers 400 (413, 415) with
//! the offending `field` named, and nothing is stored (checked with GET and
//! the job list). Validation uses the serving node's handler registry.

mod api_support;

use std::sync::Arc;

use api_support::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardcron_cli::api::{ApiAuth, ApiConfig, ApiState};
use shardcron_cli::jobs_input::builtin_registry;
use shardcron_coord::Coordinator;
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
            "unknown delivery",
            with(good.clone(), "delivery", json!("exactly_once")),
            "delivery",
        ),
        case(
            "delivery in another case",
            with(good.clone(), "delivery", json!("AT_LEAST_ONCE")),
            "delivery",
        ),
        case(
            "delivery not a string",
            with(good.clone(), "delivery", json!(true)),
            "delivery",
        ),
        case(
            "null delivery",
            with(good.clone(), "delivery", json!(null)),
            "delivery",
        ),
        case(
            "unknown delivery in a shorthand entry",
            json!({"schedule": "@hourly", "exec": "true", "delivery": "at_least_twice"}),
            "delivery",
        ),
        case(
            "delivery not a string in a shorthand entry",
            json!({"schedule": "@hourly", "exec": "true", "delivery": 1}),
            "delivery",
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
        Case {
            status: StatusCode::CONFLICT,
            ..case(
                "id differs from path",
                with(good.clone(), "id", json!("other")),
                "id",
            )
        },
        case(
            "February 31 never fires",
            with(good.clone(), "schedule", json!("0 0 31 2 *")),
            "schedule",
        ),
        case(
            "April 31 never fires",
            with(good.clone(), "schedule", json!("0 12 31 4 *")),
            "schedule",
        ),
        case(
            "a past year never fires",
            with(good.clone(), "schedule", json!("0 0 0 1 1 * 2020")),
            "schedule",
        ),
        case(
            "never-firing shorthand entry",
            json!({"schedule": "0 0 30 2 *", "exec": "true"}),
            "schedule",
        ),
        case(
            "null timeout",
            with(good.clone(), "timeout", json!(null)),
            "timeout",
        ),
        case(
            "retries with handler + args",
            with(good.clone(), "retries", json!(2)),
            "retries",
        ),
        case(
            "exec and http together",
            json!({"schedule": "@hourly", "exec": "true", "http": {"url": "http://x"}}),
            "exec",
        ),
        case(
            "shorthand with handler",
            json!({"schedule": "@hourly", "exec": "true", "handler": "exec"}),
            "handler",
        ),
        case("id not a string", with(good.clone(), "id", json!(7)), "id"),
        case("zero cost", with(good.clone(), "cost", json!(0)), "cost"),
        case(
            "zero float cost",
            with(good.clone(), "cost", json!(0.0)),
            "cost",
        ),
        case(
            "negative cost",
            with(good.clone(), "cost", json!(-1.5)),
            "cost",
        ),
        case(
            "cost above the maximum",
            with(good.clone(), "cost", json!(10_000.5)),
            "cost",
        ),
        case(
            "huge cost",
            with(good.clone(), "cost", json!(1e300)),
            "cost",
        ),
        case("NaN cost", with(good.clone(), "cost", json!("NaN")), "cost"),
        case(
            "infinite cost",
            with(good.clone(), "cost", json!("Infinity")),
            "cost",
        ),
        case("null cost", with(good.clone(), "cost", json!(null)), "cost"),
        case(
            "zero cost in a shorthand entry",
            json!({"schedule": "@hourly", "exec": "true", "cost": 0}),
            "cost",
        ),
        case(
            "negative cost in a shorthand entry",
            json!({"schedule": "@hourly", "exec": "true", "cost": -3}),
            "cost",
        ),
        case(
            "cost as a string in a shorthand entry",
            json!({"schedule": "@hourly", "exec": "true", "cost": "high"}),
            "cost",
        ),
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
        (Method::GET, "/v1/jobs?limit=-1", "limit"),
        (Method::GET, "/v1/jobs?limit=x", "limit"),
        (Method::GET, "/v1/runs?limit=0", "limit"),
        (Method::GET, "/v1/runs?limit=1001", "limit"),
        (Method::GET, "/v1/runs?job=a%40b", "job"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_that_fire_rarely_are_accepted() {
    let api = TestApi::start().await;
    for (id, schedule) in [
        ("leap", "0 0 29 2 *"),
        ("yearly", "@yearly"),
        ("dec31", "59 23 31 12 *"),
    ] {
        let r = api.put_json(id, &exec_job(schedule), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{schedule}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_file_entries_and_null_ids_are_accepted() {
    let api = TestApi::start().await;
    // An entry of a jobs file, as is.
    let entry = json!({"id": "entry", "schedule": "@hourly", "exec": "echo hi", "retries": 2, "tz": "Europe/Berlin"});
    let r = api.put_json("entry", &entry, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["job"]["handler"], "exec");
    assert_eq!(r.json["job"]["args"], json!({"command": "echo hi"}));
    assert_eq!(r.json["job"]["retry"]["max_retries"], 2);
    let hook = json!({"schedule": "@daily", "http": {"url": "https://example.com/hook", "method": "POST"}});
    let r = api.put_json("hook", &hook, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["job"]["handler"], "http");
    let r = api
        .put_json(
            "nullid",
            &with(exec_job("@hourly"), "id", json!(null)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["job"]["id"], "nullid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_the_api_may_not_write_is_403_naming_it() {
    let config = ApiConfig {
        allow_handlers: Some(vec!["http".to_owned()]),
        ..ApiConfig::default()
    };
    let redis = shardcron_testkit::RedisServer::start().expect("redis-server");
    let coord = std::sync::Arc::new(
        shardcron_coord::RedisCoordinator::connect(&redis.url(), "api", RingConfig::default())
            .await
            .expect("connect"),
    );
    let state = ApiState::connected(
        coord.clone(),
        ApiAuth::new(Some(TOKEN.to_owned()), false),
        builtin_registry(),
        Some(CLAIM_RETENTION),
    )
    .with_config(&config);
    let (addr, _status) = serve(state).await;
    let http = client();
    let put = |id: &str, body: Value| {
        http.put(format!("http://{addr}/v1/jobs/{id}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    for (id, body) in [
        ("stored", exec_job("@hourly")),
        ("entry", json!({"schedule": "@hourly", "exec": "true"})),
    ] {
        let r = send(put(id, body)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{id}: {}", r.text);
        assert_eq!(r.field(), Some("handler"));
        assert_eq!(r.code(), Some("handler_forbidden"));
        let message = r.json["error"]["message"].as_str().expect("message");
        assert!(message.contains("\"exec\""), "names the handler: {message}");
    }
    let r = send(put(
        "hook",
        json!({"schedule": "@hourly", "handler": "http", "args": {"url": "https://example.com/"}}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let page = coord.list_jobs("", None, 10).await.expect("list");
    assert_eq!(page.ids, ["hook"], "nothing else was stored");
    // The document offers only the forms the node accepts.
    let doc = send(
        http.get(format!("http://{addr}/v1/openapi.json"))
            .bearer_auth(TOKEN),
    )
    .await
    .json;
    let forms = doc["components"]["schemas"]["JobBody"]["oneOf"].to_string();
    assert!(
        forms.contains("HttpJob") && forms.contains("HttpEntry"),
        "{forms}"
    );
    assert!(
        !forms.contains("ExecJob") && !forms.contains("ExecEntry"),
        "{forms}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_rate_limited_per_address() {
    let config = ApiConfig {
        auth_failures_per_minute: 3,
        ..ApiConfig::default()
    };
    let redis = shardcron_testkit::RedisServer::start().expect("redis-server");
    let coord = std::sync::Arc::new(
        shardcron_coord::RedisCoordinator::connect(&redis.url(), "api", RingConfig::default())
            .await
            .expect("connect"),
    );
    let state = ApiState::connected(
        coord.clone(),
        ApiAuth::new(Some(TOKEN.to_owned()), false),
        builtin_registry(),
        Some(CLAIM_RETENTION),
    )
    .with_config(&config);
    let (addr, _status) = serve(state).await;
    let http = client();
    let put = |token: &str| {
        http.put(format!("http://{addr}/v1/jobs/guess"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(exec_job("@hourly").to_string())
    };
    for _ in 0..3 {
        let r = send(put("wrong")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    let r = send(put("wrong")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.code(), Some("too_many_auth_failures"));
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    // While limited, even the right token is not looked at.
    let r = send(put(TOKEN)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let r = send(http.get(format!("http://{addr}/v1/jobs"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Probes are not behind the limit.
    let r = send(http.get(format!("http://{addr}/healthz"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = coord.list_jobs("", None, 10).await.expect("list");
    assert!(page.ids.is_empty(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_is_accepted_stored_and_weighs_in_the_status() {
    let api = TestApi::start().await;
    let r = api
        .put_json(
            "heavy",
            &with(exec_job("@every 1s"), "cost", json!(2.5)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["job"]["cost"], 2.5);
    let entry = json!({"schedule": "@every 2s", "exec": "true", "cost": 10_000});
    let r = api.put_json("entry", &entry, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json["job"]["cost"], 10_000.0);
    let r = api.put_json("plain", &exec_job("@every 1s"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(
        r.json["job"].get("cost").is_none(),
        "absent means 1: {}",
        r.text
    );

    let got = api.call(Method::GET, "/v1/jobs/heavy").await;
    assert_eq!(got.json["job"]["cost"], 2.5, "{}", got.text);
    // 60 x 2.5 + 30 x 10,000 + 60 fires/min, cost-weighted.
    let status = api.call(Method::GET, "/v1/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    let per_minute = status.json["load"]["fires_per_minute"]
        .as_f64()
        .expect("fires_per_minute");
    assert!(
        (per_minute - 300_210.0).abs() < 1e-6,
        "{per_minute}: {}",
        status.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_accepted_stored_and_shown() {
    let api = TestApi::start().await;
    // The stored form and a job file entry, each with both values.
    for (id, body, expected) in [
        (
            "stored-least",
            with(exec_job("@hourly"), "delivery", json!("at_least_once")),
            "at_least_once",
        ),
        (
            "stored-most",
            with(exec_job("@hourly"), "delivery", json!("at_most_once")),
            "at_most_once",
        ),
        (
            "entry-least",
            json!({"schedule": "@hourly", "exec": "true", "delivery": "at_least_once"}),
            "at_least_once",
        ),
        (
            "entry-most",
            json!({"schedule": "@hourly", "exec": "true", "delivery": "at_most_once"}),
            "at_most_once",
        ),
        ("default", exec_job("@hourly"), "at_most_once"),
    ] {
        let r = api.put_json(id, &body, None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.text);
        assert_eq!(r.json["job"]["delivery"], expected, "{id}: {}", r.text);
        let got = api.call(Method::GET, &format!("/v1/jobs/{id}")).await;
        assert_eq!(got.json["job"]["delivery"], expected, "{id}: {}", got.text);
        let stored = api.coord.get_job(id).await.expect("get").expect("stored");
        assert_eq!(stored.spec.delivery.as_str(), expected, "{id}");
    }
    // An update changes it, and pausing keeps it.
    let r = api
        .put_json(
            "default",
            &with(exec_job("@hourly"), "delivery", json!("at_least_once")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["job"]["delivery"], "at_least_once", "{}", r.text);
    let paused = api.call(Method::POST, "/v1/jobs/default/pause").await;
    assert_eq!(
        paused.json["job"]["delivery"], "at_least_once",
        "{}",
        paused.text
    );
    // The list shows it per job.
    let list = api.call(Method::GET, "/v1/jobs").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let shown: Vec<(String, String)> = list.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            (
                j["id"].as_str().unwrap_or_default().to_owned(),
                j["delivery"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("default", "at_least_once"),
        ("entry-least", "at_least_once"),
        ("entry-most", "at_most_once"),
        ("stored-least", "at_least_once"),
        ("stored-most", "at_most_once"),
    ]
    .iter()
    .map(|(i, d)| ((*i).to_owned(), (*d).to_owned()))
    .collect();
    assert_eq!(shown, expected, "{}", list.text);
}
