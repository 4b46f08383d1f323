//! Shared set-up of the API tests: a private `redis-server`, the admin router
//! (probes plus `/v1`) served on `127.0.0.1:0` exactly as a worker serves
//! it, and a small HTTP client that returns status, headers and JSON.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shardcron_cli::admin_http;
use shardcron_cli::api::{ApiAuth, ApiState};
use shardcron_cli::jobs_input::builtin_registry;
use shardcron_coord::{Coordinator, RedisCoordinator};
use shardcron_core::RingConfig;
use shardcron_runtime::{HandlerRegistry, WorkerStatus};
use shardcron_testkit::RedisServer;
use tokio::sync::watch;

/// The token every test server accepts unless a test says otherwise.
pub const TOKEN: &str = "test-token-0123456789";

/// Claim retention the API checks misfire graces against.
pub const CLAIM_RETENTION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// A served API over a private Redis.
pub struct TestApi {
    /// Base URL, `http://127.0.0.1:port`.
    pub base: String,
    /// The store the API writes to (for setup and checks).
    pub coord: Arc<RedisCoordinator>,
    /// The server (dropped last).
    pub redis: RedisServer,
    client: reqwest::Client,
    token: Option<String>,
    _status: watch::Sender<WorkerStatus>,
}

/// A response: status, headers and the body as JSON (`Null` when empty or
/// not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as JSON.
    pub json: Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// The error's `field`, if any.
    pub fn field(&self) -> Option<&str> {
        self.json["error"]["field"].as_str()
    }

    /// The error's `code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }

    /// The `ETag` header, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag").and_then(|v| v.to_str().ok())
    }
}

/// Serves the admin router with `state` on a fresh loopback port.
pub async fn serve(state: ApiState) -> (SocketAddr, watch::Sender<WorkerStatus>) {
    let (status_tx, status_rx) = watch::channel(WorkerStatus::default());
    let app = admin_http::router(None, status_rx, state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    (addr, status_tx)
}

/// `builtin_registry()` (exec, http) plus `extra` handlers.
pub fn registry_with(extra: &[(&str, Arc<dyn shardcron_runtime::Handler>)]) -> HandlerRegistry {
    let mut registry = builtin_registry();
    for (name, handler) in extra {
        registry.insert(*name, Arc::clone(handler));
    }
    registry
}

impl TestApi {
    /// A served API with the given auth and handlers over a fresh Redis
    /// (namespace `api`, ring `ring`).
    pub async fn start_with(auth: ApiAuth, handlers: HandlerRegistry, ring: RingConfig) -> Self {
        let redis = RedisServer::start().expect("redis-server");
        let coord = Arc::new(
            RedisCoordinator::connect(&redis.url(), "api", ring)
                .await
                .expect("connect"),
        );
        let dyn_coord: Arc<dyn Coordinator> = coord.clone();
        let state = ApiState::connected(dyn_coord, auth.clone(), handlers, Some(CLAIM_RETENTION));
        let (addr, status) = serve(state).await;
        let token = auth.has_token().then(|| TOKEN.to_owned());
        Self {
            base: format!("http://{addr}"),
            coord,
            redis,
            client: client(),
            token,
            _status: status,
        }
    }

    /// A served API with token [`TOKEN`], closed reads and the built-in handlers.
    pub async fn start() -> Self {
        Self::start_with(
            ApiAuth::new(Some(TOKEN.to_owned()), false),
            builtin_registry(),
            RingConfig::default(),
        )
        .await
    }

    /// A request with the test token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// A request without credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends with the token.
    pub async fn call(&self, method: Method, path: &str) -> Reply {
        send(self.request(method, path)).await
    }

    /// `PUT /v1/jobs/{id}` with a JSON body and optional extra header.
    pub async fn put_json(&self, id: &str, body: &Value, header: Option<(&str, &str)>) -> Reply {
        let mut builder = self
            .request(Method::PUT, &format!("/v1/jobs/{id}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        send(builder).await
    }
}

/// A plain HTTP/1 client without proxies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Sends a request and reads the reply.
pub async fn send(builder: reqwest::RequestBuilder) -> Reply {
    let response = builder.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
        text,
    }
}

/// A valid job body for the `exec` handler.
pub fn exec_job(schedule: &str) -> Value {
    serde_json::json!({
        "schedule": schedule,
        "handler": "exec",
        "args": {"command": "true"},
    })
}

/// The ids of a `GET /v1/jobs` page.
pub fn ids(list: &Value) -> Vec<String> {
    list["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .filter_map(|j| j["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
