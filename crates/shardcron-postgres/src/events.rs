//! `LISTEN` on the namespace's channel, turned into [`CoordEvent`]s.
//!
//! The functions `NOTIFY` the same messages the Redis scripts publish
//! (`member:join:<id>`, `jobs:<shard>`, ...), at commit. A notification can
//! be lost (the listening connection breaks, the server restarts), so each
//! (re)subscription emits [`CoordEvent::Resync`] and the runtime also
//! polls: a lost notification delays a reaction, it never loses one.

use std::time::Duration;

use futures::{stream, StreamExt};
use shardcron_coord::CoordEvent;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, info, warn};

/// Spawns the listener task; it runs until aborted. `ready` is told once
/// the first `LISTEN` is in place, so a caller can wait for it before its
/// first write (events of writes before it would be missed).
pub(crate) fn spawn_listener(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    events: broadcast::Sender<CoordEvent>,
    connect_timeout: Duration,
    ready: oneshot::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    let mut ready = Some(ready);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut was_connected = true;
        loop {
            match tokio::time::timeout(connect_timeout, config.connect(tls.clone())).await {
                Ok(Ok((client, mut connection))) => {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(message) = messages.next().await {
                            match message {
                                Ok(AsyncMessage::Notification(n)) => {
                                    if tx.send(n.payload().to_owned()).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    debug!(error = %e, "event connection failed");
                                    break;
                                }
                            }
                        }
                    });
                    let listen = format!("LISTEN \"{channel}\"");
                    match tokio::time::timeout(connect_timeout, client.batch_execute(&listen)).await
                    {
                        Ok(Ok(())) => {
                            if !was_connected {
                                info!(%channel, "event subscription restored");
                            }
                            was_connected = true;
                            backoff = Duration::from_millis(100);
                            let _ = events.send(CoordEvent::Resync);
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                            while let Some(payload) = rx.recv().await {
                                match CoordEvent::parse(&payload) {
                                    Some(event) => {
                                        let _ = events.send(event);
                                    }
                                    None => debug!(%payload, "ignoring unknown event"),
                                }
                            }
                        }
                        Ok(Err(e)) => debug!(error = %e, "LISTEN failed"),
                        Err(_) => debug!("LISTEN timed out"),
                    }
                    driver.abort();
                    if was_connected {
                        warn!("event subscription lost; polling continues");
                    }
                    was_connected = false;
                }
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
