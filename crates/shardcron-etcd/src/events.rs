//! Namespace events from one etcd watch.
//!
//! The watch covers the `e/` keys only (members, shard leases, shard
//! versions), not the shard documents every claim rewrites:
//!
//! | change | event |
//! |---|---|
//! | `e/member/<id>` created | `MemberJoined(id)` |
//! | `e/member/<id>` deleted (leave, or its etcd lease expired) | `MemberLeft(id)` |
//! | `e/lease/<n>` deleted (release, or expiry) | `LeaseReleased(n)` |
//! | `e/ver/<n>` written (a job write, a trigger, a hand-back) | `JobsChanged(n)` |
//!
//! Every (re)subscription emits `Resync`. After a broken stream the watch
//! resumes at the revision after the last event seen, so nothing is
//! skipped; if etcd compacted that revision away (the watch answers with a
//! compact revision, or is cancelled) the gap cannot be replayed, so the
//! task emits `Resync` (the runtime re-reads everything) and watches from
//! the current revision: never a silent gap. Events are a fast path; the
//! runtime polls as well.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};
use shardcron_coord::CoordEvent;
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, warn};

use crate::keys::{suffix, Keys};

/// Spawns the watch task; `ready` fires once the first watch is in place.
pub(crate) fn spawn_watch(
    client: Client,
    keys: Keys,
    events: broadcast::Sender<CoordEvent>,
    ready: oneshot::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut next_revision: i64 = 0;
        let mut backoff = Duration::from_millis(100);
        let prefix = keys.events_prefix();
        loop {
            let mut watch_client = client.watch_client();
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(next_revision);
            match watch_client.watch(prefix.as_str(), Some(options)).await {
                Ok((_watcher, mut stream)) => {
                    backoff = Duration::from_millis(100);
                    let _ = events.send(CoordEvent::Resync);
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    loop {
                        match stream.message().await {
                            Ok(Some(reply)) => {
                                if reply.compact_revision() > 0 || reply.canceled() {
                                    debug!(
                                        compacted = reply.compact_revision(),
                                        "watch lost its history; resyncing"
                                    );
                                    let _ = events.send(CoordEvent::Resync);
                                    next_revision = 0;
                                    break;
                                }
                                for event in reply.events() {
                                    let Some(kv) = event.kv() else { continue };
                                    next_revision = next_revision.max(kv.mod_revision() + 1);
                                    if let Some(e) = to_event(&keys, event.event_type(), kv) {
                                        let _ = events.send(e);
                                    }
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(error = %e, "etcd watch lost; polling continues");
                                break;
                            }
                        }
                    }
                }
                Err(e) => debug!(error = %e, "etcd watch failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// The event a change of an `e/` key means, if any.
fn to_event(keys: &Keys, kind: EventType, kv: &etcd_client::KeyValue) -> Option<CoordEvent> {
    let key = kv.key();
    if let Some(id) = suffix(key, &keys.member_prefix()) {
        return match kind {
            EventType::Put if kv.version() == 1 => Some(CoordEvent::MemberJoined(id.to_owned())),
            EventType::Delete => Some(CoordEvent::MemberLeft(id.to_owned())),
            EventType::Put => None,
        };
    }
    if let Some(n) = suffix(key, &keys.lease_prefix()) {
        return match kind {
            EventType::Delete => Some(CoordEvent::LeaseReleased(n.parse().ok()?)),
            EventType::Put => None,
        };
    }
    if let Some(n) = suffix(key, &keys.ver_prefix()) {
        return match kind {
            EventType::Put => Some(CoordEvent::JobsChanged(n.parse().ok()?)),
            EventType::Delete => None,
        };
    }
    None
}
