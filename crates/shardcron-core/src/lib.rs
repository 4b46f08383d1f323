//! The pure core of shardcron: the job model, schedules, fire ids, the shard of a
//! job and the consistent-hash ring that maps shards to members.
//!
//! Nothing here performs I/O or reads a clock. Every function is a pure function
//! of its inputs so that every node, in every process, on every platform and
//! version, computes the same fire times and the same `shard -> owner` map
//! without talking to anyone. That agreement is what lets the coordination layer
//! stay small: it only has to arbitrate the brief moments when nodes disagree.

#![warn(missing_docs)]

pub mod fire;
pub mod job;
pub mod load;
pub mod placement;
pub mod placement_record;
pub mod rebalance;
pub mod ring;
pub mod schedule;
pub mod shard;
pub mod stable_hash;

pub use fire::FireId;
pub use job::{
    validate_job_id, Delivery, Job, JobSpec, JobValidationError, MisfirePolicy, OverlapPolicy,
    Placement, RetryPolicy, FIRE_HORIZON, MAX_ARGS_BYTES, MAX_JOB_ID_LEN,
};
pub use load::{fires_per_day, LoadUnits};
pub use placement::{ShardWeights, DEFAULT_LOAD_BOUND_PERMILLE};
pub use placement_record::{PlacementRecord, PlacementRecordError};
pub use ring::{LoadBalance, RingConfig, ShardMap, DEFAULT_SHARD_COUNT, DEFAULT_VNODES};
pub use schedule::{parse_time_zone, Schedule, ScheduleError};
pub use shard::{
    broadcast_shard, candidate_shards, job_shard, leader_shard, placement_of_shard, shard_of,
};
