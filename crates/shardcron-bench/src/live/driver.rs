//! Plays a churn timeline against the fleet during the measured window and
//! times how long the fleet takes to settle after each event.
//!
//! One loop, ticking every [`TICK`]: apply the events that are due, then
//! check whether the fleet has settled on the expected placement over the
//! running workers (`ShardMap::place` with the jobs' weights, see
//! [`super::weights`]). "Settled" is first read from the workers' statuses (no Redis
//! traffic, so the check can run every tick without distorting the
//! commands-per-fire figure) and then confirmed once against the lease keys
//! ([`super::settle::verify_holders`]); the settle instant is the tick at
//! which the statuses first agreed, provided the lease read confirmed it.
//! An event that happens while an earlier one has not settled yet marks the
//! earlier one as overlapped: both settle at the same instant.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use shardcron_coord::Coordinator;
use shardcron_core::ShardMap;

use super::audit::Recorder;
use super::churn::{node_id, ChurnAction, ChurnEvent};
use super::fleet::{now_ms, Fleet};
use super::settle::verify_holders;
use crate::error::BenchError;

/// Period of the driver loop (event precision and settle resolution).
pub const TICK: Duration = Duration::from_millis(10);
/// Least time between two lease-key reads confirming a settle.
const VERIFY_EVERY: Duration = Duration::from_millis(100);

/// When one event happened and when the fleet settled after it.
#[derive(Clone, Debug)]
pub struct EventTiming {
    /// The scripted event.
    pub event: ChurnEvent,
    /// When it was applied, Unix ms.
    pub started_ms: i64,
    /// When every shard was held by its expected owner again, Unix ms.
    pub settled_ms: Option<i64>,
    /// Another event happened before this one settled.
    pub overlapped: bool,
    /// For a crash: the lease-holder string (`node/instance`) of the
    /// crashed instance, when it was known.
    pub crashed_holder: Option<String>,
}

/// The churn driver; owns the fleet while the window runs.
pub struct Driver {
    fleet: Fleet,
    verifier: Arc<dyn Coordinator>,
    shards: Vec<u32>,
    map: ShardMap,
    known: BTreeMap<String, String>,
    dead: BTreeSet<String>,
    timings: Vec<EventTiming>,
    pending: Vec<usize>,
    last_verify: Option<Instant>,
    last_mismatch: Option<String>,
    verify_reads: u64,
}

impl Driver {
    /// A driver for `fleet`, reading lease keys through `verifier`.
    pub fn new(fleet: Fleet, verifier: Arc<dyn Coordinator>) -> Self {
        let map = fleet.expected_map();
        Driver {
            fleet,
            verifier,
            shards: (0..map.shard_count()).collect(),
            map,
            known: BTreeMap::new(),
            dead: BTreeSet::new(),
            timings: Vec::new(),
            pending: Vec::new(),
            last_verify: None,
            last_mismatch: None,
            verify_reads: 0,
        }
    }

    /// Names of the running workers, sorted.
    pub fn worker_names(&self) -> Vec<String> {
        self.fleet.names()
    }

    /// Lease-key reads done so far (each is one `GET` per shard).
    pub fn verify_reads(&self) -> u64 {
        self.verify_reads
    }

    /// Waits until the fleet as started is settled, confirmed in Redis (this
    /// also learns every worker's lease-holder string).
    pub async fn confirm_settled(&mut self, limit: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            self.map = self
                .fleet
                .expected_map_from_store(self.verifier.as_ref())
                .await;
            if self.fleet.settled_on(&self.map) && self.verify().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::live(
                    "confirming the lease holders",
                    self.last_mismatch
                        .clone()
                        .unwrap_or_else(|| format!("not settled after {limit:?}")),
                ));
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Runs the window `[from_ms, to_ms)`, applying `events` (sorted, offsets
    /// from `from_ms`) when they are due and ticking `progress` once a second.
    pub async fn run_window(
        &mut self,
        events: &[ChurnEvent],
        from_ms: i64,
        to_ms: i64,
        progress: &ProgressBar,
        recorder: &Recorder,
    ) -> Result<(), BenchError> {
        let due = |event: &ChurnEvent| {
            from_ms.saturating_add(i64::try_from(event.at.as_millis()).unwrap_or(i64::MAX))
        };
        let mut next = 0;
        let mut shown_ms = 0;
        loop {
            let now = now_ms();
            while let Some(event) = events.get(next).filter(|e| now >= due(e)) {
                self.apply(event).await?;
                next += 1;
            }
            self.check().await;
            let now = now_ms();
            if now - shown_ms >= 250 || now >= to_ms {
                shown_ms = now;
                progress.set_position(u64::try_from((now - from_ms) / 1000).unwrap_or(0));
                progress.set_message(self.progress_message(recorder.len()));
            }
            if now >= to_ms {
                return Ok(());
            }
            let until_event = events.get(next).map_or(i64::MAX, |e| due(e) - now);
            let step = until_event
                .min(to_ms - now)
                .clamp(0, TICK.as_millis() as i64);
            tokio::time::sleep(Duration::from_millis(u64::try_from(step).unwrap_or(0))).await;
        }
    }

    /// After the window: keeps checking until every event has settled or
    /// `limit` has passed.
    pub async fn finish(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.pending.is_empty() && Instant::now() < deadline {
            self.check().await;
            tokio::time::sleep(TICK).await;
        }
    }

    /// The fleet back, and the timings of every event applied.
    pub fn into_parts(self) -> (Fleet, Vec<EventTiming>) {
        (self.fleet, self.timings)
    }

    fn progress_message(&self, fires: usize) -> String {
        let mut text = format!("{fires} fires, {} workers", self.fleet.names().len());
        if let Some(&index) = self.pending.last() {
            let timing = &self.timings[index];
            text.push_str(&format!(
                "; {} {}s ago, settling",
                timing.event,
                (now_ms() - timing.started_ms) / 1000
            ));
        }
        text
    }

    async fn apply(&mut self, event: &ChurnEvent) -> Result<(), BenchError> {
        let started_ms = now_ms();
        for &index in &self.pending {
            self.timings[index].overlapped = true;
        }
        let node = node_id(&event.worker);
        let mut crashed_holder = None;
        match event.action {
            ChurnAction::Join => self.fleet.join(&event.worker).await?,
            ChurnAction::Leave => {
                self.fleet.leave(&event.worker);
                self.known.remove(&node);
            }
            ChurnAction::Crash => {
                self.fleet.crash(&event.worker).await;
                crashed_holder = self.known.remove(&node);
                if let Some(holder) = &crashed_holder {
                    self.dead.insert(holder.clone());
                }
            }
        }
        self.map = self
            .fleet
            .expected_map_from_store(self.verifier.as_ref())
            .await;
        self.pending.push(self.timings.len());
        self.timings.push(EventTiming {
            event: event.clone(),
            started_ms,
            settled_ms: None,
            overlapped: false,
            crashed_holder,
        });
        Ok(())
    }

    async fn check(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let observed_ms = now_ms();
        self.map = self
            .fleet
            .expected_map_from_store(self.verifier.as_ref())
            .await;
        if !self.fleet.settled_on(&self.map) {
            return;
        }
        if self
            .last_verify
            .is_some_and(|at| at.elapsed() < VERIFY_EVERY)
        {
            return;
        }
        if self.verify().await {
            for index in self.pending.drain(..) {
                self.timings[index].settled_ms = Some(observed_ms);
            }
        }
    }

    /// One lease-key read: true if every shard is held by its expected owner.
    async fn verify(&mut self) -> bool {
        self.last_verify = Some(Instant::now());
        self.verify_reads += 1;
        let holders = match self.verifier.lease_holders(&self.shards).await {
            Ok(holders) => holders,
            Err(e) => {
                self.last_mismatch = Some(format!("reading lease holders: {e}"));
                return false;
            }
        };
        match verify_holders(&self.map, &holders, &self.known, &self.dead) {
            Ok(learned) => {
                self.known.extend(learned);
                self.last_mismatch = None;
                true
            }
            Err(why) => {
                self.last_mismatch = Some(why);
                false
            }
        }
    }
}
