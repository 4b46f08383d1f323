//! The recorded history of one run: typed observations for the checkers and a
//! readable event log for traces.
//!
//! Observations are taken where they happen (at the coordinator boundary, in
//! the handler, in the scenario driver), stamped with true virtual time, and
//! never inferred from what a node later reports: a checker must see what
//! really happened, including writes whose replies were lost.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use shardcron_coord::{
    node_of_holder, BatchOutcome, ClaimBatch, ClaimOutcome, FireKind, LeaseGrant, QueuedTrigger,
    RecoverBatch, RecoverOutcome, RunOutcome, RunRecord,
};
use shardcron_core::JobSpec;

use crate::time::{rel, SimTime};

/// One line of the event log, tagged with what it touches so a failure's
/// trace can be cut down to the relevant events.
#[derive(Clone, Debug)]
pub struct Event {
    /// True wall time, Unix ms.
    pub t: i64,
    /// Node it concerns, if any.
    pub node: Option<String>,
    /// Job it concerns, if any.
    pub job: Option<String>,
    /// Shard it concerns, if any.
    pub shard: Option<u32>,
    /// Human-readable description.
    pub text: String,
}

impl Event {
    /// The line as printed in traces.
    pub fn line(&self) -> String {
        format!("[{:>10}] {}", rel(self.t), self.text)
    }
}

/// A handler attempt that started.
#[derive(Clone, Debug)]
pub struct StartObs {
    pub t: i64,
    pub node: String,
    pub inst: String,
    pub job: String,
    pub sched: i64,
    pub token: u64,
    pub shard: u32,
    pub attempt: u32,
    /// Delivery of the fire (above 1: recovered, `at_least_once`).
    pub delivery: u32,
    /// True time it ended (crash, cancel or done); `None` if still running at the end.
    pub end: Option<i64>,
    /// How it ended: `crashed`, `cancelled` or `done`.
    pub how: Option<String>,
}

/// One fire in one applied claim batch.
#[derive(Clone, Debug)]
pub struct ClaimObs {
    pub call: u64,
    pub t: i64,
    pub holder: String,
    pub shard: u32,
    pub token: u64,
    pub job: String,
    pub sched: i64,
    pub kind: FireKind,
    /// `None` when the whole batch was refused (lease lost).
    pub outcome: Option<ClaimOutcome>,
}

/// One fire an applied recovery made a node's to run.
#[derive(Clone, Debug)]
pub struct RecoveryObs {
    pub call: u64,
    pub t: i64,
    pub holder: String,
    pub job: String,
    pub sched: i64,
}

/// What became of a call's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The caller got the reply.
    Delivered,
    /// The caller got `Unreachable`; the write may or may not have applied.
    Lost,
}

/// A lease grant as applied by the store.
#[derive(Clone, Debug)]
pub struct GrantObs {
    pub call: u64,
    pub t: i64,
    pub holder: String,
    pub shard: u32,
    pub token: u64,
}

/// A run record as produced by a node (before any fault).
#[derive(Clone, Debug)]
pub struct RecordObs {
    pub t: i64,
    pub node: String,
    pub job: String,
    pub sched: i64,
    pub outcome: RunOutcome,
    pub error: Option<String>,
}

/// An admin write of a job: `spec` is `None` for a delete.
#[derive(Clone, Debug)]
pub struct WriteObs {
    pub t: i64,
    pub job: String,
    pub spec: Option<JobSpec>,
}

/// A manual trigger queued by the admin.
#[derive(Clone, Debug)]
pub struct TriggerObs {
    pub job: String,
    pub ms: i64,
}

/// A trigger handed to a node by `take_triggers`.
#[derive(Clone, Debug)]
pub struct TakeObs {
    pub call: u64,
    pub holder: String,
    pub job: String,
    pub ms: i64,
}

/// Everything observed in one run.
#[derive(Default)]
pub struct Observed {
    pub events: Vec<Event>,
    pub starts: Vec<StartObs>,
    pub claims: Vec<ClaimObs>,
    /// Fires recovered, as the store applied the recoveries.
    pub recoveries: Vec<RecoveryObs>,
    pub fates: BTreeMap<u64, (i64, Fate)>,
    pub grants: Vec<GrantObs>,
    pub records: Vec<RecordObs>,
    pub writes: Vec<WriteObs>,
    pub triggers: Vec<TriggerObs>,
    pub takes: Vec<TakeObs>,
    /// `(true time, holder)` of every crash.
    pub crashes: Vec<(i64, String)>,
    /// Node pauses: (from, until, holder).
    pub pauses: Vec<(i64, i64, String)>,
    /// Lease releases the store applied: (true time, holder, shard, token).
    pub releases: Vec<(i64, String, u32, u64)>,
    /// Injected faults by kind.
    pub faults: BTreeMap<&'static str, u64>,
    next_call: u64,
}

/// The shared, append-only history of a run.
pub struct History {
    time: SimTime,
    inner: Mutex<Observed>,
}

fn fire(job: &str, ms: i64) -> String {
    format!("{job}@{}", rel(ms))
}

impl History {
    /// An empty history stamped by `time`.
    pub fn new(time: SimTime) -> Self {
        Self {
            time,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Observed> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True wall time now.
    pub fn now(&self) -> i64 {
        self.time.now_ms()
    }

    /// Takes the observations out at the end of a run.
    pub fn take(&self) -> Observed {
        std::mem::take(&mut *self.lock())
    }

    /// Appends a log line.
    pub fn log(&self, node: Option<&str>, job: Option<&str>, shard: Option<u32>, text: String) {
        let t = self.now();
        self.lock().events.push(Event {
            t,
            node: node.map(str::to_owned),
            job: job.map(str::to_owned),
            shard,
            text,
        });
    }

    /// A fresh call id.
    pub fn next_call(&self) -> u64 {
        let mut g = self.lock();
        g.next_call += 1;
        g.next_call
    }

    /// Counts an injected fault.
    pub fn fault(&self, kind: &'static str) {
        *self.lock().faults.entry(kind).or_default() += 1;
    }

    /// Records what became of call `call`'s reply.
    pub fn fate(&self, call: u64, holder: &str, op: &str, fate: Fate, why: &str) {
        let t = self.now();
        self.lock().fates.insert(call, (t, fate));
        let worth_tracing = matches!(
            op,
            "claim_fires" | "acquire_leases" | "take_triggers" | "renew_leases" | "release_leases"
        );
        if fate == Fate::Lost && worth_tracing {
            let node = node_of_holder(holder);
            self.log(
                Some(node),
                None,
                None,
                format!("{holder}: {op}#{call} reply lost ({why})"),
            );
        }
    }

    /// Records a claim call as the store applied it.
    pub fn claims_applied(&self, call: u64, batches: &[ClaimBatch], out: &[BatchOutcome]) {
        let t = self.now();
        for (b, o) in batches.iter().zip(out) {
            for (i, f) in b.fires.iter().enumerate() {
                let outcome = match o {
                    BatchOutcome::LeaseLost => None,
                    BatchOutcome::Claimed(codes) => codes.get(i).copied(),
                };
                let text = format!(
                    "{}: claim#{call} shard {} token {} {} {:?} -> {}",
                    b.holder,
                    b.shard,
                    b.token,
                    fire(&f.job_id, f.scheduled_ms),
                    f.kind,
                    outcome.map_or("lease lost".to_owned(), |c| format!("{c:?}"))
                );
                self.log(
                    Some(node_of_holder(&b.holder)),
                    Some(&f.job_id),
                    Some(b.shard),
                    text,
                );
                self.lock().claims.push(ClaimObs {
                    call,
                    t,
                    holder: b.holder.clone(),
                    shard: b.shard,
                    token: b.token,
                    job: f.job_id.clone(),
                    sched: f.scheduled_ms,
                    kind: f.kind,
                    outcome,
                });
            }
        }
    }

    /// Records the fires a recovery call made its caller's, as the store
    /// applied it.
    pub fn recoveries_applied(&self, call: u64, batches: &[RecoverBatch], out: &[RecoverOutcome]) {
        let t = self.now();
        for (b, o) in batches.iter().zip(out) {
            let RecoverOutcome::Recovered(taken) = o else {
                continue;
            };
            for (f, _) in b.fires.iter().zip(taken).filter(|(_, ok)| **ok) {
                self.log(
                    Some(node_of_holder(&b.holder)),
                    Some(&f.job_id),
                    Some(b.shard),
                    format!(
                        "{}: recover#{call} shard {} token {} {} -> recovered",
                        b.holder,
                        b.shard,
                        b.token,
                        fire(&f.job_id, f.scheduled_ms)
                    ),
                );
                self.lock().recoveries.push(RecoveryObs {
                    call,
                    t,
                    holder: b.holder.clone(),
                    job: f.job_id.clone(),
                    sched: f.scheduled_ms,
                });
            }
        }
    }

    /// Records lease grants as the store applied them.
    pub fn grants_applied(&self, call: u64, holder: &str, shards: &[u32], out: &[LeaseGrant]) {
        let t = self.now();
        for (&shard, g) in shards.iter().zip(out) {
            if let LeaseGrant::Granted { token } = g {
                self.log(
                    Some(node_of_holder(holder)),
                    None,
                    Some(shard),
                    format!("{holder}: acquire#{call} shard {shard} granted token {token}"),
                );
                self.lock().grants.push(GrantObs {
                    call,
                    t,
                    holder: holder.to_owned(),
                    shard,
                    token: *token,
                });
            }
        }
    }

    /// Records lease releases as the store applied them.
    pub fn releases_applied(&self, call: u64, holder: &str, leases: &[(u32, u64)], out: &[bool]) {
        let t = self.now();
        for (&(shard, token), ok) in leases.iter().zip(out) {
            if *ok {
                self.lock()
                    .releases
                    .push((t, holder.to_owned(), shard, token));
            }
            self.log(
                Some(node_of_holder(holder)),
                None,
                Some(shard),
                format!("{holder}: release#{call} shard {shard} token {token} -> {ok}"),
            );
        }
    }

    /// Records refused renewals (a node learning it lost a shard).
    pub fn renewals_applied(&self, holder: &str, leases: &[(u32, u64)], out: &[bool]) {
        for (&(shard, token), ok) in leases.iter().zip(out) {
            if !ok {
                self.log(
                    Some(node_of_holder(holder)),
                    None,
                    Some(shard),
                    format!("{holder}: renew shard {shard} token {token} refused"),
                );
            }
        }
    }

    /// Records triggers read by `read_triggers` (they stay queued).
    pub fn triggers_read(&self, call: u64, holder: &str, read: &[QueuedTrigger]) {
        for t in read {
            self.log(
                Some(node_of_holder(holder)),
                Some(&t.job_id),
                Some(t.shard),
                format!(
                    "{holder}: read_triggers#{call} read {}",
                    fire(&t.job_id, t.at_ms)
                ),
            );
            self.lock().takes.push(TakeObs {
                call,
                holder: holder.to_owned(),
                job: t.job_id.clone(),
                ms: t.at_ms,
            });
        }
    }

    /// Records run records as the node produced them.
    pub fn records_produced(&self, runs: &[RunRecord]) {
        let t = self.now();
        // A batch is a set: sort it so the log does not depend on the order
        // in which a node happened to drain its queues.
        let mut runs: Vec<&RunRecord> = runs.iter().collect();
        runs.sort_by(|a, b| {
            (&a.job_id, a.scheduled_ms, &a.node_id).cmp(&(&b.job_id, b.scheduled_ms, &b.node_id))
        });
        for r in runs {
            self.log(
                Some(&r.node_id),
                Some(&r.job_id),
                Some(r.shard),
                format!(
                    "{}: record {} token {} {}{}",
                    r.node_id,
                    fire(&r.job_id, r.scheduled_ms),
                    r.fencing_token,
                    r.outcome.as_str(),
                    r.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            );
            self.lock().records.push(RecordObs {
                t,
                node: r.node_id.clone(),
                job: r.job_id.clone(),
                sched: r.scheduled_ms,
                outcome: r.outcome,
                error: r.error.clone(),
            });
        }
    }

    /// Records a handler start; returns its index for [`History::ended`].
    #[allow(clippy::too_many_arguments)]
    pub fn started(
        &self,
        node: &str,
        inst: &str,
        job: &str,
        sched: i64,
        token: u64,
        shard: u32,
        (attempt, delivery): (u32, u32),
    ) -> usize {
        let t = self.now();
        self.log(
            Some(node),
            Some(job),
            Some(shard),
            format!(
                "{node}/{inst}: START {} token {token} attempt {attempt} delivery {delivery}",
                fire(job, sched)
            ),
        );
        let mut g = self.lock();
        g.starts.push(StartObs {
            t,
            node: node.to_owned(),
            inst: inst.to_owned(),
            job: job.to_owned(),
            sched,
            token,
            shard,
            attempt,
            delivery,
            end: None,
            how: None,
        });
        g.starts.len() - 1
    }

    /// Records the end of a handler attempt.
    pub fn ended(&self, run: usize, how: &str) {
        let t = self.now();
        let (node, job, shard, sched) = {
            let mut g = self.lock();
            let Some(s) = g.starts.get_mut(run) else {
                return;
            };
            s.end = Some(t);
            s.how = Some(how.to_owned());
            (s.node.clone(), s.job.clone(), s.shard, s.sched)
        };
        self.log(
            Some(&node),
            Some(&job),
            Some(shard),
            format!("{node}: END {} ({how})", fire(&job, sched)),
        );
    }

    /// Records an admin write.
    pub fn write(&self, job: &str, spec: Option<&JobSpec>, at: i64, what: &str) {
        let desc = match spec {
            None => format!("admin: {what} {job} (deleted)"),
            Some(s) => format!(
                "admin: {what} {job}: {} paused={} overlap={:?} misfire={:?} grace={:?} delivery={} args={}",
                s.schedule, s.paused, s.overlap, s.misfire, s.misfire_grace, s.delivery.as_str(), s.args
            ),
        };
        self.log(None, Some(job), None, desc);
        self.lock().writes.push(WriteObs {
            t: at,
            job: job.to_owned(),
            spec: spec.cloned(),
        });
    }

    /// Records a manual trigger.
    pub fn trigger(&self, job: &str, ms: i64) {
        self.log(
            None,
            Some(job),
            None,
            format!("admin: trigger {}", fire(job, ms)),
        );
        self.lock().triggers.push(TriggerObs {
            job: job.to_owned(),
            ms,
        });
    }

    /// Records a pause of `holder` (store calls hang) from now for `ms`.
    pub fn pause(&self, holder: &str, ms: u64) {
        let t = self.now();
        self.lock()
            .pauses
            .push((t, t + ms as i64, holder.to_owned()));
    }

    /// Records a crash of `holder`.
    pub fn crash(&self, holder: &str) {
        let t = self.now();
        self.log(
            Some(node_of_holder(holder)),
            None,
            None,
            format!("{holder}: CRASH"),
        );
        self.lock().crashes.push((t, holder.to_owned()));
    }
}
