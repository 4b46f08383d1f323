//! Test kit for shardcron: a real, private Redis per test, and network faults.
//!
//! shardcron's guarantees ("every fire exactly once", fail-over when a worker
//! disappears) depend on real Redis behaviour and on what happens when Redis
//! or the network misbehaves. Mocks cannot show that, and the shared server on
//! `localhost:6379` must never be touched by tests (it may hold a developer's
//! data, and parallel tests would trample each other). This crate provides:
//!
//! * [`RedisServer`]: starts `redis-server` on a free `127.0.0.1` port in a
//!   temporary directory, and can [`kill`](RedisServer::kill),
//!   [`stop`](RedisServer::stop), [`pause`](RedisServer::pause),
//!   [`resume`](RedisServer::resume) and [`restart`](RedisServer::restart) it
//!   (with optional AOF so acknowledged writes survive a crash). It also has a
//!   tiny synchronous [`command`](RedisServer::command) helper for setup and
//!   assertions without a Redis client. With
//!   [`tls`](RedisServerBuilder::tls) it serves TLS only, with certificates
//!   of a [`TestPki`] made for it.
//! * [`RedisCluster`]: a private Redis Cluster of such servers (three or
//!   more masters, optionally one replica each), for the cluster store; in
//!   plain TCP or, with [`start_tls`](RedisCluster::start_tls), TLS only.
//! * [`SentinelGroup`]: a master, a replica and three sentinels (Redis
//!   Sentinel), with fast failover settings, for the sentinel store.
//! * [`PostgresServer`]: the same for PostgreSQL (`initdb` + `postgres` in a
//!   temporary directory, run as the `postgres` user when the tests run as
//!   root), for the PostgreSQL store's tests.
//! * [`EtcdServer`]: the same for etcd (one member or a three-member
//!   cluster on free loopback ports), for the etcd store's tests.
//! * [`FaultProxy`]: a TCP proxy to put in front of the server for *one*
//!   client, to black-hole, delay, refuse or cut its traffic.
//!
//! ```no_run
//! use shardcron_testkit::{FaultMode, FaultProxy, RedisServer};
//!
//! # async fn example() -> Result<(), shardcron_testkit::TestkitError> {
//! let server = RedisServer::builder().appendonly(true).start()?;
//! server.command(&["SET", "k", "v"])?;
//! server.kill();
//! server.restart()?;
//! assert_eq!(server.command(&["GET", "k"])?, "v");
//!
//! let proxy = FaultProxy::start(server.addr()).await?;
//! // connect the worker under test to proxy.url() ...
//! proxy.set_mode(FaultMode::Blackhole);
//! # Ok(()) }
//! ```
//!
//! Unix only (signals are used to kill/pause the server).

#![warn(missing_docs)]

mod error;
pub mod etcd_server;
pub mod fault_proxy;
mod poll;
pub mod postgres_server;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod redis_tls;
pub mod resp;
pub mod test_pki;

use std::net::{Ipv4Addr, TcpListener};

pub use error::TestkitError;
pub use etcd_server::{EtcdServer, ETCD_ENV, MAX_TXN_OPS};
pub use fault_proxy::{FaultMode, FaultProxy};
pub use postgres_server::PostgresServer;
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::{GroupPasswords, SentinelGroup};
pub use redis_server::{RedisServer, RedisServerBuilder, REDIS_SERVER_ENV};
pub use redis_tls::{ClientAuth, ServerTls};
pub use resp::{RespConnection, RespValue};
pub use test_pki::TestPki;

/// Starts tried by [`retry_taken_ports`].
const START_ATTEMPTS: u32 = 5;

/// Runs `start`, which picks its own free ports, again while it fails
/// because one of them was taken between [`free_port`] finding it free and
/// the server binding it (`taken` says which errors mean that), up to
/// [`START_ATTEMPTS`] times. Returns its first other outcome, else the
/// last taken-port error.
pub(crate) fn retry_taken_ports<T>(
    taken: impl Fn(&TestkitError) -> bool,
    mut start: impl FnMut() -> Result<T, TestkitError>,
) -> Result<T, TestkitError> {
    let mut last = None;
    for attempt in 1..=START_ATTEMPTS {
        match start() {
            Err(e) if taken(&e) => {
                tracing::debug!(attempt, error = %e, "port taken, retrying with fresh ones");
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(last.unwrap_or(TestkitError::PortInUse { port: 0 }))
}

/// Returns a TCP port on `127.0.0.1` that was free a moment ago.
///
/// It binds `127.0.0.1:0`, reads the port the OS picked, and releases it. The
/// port may be taken by someone else before the caller binds it, so callers
/// must be prepared to retry (as [`RedisServer`] does).
pub fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the address of a probe listener", e))?;
    Ok(addr.port())
}
