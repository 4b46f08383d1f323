//! Self-compaction: the store keeps etcd's history bounded by itself.
//!
//! Why: etcd keeps every revision of every key until it is compacted, and
//! every claim writes (its shard's state). An etcd without
//! `--auto-compaction-*` (the default) keeps all of it, reaches its backend
//! quota (2 GiB by default) and then refuses every write (alarm `NOSPACE`)
//! until an operator compacts, defragments and disarms the alarm: at
//! 1,000 fires/s in about 5 minutes. A store that needs a server setting
//! to survive is one deployment mistake away from stopping, so the store
//! compacts its own cluster.
//!
//! How: one key, `compact`, holds `revision|at_ms`: the cluster's revision
//! when some node last compacted, and that node's clock then. Every node
//! checks it every half interval (with a random jitter, so the nodes do
//! not check in lockstep); the first to find it at least one interval old
//! replaces it by compare-and-set (its mod revision, as read) with the
//! current revision and time, and only the node whose compare-and-set
//! applied compacts, to the revision the key held. So there is one
//! compaction per interval for the whole fleet, and it keeps at least one
//! interval of history (between one and about two and a half intervals).
//!
//! Why it cannot hurt exactly-once: every decision of the store reads the
//! newest revision (linearizable reads) and compares mod revisions of
//! keys as they are now; compaction removes only superseded revisions,
//! never a key's current value or mod revision. The only readers of old
//! revisions are watches: a watch further behind than the kept history is
//! cancelled by etcd as compacted, and the event watch then resyncs
//! ([`crate::events`]), as it does after any gap. A node clock that is
//! wrong only moves when compaction happens (a clock ahead compacts
//! early, still to a revision read one check earlier); never what is
//! compacted away beyond superseded revisions.
//!
//! Compaction frees pages inside etcd's database file and new writes reuse
//! them, so the file stops growing; it does not shrink the file.
//! Defragmenting (`etcdctl defrag`, one member at a time: it blocks the
//! member while it runs) gives the space back to the file system, and is
//! only needed after a history that grew unbounded before (see
//! docs/RELIABILITY.md, "On etcd").
//!
//! If etcd already raised `NOSPACE`, the compare-and-set (a write) is
//! refused; the node then compacts to the revision the key holds anyway
//! (compaction is allowed under the alarm), so an operator's defragment
//! and `etcdctl alarm disarm` suffice to bring the store back.

use std::time::Duration;

use etcd_client::{CompactionOptions, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use shardcron_coord::CoordResult;

use crate::client::{ms, now_ms, unexpected, Etcd};
use crate::keys::Keys;

/// What one check did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compacted {
    /// The last compaction (or the first record) is younger than the
    /// interval, or another node's compare-and-set won: nothing done.
    NotDue,
    /// The first check of a namespace: the revision was recorded, and the
    /// next check an interval later compacts to it.
    Recorded,
    /// History before this revision was compacted (or already had been).
    To(i64),
}

/// `revision|at_ms`.
fn parse(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (revision, at) = text.split_once('|')?;
    Some((revision.parse().ok()?, at.parse().ok()?))
}

/// One check: compacts the history older than the revision recorded at
/// the previous compaction if that is at least `interval` old (see the
/// [module docs](self)).
pub(crate) async fn compact_once(
    etcd: &Etcd,
    keys: &Keys,
    interval: Duration,
) -> CoordResult<Compacted> {
    const OP: &str = "compact history";
    let key = keys.compact();
    let reply = etcd
        .txn(OP, Txn::new().and_then([TxnOp::get(key.as_str(), None)]))
        .await?;
    let head = reply.header().map_or(0, |h| h.revision());
    let kv = match reply.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(mut get)) => get.take_kvs().into_iter().next(),
        _ => return Err(unexpected(OP)),
    };
    let now = now_ms();
    let (read_rev, previous) = match &kv {
        Some(kv) => (kv.mod_revision(), parse(kv.value())),
        None => (0, None),
    };
    if let Some((_, at)) = previous {
        if now.saturating_sub(at) < ms(interval) {
            return Ok(Compacted::NotDue);
        }
    }
    let record = format!("{head}|{now}");
    let claimed = Txn::new()
        .when([Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            read_rev,
        )])
        .and_then([TxnOp::put(key.as_str(), record, None)]);
    match etcd.txn(OP, claimed).await {
        Ok(reply) if !reply.succeeded() => return Ok(Compacted::NotDue),
        Ok(_) => {}
        // Under NOSPACE the record cannot move; compacting to what it
        // holds is still allowed and frees what the alarm is about.
        Err(e) if !is_no_space(&e) => return Err(e),
        Err(_) => {}
    }
    let Some((revision, _)) = previous.filter(|(r, _)| *r > 0) else {
        return Ok(Compacted::Recorded);
    };
    let mut client = etcd.client();
    match etcd
        .call(OP, client.compact(revision, Some(CompactionOptions::new())))
        .await
    {
        Ok(_) => Ok(Compacted::To(revision)),
        Err(e) if already_compacted(&e) => Ok(Compacted::To(revision)),
        Err(e) => Err(e),
    }
}

/// Whether etcd refused a write for its quota (alarm `NOSPACE`).
pub(crate) fn is_no_space(error: &shardcron_coord::CoordError) -> bool {
    error.to_string().contains("database space exceeded")
}

/// Whether a compaction found its revision already compacted (by another
/// node's earlier compaction or by the server's own auto-compaction).
fn already_compacted(error: &shardcron_coord::CoordError) -> bool {
    error
        .to_string()
        .contains("required revision has been compacted")
}

/// Runs [`compact_once`] every half `interval` (± a quarter, random)
/// until aborted. Failures are left to the next check: a store that is
/// unreachable now has nothing to compact that cannot wait.
pub(crate) fn spawn_compactor(
    etcd: Etcd,
    keys: Keys,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(jittered(interval / 2)).await;
            let _ = compact_once(&etcd, &keys, interval).await;
        }
    })
}

/// `d` scaled by a random factor in [0.75, 1.25).
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let per_mille = 750 + hasher.finish() % 500;
    d.mul_f64(per_mille as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_jitter_stays_in_range() {
        assert_eq!(parse(b"42|1700000000000"), Some((42, 1_700_000_000_000)));
        assert_eq!(parse(b"42"), None);
        assert_eq!(parse(b"x|1"), None);
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(4));
            assert!(d >= Duration::from_secs(3) && d < Duration::from_secs(5));
        }
    }
}
