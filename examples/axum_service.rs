//! An HTTP service that embeds a worker and lets its users schedule
//! reminders through its own endpoints.
//!
//! ```bash
//! cargo run --example axum_service -- redis://127.0.0.1:6379 127.0.0.1:3000
//! curl -X PUT localhost:3000/reminders/standup \
//!      -H 'content-type: application/json' \
//!      -d '{"schedule": "0 30 9 * * Mon-Fri", "tz": "Europe/Berlin", "text": "stand-up"}'
//! curl -X POST localhost:3000/reminders/standup/trigger
//! curl localhost:3000/reminders
//! curl -X DELETE localhost:3000/reminders/standup
//! curl localhost:3000/readyz
//! ```
//!
//! Run several copies behind a load balancer: a reminder written through
//! any of them fires once, on one of them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shardcron::{Job, Jobs, RunOutput, Scheduler, WorkerStatus};
use tokio::sync::watch;

/// What the service shares with its request handlers.
#[derive(Clone)]
struct App {
    jobs: Jobs,
    status: watch::Receiver<WorkerStatus>,
}

/// A reminder as clients send it.
#[derive(Deserialize)]
struct Reminder {
    schedule: String,
    #[serde(default)]
    tz: Option<String>,
    text: String,
}

/// Every job of this service is a reminder, under this id prefix.
const PREFIX: &str = "reminder:";

/// The library's errors as HTTP responses: each kind says what the client
/// can do.
struct ApiError(shardcron::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            shardcron::Error::InvalidJob(_) => StatusCode::BAD_REQUEST,
            shardcron::Error::NotFound { .. } => StatusCode::NOT_FOUND,
            shardcron::Error::Conflict { .. } | shardcron::Error::Busy { .. } => {
                StatusCode::CONFLICT
            }
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

impl From<shardcron::Error> for ApiError {
    fn from(e: shardcron::Error) -> Self {
        Self(e)
    }
}

async fn put_reminder(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(reminder): Json<Reminder>,
) -> Result<impl IntoResponse, ApiError> {
    let mut job = Job::cron(format!("{PREFIX}{name}"), reminder.schedule)
        .handler("remind")
        .args(json!({ "text": reminder.text }));
    if let Some(tz) = reminder.tz {
        job = job.tz(tz);
    }
    // Checked (schedule, zone, handler...) before anything is written.
    let written = app.jobs.upsert(job).await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "version": written.job.version }))))
}

async fn delete_reminder(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    // No fire scheduled after this returns starts, on any node.
    app.jobs.remove(&format!("{PREFIX}{name}")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn trigger_reminder(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let fire = app.jobs.trigger(&format!("{PREFIX}{name}")).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "fire_id": fire.to_string() })),
    ))
}

async fn list_reminders(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let reminders: Vec<_> = app
        .jobs
        .list(PREFIX)
        .await?
        .into_iter()
        .map(|j| json!({ "id": j.spec.id, "schedule": j.spec.schedule, "tz": j.spec.tz, "paused": j.spec.paused }))
        .collect();
    Ok(Json(reminders))
}

async fn readyz(State(app): State<App>) -> StatusCode {
    if app.status.borrow().ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "shardcron=info".into()))
        .init();
    let mut args = std::env::args().skip(1);
    let store = args
        .next()
        .or_else(|| std::env::var("SHARDCRON_STORE").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());

    let scheduler = Scheduler::builder()
        .store(store)
        .namespace("axum-example")
        .handler("remind", |ctx| async move {
            println!("reminder {}: {}", ctx.fire_id, ctx.args["text"]);
            Ok(RunOutput::default())
        })
        .start()
        .await?;

    let app = App {
        jobs: scheduler.jobs().clone(),
        status: scheduler.status_watch(),
    };
    let router = Router::new()
        .route("/reminders", get(list_reminders))
        .route(
            "/reminders/{name}",
            put(put_reminder).delete(delete_reminder),
        )
        .route("/reminders/{name}/trigger", post(trigger_reminder))
        .route("/readyz", get(readyz))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // The HTTP server has stopped taking requests; now leave the fleet.
    scheduler.shutdown().await?;
    Ok(())
}
