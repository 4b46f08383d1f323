//! Data exchanged with the coordination layer.

use serde::{Deserialize, Serialize};
use shardcron_core::{JobSpec, PlacementRecord, ShardWeights};

/// What a node publishes about itself in the member registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id (unique in the namespace).
    pub id: String,
    /// Software version of the node.
    pub version: String,
    /// When the node started, Unix milliseconds.
    pub started_ms: i64,
    /// Admin address (`host:port`) if it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Process instance id: with the node id it names the member as a
    /// lease and fire holder (`node/instance`), so a peer can tell that a
    /// holder's process is gone although its node id came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl MemberInfo {
    /// The holder string (`node/instance`) of this member's process, if it
    /// published its instance.
    pub fn holder(&self) -> Option<String> {
        self.instance.as_ref().map(|i| format!("{}/{i}", self.id))
    }
}

/// A member as listed: its info plus when its registration expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Server time at which the list was read, Unix milliseconds.
    pub server_ms: i64,
    /// Live members, sorted by id.
    pub members: Vec<MemberInfo>,
}

/// A placement as stored, with its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPlacement {
    /// Version: 1 for the first one stored, one more for each next.
    pub version: u64,
    /// The placement.
    pub record: PlacementRecord,
}

/// What [`crate::Coordinator::placement_inputs`] read in one round trip.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementInputs {
    /// Live members.
    pub membership: Membership,
    /// The weights snapshot, if its version is not the known one.
    pub weights: Option<ShardWeights>,
    /// The stored placement, if one is stored and its version is not the
    /// known one.
    pub placement: Option<StoredPlacement>,
}

/// Result of a lease acquisition attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseGrant {
    /// The lease is ours under this fencing token.
    Granted {
        /// Fencing token; strictly greater than any earlier holder's.
        token: u64,
    },
    /// Someone else holds it.
    HeldBy {
        /// The holder string of the current owner (`node/instance`).
        holder: String,
        /// The current owner's token.
        token: u64,
    },
}

/// Who holds a shard's lease right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Holder string (`node/instance`).
    pub holder: String,
    /// Fencing token.
    pub token: u64,
}

impl LeaseInfo {
    /// Node id part of the holder string.
    pub fn node_id(&self) -> &str {
        node_of_holder(&self.holder)
    }
}

/// Node id part of a holder string `node/instance`.
pub fn node_of_holder(holder: &str) -> &str {
    holder.rsplit_once('/').map_or(holder, |(node, _)| node)
}

/// Whether a fire is a scheduled occurrence or a manual trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireKind {
    /// A scheduled occurrence: also checked against the job's last-fired
    /// time (the watermark), which it advances.
    Scheduled,
    /// An extra fire requested by an operator. Not ordered by the watermark;
    /// claiming it also removes it from the shard's trigger queue.
    Trigger,
}

impl FireKind {
    /// The kind's one-letter code in store scripts and open entries.
    pub fn code(self) -> &'static str {
        match self {
            FireKind::Scheduled => "s",
            FireKind::Trigger => "t",
        }
    }
}

/// How far ahead of the store's clock a fire may be claimed. A node whose
/// corrected clock runs ahead (a clock step, a skewed sample) is refused with
/// [`ClaimOutcome::NotYetDue`] instead of running a fire from the future.
pub const MAX_EARLY_CLAIM_MS: i64 = 100;

/// One fire to claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FireClaim {
    /// Job id.
    pub job_id: String,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Scheduled or trigger.
    pub kind: FireKind,
    /// Version of the job the caller loaded; the claim fails if it changed.
    pub job_version: u64,
    /// Id of this claim attempt, unique among the holder's attempts. It is
    /// stored in the claim key, so a later attempt can tell whether this one
    /// landed.
    pub attempt: u64,
    /// Earlier attempts of this same fire by this same holder whose replies
    /// were lost. If the claim key holds one of them, that attempt landed:
    /// the claim is taken over by `attempt` (the key is rewritten, so each
    /// lost attempt can be taken over once) and reported `Claimed`. Empty for
    /// a first attempt.
    pub uncertain: Vec<u64>,
    /// Keep an open entry for the fire from its claim until a terminal
    /// record closes it ([`OpenFire`]): delivery `at_least_once`. Without
    /// it the claim writes nothing more than before.
    pub track_open: bool,
}

impl FireClaim {
    /// A first attempt at claiming a fire.
    pub fn new(
        job_id: impl Into<String>,
        scheduled_ms: i64,
        kind: FireKind,
        job_version: u64,
        attempt: u64,
    ) -> Self {
        Self {
            job_id: job_id.into(),
            scheduled_ms,
            kind,
            job_version,
            attempt,
            uncertain: Vec::new(),
            track_open: false,
        }
    }

    /// Whether this is the common claim: a scheduled fire, first tried
    /// (no uncertain earlier attempt), keeping no open entry.
    pub fn is_plain(&self) -> bool {
        self.kind == FireKind::Scheduled && self.uncertain.is_empty() && !self.track_open
    }

    /// The same claim, keeping an open entry until the fire is closed.
    pub fn tracked(mut self) -> Self {
        self.track_open = true;
        self
    }
}

/// Fires of one shard to claim under one lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimBatch {
    /// Shard of every job in the batch.
    pub shard: u32,
    /// Holder string of the caller.
    pub holder: String,
    /// The caller's fencing token for the shard.
    pub token: u64,
    /// Fires to claim, in order; at most one entry per fire id.
    pub fires: Vec<FireClaim>,
    /// How far before its scheduled instant, by the store's clock, a fire
    /// of this batch may be claimed, on top of [`MAX_EARLY_CLAIM_MS`]: the
    /// caller's claim-ahead window (0 claims nothing before it is due).
    pub ahead_ms: i64,
    /// The caller's promise about its fires' job versions, or `None` for
    /// none: `Some(v)` says that every fire's `job_version` was read when
    /// the shard's version ([`ShardJobs::version`]) was `v` or later, as
    /// the jobs of a shard load whose version was `v` are. A store may then
    /// decide "job changed" from the shard instead of each fire: a job
    /// whose version is not above `v` was not written since, so the fire's
    /// version is current; one above `v` (or gone) is refused as changed.
    /// A store may also ignore it and compare each fire's version: the two
    /// decide alike for every batch that keeps the promise, except that
    /// deciding from the shard may refuse a fire read after a write that
    /// followed `v` (the caller reloads, as for any refusal).
    pub loaded_at: Option<u64>,
}

/// A claimed `at_least_once` fire that no terminal record has closed yet,
/// as its shard's open entries hold it: who claimed (or last recovered) it,
/// under which fencing token, and how many times it has been delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFire {
    /// Shard of the job.
    pub shard: u32,
    /// Job id.
    pub job_id: String,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Scheduled or trigger.
    pub kind: FireKind,
    /// Holder string of the claimer (`node/instance`).
    pub holder: String,
    /// Fencing token the claimer held the shard under.
    pub token: u64,
    /// Deliveries so far: 1 after the claim, one more per recovery.
    pub delivery: u32,
    /// The holder gave the fire up without a terminal state (its lease
    /// ended before the fire could start or finish): whoever holds the
    /// shard's lease now may recover it although the holder is alive.
    pub abandoned: bool,
}

impl OpenFire {
    /// The fire id, `job@scheduled_ms`: the open entry's field.
    pub fn field(&self) -> String {
        format!("{}@{}", self.job_id, self.scheduled_ms)
    }

    /// The open entry's value: `holder|token|delivery|kind`, the kind
    /// (`s` or `t`) followed by `!` once the holder abandoned the fire.
    pub fn value(&self) -> String {
        let kind = self.kind.code();
        let mark = if self.abandoned { "!" } else { "" };
        format!(
            "{}|{}|{}|{kind}{mark}",
            self.holder, self.token, self.delivery
        )
    }

    /// Parses an open entry of `shard`; `None` if it is malformed.
    pub fn parse(shard: u32, field: &str, value: &str) -> Option<OpenFire> {
        let (job_id, at) = field.rsplit_once('@')?;
        let mut parts = value.rsplitn(4, '|');
        let (kind, abandoned) = match parts.next()? {
            "s" => (FireKind::Scheduled, false),
            "t" => (FireKind::Trigger, false),
            "s!" => (FireKind::Scheduled, true),
            "t!" => (FireKind::Trigger, true),
            _ => return None,
        };
        let delivery = parts.next()?.parse().ok()?;
        let token = parts.next()?.parse().ok()?;
        let holder = parts.next()?.to_owned();
        Some(OpenFire {
            shard,
            job_id: job_id.to_owned(),
            scheduled_ms: at.parse().ok()?,
            kind,
            holder,
            token,
            delivery,
            abandoned,
        })
    }
}

/// A fire whose claim reply its caller never saw, handed back so that the
/// shard's lease holder runs it ([`crate::Coordinator::hand_back_fires`]).
///
/// The caller runs a fire only on seeing a `Claimed` reply, so a lost
/// attempt that landed names a fire the caller never started. Handing it
/// back turns it into an abandoned open entry with delivery 0 (never
/// delivered), which the recovery of whoever holds the shard runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandBack {
    /// Shard of the job.
    pub shard: u32,
    /// Job id.
    pub job_id: String,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Scheduled or trigger.
    pub kind: FireKind,
    /// Fencing token the lost attempts were made under.
    pub token: u64,
    /// The caller's attempts at claiming the fire whose replies were lost.
    pub lost_attempts: Vec<u64>,
}

impl HandBack {
    /// The fire id, `job@scheduled_ms`.
    pub fn field(&self) -> String {
        format!("{}@{}", self.job_id, self.scheduled_ms)
    }
}

/// Open fires of one shard to recover under the caller's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoverBatch {
    /// Shard of every fire in the batch.
    pub shard: u32,
    /// Holder string of the caller.
    pub holder: String,
    /// The caller's fencing token for the shard.
    pub token: u64,
    /// The open entries as the caller read them; each is recovered only if
    /// its entry is still exactly this.
    pub fires: Vec<OpenFire>,
}

/// Outcome of one recover batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverOutcome {
    /// The lease was no longer the caller's; nothing was recovered.
    LeaseLost,
    /// Per fire, in request order: whether it is now the caller's to run
    /// (its entry names the caller, with one more delivery).
    Recovered(Vec<bool>),
}

/// A terminal state reached by an `at_least_once` fire: its open entry is
/// removed, but only if it still names this holder, token and delivery (a
/// fire that was recovered meanwhile stays open for its recoverer). With
/// `abandon` the entry is kept and marked abandoned instead: the holder
/// gives the fire up without a terminal state, for the shard's lease
/// holder to recover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFire {
    /// Shard of the job.
    pub shard: u32,
    /// Job id.
    pub job_id: String,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Holder string of the node that ran it.
    pub holder: String,
    /// Fencing token under which it ran.
    pub token: u64,
    /// The delivery that ran (1 for the claim, one more per recovery): a
    /// holder may recover its own abandoned fire under the same token, so
    /// holder and token alone do not tell a late close of the first
    /// delivery from one of the second.
    pub delivery: u32,
    /// Mark the entry abandoned instead of removing it.
    pub abandon: bool,
}

/// A claimed fire whose handler has started, for stores that keep a state
/// per fire (`claimed → running → outcome`): written in batches by the
/// recorder, off the start path, and only for fires whose end was not
/// ready to be written in the same batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedFire {
    /// Shard of the job.
    pub shard: u32,
    /// Job id.
    pub job_id: String,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Holder string of the node running it.
    pub holder: String,
    /// Fencing token under which it runs.
    pub token: u64,
    /// When the handler started, Unix ms.
    pub started_ms: i64,
}

/// Outcome of claiming one fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// Ours: run it.
    Claimed,
    /// Someone already claimed it (or a later fire of the job): never run it.
    AlreadyClaimed,
    /// The job changed or was removed since it was loaded: reload, then
    /// decide again under the new version. Nothing was written.
    JobChanged,
    /// The fire is scheduled later than the store's clock allows
    /// ([`MAX_EARLY_CLAIM_MS`]): the caller's clock is ahead. Nothing was
    /// written; claim it again when it is due.
    NotYetDue,
}

/// Outcome of one claim batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    /// The lease was no longer ours; nothing was claimed.
    LeaseLost,
    /// Per-fire outcomes in request order.
    Claimed(Vec<ClaimOutcome>),
}

/// A queued manual trigger, as read (not removed) from a shard's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedTrigger {
    /// Shard of the job.
    pub shard: u32,
    /// Job id.
    pub job_id: String,
    /// The trigger's fire instant (server time when it was queued), Unix ms.
    pub at_ms: i64,
}

/// A job as stored, with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredJob {
    /// Version: changes on every write, never reused.
    pub version: u64,
    /// Server time of the last write, Unix ms.
    pub updated_ms: i64,
    /// Server time since which the job has been active: its creation, or the
    /// write that last resumed it. Fires at or before it are never run, so
    /// creating or resuming a job does not run fires from before; an edit of
    /// an active job keeps it, so a new owner still catches up fires missed
    /// before the edit. Records written before this field existed read as 0
    /// and fall back to `updated_ms`.
    #[serde(default)]
    pub active_since_ms: i64,
    /// The job.
    pub spec: JobSpec,
}

impl StoredJob {
    /// The record a write of `spec` as `version` at `now_ms` stores, given
    /// the job's previous record (`None`: a creation): the one rule every
    /// store keeps (`put_job.lua`, the SQL `put_job`): a creation or a
    /// write that resumes a paused job is active from `now_ms`, any other
    /// write keeps the previous record's schedule floor, so an edit of an
    /// active job does not drop the fires missed before it.
    pub fn written(
        spec: &JobSpec,
        version: u64,
        now_ms: i64,
        previous: Option<&StoredJob>,
    ) -> StoredJob {
        let active_since_ms = match previous {
            Some(prev) if !prev.spec.paused || spec.paused => prev.schedule_floor_ms(),
            _ => now_ms,
        };
        StoredJob {
            version,
            updated_ms: now_ms,
            active_since_ms,
            spec: spec.clone(),
        }
    }

    /// The instant fires must be later than for this job to run them.
    pub fn schedule_floor_ms(&self) -> i64 {
        if self.active_since_ms > 0 {
            self.active_since_ms
        } else {
            self.updated_ms
        }
    }
}

/// A stored job that could not be decoded (e.g. written by a newer version
/// with a field this one does not know). It is skipped, not fatal: the rest
/// of its shard loads and runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableJob {
    /// Job id (the hash field).
    pub job_id: String,
    /// Why it could not be decoded.
    pub error: String,
}

/// The jobs of one shard at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardJobs {
    /// Shard number.
    pub shard: u32,
    /// Shard version at the time of reading.
    pub version: u64,
    /// Jobs of the shard.
    pub jobs: Vec<StoredJob>,
    /// Last scheduled fire claimed per job, Unix ms.
    pub last_fired: Vec<(String, i64)>,
    /// Stored jobs that could not be decoded; the others load regardless.
    pub unreadable: Vec<UnreadableJob>,
}

/// One page of job ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPage {
    /// Ids in lexicographic order.
    pub ids: Vec<String>,
    /// Pass as `after` to get the next page; `None` at the end.
    pub next: Option<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The handler returned success.
    Succeeded,
    /// The handler returned an error on its last attempt.
    Failed,
    /// The last attempt exceeded the job's timeout.
    TimedOut,
    /// The handler panicked on its last attempt.
    Panicked,
    /// The run was cancelled because the lease was lost or the node stopped.
    Cancelled,
    /// Not started: the previous run was still in flight (overlap policy).
    SkippedOverlap,
    /// Not started: older than the misfire grace, or coalesced by policy.
    Misfired,
    /// Not started: no handler of that name on the node.
    UnknownHandler,
}

impl RunOutcome {
    /// Stable lower-case name (as used in metrics labels and JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Panicked => "panicked",
            Self::Cancelled => "cancelled",
            Self::SkippedOverlap => "skipped_overlap",
            Self::Misfired => "misfired",
            Self::UnknownHandler => "unknown_handler",
        }
    }
}

/// One entry of the run history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Job id.
    pub job_id: String,
    /// Fire id (`job@scheduled_ms`).
    pub fire_id: String,
    /// Node that ran (or skipped) it.
    pub node_id: String,
    /// Shard of the job.
    pub shard: u32,
    /// Fencing token under which it was claimed (0 if never claimed).
    pub fencing_token: u64,
    /// Scheduled instant, Unix ms.
    pub scheduled_ms: i64,
    /// Start of the first attempt, Unix ms (equal to `finished_ms` if never started).
    pub started_ms: i64,
    /// End of the last attempt, Unix ms.
    pub finished_ms: i64,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Error message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Output detail (e.g. tail of a command's output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Something that changed in the namespace, pushed to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordEvent {
    /// A member registered.
    MemberJoined(String),
    /// A member left or expired.
    MemberLeft(String),
    /// A shard's lease was released and is free to acquire.
    LeaseReleased(u32),
    /// A shard's jobs changed.
    JobsChanged(u32),
    /// Events may have been lost (reconnect, lag): re-read everything.
    Resync,
}

impl CoordEvent {
    /// Parses a published message.
    pub fn parse(message: &str) -> Option<Self> {
        let (kind, rest) = message.split_once(':')?;
        match kind {
            "member" => {
                let (what, id) = rest.split_once(':')?;
                match what {
                    "join" => Some(Self::MemberJoined(id.to_owned())),
                    "leave" => Some(Self::MemberLeft(id.to_owned())),
                    _ => None,
                }
            }
            "lease" => {
                let shard = rest.strip_prefix("release:")?.parse().ok()?;
                Some(Self::LeaseReleased(shard))
            }
            "jobs" => Some(Self::JobsChanged(rest.parse().ok()?)),
            _ => None,
        }
    }

    /// The message published for this event (the inverse of [`CoordEvent::parse`]).
    pub fn message(&self) -> String {
        match self {
            Self::MemberJoined(id) => format!("member:join:{id}"),
            Self::MemberLeft(id) => format!("member:leave:{id}"),
            Self::LeaseReleased(shard) => format!("lease:release:{shard}"),
            Self::JobsChanged(shard) => format!("jobs:{shard}"),
            Self::Resync => "resync".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_entries_round_trip_and_reject_damage() {
        let fire = OpenFire {
            shard: 3,
            job_id: "a@b".into(),
            scheduled_ms: 1_700_000_000_000,
            kind: FireKind::Trigger,
            holder: "node|odd/7f".into(),
            token: 42,
            abandoned: true,
            delivery: 2,
        };
        assert_eq!(fire.field(), "a@b@1700000000000");
        assert_eq!(fire.value(), "node|odd/7f|42|2|t!");
        assert_eq!(OpenFire::parse(3, &fire.field(), &fire.value()), Some(fire));
        assert_eq!(OpenFire::parse(3, "a@1", "h|1|1|x"), None);
        assert_eq!(OpenFire::parse(3, "a@1", "h|one|1|s"), None);
        assert_eq!(OpenFire::parse(3, "a", "h|1|1|s"), None);
    }
}
