//! The pub/sub listener: turns namespace messages into [`CoordEvent`]s.
//!
//! Pub/sub is the fast path only. Messages can be lost (a reconnect, a slow
//! subscriber), so every (re)subscription emits [`CoordEvent::Resync`] and the
//! runtime also polls on a timer: a lost message delays a reaction, it never
//! loses one.
//!
//! On a Redis Cluster a `PUBLISH` (also from a script) reaches the
//! subscribers of every node, so one subscription to any node hears the
//! whole namespace; the listener is given every node it knows and moves to
//! the next one whenever its node is lost, so a dead master does not leave
//! it deaf until that master comes back. Behind Redis Sentinel it asks the
//! sentinels for the master at each (re)subscription instead, so after a
//! failover it listens on the promoted replica.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::model::CoordEvent;

/// Gives the client of the next subscription attempt.
pub type NextClient =
    Box<dyn FnMut() -> BoxFuture<'static, redis::RedisResult<redis::Client>> + Send>;

/// `clients` in turn: the next one after each lost or failed subscription.
/// `None` if there is none.
pub fn in_turn(clients: Vec<redis::Client>) -> Option<NextClient> {
    if clients.is_empty() {
        return None;
    }
    let mut turn = 0usize;
    Some(Box::new(move || {
        let client = clients[turn % clients.len()].clone();
        turn = turn.wrapping_add(1);
        Box::pin(async move { Ok(client) })
    }))
}

/// Spawns the listener task; it runs until aborted. Each subscription
/// (the first, and each after one was lost or failed) is made on the
/// client `next_client` gives.
pub fn spawn_subscriber(
    mut next_client: NextClient,
    channel: String,
    events: broadcast::Sender<CoordEvent>,
    connect_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut was_connected = true;
        loop {
            let connected = tokio::time::timeout(connect_timeout, async {
                next_client().await?.get_async_pubsub().await
            })
            .await;
            match connected {
                Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        if !was_connected {
                            info!(%channel, "event subscription restored");
                        }
                        was_connected = true;
                        backoff = Duration::from_millis(100);
                        let _ = events.send(CoordEvent::Resync);
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            let payload: String = match msg.get_payload() {
                                Ok(p) => p,
                                Err(_) => continue,
                            };
                            match CoordEvent::parse(&payload) {
                                Some(event) => {
                                    let _ = events.send(event);
                                }
                                None => debug!(%payload, "ignoring unknown event"),
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "subscribe failed"),
                },
                Ok(Err(e)) => {
                    if was_connected {
                        warn!(error = %e, "event subscription lost; polling continues");
                    }
                    was_connected = false;
                }
                Err(_) => {
                    if was_connected {
                        warn!("event subscription timed out; polling continues");
                    }
                    was_connected = false;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}
