//! The single error type of the test kit.
//!
//! Test helpers fail for reasons a test author has to act on (redis-server is
//! not installed, the server crashed on startup because of a bad argument, a
//! command timed out because the server is paused, ...). A typed error keeps
//! those cases distinguishable so a test can assert on them — e.g. "PING must
//! time out while the server is paused" — instead of string-matching panics.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in `shardcron-testkit`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No `redis-server` on `PATH` and `SHARDCRON_REDIS_SERVER` is not set.
    #[error(
        "redis-server not found on PATH: install it (apt-get install redis-server) or set SHARDCRON_REDIS_SERVER"
    )]
    RedisNotFound,

    /// An explicitly configured redis-server binary (builder or
    /// `SHARDCRON_REDIS_SERVER`) does not exist or is not executable.
    #[error("redis-server binary {path:?} (from {origin}) does not exist or is not executable")]
    RedisBinaryInvalid {
        /// The path that was configured.
        path: PathBuf,
        /// Where the path came from (`SHARDCRON_REDIS_SERVER` or the builder).
        origin: &'static str,
    },

    /// No `redis-cli` on `PATH`: a TLS server's helpers
    /// ([`RedisServer::command`](crate::RedisServer::command) and the like)
    /// talk to it through `redis-cli --tls`.
    #[error("redis-cli not found on PATH: install it (apt-get install redis-tools)")]
    RedisCliNotFound,

    /// Neither `initdb` and `postgres` on `PATH` nor a server under
    /// `/usr/lib/postgresql/*/bin`.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH nor under /usr/lib/postgresql/*/bin: install them (apt-get install postgresql)"
    )]
    PostgresNotFound,

    /// Running as root, and there is no `postgres` user to run the server
    /// as (PostgreSQL refuses to run as root).
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as (it refuses to run as root): install the postgresql package, which creates it, or run the tests as another user"
    )]
    NoServerUser,

    /// `initdb` failed.
    #[error("initdb failed ({status}); output:\n{log_tail}")]
    InitdbFailed {
        /// The exit status, rendered.
        status: String,
        /// The tail of its output.
        log_tail: String,
    },

    /// postgres exited before it accepted connections.
    #[error("postgres on port {port} exited during startup ({status}); output:\n{log_tail}")]
    PostgresExited {
        /// The port the server was asked to listen on.
        port: u16,
        /// The exit status, rendered.
        status: String,
        /// The tail of the server log.
        log_tail: String,
    },

    /// postgres did not accept connections in time.
    #[error("postgres on port {port} was not ready within {timeout:?}; output:\n{log_tail}")]
    PostgresStartTimeout {
        /// The port the server was asked to listen on.
        port: u16,
        /// How long the test kit waited.
        timeout: Duration,
        /// The tail of the server log.
        log_tail: String,
    },

    /// No `etcd` on `PATH` and `SHARDCRON_ETCD` is not set.
    #[error(
        "etcd not found on PATH: install it (apt-get install etcd-server) or set SHARDCRON_ETCD"
    )]
    EtcdNotFound,

    /// etcd exited before it served clients, or did not serve them in time.
    #[error("etcd on client port {port} did not start ({reason}); output:\n{log_tail}")]
    EtcdStartFailed {
        /// The client port the server was asked to listen on.
        port: u16,
        /// Exit status, or that it timed out.
        reason: String,
        /// The tail of the server log.
        log_tail: String,
    },

    /// An operating-system level I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What the test kit was doing when the error happened.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// redis-server exited before it became ready (bad argument, bad
    /// configuration, corrupt AOF, ...).
    #[error("redis-server on port {port} exited during startup ({status}); output:\n{log_tail}")]
    ExitedDuringStartup {
        /// The port the server was asked to listen on.
        port: u16,
        /// The exit status, rendered.
        status: String,
        /// The tail of `redis.log` and of the captured stdout/stderr.
        log_tail: String,
    },

    /// redis-server did not answer `PING` with `+PONG` in time.
    #[error("redis-server on port {port} was not ready within {timeout:?}; output:\n{log_tail}")]
    StartTimeout {
        /// The port the server was asked to listen on.
        port: u16,
        /// How long the test kit waited.
        timeout: Duration,
        /// The tail of `redis.log` and of the captured stdout/stderr.
        log_tail: String,
    },

    /// The port is held by another process (redis-server could not bind it,
    /// or a different server answered on it).
    #[error("port {port} on 127.0.0.1 is already in use by another process")]
    PortInUse {
        /// The contested port.
        port: u16,
    },

    /// The operation needs a running redis-server but it was killed or stopped.
    #[error("redis-server is not running (killed or stopped; call restart())")]
    NotRunning,

    /// A network operation did not complete in time (typically: the server is
    /// paused, or a fault proxy is black-holing the connection).
    #[error("timed out after {timeout:?} while {context}")]
    Timeout {
        /// What was being waited for.
        context: String,
        /// The timeout that expired.
        timeout: Duration,
    },

    /// The server answered with a RESP error reply (`-ERR ...`).
    #[error("redis error reply: {0}")]
    ErrorReply(String),

    /// The bytes received are not valid RESP.
    #[error("RESP protocol error: {0}")]
    Protocol(String),

    /// A Redis Cluster could not be formed (slots assigned, nodes met,
    /// replicas attached) or did not reach `cluster_state:ok` in time.
    #[error("redis cluster setup: {0}")]
    ClusterSetup(String),

    /// A Sentinel group could not be set up (replica linked, sentinels
    /// aware of each other) or did not fail over in time.
    #[error("redis sentinel group: {0}")]
    SentinelSetup(String),

    /// The peer closed the connection before a complete reply arrived.
    #[error("connection closed by peer before a complete reply arrived")]
    ConnectionClosed,
}

impl TestkitError {
    /// Wraps an [`io::Error`] with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }
}
