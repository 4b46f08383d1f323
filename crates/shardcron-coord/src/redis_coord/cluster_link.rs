//! The cluster connection, rebuilt when it stops working.
//!
//! The cluster client repairs its view of the cluster on `MOVED` replies
//! and lost connections, but a master killed outright was seen to leave it
//! retrying the dead address long after a replica had taken its slots over
//! (every request to those slots timed out, so the node never heard a
//! `MOVED`). A fresh client asks the seed nodes for the slot map, so the
//! link replaces the connection, in the background and at most once a
//! second, whenever a request fails as unreachable. Requests in flight keep
//! the old connection; new ones take the newest.
//!
//! The link also keeps its own copy of the slot map (`CLUSTER SLOTS`), read
//! at each (re)build and after a `MOVED`: pipelines are grouped by node with
//! it, so that a node gets one pipeline, and one `WAIT`, per request.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};

/// Least time between two rebuilds.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// A cluster connection that rebuilds itself; cheap to clone.
#[derive(Clone)]
pub(crate) struct ClusterLink {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClusterClient,
    connect_timeout: Duration,
    state: Mutex<State>,
}

struct State {
    conn: ClusterConnection,
    /// Slot ranges and the `host:port` of the master serving each.
    slots: Vec<(u16, u16, String)>,
    last_rebuild: Instant,
    rebuilding: bool,
}

impl ClusterLink {
    /// Connects through `client`.
    pub async fn connect(
        client: ClusterClient,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let mut conn = client.get_async_connection().await?;
        let slots = read_slots(&mut conn).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                connect_timeout,
                state: Mutex::new(State {
                    conn,
                    slots,
                    last_rebuild: Instant::now(),
                    rebuilding: false,
                }),
            }),
        })
    }

    /// The connection to send the next request on.
    pub fn current(&self) -> ClusterConnection {
        self.lock().conn.clone()
    }

    /// The `host:port` of the master serving `slot`, per the last map read.
    pub fn node_of(&self, slot: u16) -> Option<String> {
        let state = self.lock();
        state
            .slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, node)| node.clone())
    }

    /// Reads the slot map again (after a `MOVED`: a slot changed node).
    pub fn refresh_slots(&self) {
        let link = self.clone();
        tokio::spawn(async move {
            let mut conn = link.current();
            if let Ok(slots) = read_slots(&mut conn).await {
                link.lock().slots = slots;
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at a request's error: one that says the cluster was not
    /// reached starts a rebuild (unless one ran within the last second).
    pub fn note(&self, error: &RedisError) {
        let unreachable = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error();
        if !unreachable {
            return;
        }
        {
            let mut state = self.lock();
            if state.rebuilding || state.last_rebuild.elapsed() < REBUILD_EVERY {
                return;
            }
            state.rebuilding = true;
        }
        let link = self.clone();
        tokio::spawn(async move {
            let fresh = tokio::time::timeout(link.inner.connect_timeout * 2, async {
                let mut conn = link.inner.client.get_async_connection().await?;
                let slots = read_slots(&mut conn).await?;
                Ok::<_, RedisError>((conn, slots))
            })
            .await;
            let mut state = link.lock();
            state.rebuilding = false;
            state.last_rebuild = Instant::now();
            match fresh {
                Ok(Ok((conn, slots))) => {
                    tracing::info!("cluster connection rebuilt from the seed nodes");
                    state.conn = conn;
                    state.slots = slots;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cluster connection rebuild failed"),
                Err(_) => tracing::debug!("cluster connection rebuild timed out"),
            }
        });
    }
}

/// The slot map: `CLUSTER SLOTS`, as (first, last, master `host:port`).
async fn read_slots(conn: &mut ClusterConnection) -> Result<Vec<(u16, u16, String)>, RedisError> {
    let reply: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut slots = Vec::with_capacity(reply.len());
    for range in reply {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        slots.push((*first as u16, *last as u16, format!("{host}:{port}")));
    }
    Ok(slots)
}

/// The cluster slot of a key: CRC16 (XMODEM) of its hash tag (the part
/// between the first `{` and the next `}`, when not empty) or of the whole
/// key, modulo 16,384, as Redis computes it.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_are_the_ones_redis_computes() {
        // Values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"{a:1}:lease"), key_slot(b"a:1"));
    }
}
