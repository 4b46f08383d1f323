//! The coordination layer of shardcron: membership, shard leases with fencing
//! tokens, batched fire claims, the job store and the run history.
//!
//! Everything the fleet must agree on goes through the [`Coordinator`] trait.
//! [`RedisCoordinator`] is the production implementation (Lua scripts, one
//! round trip per batch, hash-tagged keys); [`MemoryCoordinator`] keeps the same
//! semantics in one process for demos and fast tests. Both pass one
//! conformance suite.

#![warn(missing_docs)]

pub mod coordinator;
pub mod error;
pub mod events;
pub mod keyspace;
pub mod memory;
pub mod model;
pub mod redis_coord;
pub mod scripts;

pub use coordinator::{CoordResult, Coordinator};
pub use error::{CoordError, MAX_RELOCATIONS};
pub use keyspace::{claim_record, Keyspace};
pub use memory::{MemoryCoordinator, MemoryStore, ShardState, StoreClock};
pub use model::{
    node_of_holder, BatchOutcome, ClaimBatch, ClaimOutcome, CloseFire, CoordEvent, FireClaim,
    FireKind, HandBack, JobPage, LeaseGrant, LeaseInfo, MemberInfo, Membership, OpenFire,
    PlacementInputs, QueuedTrigger, RecoverBatch, RecoverOutcome, RunOutcome, RunRecord, ShardJobs,
    StartedFire, StoredJob, StoredPlacement, UnreadableJob, MAX_EARLY_CLAIM_MS,
};
pub use redis_coord::{
    check_redis_url, decode_shard_jobs, redact_url, RedisCoordinator, RedisOptions, CLUSTER_SCHEME,
    SENTINEL_SCHEME, TLS_CLUSTER_SCHEME,
};
