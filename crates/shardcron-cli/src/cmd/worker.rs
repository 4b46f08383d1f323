//! `shardcron worker`: one node of the fleet, until SIGTERM/SIGINT.
//!
//! Start-up order matters:
//!
//! 1. The config file and its static jobs are validated first, so a bad file
//!    exits 3 before anything is written anywhere.
//! 2. The admin servers (`--listen`, `--api-listen`) start before Redis is
//!    contacted: `/healthz` answers at once and `/readyz` reports "not
//!    ready" while the worker waits for Redis, instead of the probe failing
//!    to connect. The `/v1` API (on `--api-listen`, or on `--listen` when no
//!    separate address is given) answers 503 until the worker has
//!    connected, then uses the worker's store and handler registry.
//! 3. Connecting retries with backoff while Redis is unreachable (a fleet
//!    must come back by itself after a Redis outage or a boot-order race),
//!    logging once per state change; a namespace created with another shard
//!    count is fatal (exit 3), since no retry can fix it.
//! 4. Static jobs are upserted (skipped when unchanged, so restarting a fleet
//!    does not bump every version). The config file is their source of
//!    truth: a static job paused by hand is resumed on the next start unless
//!    the file says `paused = true`.
//! 5. The worker runs; its shutdown future is the first signal.

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{redact_url, CoordError, Coordinator};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::{default_node_id, Worker, WorkerStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin_http;
use crate::api::{ApiAuth, ApiState};
use crate::args::WorkerArgs;
use crate::config::{self, WorkerConfig};
use crate::connect::Target;
use crate::exit::{coord_error_message, CliError};
use crate::jobs_input::builtin_registry;
use crate::signals::shutdown_on_signals;

/// First delay between connection attempts.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs `worker`.
pub async fn run(target: &Target, args: WorkerArgs) -> Result<(), CliError> {
    let config = match &args.config {
        Some(path) => config::load(path)?,
        None => WorkerConfig::default(),
    };
    let registry = builtin_registry();
    config
        .check_api(&registry)
        .map_err(|e| match &args.config {
            Some(path) => e.context(format!("config file {}", path.display())),
            None => e,
        })?;
    let static_jobs = config
        .static_jobs(&registry)
        .map_err(|e| match &args.config {
            Some(path) => e.context(format!("config file {}", path.display())),
            None => e,
        })?;
    let node_id = args
        .node_id
        .clone()
        .or_else(|| config.node_id.clone())
        .unwrap_or_else(default_node_id);
    if shardcron_core::validate_job_id(&node_id).is_err() || node_id.contains('/') {
        return Err(CliError::config(format!(
            "invalid node id {node_id:?}: use 1-200 characters of A-Z a-z 0-9 _ - . :"
        )));
    }
    let listen = args.listen.clone().or_else(|| config.listen.clone());
    let api_listen = args
        .api_listen
        .clone()
        .or_else(|| config.api_listen.clone());

    let shutdown = shutdown_on_signals()?;
    let (status_tx, status_rx) = watch::channel(WorkerStatus {
        node_id: node_id.clone(),
        ..WorkerStatus::default()
    });
    let api = ApiState::new(
        ApiAuth::from_env(&config.api),
        registry.clone(),
        Some(config.settings.claim_retention),
    )
    .with_config(&config.api);
    let (bound, api_bound) = match (&listen, &api_listen) {
        (Some(addr), None) => {
            let metrics = admin_http::install_metrics(&node_id, &target.namespace)?;
            let bound = admin_http::start(addr, Some(metrics), status_rx, api.clone()).await?;
            (Some(bound), Some(bound))
        }
        (listen, Some(api_addr)) => {
            let bound = match listen {
                Some(addr) => {
                    let metrics = admin_http::install_metrics(&node_id, &target.namespace)?;
                    let app = admin_http::probes_router(Some(metrics), status_rx);
                    let bound = admin_http::serve("--listen", addr, app).await?;
                    info!(addr = %bound, "serving /metrics, /healthz and /readyz");
                    Some(bound)
                }
                None => None,
            };
            let app = admin_http::api_router(api.clone());
            let api_bound = admin_http::serve("--api-listen", api_addr, app).await?;
            info!(addr = %api_bound, "serving the /v1 API");
            (bound, Some(api_bound))
        }
        (None, None) => (None, None),
    };
    if let Some(api_bound) = api_bound {
        if !api.auth().has_token() {
            info!(
                "the /v1 API is read-only: set [api] token or SHARDCRON_API_TOKEN to allow writes"
            );
        } else if !api_bound.ip().is_loopback() {
            warn!(addr = %api_bound, "the /v1 API listens beyond loopback without TLS; bind 127.0.0.1 (--api-listen) and put a TLS proxy in front");
        }
    }

    info!(
        node = %node_id,
        namespace = %target.namespace,
        store = %redact_url(&target.url),
        shard_count = config.ring.shard_count,
        static_jobs = static_jobs.len(),
        "starting worker"
    );
    let Some(coord) = connect_with_retry(target, config.ring, &shutdown).await? else {
        info!("stopped before the store was reachable");
        return Ok(());
    };
    api.connect(Arc::clone(&coord));
    if !upsert_static_jobs(coord.as_ref(), &static_jobs, &shutdown).await? {
        info!("stopped while storing static jobs");
        return Ok(());
    }

    let mut builder = Worker::builder(coord)
        .node_id(node_id.clone())
        .settings(config.settings.clone());
    for (name, handler) in shardcron_handlers::builtin_handlers() {
        builder = builder.handler_arc(name, handler);
    }
    if let Some(addr) = bound {
        builder = builder.addr(addr.to_string());
    }
    if let Some(skew_ms) = clock_skew_from_env()? {
        warn!(
            skew_ms,
            "{CLOCK_SKEW_ENV} is set: this node's wall clock is shifted (fault injection)"
        );
        builder = builder.clock(Arc::new(shardcron_runtime::SkewedClock::new(skew_ms)));
    }
    let worker = builder.build()?;
    let mut worker_status = worker.status();
    tokio::spawn(async move {
        loop {
            let snapshot = worker_status.borrow_and_update().clone();
            if status_tx.send(snapshot).is_err() {
                return;
            }
            if worker_status.changed().await.is_err() {
                return;
            }
        }
    });
    let stop = shutdown.clone();
    // The runtime logs its report when it stops.
    let _report = worker.run(async move { stop.cancelled().await }).await?;
    Ok(())
}

/// Fault injection: shifts this node's wall clock by this many milliseconds,
/// so tests can show that schedule and lease math survive clock skew.
pub const CLOCK_SKEW_ENV: &str = "SHARDCRON_CLOCK_SKEW_MS";

fn clock_skew_from_env() -> Result<Option<i64>, CliError> {
    match std::env::var(CLOCK_SKEW_ENV) {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            CliError::config(format!(
                "{CLOCK_SKEW_ENV}={v:?} is not a whole number of milliseconds"
            ))
        }),
    }
}

/// Waits `delay` unless shutdown comes first; returns false on shutdown.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Errors worth waiting out: the store unreachable, or answering with an
/// error (e.g. Redis's `LOADING` while it restarts). A namespace with other
/// ring settings or a corrupt value is not.
fn transient(error: &CoordError) -> Option<&'static str> {
    match error {
        CoordError::Unreachable { .. } => Some("unreachable"),
        CoordError::Store { .. } => Some("answering with errors"),
        _ => None,
    }
}

/// Connects, retrying with exponential backoff while the store is unreachable
/// (logging once per change of state). `Ok(None)`: shutdown came first.
pub async fn connect_with_retry(
    target: &Target,
    ring: RingConfig,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<dyn Coordinator>>, CliError> {
    let mut backoff = INITIAL_BACKOFF;
    let mut state: Option<&'static str> = None;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            result = shardcron_store::open_store(&target.url, &target.namespace, ring) => result,
        };
        let error = match attempt {
            Ok(coord) => {
                if state.is_some() {
                    info!(store = %redact_url(&target.url), "the store is reachable again");
                }
                return Ok(Some(coord));
            }
            Err(shardcron_store::OpenError::Coord(e)) => e,
            Err(other) => return Err(other.into()),
        };
        let Some(now) = transient(&error) else {
            return Err(error.into());
        };
        if state != Some(now) {
            warn!(error = %coord_error_message(&error), "store {now}; retrying with backoff (up to {MAX_BACKOFF:?})");
            state = Some(now);
        } else {
            debug!(error = %coord_error_message(&error), "still waiting for the store");
        }
        if !pause(backoff, shutdown).await {
            return Ok(None);
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Stores every static job that differs from its stored version, riding out
/// store outages. Returns false if shutdown came first.
pub async fn upsert_static_jobs(
    coord: &dyn Coordinator,
    jobs: &[JobSpec],
    shutdown: &CancellationToken,
) -> Result<bool, CliError> {
    for spec in jobs {
        let mut backoff = INITIAL_BACKOFF;
        let mut state: Option<&'static str> = None;
        loop {
            let error = match upsert(coord, spec).await {
                Ok(()) => break,
                Err(e) => e,
            };
            let Some(now) = transient(&error) else {
                return Err(CliError::from(error).context(format!("static job {:?}", spec.id)));
            };
            if state != Some(now) {
                warn!(error = %coord_error_message(&error), job = %spec.id, "cannot store static job yet (store {now}); retrying");
                state = Some(now);
            }
            if !pause(backoff, shutdown).await {
                return Ok(false);
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    Ok(true)
}

async fn upsert(coord: &dyn Coordinator, spec: &JobSpec) -> Result<(), CoordError> {
    match coord.get_job(&spec.id).await? {
        Some(stored) if stored.spec == *spec => {
            debug!(job = %spec.id, version = stored.version, "static job unchanged");
        }
        previous => {
            let stored = coord.put_job(spec, None).await?;
            info!(
                job = %spec.id,
                version = stored.version,
                created = previous.is_none(),
                "static job stored"
            );
        }
    }
    Ok(())
}
