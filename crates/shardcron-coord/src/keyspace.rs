//! Redis key names.
//!
//! Keys of one shard share the hash tag `{ns:shard}` so every per-shard script
//! touches a single cluster slot and shards spread over a Redis Cluster;
//! fleet-wide keys share `{ns}`. All names are built here and nowhere else.

/// Key builder for one namespace.
#[derive(Clone, Debug)]
pub struct Keyspace {
    ns: String,
}

impl Keyspace {
    /// Keys of namespace `ns`.
    pub fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Ring settings hash.
    pub fn config(&self) -> String {
        format!("{{{}}}:config", self.ns)
    }

    /// Member info hash (id -> JSON).
    pub fn members(&self) -> String {
        format!("{{{}}}:members", self.ns)
    }

    /// Member deadline sorted set (id -> expiry, server ms).
    pub fn member_deadlines(&self) -> String {
        format!("{{{}}}:members:deadline", self.ns)
    }

    /// Pub/sub channel of namespace events.
    pub fn events_channel(&self) -> String {
        format!("{{{}}}:events", self.ns)
    }

    /// Sorted set of every job id (for listing without SCAN).
    pub fn job_index(&self) -> String {
        format!("{{{}}}:jobs:index", self.ns)
    }

    /// Capped list of recent runs of the namespace.
    pub fn runs(&self) -> String {
        format!("{{{}}}:runs", self.ns)
    }

    /// Capped list of recent runs of one job, as versions before the
    /// per-job history hash wrote it (7 days TTL). Only read now, so the
    /// history written before an upgrade stays visible until it expires.
    pub fn legacy_job_runs(&self, job_id: &str) -> String {
        format!("{{{}}}:runs:{job_id}", self.ns)
    }

    /// The last runs of every job, in one hash: field
    /// [`Self::job_history_slot`] of `i % cap` holds run number `i` (from
    /// 0) of the job, `i|<compact record>` (see
    /// [`crate::redis_coord::ring_entry`]; earlier versions wrote
    /// `i|<record JSON>`). One hash for all jobs lets a write
    /// carry the runs of any number of jobs in one command. (Not under
    /// `{ns}:runs:`, where a legacy list of a job named like it would be.)
    pub fn job_history(&self) -> String {
        format!("{{{}}}:jobruns", self.ns)
    }

    /// Per job, `count|hour`: where its next run number is read back from
    /// (written every tenth run, so at most 9 below it; the ring's entries
    /// say how far past it) and the hour (Unix ms / 3,600,000) of the last
    /// write, for the sweep that removes deleted jobs' history.
    pub fn job_history_counts(&self) -> String {
        format!("{{{}}}:jobruns:n", self.ns)
    }

    /// Field of [`Self::job_history`] holding the runs of `job_id` whose
    /// number is `slot` modulo the cap. Ids cannot make two fields meet: the
    /// slot ends at the first `:`.
    pub fn job_history_slot(slot: usize, job_id: &str) -> String {
        format!("{slot}:{job_id}")
    }

    /// Live weight per shard (shard -> load units), exact after every job write.
    pub fn live_weights(&self) -> String {
        format!("{{{}}}:load", self.ns)
    }

    /// Version counter of the live weights (bumped by every weight change).
    pub fn live_weights_version(&self) -> String {
        format!("{{{}}}:load:ver", self.ns)
    }

    /// On a Redis Cluster, per shard the shard version of the live weight
    /// last set (shard -> version): a shard's totals are applied in the
    /// order of its versions (see `set_weight.lua`).
    pub fn live_weights_applied(&self) -> String {
        format!("{{{}}}:load:applied", self.ns)
    }

    /// Snapshot of the live weights that placement reads (shard -> units).
    pub fn placed_weights(&self) -> String {
        format!("{{{}}}:placed", self.ns)
    }

    /// The snapshot's version and refresh time (`ver`, `at` fields).
    pub fn placed_weights_meta(&self) -> String {
        format!("{{{}}}:placed:meta", self.ns)
    }

    /// The stored placement (`ver`, `map` = JSON of member names and one
    /// owner index per shard), replaced by compare-and-set on `ver`.
    pub fn placement(&self) -> String {
        format!("{{{}}}:placement", self.ns)
    }

    fn shard(&self, shard: u32, suffix: &str) -> String {
        format!("{{{}:{shard}}}:{suffix}", self.ns)
    }

    /// Lease of a shard (`holder|token`, with TTL).
    pub fn lease(&self, shard: u32) -> String {
        self.shard(shard, "lease")
    }

    /// Fencing counter of a shard (never expires).
    pub fn fence(&self, shard: u32) -> String {
        self.shard(shard, "fence")
    }

    /// Jobs of a shard (id -> stored JSON).
    pub fn jobs(&self, shard: u32) -> String {
        self.shard(shard, "jobs")
    }

    /// Job versions of a shard (id -> version) as versions before the
    /// job-state hash kept them; only read now, by the migration that moves
    /// them into [`Self::last_fired`] (field `id|v`).
    pub fn legacy_job_versions(&self, shard: u32) -> String {
        self.shard(shard, "jobver")
    }

    /// Version counter of a shard's jobs.
    pub fn shard_version(&self, shard: u32) -> String {
        self.shard(shard, "ver")
    }

    /// Load units per job of a shard (id -> units; absent = 0).
    pub fn job_weights(&self, shard: u32) -> String {
        self.shard(shard, "weights")
    }

    /// The job-state hash of a shard: per job, field `id` is its watermark
    /// (the last scheduled fire claimed and its claim record,
    /// `ms|holder|token|attempt`), `id|v` its version and `id|t` the ms of
    /// its last manual trigger (`|` cannot occur in a job id). One hash, so
    /// a claim batch reads all three for all its jobs with one `HMGET`.
    pub fn last_fired(&self, shard: u32) -> String {
        self.shard(shard, "last")
    }

    /// Instant of the last manual trigger per job of a shard (id -> ms) as
    /// versions before the job-state hash kept them; only read now, by the
    /// migration that moves them into [`Self::last_fired`] (field `id|t`).
    pub fn legacy_trigger_instants(&self, shard: u32) -> String {
        self.shard(shard, "trigger_at")
    }

    /// Queued manual triggers of a shard (`job|ms` entries).
    pub fn triggers(&self, shard: u32) -> String {
        self.shard(shard, "triggers")
    }

    /// Open `at_least_once` fires of a shard (hash: `job@at` →
    /// `holder|token|delivery|kind`), from claim until closed.
    pub fn open_fires(&self, shard: u32) -> String {
        self.shard(shard, "open")
    }

    /// Prefix of a shard's fire claim keys (`prefix + fire_id`).
    pub fn claim_prefix(&self, shard: u32) -> String {
        self.shard(shard, "fire:")
    }
}

/// The claim record (`holder|token|attempt`) of the fire at `at` of a job,
/// from what Redis holds: the fire's claim key (`key`) when it exists, else
/// the job's watermark field (`watermark`) when that is at `at`. `None`
/// means no record is kept: nobody claimed the fire, or its holder claimed
/// a later fire of the job after learning this one's outcome (see
/// `claim.lua`). For outside audits; the scripts do the same lookup.
pub fn claim_record(key: Option<&str>, watermark: Option<&str>, at: i64) -> Option<String> {
    if let Some(value) = key {
        return Some(value.to_owned());
    }
    let (ms, record) = watermark?.split_once('|')?;
    (ms.parse::<i64>().ok()? == at).then(|| record.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_share_one_hash_tag() {
        let k = Keyspace::new("prod");
        assert_eq!(k.lease(7), "{prod:7}:lease");
        assert_eq!(k.claim_prefix(7), "{prod:7}:fire:");
        assert_eq!(
            claim_record(Some("a/1|5|9"), Some("1000|b/2|6|3"), 1000).as_deref(),
            Some("a/1|5|9")
        );
        assert_eq!(
            claim_record(None, Some("1000|b/2|6|3"), 1000).as_deref(),
            Some("b/2|6|3")
        );
        assert_eq!(claim_record(None, Some("2000|b/2|6|3"), 1000), None);
        assert_eq!(claim_record(None, Some("1000"), 1000), None);
        assert_eq!(claim_record(None, None, 1000), None);
        assert_eq!(k.members(), "{prod}:members");
    }

    #[test]
    fn job_history_fields_never_meet() {
        let k = Keyspace::new("prod");
        assert_eq!(k.job_history(), "{prod}:jobruns");
        assert_eq!(k.job_history_counts(), "{prod}:jobruns:n");
        assert_eq!(Keyspace::job_history_slot(7, "a"), "7:a");
        assert_ne!(
            Keyspace::job_history_slot(1, "2:a"),
            Keyspace::job_history_slot(12, "a")
        );
    }
}
