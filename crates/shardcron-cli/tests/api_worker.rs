//! The API as `shardcron worker --listen` serves it: the command-line worker
//! (run in-process through `shardcron_cli::run`, in its own test binary since
//! it installs signal handlers and the global metrics recorder) reads `[api]`
//! from its config file, lets `SHARDCRON_API_TOKEN` win over the file's
//! token, answers 503 until it has reached Redis, validates against its own
//! handlers and claim retention, keeps the probes open, and stops on SIGTERM.

mod api_support;

use std::time::{Duration, Instant};

use api_support::{client, send};
use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::json;
use shardcron_cli::api::API_TOKEN_ENV;
use shardcron_cli::args::Cli;
use shardcron_testkit::RedisServer;

const CONFIG: &str = r#"
[worker]
shard_count = 64
heartbeat = "250ms"
member_ttl = "1500ms"
lease_ttl = "1500ms"
drift_margin = "300ms"

[api]
token = "from-file"
open_reads = false

[[job]]
id = "static-job"
schedule = "@hourly"
exec = "true"
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_the_api_with_its_config_and_env() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("worker.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    // This binary holds only this test, so nothing else reads the environment.
    std::env::set_var(API_TOKEN_ENV, "from-env");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cli = Cli::try_parse_from([
        "shardcron",
        "--redis",
        &redis.url(),
        "--namespace",
        "wiring",
        "worker",
        "--node-id",
        "w1",
        "--config",
        config.to_str().expect("path"),
        "--listen",
        &listen,
    ])
    .expect("command line");
    let worker = tokio::spawn(shardcron_cli::run(cli, true, true));

    let http = client();
    let base = format!("http://{listen}");
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.request(Method::GET, format!("{base}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request
    };
    // Up, then connected (503 until the worker has reached Redis).
    let start = Instant::now();
    loop {
        if let Ok(r) = get("/v1/jobs/static-job", Some("from-env")).send().await {
            if r.status() == StatusCode::OK {
                break;
            }
            assert!(
                matches!(
                    r.status(),
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::NOT_FOUND
                ),
                "{}",
                r.status()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the worker never served the static job"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = send(get("/v1/jobs", Some("from-file"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the env token wins");
    let r = send(get("/v1/jobs", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "reads are closed");
    let r = send(get("/metrics", None)).await;
    assert_eq!(r.status, StatusCode::OK, "probes stay open");
    assert!(r.text.contains("shardcron_"), "metrics served");

    let put = |id: &str, body: serde_json::Value| {
        http.put(format!("{base}/v1/jobs/{id}"))
            .bearer_auth("from-env")
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let r = send(put(
        "api-job",
        json!({"schedule": "@hourly", "handler": "exec", "args": {"command": "true"}}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = send(put(
        "bad",
        json!({"schedule": "@hourly", "handler": "report"}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"]["field"], "handler");
    let r = send(put(
        "bad",
        json!({"schedule": "@hourly", "handler": "exec", "args": {"command": "true"}, "misfire_grace": "20m"}),
    ))
    .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "grace >= default claim retention (15m)"
    );
    assert_eq!(r.json["error"]["field"], "misfire_grace");
    let r = send(get("/v1/status", Some("from-env"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["jobs"], 2);

    // SIGTERM: the worker leaves gracefully and `run` returns Ok.
    // SAFETY: sending a signal to this very process; tokio handles it.
    let sent = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    assert_eq!(sent, 0);
    let result = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("worker stops after SIGTERM")
        .expect("worker task");
    assert_eq!(result, Ok(()));
}
