//! The PostgreSQL store of shardcron: [`PostgresCoordinator`] implements
//! the whole [`shardcron_coord::Coordinator`] contract on PostgreSQL.
//!
//! Why a second store: some fleets already run PostgreSQL and would rather
//! not operate Redis for one scheduler. The contract stays the one the
//! conformance suite checks on every store; what changes is how each
//! atomic step is made atomic:
//!
//! * every check-and-write step the Redis store does in a Lua script is one
//!   call of a server-side plpgsql function here (`sql/0002_functions.sql`,
//!   each naming the script it mirrors), so it is one round trip and one
//!   transaction, whatever the batch size;
//! * row locks replace Redis's single-threaded scripts: a claim holds its
//!   shard's lease row (shared) until it commits, so no takeover of the
//!   lease can interleave with it, and the job row and fire row it writes
//!   (exclusive);
//! * `clock_timestamp()` of the server is the only clock (deadlines, write
//!   times, trigger instants, fencing token floors);
//! * `LISTEN`/`NOTIFY` carries the events Redis pub/sub carries; they are a
//!   fast path only, the runtime polls as well.
//!
//! Each namespace lives in a schema of its own ([`schema`]), created and
//! migrated on connect under an advisory lock ([`migrate`]).

#![warn(missing_docs)]

mod coordinator;
pub mod error;
mod events;
mod fires;
mod history;
mod jobs;
mod leases;
mod members;
pub mod migrate;
mod running;
pub mod schema;
mod tls;

pub use coordinator::{PostgresCoordinator, PostgresOptions};
pub use migrate::SCHEMA_VERSION;
pub use schema::NamespaceSchema;
