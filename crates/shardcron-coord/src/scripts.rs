//! The Lua scripts, loaded once per process.
//!
//! Each per-shard script touches only keys of one shard's hash tag, so it runs
//! atomically in one slot; fleet scripts touch only `{ns}` keys. Three take
//! keys of many shards on one server: `renew.lua` and `claim.lua` (each
//! lease or batch decided on its own, so they need no atomicity across
//! shards: on a cluster a call carries one slot's shards), and
//! `put_job.lua` / `delete_job.lua`, which also move the namespace's job
//! index and live weights; on a cluster those two are replaced by a
//! per-shard step and a namespace step (`put_job_shard.lua`,
//! `delete_job_shard.lua`, `set_weight.lua`). The sources live in `lua/` next to
//! this file so they can be read and reviewed as Lua.

use redis::Script;

/// The source of a script that touches a shard's job versions or trigger
/// instants, with the prelude that moves them from the old layout's hashes
/// into the job-state hash (`lua/migrate_job_state.lua`) in front.
macro_rules! with_migration {
    ($path:literal) => {
        concat!(
            include_str!("lua/migrate_job_state.lua"),
            include_str!($path)
        )
    };
}

/// The source of a script that reads many leases at once, with the prelude
/// that reads them with `MGET` yet fails on a key of the wrong type as
/// `GET` would (`lua/read_strings.lua`) in front.
macro_rules! with_string_reader {
    ($path:literal) => {
        concat!(include_str!("lua/read_strings.lua"), include_str!($path))
    };
}

/// Every script the Redis coordinator runs.
pub struct Scripts {
    /// Register/refresh a member.
    pub heartbeat: Script,
    /// List live members, expiring stale ones.
    pub members: Script,
    /// Remove a member.
    pub deregister: Script,
    /// Acquire a shard lease with a new fencing token.
    pub acquire: Script,
    /// Extend a lease if still ours.
    pub renew: Script,
    /// Release a lease if still ours.
    pub release: Script,
    /// Claim a batch of fires under a lease.
    pub claim: Script,
    /// Create or replace a job with optimistic concurrency.
    pub put_job: Script,
    /// Remove a job.
    pub delete_job: Script,
    /// Store or check the namespace's ring settings.
    pub ensure_config: Script,
    /// Queue a manual trigger.
    pub trigger: Script,
    /// Read a shard's queued triggers (without removing them).
    pub read_triggers: Script,
    /// Store the next placement (compare-and-set on its version).
    pub store_placement: Script,
    /// Take over open at_least_once fires under a lease.
    pub recover: Script,
    /// Remove open entries of fires that reached a terminal state.
    pub close: Script,
    /// Remove the per-job history of deleted jobs, one step of a sweep.
    pub sweep_history: Script,
    /// Hand back fires whose claim reply was lost, for the lease holder to
    /// recover.
    pub hand_back: Script,
    /// `put_job_shard.lua`: the shard step of a job write on a cluster.
    pub put_job_shard: Script,
    /// `delete_job_shard.lua`: the shard step of a removal on a cluster.
    pub delete_job_shard: Script,
    /// `set_weight.lua`: the namespace step of a job write on a cluster.
    pub set_weight: Script,
}

impl Scripts {
    /// Compiles (hashes) all scripts.
    pub fn new() -> Self {
        Self {
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            members: Script::new(include_str!("lua/members.lua")),
            deregister: Script::new(include_str!("lua/deregister.lua")),
            acquire: Script::new(with_migration!("lua/acquire.lua")),
            renew: Script::new(with_string_reader!("lua/renew.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            claim: Script::new(with_string_reader!("lua/claim.lua")),
            put_job: Script::new(with_migration!("lua/put_job.lua")),
            delete_job: Script::new(with_migration!("lua/delete_job.lua")),
            ensure_config: Script::new(include_str!("lua/ensure_config.lua")),
            trigger: Script::new(with_migration!("lua/trigger.lua")),
            read_triggers: Script::new(include_str!("lua/read_triggers.lua")),
            store_placement: Script::new(include_str!("lua/store_placement.lua")),
            recover: Script::new(include_str!("lua/recover.lua")),
            close: Script::new(include_str!("lua/close.lua")),
            sweep_history: Script::new(include_str!("lua/sweep_history.lua")),
            hand_back: Script::new(include_str!("lua/hand_back.lua")),
            put_job_shard: Script::new(with_migration!("lua/put_job_shard.lua")),
            delete_job_shard: Script::new(with_migration!("lua/delete_job_shard.lua")),
            set_weight: Script::new(include_str!("lua/set_weight.lua")),
        }
    }

    /// Sources of all scripts, for `SCRIPT LOAD` after a server restart.
    pub fn sources() -> [&'static str; 20] {
        [
            include_str!("lua/heartbeat.lua"),
            include_str!("lua/members.lua"),
            include_str!("lua/deregister.lua"),
            with_migration!("lua/acquire.lua"),
            with_string_reader!("lua/renew.lua"),
            include_str!("lua/release.lua"),
            with_string_reader!("lua/claim.lua"),
            with_migration!("lua/put_job.lua"),
            with_migration!("lua/delete_job.lua"),
            include_str!("lua/ensure_config.lua"),
            with_migration!("lua/trigger.lua"),
            include_str!("lua/read_triggers.lua"),
            include_str!("lua/store_placement.lua"),
            include_str!("lua/recover.lua"),
            include_str!("lua/close.lua"),
            include_str!("lua/sweep_history.lua"),
            include_str!("lua/hand_back.lua"),
            with_migration!("lua/put_job_shard.lua"),
            with_migration!("lua/delete_job_shard.lua"),
            include_str!("lua/set_weight.lua"),
        ]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
