//! `http` handler against a real HTTP/1.1 server on 127.0.0.1: what is sent,
//! how statuses are classified, timeouts and cancellation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardcron_core::FireId;
use shardcron_handlers::http::default_client_builder;
use shardcron_handlers::{HttpArgs, HttpHandler};
use shardcron_runtime::{FireContext, Handler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const JOB: &str = "reports/daily";
const SCHEDULED_MS: i64 = 1_767_225_600_000;

fn ctx(args: Value) -> FireContext {
    FireContext {
        job_id: JOB.into(),
        fire_id: FireId::new(JOB, SCHEDULED_MS),
        scheduled_ms: SCHEDULED_MS,
        shard: 3,
        fencing_token: 9001,
        attempt: 4,
        delivery: 2,
        node_id: "node-b".into(),
        args,
        timeout: None,
        cancel: CancellationToken::new(),
    }
}

/// The handler with the default settings but no proxy, so that a proxy in the
/// environment cannot intercept requests to 127.0.0.1.
fn handler() -> HttpHandler {
    HttpHandler::with_client(default_client_builder().no_proxy().build().unwrap())
}

#[derive(Debug)]
struct Recorded {
    method: String,
    target: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

/// Serves every connection with `reply`, reporting each request.
async fn serve(reply: Reply) -> (String, mpsc::UnboundedReceiver<Recorded>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                if let Some(req) = handle(sock, &reply).await {
                    let _ = tx.send(req);
                }
            });
        }
    });
    (format!("http://{addr}"), rx)
}

async fn handle(mut sock: TcpStream, reply: &Reply) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let recorded = Recorded {
        method,
        target,
        headers,
        body,
    };
    tokio::time::sleep(reply.delay).await;
    let response = format!(
        "HTTP/1.1 {} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = sock.write_all(response.as_bytes()).await;
    let _ = sock.shutdown().await;
    Some(recorded)
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.into(),
        delay: Duration::ZERO,
    }
}

#[tokio::test]
async fn sends_method_body_and_fire_headers() {
    let (base, mut requests) = serve(reply(200, "accepted")).await;
    let args = HttpArgs {
        url: format!("{base}/hooks/daily?x=1"),
        method: Some("put".into()),
        headers: [("X-Team".to_string(), "billing".to_string())].into(),
        body: Some("{\"hello\":1}".into()),
        expect_status: None,
        timeout: Some("5s".into()),
    };
    let out = handler().run(ctx(args.to_json())).await.unwrap();
    assert_eq!(out.detail.as_deref(), Some("HTTP 200 OK\naccepted"));

    let req = requests.recv().await.unwrap();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.target, "/hooks/daily?x=1");
    assert_eq!(req.body, b"{\"hello\":1}");
    let fire_id = FireId::new(JOB, SCHEDULED_MS).to_string();
    assert_eq!(fire_id, "reports/daily@1767225600000");
    assert_eq!(req.headers["idempotency-key"], fire_id);
    assert_eq!(req.headers["x-shardcron-fire-id"], fire_id);
    assert_eq!(req.headers["x-shardcron-scheduled-at"], "1767225600000");
    assert_eq!(req.headers["x-shardcron-fencing-token"], "9001");
    assert_eq!(req.headers["x-shardcron-attempt"], "4");
    assert_eq!(req.headers["x-shardcron-delivery"], "2");
    assert_eq!(req.headers["x-team"], "billing");
    assert!(
        req.headers["user-agent"].starts_with("shardcron/"),
        "{:?}",
        req.headers
    );
}

#[tokio::test]
async fn body_defaults_to_post_and_fire_headers_win() {
    let (base, mut requests) = serve(reply(204, "")).await;
    let args = json!({
        "url": format!("{base}/"),
        "body": "payload",
        "headers": {"Idempotency-Key": "spoofed"}
    });
    let out = handler().run(ctx(args)).await.unwrap();
    assert_eq!(out.detail.as_deref(), Some("HTTP 204 No Content"));
    let req = requests.recv().await.unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, b"payload");
    assert_eq!(
        req.headers["idempotency-key"],
        "reports/daily@1767225600000"
    );
}

#[tokio::test]
async fn server_error_is_retryable_with_status_and_body() {
    let (base, _requests) = serve(reply(500, "database down")).await;
    let err = handler()
        .run(ctx(json!({"url": format!("{base}/x")})))
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert_eq!(
        err.message,
        "unexpected HTTP status 500 Internal Server Error (expected 200-299)"
    );
    assert_eq!(
        err.detail.as_deref(),
        Some("HTTP 500 Internal Server Error\ndatabase down")
    );
}

#[tokio::test]
async fn too_many_requests_is_retryable() {
    let (base, _requests) = serve(reply(429, "slow down")).await;
    let err = handler()
        .run(ctx(json!({"url": format!("{base}/x")})))
        .await
        .unwrap_err();
    assert!(err.retryable);
    assert!(err.message.contains("429"), "{}", err.message);
}

#[tokio::test]
async fn not_found_is_permanent() {
    let (base, _requests) = serve(reply(404, "no such hook")).await;
    let err = handler()
        .run(ctx(json!({"url": format!("{base}/x")})))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "unexpected HTTP status 404 Not Found (expected 200-299)"
    );
    assert_eq!(
        err.detail.as_deref(),
        Some("HTTP 404 Not Found\nno such hook")
    );
}

#[tokio::test]
async fn expect_status_is_honoured() {
    let (base, _requests) = serve(reply(404, "gone, as expected")).await;
    let out = handler()
        .run(ctx(
            json!({"url": format!("{base}/x"), "expect_status": "404"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        out.detail.as_deref(),
        Some("HTTP 404 Not Found\ngone, as expected")
    );

    let (base, _requests) = serve(reply(200, "")).await;
    let err = handler()
        .run(ctx(
            json!({"url": format!("{base}/x"), "expect_status": "201-202"}),
        ))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(
        err.message,
        "unexpected HTTP status 200 OK (expected 201-202)"
    );
}

#[tokio::test]
async fn detail_keeps_only_the_first_kib_of_the_body() {
    let big = format!("{}{}", "a".repeat(1024), "b".repeat(100_000));
    let (base, _requests) = serve(reply(503, &big)).await;
    let err = handler()
        .run(ctx(json!({"url": format!("{base}/x")})))
        .await
        .unwrap_err();
    assert!(err.retryable);
    let detail = err.detail.unwrap();
    assert_eq!(
        detail,
        format!(
            "HTTP 503 Service Unavailable\n{}\n[body truncated]",
            "a".repeat(1024)
        )
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let (base, _requests) = serve(Reply {
        status: 200,
        body: "late".into(),
        delay: Duration::from_secs(10),
    })
    .await;
    let start = Instant::now();
    let err = handler()
        .run(ctx(json!({"url": format!("{base}/x"), "timeout": "300ms"})))
        .await
        .unwrap_err();
    assert_eq!(err.message, "timed out after 300ms");
    assert!(err.retryable);
    assert!(start.elapsed() < Duration::from_secs(3));

    // The job's own timeout applies when it is the shorter one.
    let mut c = ctx(json!({"url": format!("{base}/x"), "timeout": "1m"}));
    c.timeout = Some(Duration::from_millis(200));
    let err = handler().run(c).await.unwrap_err();
    assert_eq!(err.message, "timed out after 200ms");
}

#[tokio::test]
async fn cancellation_stops_the_request() {
    let (base, mut requests) = serve(Reply {
        status: 200,
        body: "late".into(),
        delay: Duration::from_secs(10),
    })
    .await;
    let c = ctx(json!({"url": format!("{base}/x")}));
    let cancel = c.cancel.clone();
    let run = tokio::spawn(async move { handler().run(c).await });
    // Cancel once the server has the request; the recording is sent after the
    // reply delay, so wait on the clock instead.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.message, "cancelled");
    assert!(err.retryable);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(requests.try_recv().is_err());
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = handler()
        .run(ctx(json!({"url": format!("http://{addr}/x")})))
        .await
        .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert!(err.message.starts_with("request failed"), "{}", err.message);
}

/// https is compiled in (rustls): the client opens with a TLS ClientHello.
#[tokio::test]
async fn https_speaks_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 3];
        sock.read_exact(&mut first).await.unwrap();
        first
    });
    let err = handler()
        .run(ctx(
            json!({"url": format!("https://{addr}/x"), "timeout": "5s"}),
        ))
        .await
        .unwrap_err();
    // Handshake record, TLS major version 3.
    assert_eq!(&server.await.unwrap()[..2], &[0x16, 0x03]);
    assert!(err.retryable, "{err:?}");
    assert!(err.message.starts_with("request failed"), "{}", err.message);
}

#[tokio::test]
async fn invalid_args_fail_permanently() {
    let err = handler()
        .run(ctx(json!({"url": "ftp://127.0.0.1/"})))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("scheme"), "{}", err.message);
}
