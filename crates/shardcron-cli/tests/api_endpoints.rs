//! Every `/v1` endpoint over real HTTP and a real Redis: the happy paths,
//! optimistic concurrency (412, `If-Match`, `If-None-Match`), the auth rules
//! (401/403, read-only without a token, open reads) and 503 when Redis is
//! gone.

mod api_support;

use api_support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use shardcron_cli::api::{ApiAuth, ApiState};
use shardcron_cli::jobs_input::builtin_registry;
use shardcron_cli::status_report::collect;
use shardcron_coord::{Coordinator, RunOutcome, RunRecord};
use shardcron_core::RingConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_list_delete_round_trip() {
    let api = TestApi::start().await;
    let created = api.put_json("nightly", &exec_job("0 2 * * *"), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let version = created.json["version"].as_u64().expect("version");
    assert_eq!(created.etag(), Some(format!("\"{version}\"").as_str()));
    assert_eq!(
        created
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/v1/jobs/nightly")
    );
    assert_eq!(created.json["job"]["id"], "nightly");
    assert_eq!(created.json["job"]["schedule"], "0 2 * * *");
    assert_eq!(created.json["job"]["tz"], "UTC");
    assert!(created.json["updated_ms"].as_i64().expect("updated_ms") > 0);

    // Replace, with the id repeated in the body.
    let mut body = exec_job("0 3 * * *");
    body["id"] = json!("nightly");
    let replaced = api.put_json("nightly", &body, None).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    let v2 = replaced.json["version"].as_u64().expect("version");
    assert!(v2 > version);

    let got = api.call(Method::GET, "/v1/jobs/nightly").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.etag(), Some(format!("\"{v2}\"").as_str()));
    assert_eq!(got.json["job"]["schedule"], "0 3 * * *");
    assert_eq!(got.json["version"].as_u64(), Some(v2));

    // Ids with a slash travel percent-encoded.
    let slashed = api
        .put_json("team%2Freport", &exec_job("@hourly"), None)
        .await;
    assert_eq!(slashed.status, StatusCode::CREATED, "{}", slashed.text);
    assert_eq!(slashed.json["job"]["id"], "team/report");
    assert_eq!(
        api.call(Method::GET, "/v1/jobs/team%2Freport").await.status,
        StatusCode::OK
    );

    let list = api.call(Method::GET, "/v1/jobs").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(ids(&list.json), ["nightly", "team/report"]);
    assert_eq!(list.json["next_cursor"], json!(null));
    let first = &list.json["jobs"][0];
    assert_eq!(first["schedule"], "0 3 * * *");
    assert_eq!(first["tz"], "UTC");
    assert_eq!(first["handler"], "exec");
    assert_eq!(first["paused"], false);
    assert_eq!(first["version"].as_u64(), Some(v2));
    let next = first["next_fire_ms"].as_i64().expect("next fire");
    assert!(
        next > now_ms() && next % 86_400_000 == 3 * 3_600_000,
        "{next}"
    );
    let list = api.call(Method::GET, "/v1/jobs?prefix=team").await;
    assert_eq!(ids(&list.json), ["team/report"]);

    let deleted = api.call(Method::DELETE, "/v1/jobs/nightly").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    let gone = api.call(Method::GET, "/v1/jobs/nightly").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), Some("not_found"));
    assert_eq!(
        api.call(Method::DELETE, "/v1/jobs/nightly").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_trigger() {
    let api = TestApi::start().await;
    let created = api.put_json("tick", &exec_job("@every 1h"), None).await;
    let v1 = created.json["version"].as_u64().expect("version");

    let paused = api.call(Method::POST, "/v1/jobs/tick/pause").await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    assert_eq!(paused.json["job"]["paused"], true);
    let v2 = paused.json["version"].as_u64().expect("version");
    assert!(v2 > v1);
    assert_eq!(paused.etag(), Some(format!("\"{v2}\"").as_str()));
    assert_eq!(
        paused.json["job"]["args"],
        json!({"command": "true"}),
        "rest kept"
    );

    let again = api.call(Method::POST, "/v1/jobs/tick/pause").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.json["version"].as_u64(),
        Some(v2),
        "no write when already paused"
    );

    let resumed = api.call(Method::POST, "/v1/jobs/tick/resume").await;
    assert_eq!(resumed.status, StatusCode::OK);
    assert_eq!(resumed.json["job"]["paused"], false);

    let before = now_ms();
    let triggered = api.call(Method::POST, "/v1/jobs/tick/trigger").await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{}", triggered.text);
    let fire_id = triggered.json["fire_id"].as_str().expect("fire_id");
    let (job, ms) = fire_id.split_once('@').expect("job@ms");
    assert_eq!(job, "tick");
    let ms: i64 = ms.parse().expect("ms");
    assert_eq!(triggered.json["scheduled_ms"].as_i64(), Some(ms));
    assert!((ms - before).abs() < 5_000, "{ms} vs {before}");

    for path in [
        "/v1/jobs/nope/pause",
        "/v1/jobs/nope/resume",
        "/v1/jobs/nope/trigger",
    ] {
        let r = api.call(Method::POST, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        assert_eq!(r.code(), Some("not_found"));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_are_refused_with_412_and_change_nothing() {
    let api = TestApi::start().await;
    let v1 = api.put_json("job", &exec_job("@every 1h"), None).await.json["version"]
        .as_u64()
        .expect("v1");
    let v2 = api.put_json("job", &exec_job("@every 2h"), None).await.json["version"]
        .as_u64()
        .expect("v2");
    let stale = format!("\"{v1}\"");

    let check_unchanged = |reply: &Reply| {
        assert_eq!(
            reply.status,
            StatusCode::PRECONDITION_FAILED,
            "{}",
            reply.text
        );
        assert_eq!(reply.code(), Some("version_conflict"));
        assert_eq!(reply.json["error"]["current_version"].as_u64(), Some(v2));
        assert!(reply.json["error"]["message"]
            .as_str()
            .expect("message")
            .contains(&v2.to_string()));
        assert_eq!(reply.etag(), Some(format!("\"{v2}\"").as_str()));
    };
    let r = api
        .put_json("job", &exec_job("@every 3h"), Some(("if-match", &stale)))
        .await;
    check_unchanged(&r);
    let r = send(
        api.request(Method::DELETE, "/v1/jobs/job")
            .header("if-match", stale.as_str()),
    )
    .await;
    check_unchanged(&r);
    let r = send(
        api.request(Method::POST, "/v1/jobs/job/pause")
            .header("if-match", stale.as_str()),
    )
    .await;
    check_unchanged(&r);
    let r = send(
        api.request(Method::POST, "/v1/jobs/job/resume")
            .header("if-match", stale.as_str()),
    )
    .await;
    check_unchanged(&r);
    let stored = api
        .coord
        .get_job("job")
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(stored.version, v2);
    assert_eq!(stored.spec.schedule, "@every 2h");
    assert!(!stored.spec.paused);

    // Create-only on an existing job.
    let r = api
        .put_json("job", &exec_job("@every 3h"), Some(("if-none-match", "*")))
        .await;
    check_unchanged(&r);

    // The current version, quoted or not, passes.
    let r = api
        .put_json(
            "job",
            &exec_job("@every 4h"),
            Some(("if-match", &format!("\"{v2}\""))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v3 = r.json["version"].as_u64().expect("v3");
    let r = send(
        api.request(Method::POST, "/v1/jobs/job/pause")
            .header("if-match", v3.to_string()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v4 = r.json["version"].as_u64().expect("v4");
    let r = api
        .put_json("job", &exec_job("@every 5h"), Some(("if-match", "*")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v5 = r.json["version"].as_u64().expect("v5");
    assert!(v5 > v4);

    // If-Match on a job that does not exist: the write would create it.
    let r = api
        .put_json("absent", &exec_job("@hourly"), Some(("if-match", "*")))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert_eq!(r.json["error"]["current_version"].as_u64(), Some(0));
    let r = api
        .put_json("absent", &exec_job("@hourly"), Some(("if-match", "\"3\"")))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    assert!(api.coord.get_job("absent").await.expect("get").is_none());

    // Create-only on a new job.
    let r = api
        .put_json("fresh", &exec_job("@hourly"), Some(("if-none-match", "*")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Unusable precondition headers are 400, not ignored.
    let r = api
        .put_json("fresh", &exec_job("@hourly"), Some(("if-match", "W/\"1\"")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.field(), Some("If-Match"));

    let r = send(
        api.request(Method::DELETE, "/v1/jobs/job")
            .header("if-match", format!("\"{v5}\"")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_and_checked() {
    let api = TestApi::start().await;
    let body = exec_job("@hourly").to_string();
    let anonymous_put = send(
        api.anonymous(Method::PUT, "/v1/jobs/a")
            .header("content-type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(anonymous_put.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous_put.code(), Some("unauthorized"));
    assert!(anonymous_put.headers.contains_key("www-authenticate"));
    let wrong = send(
        api.anonymous(Method::PUT, "/v1/jobs/a")
            .bearer_auth("test-token-0123456780")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.code(), Some("forbidden"));
    assert!(api.coord.get_job("a").await.expect("get").is_none());

    for (method, path) in [
        (Method::GET, "/v1/jobs"),
        (Method::GET, "/v1/jobs/a"),
        (Method::GET, "/v1/runs"),
        (Method::GET, "/v1/status"),
        (Method::GET, "/v1/openapi.json"),
        (Method::DELETE, "/v1/jobs/a"),
        (Method::POST, "/v1/jobs/a/pause"),
        (Method::POST, "/v1/jobs/a/resume"),
        (Method::POST, "/v1/jobs/a/trigger"),
    ] {
        let r = send(api.anonymous(method.clone(), path)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let r = send(api.anonymous(method.clone(), path).bearer_auth("nope")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
    }

    // Probes stay open.
    let health = send(api.anonymous(Method::GET, "/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = send(api.anonymous(Method::GET, "/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["ready"], false);
    let metrics = send(api.anonymous(Method::GET, "/metrics")).await;
    assert_eq!(
        metrics.status,
        StatusCode::NOT_FOUND,
        "no recorder in this test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_api_is_read_only() {
    let api = TestApi::start_with(
        ApiAuth::new(None, false),
        builtin_registry(),
        RingConfig::default(),
    )
    .await;
    let r = api.put_json("a", &exec_job("@hourly"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), Some("read_only"));
    assert!(r.json["error"]["message"]
        .as_str()
        .expect("message")
        .contains("read-only until a token is set"));
    let r = send(
        api.anonymous(Method::GET, "/v1/jobs")
            .bearer_auth("anything"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "reads are closed too");
    assert!(api.coord.get_job("a").await.expect("get").is_none());

    let open = TestApi::start_with(
        ApiAuth::new(None, true),
        builtin_registry(),
        RingConfig::default(),
    )
    .await;
    let r = send(open.anonymous(Method::GET, "/v1/jobs")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = open.put_json("a", &exec_job("@hourly"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), Some("read_only"));
    let r = send(open.anonymous(Method::POST, "/v1/jobs/a/trigger")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reads_with_a_token_still_guard_writes() {
    let api = TestApi::start_with(
        ApiAuth::new(Some(TOKEN.to_owned()), true),
        builtin_registry(),
        RingConfig::default(),
    )
    .await;
    assert_eq!(
        api.put_json("a", &exec_job("@hourly"), None).await.status,
        StatusCode::CREATED
    );
    let r = send(api.anonymous(Method::GET, "/v1/jobs/a")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(api.anonymous(Method::DELETE, "/v1/jobs/a")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(api.coord.get_job("a").await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_status_match_the_cli() {
    let api = TestApi::start().await;
    api.put_json("a", &exec_job("@hourly"), None).await;
    let run = |job: &str, ms: i64| RunRecord {
        job_id: job.to_owned(),
        fire_id: format!("{job}@{ms}"),
        node_id: "n1".to_owned(),
        shard: 3,
        fencing_token: 7,
        scheduled_ms: ms,
        started_ms: ms + 1,
        finished_ms: ms + 5,
        attempts: 1,
        outcome: RunOutcome::Succeeded,
        error: None,
        detail: Some("ok".to_owned()),
    };
    api.coord
        .record_runs(&[run("a", 1_000), run("b", 2_000), run("a", 3_000)])
        .await
        .expect("record");
    let all = api.call(Method::GET, "/v1/runs").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let expected = api.coord.recent_runs(None, 20).await.expect("runs");
    assert_eq!(
        all.json["runs"],
        serde_json::to_value(&expected).expect("json")
    );
    let of_a = api.call(Method::GET, "/v1/runs?job=a&limit=1").await;
    assert_eq!(of_a.json["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(of_a.json["runs"][0]["job_id"], "a");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("job=bad%40id", "job"),
        ("jbo=a", "jbo"),
        ("limit=1&limit=2", "limit"),
    ] {
        let r = api.call(Method::GET, &format!("/v1/runs?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.field(), Some(field), "{query}: {}", r.text);
    }

    let served = api.call(Method::GET, "/v1/status").await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text);
    let mut served = served.json;
    let mut direct =
        serde_json::to_value(collect(api.coord.as_ref()).await.expect("collect")).expect("json");
    for v in [&mut served, &mut direct] {
        v.as_object_mut().expect("object").remove("server_time_ms");
    }
    assert_eq!(served, direct);
    assert_eq!(served["jobs"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_503() {
    // Not connected yet: the worker is still waiting for Redis.
    let state = ApiState::new(
        ApiAuth::new(Some(TOKEN.to_owned()), false),
        builtin_registry(),
        None,
    );
    let (addr, _status) = serve(state).await;
    let r = send(
        client()
            .get(format!("http://{addr}/v1/jobs/a"))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), Some("unavailable"));
    let health = send(client().get(format!("http://{addr}/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK);

    // Connected, then Redis dies.
    let api = TestApi::start().await;
    api.put_json("a", &exec_job("@hourly"), None).await;
    api.redis.kill();
    for (method, path) in [
        (Method::GET, "/v1/jobs/a"),
        (Method::GET, "/v1/jobs"),
        (Method::POST, "/v1/jobs/a/pause"),
        (Method::GET, "/v1/status"),
    ] {
        let r = api.call(method.clone(), path).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {}",
            r.text
        );
        assert_eq!(r.code(), Some("unavailable"));
        assert!(r.headers.contains_key("retry-after"));
    }
    let r = api.put_json("b", &exec_job("@hourly"), None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
}
