//! `FaultyCoordinator`: a node's view of the shared store, with faults.
//!
//! Every fault the protocol must survive happens at the `Coordinator`
//! boundary, so that is where they are injected: replies lost before or after
//! the write applied, delays (past the client's response timeout the caller
//! gets `Unreachable` while the request still applies later), node pauses
//! (every call hangs until the pause ends) and dropped pub/sub events. Faults
//! come from a seeded RNG per node incarnation, so a seed replays exactly.
//!
//! All forwarding lives in this one file, one small method per trait method,
//! so that a change of the trait is one edit here. Observations the checkers
//! need (claims and grants as the store applied them, run records as the node
//! produced them) are taken inside the forwarded call, before any fault can
//! hide them.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, CloseFire, CoordError, CoordEvent, CoordResult, Coordinator,
    HandBack, JobPage, LeaseGrant, LeaseInfo, MemberInfo, Membership, MemoryCoordinator, OpenFire,
    PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome, RunRecord, ShardJobs, StoredJob,
};
use shardcron_core::{JobSpec, PlacementRecord, RingConfig};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::history::{Fate, History};

/// How long a caller waits for a reply before giving up, like the Redis client.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probabilities and sizes of the injected faults, per call.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRates {
    /// The request is lost before the store applies it.
    pub lost_before: f64,
    /// The store applies the request, the reply is lost.
    pub lost_after: f64,
    /// The request and/or its reply are delayed.
    pub delay: f64,
    /// Largest delay of either leg.
    pub max_delay: Duration,
    /// A pub/sub event is dropped on its way to the node.
    pub event_drop: f64,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            lost_before: 0.005,
            lost_after: 0.005,
            delay: 0.01,
            max_delay: Duration::from_millis(900),
            event_drop: 0.05,
        }
    }
}

/// How the scenario controls one node incarnation's link to the store.
#[derive(Clone)]
pub struct Link {
    /// Until when the node is paused (a past instant: not paused).
    pub paused_until: watch::Receiver<Instant>,
    /// Trips when the incarnation crashes: it sends nothing any more.
    pub dead: CancellationToken,
}

impl Link {
    async fn wait_unpaused(&self) {
        let mut rx = self.paused_until.clone();
        loop {
            let until = *rx.borrow_and_update();
            if until <= Instant::now() {
                return;
            }
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(until) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

enum Fault {
    None,
    LostBefore,
    LostAfter,
    Delay(Duration, Duration),
}

/// A [`Coordinator`] forwarding to a [`MemoryCoordinator`] with seeded faults.
pub struct FaultyCoordinator {
    inner: MemoryCoordinator,
    holder: String,
    rates: FaultRates,
    rng: Mutex<StdRng>,
    link: Link,
    history: Arc<History>,
    events: broadcast::Sender<CoordEvent>,
}

fn unreachable(why: &str) -> CoordError {
    CoordError::Unreachable {
        url: "sim://store".to_owned(),
        message: why.to_owned(),
    }
}

/// Calls whose fate the checkers need even when nothing went wrong.
fn tracked(op: &str) -> bool {
    matches!(op, "claim_fires" | "acquire_leases" | "take_triggers")
}

impl FaultyCoordinator {
    /// Wraps `inner` for the node incarnation `holder` (`node/instance`); the
    /// event forwarder task starts at once.
    pub fn new(
        inner: MemoryCoordinator,
        holder: String,
        seed: u64,
        rates: FaultRates,
        link: Link,
        history: Arc<History>,
    ) -> Self {
        let (events, _) = broadcast::channel(4096);
        let mut source = inner.subscribe();
        let sink = events.clone();
        let mut drop_rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let drop_p = rates.event_drop;
        let fwd_link = link.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    biased;
                    () = fwd_link.dead.cancelled() => return,
                    next = source.recv() => next,
                };
                let event = match next {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => CoordEvent::Resync,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                fwd_link.wait_unpaused().await;
                if !drop_rng.random_bool(drop_p) {
                    let _ = sink.send(event);
                }
            }
        });
        Self {
            inner,
            holder,
            rates,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            link,
            history,
            events,
        }
    }

    fn draw(&self) -> Fault {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let x: f64 = rng.random();
        let r = &self.rates;
        let max = r.max_delay.as_millis() as u64;
        if x < r.lost_before {
            Fault::LostBefore
        } else if x < r.lost_before + r.lost_after {
            Fault::LostAfter
        } else if x < r.lost_before + r.lost_after + r.delay {
            let before = Duration::from_millis(rng.random_range(0..=max));
            let after = Duration::from_millis(rng.random_range(0..=max));
            Fault::Delay(before, after)
        } else {
            Fault::None
        }
    }

    /// Runs one call (`apply` is the request as the store executes it) under
    /// the drawn fault.
    async fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        call: u64,
        apply: impl Future<Output = CoordResult<T>> + Send + 'static,
    ) -> CoordResult<T> {
        if self.link.dead.is_cancelled() {
            std::future::pending::<()>().await;
        }
        self.link.wait_unpaused().await;
        let h = &self.history;
        let result = match self.draw() {
            Fault::None => {
                let r = apply.await;
                if tracked(op) {
                    h.fate(call, &self.holder, op, Fate::Delivered, "");
                }
                r
            }
            Fault::LostBefore => {
                h.fault("lost before applying");
                h.fate(call, &self.holder, op, Fate::Lost, "before applying");
                Err(unreachable("request lost"))
            }
            Fault::LostAfter => {
                h.fault("lost after applying");
                let _ = apply.await;
                h.fate(call, &self.holder, op, Fate::Lost, "after applying");
                Err(unreachable("reply lost"))
            }
            Fault::Delay(before, after) => {
                h.fault("delayed");
                let deadline = Instant::now() + RESPONSE_TIMEOUT;
                let sent = tokio::spawn(async move {
                    tokio::time::sleep(before).await;
                    apply.await
                });
                let reply = tokio::time::timeout_at(deadline, async move {
                    let r = sent.await;
                    tokio::time::sleep(after).await;
                    r
                })
                .await;
                match reply {
                    Ok(Ok(r)) => {
                        if tracked(op) {
                            h.fate(call, &self.holder, op, Fate::Delivered, "");
                        }
                        r
                    }
                    Ok(Err(_)) => {
                        h.fate(call, &self.holder, op, Fate::Lost, "request task failed");
                        Err(unreachable("request failed"))
                    }
                    Err(_) => {
                        h.fault("timed out");
                        let why = format!("timed out; delays {before:?} + {after:?}");
                        h.fate(call, &self.holder, op, Fate::Lost, &why);
                        Err(unreachable("response timeout"))
                    }
                }
            }
        };
        self.link.wait_unpaused().await;
        result
    }
}

#[async_trait]
impl Coordinator for FaultyCoordinator {
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    fn ring_config(&self) -> RingConfig {
        self.inner.ring_config()
    }

    async fn ensure_config(&self) -> CoordResult<()> {
        let c = self.inner.clone();
        let id = self.history.next_call();
        self.call("ensure_config", id, async move { c.ensure_config().await })
            .await
    }

    async fn server_time_ms(&self) -> CoordResult<i64> {
        let c = self.inner.clone();
        let id = self.history.next_call();
        self.call(
            "server_time_ms",
            id,
            async move { c.server_time_ms().await },
        )
        .await
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        let (c, m) = (self.inner.clone(), member.clone());
        let id = self.history.next_call();
        self.call("heartbeat", id, async move { c.heartbeat(&m, ttl).await })
            .await
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        let (c, n) = (self.inner.clone(), node_id.to_owned());
        let id = self.history.next_call();
        self.call("deregister", id, async move { c.deregister(&n).await })
            .await
    }

    async fn members(&self) -> CoordResult<Membership> {
        let c = self.inner.clone();
        let id = self.history.next_call();
        self.call("members", id, async move { c.members().await })
            .await
    }

    async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        let c = self.inner.clone();
        let id = self.history.next_call();
        self.call("members", id, async move {
            c.placement_inputs(known_weights, known_placement, refresh)
                .await
        })
        .await
    }

    async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        let c = self.inner.clone();
        let id = self.history.next_call();
        let record = record.clone();
        self.call("store_placement", id, async move {
            c.store_placement(expected, &record).await
        })
        .await
    }

    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        let (c, s, h) = (self.inner.clone(), shards.to_vec(), holder.to_owned());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("acquire_leases", id, async move {
            let r = c.acquire_leases(&s, &h, ttl).await;
            if let Ok(grants) = &r {
                hist.grants_applied(id, &h, &s, grants);
            }
            r
        })
        .await
    }

    async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        let (c, l, h) = (self.inner.clone(), leases.to_vec(), holder.to_owned());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("renew_leases", id, async move {
            let r = c.renew_leases(&l, &h, ttl).await;
            if let Ok(ok) = &r {
                hist.renewals_applied(&h, &l, ok);
            }
            r
        })
        .await
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        let (c, l, h) = (self.inner.clone(), leases.to_vec(), holder.to_owned());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("release_leases", id, async move {
            let r = c.release_leases(&l, &h).await;
            if let Ok(ok) = &r {
                hist.releases_applied(id, &h, &l, ok);
            }
            r
        })
        .await
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        let (c, s) = (self.inner.clone(), shards.to_vec());
        let id = self.history.next_call();
        self.call(
            "lease_holders",
            id,
            async move { c.lease_holders(&s).await },
        )
        .await
    }

    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        let (c, b) = (self.inner.clone(), batches.to_vec());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("claim_fires", id, async move {
            let r = c.claim_fires(&b, retention).await;
            if let Ok(out) = &r {
                hist.claims_applied(id, &b, out);
            }
            r
        })
        .await
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        let (c, s) = (self.inner.clone(), spec.clone());
        let id = self.history.next_call();
        self.call("put_job", id, async move {
            c.put_job(&s, expected_version).await
        })
        .await
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        let (c, j) = (self.inner.clone(), job_id.to_owned());
        let id = self.history.next_call();
        self.call("get_job", id, async move { c.get_job(&j).await })
            .await
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        let (c, j) = (self.inner.clone(), job_id.to_owned());
        let id = self.history.next_call();
        self.call("delete_job", id, async move {
            c.delete_job(&j, expected_version).await
        })
        .await
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        let (c, j) = (self.inner.clone(), job_id.to_owned());
        let id = self.history.next_call();
        self.call("trigger_job", id, async move { c.trigger_job(&j).await })
            .await
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        let (c, l, h) = (self.inner.clone(), leases.to_vec(), holder.to_owned());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("read_triggers", id, async move {
            let r = c.read_triggers(&l, &h).await;
            if let Ok(read) = &r {
                hist.triggers_read(id, &h, read);
            }
            r
        })
        .await
    }

    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        let (c, p, a) = (
            self.inner.clone(),
            prefix.to_owned(),
            after.map(str::to_owned),
        );
        let id = self.history.next_call();
        self.call("list_jobs", id, async move {
            c.list_jobs(&p, a.as_deref(), limit).await
        })
        .await
    }

    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        let (c, s) = (self.inner.clone(), shards.to_vec());
        let id = self.history.next_call();
        self.call("load_shards", id, async move { c.load_shards(&s).await })
            .await
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        let (c, s) = (self.inner.clone(), shards.to_vec());
        let id = self.history.next_call();
        self.call(
            "shard_versions",
            id,
            async move { c.shard_versions(&s).await },
        )
        .await
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        // Producing the record is what counts, even if the write is lost.
        self.history.records_produced(runs);
        let (c, r) = (self.inner.clone(), runs.to_vec());
        let id = self.history.next_call();
        self.call("record_runs", id, async move { c.record_runs(&r).await })
            .await
    }

    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        let (c, x) = (self.inner.clone(), closes.to_vec());
        let id = self.history.next_call();
        self.call("close_fires", id, async move { c.close_fires(&x).await })
            .await
    }

    async fn record_and_close(&self, runs: &[RunRecord], closes: &[CloseFire]) -> CoordResult<()> {
        self.history.records_produced(runs);
        let (c, r, x) = (self.inner.clone(), runs.to_vec(), closes.to_vec());
        let id = self.history.next_call();
        self.call("record_and_close", id, async move {
            c.record_and_close(&r, &x).await
        })
        .await
    }

    async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        let (c, s) = (self.inner.clone(), shards.to_vec());
        let id = self.history.next_call();
        self.call("open_fires", id, async move { c.open_fires(&s).await })
            .await
    }

    async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        let (c, b) = (self.inner.clone(), batches.to_vec());
        let (id, hist) = (self.history.next_call(), self.history.clone());
        self.call("recover_fires", id, async move {
            let r = c.recover_fires(&b, retention).await;
            if let Ok(out) = &r {
                hist.recoveries_applied(id, &b, out);
            }
            r
        })
        .await
    }

    async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        let (c, h, f) = (self.inner.clone(), holder.to_owned(), fires.to_vec());
        let id = self.history.next_call();
        self.call("hand_back_fires", id, async move {
            c.hand_back_fires(&h, &f, retention).await
        })
        .await
    }

    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>> {
        let (c, j) = (self.inner.clone(), job_id.map(str::to_owned));
        let id = self.history.next_call();
        self.call("recent_runs", id, async move {
            c.recent_runs(j.as_deref(), limit).await
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}
