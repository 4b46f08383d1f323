//! The in-process fleet of `live`: job registration, named workers with a
//! counting handler, the three membership changes of a churn timeline
//! (join, graceful leave, crash) and the status-based settle check against
//! the expected weighted placement ([`super::weights`]).
//!
//! Workers are kept by name so a churn script can address them; each runs
//! as its own tokio task on its own store connection (any store
//! `shardcron_store::open_store` opens from a URL), exactly as a worker
//! process would, so a crash is an `abort` of that task (no release, no
//! deregister: the peers must wait out the member and lease TTLs) and a
//! graceful leave resolves its shutdown future.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shardcron_coord::Coordinator;
use shardcron_core::{Delivery, JobSpec, RingConfig, ShardMap, ShardWeights};
use shardcron_runtime::{
    FireContext, FnHandler, RunOutput, Worker, WorkerError, WorkerReport, WorkerSettings,
    WorkerStatus,
};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::audit::Recorder;
use super::churn::node_id;
use super::weights::{expected_map, job_spec};
use crate::error::BenchError;

/// Namespace of every `live` run (the server is private to the run).
pub const NAMESPACE: &str = "bench";

/// Wall clock, Unix ms (the same clock the workers use).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Concurrent writers used to register jobs.
const PUT_TASKS: u32 = 8;

/// Registers `job-0 .. job-(jobs-1)` with `schedule`, handler `count` and
/// `delivery`.
pub async fn put_jobs(
    url: &str,
    ring: RingConfig,
    jobs: u32,
    schedule: &str,
    delivery: Delivery,
) -> Result<(), BenchError> {
    let coordinator = connect(url, ring).await?;
    let mut tasks = JoinSet::new();
    for task in 0..PUT_TASKS {
        let coordinator = Arc::clone(&coordinator);
        let schedule = schedule.to_owned();
        tasks.spawn(async move {
            for index in (task..jobs).step_by(PUT_TASKS as usize) {
                let spec = JobSpec {
                    delivery,
                    ..job_spec(index, &schedule)
                };
                coordinator.put_job(&spec, None).await?;
            }
            Ok::<(), shardcron_coord::CoordError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined
            .map_err(|e| BenchError::live("registering jobs", e))?
            .map_err(|e| BenchError::live("registering jobs", e))?;
    }
    Ok(())
}

/// A coordinator on its own connection to the store `url` names, in
/// [`NAMESPACE`].
pub async fn connect(url: &str, ring: RingConfig) -> Result<Arc<dyn Coordinator>, BenchError> {
    shardcron_store::open_store(url, NAMESPACE, ring)
        .await
        .map_err(|e| BenchError::live("connecting to the store", e))
}

type RunTask = JoinHandle<Result<WorkerReport, WorkerError>>;

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: RunTask,
    status: watch::Receiver<WorkerStatus>,
}

/// Running workers, by name (`w0` ..; node id `bench-w0` ..).
pub struct Fleet {
    url: String,
    ring: RingConfig,
    weights: ShardWeights,
    settings: WorkerSettings,
    recorder: Recorder,
    workers: BTreeMap<String, Running>,
    /// Workers that were asked to leave and may still be draining.
    leaving: Vec<RunTask>,
    started: Instant,
}

impl Fleet {
    /// An empty fleet whose jobs weigh `weights`; add workers with
    /// [`Fleet::join`].
    pub fn new(
        url: &str,
        ring: RingConfig,
        weights: ShardWeights,
        settings: WorkerSettings,
        recorder: &Recorder,
    ) -> Self {
        Fleet {
            url: url.to_owned(),
            ring,
            weights,
            settings,
            recorder: recorder.clone(),
            workers: BTreeMap::new(),
            leaving: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Starts worker `name` (node id `bench-<name>`) with the counting handler.
    pub async fn join(&mut self, name: &str) -> Result<(), BenchError> {
        let coordinator = connect(&self.url, self.ring).await?;
        let recorder = self.recorder.clone();
        let worker_index = recorder.worker(name);
        let worker = Worker::builder(coordinator)
            .node_id(node_id(name))
            .settings(self.settings.clone())
            .handler(
                "count",
                FnHandler(move |ctx: FireContext| {
                    let recorder = recorder.clone();
                    async move {
                        recorder.record(worker_index, &ctx.job_id, ctx.scheduled_ms, now_ms());
                        Ok(RunOutput::default())
                    }
                }),
            )
            .build()
            .map_err(|e| BenchError::live("building a worker", e))?;
        let status = worker.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        self.workers.insert(
            name.to_owned(),
            Running {
                stop: Some(stop),
                task,
                status,
            },
        );
        Ok(())
    }

    /// Graceful leave of `name`: resolves its shutdown future and returns at
    /// once (the worker deregisters, releases and drains in the background;
    /// [`Fleet::stop`] collects its report). False if it was not running.
    pub fn leave(&mut self, name: &str) -> bool {
        let Some(mut worker) = self.workers.remove(name) else {
            return false;
        };
        if let Some(stop) = worker.stop.take() {
            let _ = stop.send(());
        }
        self.leaving.push(worker.task);
        true
    }

    /// Crash of `name`: its task is aborted mid-flight. False if it was not
    /// running.
    pub async fn crash(&mut self, name: &str) -> bool {
        let Some(worker) = self.workers.remove(name) else {
            return false;
        };
        worker.task.abort();
        let _ = worker.task.await;
        true
    }

    /// Node ids of the running workers, sorted.
    pub fn live_nodes(&self) -> Vec<String> {
        self.workers.keys().map(|name| node_id(name)).collect()
    }

    /// Names of the running workers, sorted.
    pub fn names(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Shards held by the running workers, by their own account.
    pub fn owned_total(&self) -> usize {
        self.workers
            .values()
            .map(|w| w.status.borrow().owned_shards)
            .sum()
    }

    /// The placement the running workers should converge on:
    /// `ShardMap::place` over their node ids and the jobs' weights.
    pub fn expected_map(&self) -> ShardMap {
        expected_map(&self.live_nodes(), &self.weights, self.ring)
    }

    /// The placement the running workers converge on from what the store
    /// holds now: `ShardMap::next_placement` of the stored placement (the
    /// workers' own rule, sticky across joins and leaves), over exactly the
    /// running workers. A fresh `ShardMap::place` ([`Fleet::expected_map`])
    /// when the store cannot be read.
    pub async fn expected_map_from_store(&self, store: &dyn Coordinator) -> ShardMap {
        let read = store
            .placement_inputs(None, None, self.settings.rebalance_interval)
            .await;
        match read {
            Ok(inputs) => ShardMap::next_placement(
                inputs.placement.as_ref().map(|p| &p.record),
                &self.live_nodes(),
                &self.weights,
                self.ring,
            ),
            Err(_) => self.expected_map(),
        }
    }

    /// Whether, by the workers' own statuses, every shard of `map` (the
    /// expected placement over exactly the running workers) is held by its
    /// owner: every running
    /// worker is registered, not stopping, sees exactly the running workers
    /// as members, wants the shards `map` gives it and holds them all, and
    /// together they hold every shard. Reads only local state (no store
    /// call).
    pub fn settled_on(&self, map: &ShardMap) -> bool {
        let live = self.live_nodes();
        let mut owned = 0usize;
        for (name, worker) in &self.workers {
            let status = worker.status.borrow();
            let wanted = map.shards_of(&node_id(name)).len();
            if !status.ready() || status.members != live || status.desired_shards != wanted {
                return false;
            }
            owned += status.owned_shards;
        }
        owned == map.shard_count() as usize
    }

    /// Waits until [`Fleet::settled_on`] the expected placement over the
    /// running workers. Returns milliseconds since [`Fleet::new`].
    pub async fn wait_settled(&self, limit: Duration) -> Result<u64, BenchError> {
        let store = connect(&self.url, self.ring).await?;
        let deadline = Instant::now() + limit;
        loop {
            let map = self.expected_map_from_store(store.as_ref()).await;
            if self.settled_on(&map) {
                return Ok(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            if Instant::now() >= deadline {
                return Err(BenchError::live(
                    "waiting for the fleet to settle",
                    format!(
                        "only {} of {} shards owned after {limit:?}",
                        self.owned_total(),
                        self.ring.shard_count
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every running worker gracefully and waits for those that left
    /// earlier; returns the reports of those that stopped cleanly (crashed
    /// workers have none).
    pub async fn stop(mut self) -> Vec<WorkerReport> {
        let mut tasks = std::mem::take(&mut self.leaving);
        for (_, mut worker) in std::mem::take(&mut self.workers) {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
            tasks.push(worker.task);
        }
        let mut reports = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(e)) => eprintln!("shardcron-bench live: a worker failed: {e}"),
                Err(e) => eprintln!("shardcron-bench live: a worker task failed: {e}"),
            }
        }
        reports
    }
}
