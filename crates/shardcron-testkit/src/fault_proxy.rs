//! A TCP proxy that injects network faults between one client and Redis.
//!
//! Killing or pausing the server (see [`RedisServer`](crate::RedisServer))
//! affects *every* worker at once. Many interesting failures of a distributed
//! scheduler are partial: one worker is partitioned from Redis while the
//! others carry on, one worker's link is slow, one worker's connection is
//! reset. Pointing that worker at a [`FaultProxy`] instead of the server lets
//! a test do exactly that, with real sockets and the real Redis client:
//!
//! * [`FaultMode::Pass`] forwards bytes unchanged;
//! * [`FaultMode::Blackhole`] keeps the sockets open but silently drops
//!   everything in both directions, like a partition where packets vanish
//!   (the client only notices through its own timeouts);
//! * [`FaultMode::DropReplies`] forwards requests and drops replies: every
//!   write applies and the client never learns it (a reply lost after the
//!   write applied, for as long as the mode lasts);
//! * [`FaultMode::Delay`] forwards every chunk after a fixed delay, keeping
//!   order (added latency, not reduced bandwidth);
//! * [`FaultMode::Refuse`] closes existing connections and closes new ones
//!   right after accepting them.
//!
//! Mode changes apply immediately to existing and new connections. The proxy
//! runs as tasks on the tokio runtime that called [`FaultProxy::start`]; when
//! driving a client through it with *blocking* calls, use a multi-threaded
//! runtime so the proxy keeps running.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::TestkitError;

/// Size of the per-direction read buffer.
const BUF_SIZE: usize = 16 * 1024;
/// Chunks that may be in flight (delayed) per direction before reading stalls.
const IN_FLIGHT_CHUNKS: usize = 1024;

/// What the proxy does with traffic. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Forward everything unchanged.
    #[default]
    Pass,
    /// Keep connections open, forward nothing; bytes read are dropped (they
    /// are *not* delivered when the mode changes back). A close by one side
    /// is withheld until the mode changes.
    Blackhole,
    /// Forward each chunk this long after it was read, preserving order.
    Delay(Duration),
    /// Close existing connections; accept new ones and close them at once.
    Refuse,
    /// Forward requests, drop replies: every write a client sends applies,
    /// and the client never learns it (a reply lost after the write
    /// applied). Replies dropped are *not* delivered when the mode changes
    /// back; a close by the server is withheld until then.
    DropReplies,
}

/// Which way a pump forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

impl FaultMode {
    /// Whether bytes going `direction` vanish in this mode.
    fn drops(self, direction: Direction) -> bool {
        match self {
            FaultMode::Blackhole => true,
            FaultMode::DropReplies => direction == Direction::ToClient,
            FaultMode::Pass | FaultMode::Delay(_) | FaultMode::Refuse => false,
        }
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1:<random port>` in front of one
/// target address. Stops (closing all its sockets) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept_task: AbortHandle,
}

#[derive(Debug)]
struct Shared {
    mode: watch::Sender<FaultMode>,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    connections: HashMap<u64, AbortHandle>,
    closed: bool,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes all connections from the registry and aborts their tasks,
    /// which drops (closes) their sockets.
    fn cut_all(&self) {
        let handles: Vec<AbortHandle> = self
            .registry()
            .connections
            .drain()
            .map(|(_, handle)| handle)
            .collect();
        for handle in handles {
            handle.abort();
        }
    }
}

/// Unregisters a connection when its task ends or is aborted.
struct ConnectionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.registry().connections.remove(&self.id);
    }
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and starts forwarding to `target` in
    /// [`FaultMode::Pass`]. Must be called within a tokio runtime; the accept
    /// loop is spawned on it.
    pub async fn start(target: SocketAddr) -> Result<FaultProxy, TestkitError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| TestkitError::io("binding fault proxy on 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading fault proxy address", e))?;
        let (mode, _) = watch::channel(FaultMode::Pass);
        let shared = Arc::new(Shared {
            mode,
            registry: Mutex::new(Registry::default()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, target, Arc::clone(&shared)));
        tracing::debug!(%addr, %target, "fault proxy started");
        Ok(FaultProxy {
            addr,
            target,
            shared,
            accept_task: accept_task.abort_handle(),
        })
    }

    /// The proxy's listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<port>` of the proxy, for a Redis client.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// The address traffic is forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        *self.shared.mode.borrow()
    }

    /// Switches the mode for existing and new connections. Switching to
    /// [`FaultMode::Refuse`] also closes all current connections.
    pub fn set_mode(&self, mode: FaultMode) {
        tracing::debug!(addr = %self.addr, ?mode, "fault proxy mode change");
        self.shared.mode.send_replace(mode);
        if mode == FaultMode::Refuse {
            self.shared.cut_all();
        }
    }

    /// Closes every current connection (both the client and the upstream
    /// socket), like a connection reset. New connections are still accepted
    /// according to the mode.
    pub fn cut_connections(&self) {
        self.shared.cut_all();
    }

    /// Number of currently open proxied connections.
    pub fn connection_count(&self) -> usize {
        self.shared.registry().connections.len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.registry().closed = true;
        self.shared.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // E.g. EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "fault proxy accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if *shared.mode.borrow() == FaultMode::Refuse {
            drop(client);
            continue;
        }
        let mut registry = shared.registry();
        if registry.closed {
            return;
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let guard = ConnectionGuard {
            shared: Arc::clone(&shared),
            id,
        };
        let mode = shared.mode.subscribe();
        // Spawned while holding the registry lock, so the task cannot
        // unregister itself before it is registered.
        let task = tokio::spawn(async move {
            let _guard = guard;
            proxy_connection(client, target, mode).await;
        });
        registry.connections.insert(id, task.abort_handle());
    }
}

/// Resolves once the mode is `Refuse` (or the proxy is gone).
async fn refused(mode: &mut watch::Receiver<FaultMode>) {
    let _ = mode.wait_for(|m| *m == FaultMode::Refuse).await;
}

async fn proxy_connection(
    client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
) {
    let upstream = tokio::select! {
        res = TcpStream::connect(target) => match res {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%target, error = %e, "fault proxy could not reach target");
                return;
            }
        },
        () = refused(&mut mode) => return,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let to_server = pump(
        client_read,
        upstream_write,
        mode.clone(),
        Direction::ToServer,
    );
    let to_client = pump(
        upstream_read,
        client_write,
        mode.clone(),
        Direction::ToClient,
    );
    // The connection ends (both sockets closed) as soon as one direction is
    // finished, or when the proxy starts refusing.
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
        () = refused(&mut mode) => {}
    }
}

/// Forwards one direction, applying the mode per chunk.
async fn pump(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    mode: watch::Receiver<FaultMode>,
    direction: Direction,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let mut read_mode = mode.clone();
    let read_side = async move {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            let current = *read_mode.borrow();
            if current.drops(direction) {
                continue;
            }
            let deadline = match current {
                FaultMode::Delay(delay) => now
                    .checked_add(delay)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)),
                FaultMode::Refuse => break,
                FaultMode::Pass | FaultMode::Blackhole | FaultMode::DropReplies => now,
            };
            if tx.send((deadline, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        // A partition hides the close too: hold it until the mode changes.
        let _ = read_mode.wait_for(|m| !m.drops(direction)).await;
        drop(tx);
    };
    let write_side = async move {
        while let Some((deadline, chunk)) = rx.recv().await {
            tokio::time::sleep_until(deadline).await;
            // Data still in flight when a partition starts vanishes as well.
            if mode.borrow().drops(direction) {
                continue;
            }
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::join!(read_side, write_side);
}
