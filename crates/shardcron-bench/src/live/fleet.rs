//! The in-process fleet of `live`: job registration, workers with a counting
//! handler, settling and graceful stop.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shardcron_coord::{Coordinator, RedisCoordinator};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::{
    FireContext, FnHandler, RunOutput, Worker, WorkerError, WorkerReport, WorkerSettings,
    WorkerStatus,
};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::audit::Recorder;
use crate::error::BenchError;

/// Wall clock, Unix ms (the same clock the workers use).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Concurrent writers used to register jobs.
const PUT_TASKS: u32 = 8;

/// Registers `job-0 .. job-(jobs-1)` with `schedule` and handler `count`.
pub async fn put_jobs(
    url: &str,
    ring: RingConfig,
    jobs: u32,
    schedule: &str,
) -> Result<(), BenchError> {
    let coordinator = Arc::new(
        RedisCoordinator::connect(url, "bench", ring)
            .await
            .map_err(|e| BenchError::live("connecting", e))?,
    );
    let mut tasks = JoinSet::new();
    for task in 0..PUT_TASKS {
        let coordinator = Arc::clone(&coordinator);
        let schedule = schedule.to_owned();
        tasks.spawn(async move {
            for index in (task..jobs).step_by(PUT_TASKS as usize) {
                let spec = JobSpec::new(format!("job-{index}"), schedule.clone(), "count");
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

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<WorkerReport, WorkerError>>,
    status: watch::Receiver<WorkerStatus>,
}

/// Running workers.
pub struct Fleet {
    workers: Vec<Running>,
    started: Instant,
}

impl Fleet {
    /// Starts `count` workers (`bench-w0` ..) with the counting handler.
    pub async fn start(
        url: &str,
        ring: RingConfig,
        count: u32,
        recorder: &Recorder,
    ) -> Result<Fleet, BenchError> {
        let started = Instant::now();
        let mut workers = Vec::new();
        for index in 0..count {
            let coordinator: Arc<dyn Coordinator> = Arc::new(
                RedisCoordinator::connect(url, "bench", ring)
                    .await
                    .map_err(|e| BenchError::live("connecting a worker", e))?,
            );
            let recorder = recorder.clone();
            let worker = Worker::builder(coordinator)
                .node_id(format!("bench-w{index}"))
                .settings(WorkerSettings::default())
                .handler(
                    "count",
                    FnHandler(move |ctx: FireContext| {
                        let recorder = recorder.clone();
                        async move {
                            recorder.record(&ctx.job_id, ctx.scheduled_ms, now_ms());
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
            workers.push(Running {
                stop: Some(stop),
                task,
                status,
            });
        }
        Ok(Fleet { workers, started })
    }

    /// Waits until every worker is ready, sees every member, and together
    /// they own all `shards`. Returns milliseconds since [`Fleet::start`].
    pub async fn wait_settled(&self, shards: u32, limit: Duration) -> Result<u64, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            let mut owned = 0usize;
            let mut settled = true;
            for worker in &self.workers {
                let status = worker.status.borrow();
                owned += status.owned_shards;
                settled &= status.ready() && status.members.len() == self.workers.len();
            }
            if settled && owned == shards as usize {
                return Ok(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            if Instant::now() >= deadline {
                return Err(BenchError::live(
                    "waiting for the fleet to settle",
                    format!("only {owned} of {shards} shards owned after {limit:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every worker gracefully; returns the reports of those that
    /// stopped cleanly.
    pub async fn stop(mut self) -> Vec<WorkerReport> {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        let mut reports = Vec::new();
        for worker in self.workers {
            match worker.task.await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(e)) => eprintln!("shardcron-bench live: a worker failed: {e}"),
                Err(e) => eprintln!("shardcron-bench live: a worker task failed: {e}"),
            }
        }
        reports
    }
}
