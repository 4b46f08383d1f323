//! In-process fleet harness: several workers on one real Redis, each with its
//! own shutdown switch, plus a recording handler that audits every fire.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardcron_coord::{Coordinator, RedisCoordinator};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::{
    FireContext, FnHandler, Handler, RunOutput, Worker, WorkerSettings, WorkerStatus,
};
use shardcron_testkit::RedisServer;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const RING: RingConfig = RingConfig::new(1024, 160);

/// One observed run.
#[derive(Clone, Debug)]
pub struct Seen {
    pub job: String,
    pub scheduled_ms: i64,
    pub node: String,
    pub shard: u32,
    pub token: u64,
    pub started_ms: i64,
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

pub fn recording_handler(log: Log) -> impl Handler {
    FnHandler(move |ctx: FireContext| {
        let log = log.clone();
        async move {
            log.lock().expect("log").push(Seen {
                job: ctx.job_id.clone(),
                scheduled_ms: ctx.scheduled_ms,
                node: ctx.node_id.clone(),
                shard: ctx.shard,
                token: ctx.fencing_token,
                started_ms: now_ms(),
            });
            Ok(RunOutput::default())
        }
    })
}

pub struct Running {
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
    pub status: watch::Receiver<WorkerStatus>,
}

pub struct Fleet {
    pub redis: RedisServer,
    pub namespace: String,
    pub settings: WorkerSettings,
    pub log: Log,
    pub workers: BTreeMap<String, Running>,
    pub extra: Vec<(String, Arc<dyn Handler>)>,
}

impl Fleet {
    /// Who claimed a fire (`holder|token|attempt`), from its claim record:
    /// its claim key, else its job's watermark when that is at the fire.
    pub fn claim_holder(&self, job: &str, scheduled_ms: i64) -> Option<String> {
        let shard = shardcron_core::shard_of(job, RING.shard_count);
        let keys = shardcron_coord::Keyspace::new(&self.namespace);
        let key = format!("{}{job}@{scheduled_ms}", keys.claim_prefix(shard));
        let present = |v: String| (v != "(nil)").then_some(v);
        let key_value = self.redis.command(&["GET", &key]).ok().and_then(present);
        let watermark = self
            .redis
            .command(&["HGET", &keys.last_fired(shard), job])
            .ok()
            .and_then(present);
        shardcron_coord::claim_record(key_value.as_deref(), watermark.as_deref(), scheduled_ms)
    }

    pub fn new(settings: WorkerSettings) -> Self {
        Self {
            redis: RedisServer::start().expect("redis-server"),
            namespace: "fleet".into(),
            settings,
            log: Arc::new(Mutex::new(Vec::new())),
            workers: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    pub async fn coordinator(&self) -> Arc<dyn Coordinator> {
        Arc::new(
            RedisCoordinator::connect(&self.redis.url(), &self.namespace, RING)
                .await
                .expect("coordinator"),
        )
    }

    pub async fn put_every_second_jobs(&self, n: usize) {
        let c = self.coordinator().await;
        for i in 0..n {
            c.put_job(
                &JobSpec::new(format!("job-{i:04}"), "@every 1s", "record"),
                None,
            )
            .await
            .expect("put job");
        }
    }

    pub async fn start(&mut self, node: &str) {
        let mut builder = Worker::builder(self.coordinator().await)
            .node_id(node)
            .settings(self.settings.clone())
            .handler("record", recording_handler(self.log.clone()));
        for (name, h) in &self.extra {
            builder = builder.handler_arc(name.clone(), h.clone());
        }
        let worker = builder.build().expect("worker");
        let status = worker.status();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            worker
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .expect("worker run");
        });
        self.workers.insert(
            node.to_owned(),
            Running {
                stop: Some(stop),
                task,
                status,
            },
        );
    }

    /// Graceful stop; waits for the worker to finish.
    pub async fn stop(&mut self, node: &str) {
        if let Some(mut w) = self.workers.remove(node) {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
            let _ = w.task.await;
        }
    }

    /// Crash: the worker's task is dropped mid-flight; no release, no deregister.
    pub async fn crash(&mut self, node: &str) {
        if let Some(w) = self.workers.remove(node) {
            w.task.abort();
            let _ = w.task.await;
        }
    }

    pub fn owned_total(&self) -> usize {
        self.workers
            .values()
            .map(|w| w.status.borrow().owned_shards)
            .sum()
    }

    /// Waits until every live worker is ready and they own every shard between them.
    pub async fn wait_settled(&self, limit: Duration) -> Duration {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            let all_ready = self.workers.values().all(|w| {
                let s = w.status.borrow();
                s.ready() && s.members.len() == self.workers.len()
            });
            if all_ready && self.owned_total() == RING.shard_count as usize {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "fleet did not settle within {limit:?}: owned {} of {}",
            self.owned_total(),
            RING.shard_count
        );
    }

    pub async fn stop_all(&mut self) {
        let nodes: Vec<String> = self.workers.keys().cloned().collect();
        for n in nodes {
            self.stop(&n).await;
        }
    }
}

/// Audit of `@every 1s` fires of `jobs` jobs in `[from_ms, to_ms]`.
#[derive(Debug)]
pub struct Audit {
    pub missing_fires: Vec<(String, i64)>,
    pub expected: usize,
    pub seen: usize,
    pub duplicates: usize,
    pub missing: usize,
    pub per_node: BTreeMap<String, usize>,
    pub max_lateness_ms: i64,
}

pub fn audit(log: &Log, jobs: usize, from_ms: i64, to_ms: i64) -> Audit {
    let first = (from_ms + 999) / 1000 * 1000;
    let seconds: Vec<i64> = (0..)
        .map(|i| first + i * 1000)
        .take_while(|&t| t <= to_ms)
        .collect();
    let log = log.lock().expect("log");
    let mut counts: HashMap<(String, i64), usize> = HashMap::new();
    let mut per_node = BTreeMap::new();
    let mut max_lateness_ms = 0;
    for s in log
        .iter()
        .filter(|s| s.scheduled_ms >= first && s.scheduled_ms <= to_ms)
    {
        *counts.entry((s.job.clone(), s.scheduled_ms)).or_default() += 1;
        *per_node.entry(s.node.clone()).or_default() += 1;
        max_lateness_ms = max_lateness_ms.max(s.started_ms - s.scheduled_ms);
    }
    let mut missing_fires = Vec::new();
    for i in 0..jobs {
        for &t in &seconds {
            let job = format!("job-{i:04}");
            if !counts.contains_key(&(job.clone(), t)) {
                missing_fires.push((job, t));
            }
        }
    }
    let missing = missing_fires.len();
    Audit {
        missing_fires,
        expected: jobs * seconds.len(),
        seen: counts.values().sum(),
        duplicates: counts.values().filter(|&&c| c > 1).map(|c| c - 1).sum(),
        missing,
        per_node,
        max_lateness_ms,
    }
}
