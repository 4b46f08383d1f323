//! The scenario driver: a fleet of workers on one store, and a random
//! timeline of everything that goes wrong in production.
//!
//! Workers are real `shardcron_runtime::Worker`s, each behind its own
//! [`FaultyCoordinator`] on one shared `MemoryStore`. The timeline mixes
//! clock steps and skew, pauses longer than the lease TTL, graceful leaves,
//! crashes and restarts (always with a new instance id, as a new process
//! would have), and admin work on the jobs (edits, pauses, resumes, deletes,
//! re-creations, manual triggers) through a reliable coordinator. All of it
//! is drawn from the seed, and every action is written to the history.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardcron_coord::{Coordinator, MemoryCoordinator, MemoryStore};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_runtime::Worker;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::faulty::{FaultyCoordinator, Link};
use crate::handler::{SimHandler, HANDLER};
use crate::history::History;
use crate::jobs;
use crate::time::{NodeClock, SimTime, EPOCH_MS};
use crate::SimConfig;

const NAMESPACE: &str = "sim";

/// SplitMix64 step: derives independent RNG seeds from one seed.
pub fn mix(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the run looked like, for the checkers.
pub struct RunInfo {
    /// True wall time at which the run ended, Unix ms.
    pub end_ms: i64,
    /// Nodes in the fleet.
    pub nodes: usize,
    /// Jobs created at the start.
    pub jobs: usize,
    /// Claim batches whose promise about job versions was false, as the
    /// store noted them (`MemoryStore::broken_version_promises`).
    pub broken_version_promises: Vec<String>,
}

enum Action {
    Random,
    Restart(usize),
    ClockBack(usize, i64),
}

struct Incarnation {
    holder: String,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    paused_until: watch::Sender<Instant>,
    dead: CancellationToken,
    crashed: CancellationToken,
}

impl Incarnation {
    fn up(&self) -> bool {
        self.stop.is_some()
    }
}

struct Slot {
    id: String,
    offset_ms: Arc<AtomicI64>,
    inc: Option<Incarnation>,
}

struct JobSlot {
    spec: JobSpec,
    deleted: bool,
}

struct World<'a> {
    cfg: &'a SimConfig,
    seed: u64,
    time: SimTime,
    history: Arc<History>,
    store: MemoryStore,
    ring: RingConfig,
    admin: MemoryCoordinator,
    rng: StdRng,
    nodes: Vec<Slot>,
    jobs: BTreeMap<String, JobSlot>,
    agenda: BTreeMap<(i64, u64), Action>,
    seq: u64,
    incarnations: u64,
}

/// Runs one seed's scenario to its end and returns its shape.
pub async fn run(
    seed: u64,
    cfg: &SimConfig,
    time: SimTime,
    history: Arc<History>,
) -> Result<RunInfo, String> {
    let store = MemoryStore::with_clock(Arc::new(move || time.now_ms()));
    let ring = RingConfig::new(cfg.shards, 160);
    let admin = store
        .coordinator(NAMESPACE, ring)
        .map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(mix(seed, 0));
    let n_nodes = rng.random_range(cfg.nodes.0..=cfg.nodes.1);
    let n_jobs = rng.random_range(cfg.jobs.0..=cfg.jobs.1);
    let mut w = World {
        cfg,
        seed,
        time,
        history,
        store,
        ring,
        admin,
        rng,
        nodes: (0..n_nodes)
            .map(|i| Slot {
                id: format!("n{i}"),
                offset_ms: Arc::default(),
                inc: None,
            })
            .collect(),
        jobs: BTreeMap::new(),
        agenda: BTreeMap::new(),
        seq: 0,
        incarnations: 0,
    };
    for j in 0..n_jobs {
        let spec = jobs::new_job(&mut w.rng, &format!("j{j}"));
        w.put(spec, "create").await?;
    }
    for i in 0..n_nodes {
        w.start_node(i)?;
    }
    let end = (cfg.minutes * 60_000.0) as i64;
    let first = w.gap();
    w.schedule(first, Action::Random);
    while let Some((&(at, _), _)) = w.agenda.first_key_value() {
        if at >= end {
            break;
        }
        let Some((_, action)) = w.agenda.pop_first() else {
            break;
        };
        tokio::time::sleep_until(w.time.instant_at(EPOCH_MS + at)).await;
        w.act(action).await?;
    }
    tokio::time::sleep_until(w.time.instant_at(EPOCH_MS + end)).await;
    // Leave gracefully, so every fire still waiting on a node gets its
    // outcome (a run, or a record saying why not) before the checks; nodes
    // that have not stopped after the drain deadline are aborted.
    for slot in &mut w.nodes {
        if let Some(stop) = slot.inc.as_mut().and_then(|inc| inc.stop.take()) {
            let _ = stop.send(());
        }
    }
    let limit = Instant::now() + cfg.settings.drain_timeout + Duration::from_secs(10);
    for slot in &mut w.nodes {
        if let Some(inc) = slot.inc.take() {
            let mut task = inc.task;
            if tokio::time::timeout_at(limit, &mut task).await.is_err() {
                inc.dead.cancel();
                task.abort();
            }
        }
    }
    Ok(RunInfo {
        end_ms: EPOCH_MS + end,
        nodes: n_nodes,
        jobs: n_jobs,
        broken_version_promises: w.store.broken_version_promises(),
    })
}

impl World<'_> {
    fn now(&self) -> i64 {
        self.time.elapsed_ms()
    }

    fn schedule(&mut self, after_ms: i64, action: Action) {
        self.seq += 1;
        let at = self.now() + after_ms;
        self.agenda.insert((at, self.seq), action);
    }

    /// Time to the next random action: uniform around the configured mean,
    /// at ms resolution so actions rarely land on a fire's exact instant.
    fn gap(&mut self) -> i64 {
        let mean = self.cfg.action_gap.as_millis() as i64;
        self.rng.random_range(1..=2 * mean.max(1))
    }

    fn log(&self, node: Option<&str>, text: String) {
        self.history.log(node, None, None, text);
    }

    fn start_node(&mut self, i: usize) -> Result<(), String> {
        self.incarnations += 1;
        let inst = format!("i{}", self.incarnations);
        let id = self.nodes[i].id.clone();
        let holder = format!("{id}/{inst}");
        let (paused_until, paused_rx) = watch::channel(Instant::now());
        let dead = CancellationToken::new();
        let crashed = CancellationToken::new();
        let inner = self
            .store
            .coordinator(NAMESPACE, self.ring)
            .map_err(|e| e.to_string())?;
        let coord = FaultyCoordinator::new(
            inner,
            holder.clone(),
            mix(self.seed, 1000 + self.incarnations),
            self.cfg.faults.clone(),
            Link {
                paused_until: paused_rx,
                dead: dead.clone(),
            },
            self.history.clone(),
        );
        let handler = SimHandler::new(
            self.history.clone(),
            id.clone(),
            inst.clone(),
            crashed.clone(),
        );
        let clock = NodeClock::new(self.time, self.nodes[i].offset_ms.clone());
        let worker = Worker::builder(Arc::new(coord))
            .node_id(id.clone())
            .instance_id(inst)
            .handler(HANDLER, handler)
            .settings(self.cfg.settings.clone())
            .clock(Arc::new(clock))
            .build()
            .map_err(|e| e.to_string())?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let history = self.history.clone();
        let h = holder.clone();
        let task = tokio::spawn(async move {
            let result = worker
                .run(async move {
                    let _ = stop_rx.await;
                })
                .await;
            let how = match result {
                Ok(report) => format!("stopped: {report:?}"),
                Err(e) => format!("stopped with error: {e}"),
            };
            history.log(Some(&id), None, None, format!("{h}: {how}"));
        });
        self.log(Some(&self.nodes[i].id), format!("{holder}: START"));
        self.nodes[i].inc = Some(Incarnation {
            holder,
            task,
            stop: Some(stop),
            paused_until,
            dead,
            crashed,
        });
        Ok(())
    }

    fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].inc.as_ref().is_some_and(Incarnation::up))
            .collect()
    }

    fn pick_up_node(&mut self, keep: usize) -> Option<usize> {
        let up = self.up_nodes();
        if up.len() <= keep {
            return None;
        }
        Some(up[self.rng.random_range(0..up.len())])
    }

    async fn act(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Restart(i) => self.restart(i),
            Action::ClockBack(i, delta) => {
                self.step_clock(i, -delta);
                Ok(())
            }
            Action::Random => {
                let gap = self.gap();
                self.schedule(gap, Action::Random);
                self.random_action().await
            }
        }
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        match &self.nodes[i].inc {
            Some(inc) if inc.up() => Ok(()),
            Some(inc) if !inc.task.is_finished() => {
                // Still draining after a graceful leave.
                self.schedule(1000, Action::Restart(i));
                Ok(())
            }
            _ => self.start_node(i),
        }
    }

    fn step_clock(&mut self, i: usize, delta: i64) {
        let slot = &self.nodes[i];
        let now = slot.offset_ms.fetch_add(delta, Ordering::Relaxed) + delta;
        self.log(
            Some(&slot.id),
            format!(
                "{}: clock step {delta:+} ms (offset now {now:+} ms)",
                slot.id
            ),
        );
    }

    async fn random_action(&mut self) -> Result<(), String> {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=9 => {
                let i = self.rng.random_range(0..self.nodes.len());
                let delta = self.rng.random_range(100..5000)
                    * if self.rng.random_bool(0.5) { 1 } else { -1 };
                self.step_clock(i, delta);
            }
            10..=11 => {
                let i = self.rng.random_range(0..self.nodes.len());
                self.step_clock(i, 3_600_000);
                let back = self.rng.random_range(500..1500);
                self.schedule(back, Action::ClockBack(i, 3_600_000));
            }
            12..=20 => {
                if let Some(i) = self.pick_up_node(1) {
                    let long = self.rng.random_bool(0.7);
                    let ttl = self.cfg.settings.lease_ttl.as_millis() as u64;
                    let ms = if long {
                        self.rng.random_range(ttl + 100..ttl * 3)
                    } else {
                        self.rng.random_range(100..ttl)
                    };
                    if let Some(inc) = &self.nodes[i].inc {
                        let _ = inc
                            .paused_until
                            .send(Instant::now() + Duration::from_millis(ms));
                        self.history.pause(&inc.holder, ms);
                        let text = format!("{}: PAUSE for {ms} ms", inc.holder);
                        self.log(Some(&self.nodes[i].id), text);
                    }
                }
            }
            21..=25 => {
                if let Some(i) = self.pick_up_node(2) {
                    if let Some(inc) = self.nodes[i].inc.as_mut() {
                        if let Some(stop) = inc.stop.take() {
                            let _ = stop.send(());
                        }
                        let text = format!("{}: LEAVE (graceful)", inc.holder);
                        self.log(Some(&self.nodes[i].id), text);
                    }
                    let after = self.rng.random_range(1000..8000);
                    self.schedule(after, Action::Restart(i));
                }
            }
            26..=30 => {
                if let Some(i) = self.pick_up_node(2) {
                    if let Some(inc) = self.nodes[i].inc.take() {
                        self.history.crash(&inc.holder);
                        inc.dead.cancel();
                        inc.crashed.cancel();
                        inc.task.abort();
                    }
                    let after = self.rng.random_range(500..8000);
                    self.schedule(after, Action::Restart(i));
                }
            }
            _ => self.job_action(roll).await?,
        }
        Ok(())
    }

    fn pick_job(&mut self, want: impl Fn(&JobSlot) -> bool) -> Option<String> {
        let ids: Vec<&String> = self
            .jobs
            .iter()
            .filter(|(_, j)| want(j))
            .map(|(id, _)| id)
            .collect();
        if ids.is_empty() {
            return None;
        }
        let k = self.rng.random_range(0..ids.len());
        Some(ids[k].clone())
    }

    async fn put(&mut self, spec: JobSpec, what: &str) -> Result<(), String> {
        let stored = self
            .admin
            .put_job(&spec, None)
            .await
            .map_err(|e| e.to_string())?;
        self.history
            .write(&spec.id, Some(&spec), stored.updated_ms, what);
        self.jobs.insert(
            spec.id.clone(),
            JobSlot {
                spec,
                deleted: false,
            },
        );
        Ok(())
    }

    async fn trigger(&mut self, id: &str) -> Result<(), String> {
        if let Some(ms) = self
            .admin
            .trigger_job(id)
            .await
            .map_err(|e| e.to_string())?
        {
            self.history.trigger(id, ms);
        }
        Ok(())
    }

    async fn job_action(&mut self, roll: u32) -> Result<(), String> {
        match roll {
            31..=50 => {
                if let Some(id) = self.pick_job(|j| !j.deleted) {
                    let spec = jobs::edit(&mut self.rng, &self.jobs[&id].spec);
                    self.put(spec, "edit").await?;
                }
            }
            51..=58 => {
                if let Some(id) = self.pick_job(|j| !j.deleted && !j.spec.paused) {
                    let mut spec = self.jobs[&id].spec.clone();
                    spec.paused = true;
                    self.put(spec, "pause").await?;
                }
            }
            59..=68 => {
                if let Some(id) = self.pick_job(|j| !j.deleted && j.spec.paused) {
                    let mut spec = self.jobs[&id].spec.clone();
                    spec.paused = false;
                    self.put(spec, "resume").await?;
                }
            }
            69..=72 => {
                if let Some(id) = self.pick_job(|j| !j.deleted) {
                    self.admin
                        .delete_job(&id, None)
                        .await
                        .map_err(|e| e.to_string())?;
                    let now = self.time.now_ms();
                    self.history.write(&id, None, now, "delete");
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.deleted = true;
                    }
                }
            }
            73..=77 => {
                if let Some(id) = self.pick_job(|j| j.deleted) {
                    let spec = jobs::recreate(&mut self.rng, &self.jobs[&id].spec);
                    self.put(spec, "re-create").await?;
                }
            }
            78..=94 => {
                if let Some(id) = self.pick_job(|j| !j.deleted) {
                    self.trigger(&id).await?;
                }
            }
            _ => {
                if let Some(id) = self.pick_job(|j| !j.deleted) {
                    // Two triggers of one job in the same millisecond.
                    self.trigger(&id).await?;
                    self.trigger(&id).await?;
                }
            }
        }
        Ok(())
    }
}
