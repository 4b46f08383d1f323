//! The etcd store of shardcron: [`EtcdCoordinator`] implements the whole
//! [`shardcron_coord::Coordinator`] contract on etcd v3, the strongly
//! consistent option (every write is a Raft-committed transaction, every
//! read linearizable).
//!
//! What changes against the Redis and PostgreSQL stores is only how each
//! atomic step is made atomic:
//!
//! * **No scripts: read, decide, compare-and-set** ([`shards`]). Each
//!   shard's protocol state is one document decided on by the in-memory
//!   store's own code ([`shardcron_coord::ShardState`]) and written back in a
//!   transaction that compares the mod revisions of everything read (the
//!   document, and the lease key for a lease-guarded step), retried on
//!   conflict: atomic with the lease check and with every other step of
//!   the shard, as one Lua script or one plpgsql call is.
//! * **Leases are etcd leases** ([`leases`], [`members`]): shard keys and
//!   member keys are attached to their holder's etcd lease, expiry is
//!   etcd's, a node's renewals are one keep-alive. Fencing tokens come from
//!   a per-shard counter moved by compare-and-set, floored at the clock in
//!   µs.
//! * **Watches replace pub/sub** ([`events`]), with a full resync when the
//!   watched history was compacted.
//! * **The node's clock is the only clock.** etcd keeps none that clients
//!   can read. It decides: `NotYetDue` (a fire later than now + 100 ms + the
//!   claim-ahead window), write and trigger times, claim-key retention and
//!   the fencing-token floor. None of these is what keeps two nodes from
//!   running one fire: a claim is exactly-once because it is one
//!   compare-and-set transaction under a lease key whose expiry etcd
//!   alone decides, with its own monotonic timers, not any node's clock.
//!   The caller's clock only bounds how early it may claim (its own
//!   timetable runs on the same clock, and its clock-offset estimate is
//!   then ~0), so a node whose wall clock is ahead can claim its fires
//!   early by that much (on Redis the store's clock would refuse them); a
//!   fire is still claimed once. Clocks of nodes should agree (NTP) for
//!   fires to run on time, not for them to run once.
//!
//! * **History kept bounded by the store** ([`compaction`]): every claim
//!   writes, and etcd keeps every revision until compacted (by default
//!   never), so one node per interval compacts the cluster to a revision
//!   at least an interval old.
//!
//! Requirements: etcd v3.4 or newer (nested transactions); the store keeps
//! every transaction within etcd's default `--max-txn-ops` ([`MAX_OPS`])
//! and its history within the default quota, so no server setting is
//! needed. A shard's
//! state is one value: keep it under etcd's request limit (1.5 MiB by
//! default), i.e. up to about 5,000 jobs per shard.

#![warn(missing_docs)]

mod client;
pub mod compaction;
mod coordinator;
mod error;
pub mod events;
mod fires;
pub mod history;
mod jobs;
mod keys;
pub mod leases;
pub mod members;
pub mod shards;

pub use client::MAX_OPS;
pub use compaction::Compacted;
pub use coordinator::{
    parse_url, redact_etcd_url, EtcdCoordinator, EtcdOptions, ParsedUrl, DEFAULT_COMPACT_EVERY,
};
