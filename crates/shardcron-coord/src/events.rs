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
//! it deaf until that master comes back.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::model::CoordEvent;

/// Spawns the listener task; it runs until aborted. `clients` are tried in
/// turn: the next one after each lost or failed subscription.
pub fn spawn_subscriber(
    clients: Vec<redis::Client>,
    channel: String,
    events: broadcast::Sender<CoordEvent>,
    connect_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut was_connected = true;
        let mut turn = 0usize;
        loop {
            let Some(client) = clients.get(turn % clients.len().max(1)) else {
                return;
            };
            turn = turn.wrapping_add(1);
            let connected = tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await;
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
