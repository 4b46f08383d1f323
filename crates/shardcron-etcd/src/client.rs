//! The etcd client with the store's timeouts, error mapping and the few
//! request shapes every module uses.
//!
//! Every request is bounded by the response timeout (no reply in time is
//! `Unreachable`, like a lost Redis reply), and batched reads and writes
//! are split so that no transaction exceeds [`MAX_OPS`] operations, etcd's
//! default `--max-txn-ops`: the store needs no server setting.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use shardcron_coord::{CoordError, CoordResult};

use crate::error::{map_err, timed_out};
use crate::keys::prefix_end;

/// Operations per transaction the store sends at most (reads and writes
/// alike): etcd's default `--max-txn-ops`.
pub const MAX_OPS: usize = 128;

/// A connected client and how to reach it.
#[derive(Clone)]
pub(crate) struct Etcd {
    client: Client,
    /// The store URL, for messages.
    pub(crate) url: String,
    timeout: Duration,
}

impl Etcd {
    /// Wraps a client.
    pub(crate) fn new(client: Client, url: String, timeout: Duration) -> Self {
        Self {
            client,
            url,
            timeout,
        }
    }

    /// A clone of the client (cheap: clones share the connection).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs one request under the response timeout.
    pub(crate) async fn call<T, F>(&self, op: &'static str, request: F) -> CoordResult<T>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(map_err(&self.url, op, e)),
            Err(_) => Err(timed_out(&self.url, op)),
        }
    }

    /// One transaction. A request that never reached a member (the
    /// connection to the member the client picked could not be made: a
    /// dead member of a cluster) is sent again, up to twice, which the
    /// client routes to another member; a request that may have reached
    /// one is never repeated here (its fate is the caller's to resolve).
    pub(crate) async fn txn(&self, op: &'static str, txn: Txn) -> CoordResult<TxnResponse> {
        let mut tries = 0;
        loop {
            let mut client = self.client();
            match self.call(op, client.txn(txn.clone())).await {
                Err(e) if tries < 2 && never_sent(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Reads `keys` (at most [`MAX_OPS`] per transaction; each transaction is
    /// one consistent snapshot): the key-value of each, `None` if absent.
    pub(crate) async fn get_many(
        &self,
        op: &'static str,
        keys: &[String],
    ) -> CoordResult<Vec<Option<KeyValue>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_OPS) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
            let response = self.txn(op, Txn::new().and_then(ops)).await?;
            for r in response.op_responses() {
                match r {
                    TxnOpResponse::Get(mut get) => out.push(get.take_kvs().into_iter().next()),
                    _ => return Err(unexpected(op)),
                }
            }
        }
        if out.len() != keys.len() {
            return Err(unexpected(op));
        }
        Ok(out)
    }

    /// Every key-value whose key starts with `prefix`, from `start` (or the
    /// prefix) on, in key order, at most `limit` (0: all).
    pub(crate) async fn range(
        &self,
        op: &'static str,
        prefix: &str,
        start: Option<Vec<u8>>,
        limit: i64,
        keys_only: bool,
    ) -> CoordResult<Vec<KeyValue>> {
        let mut options = GetOptions::new().with_range(prefix_end(prefix));
        if limit > 0 {
            options = options.with_limit(limit);
        }
        if keys_only {
            options = options.with_keys_only();
        }
        let key = start.unwrap_or_else(|| prefix.as_bytes().to_vec());
        let txn = Txn::new().and_then([TxnOp::get(key, Some(options))]);
        let response = self.txn(op, txn).await?;
        match response.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(mut get)) => Ok(get.take_kvs()),
            _ => Err(unexpected(op)),
        }
    }

    /// Sends `txns` (each with its own compares) nested in as few outer
    /// transactions as [`MAX_OPS`] allows; per inner transaction, whether
    /// its compares held (and so its writes applied). etcd counts a nested
    /// transaction's operations against what its parent leaves of the
    /// limit, so an outer transaction carries at most half the limit, and
    /// each inner one (a few compares and writes) fits in the other half.
    pub(crate) async fn txns(&self, op: &'static str, txns: Vec<Txn>) -> CoordResult<Vec<bool>> {
        self.txns_sized(op, txns.into_iter().map(|t| (t, 0)).collect())
            .await
    }

    /// [`Self::txns`] for transactions of known payload sizes (bytes
    /// written): an outer transaction also stays under [`MAX_TXN_BYTES`],
    /// well within etcd's default request limit (1.5 MiB).
    pub(crate) async fn txns_sized(
        &self,
        op: &'static str,
        txns: Vec<(Txn, usize)>,
    ) -> CoordResult<Vec<bool>> {
        let mut out = Vec::with_capacity(txns.len());
        let mut rest = txns.into_iter().peekable();
        while rest.peek().is_some() {
            let mut chunk: Vec<TxnOp> = Vec::new();
            let mut bytes = 0;
            while let Some((_, size)) = rest.peek() {
                let full = chunk.len() >= MAX_OPS / 2
                    || (!chunk.is_empty() && bytes + size > MAX_TXN_BYTES);
                if full {
                    break;
                }
                let Some((txn, size)) = rest.next() else {
                    break;
                };
                bytes += size;
                chunk.push(TxnOp::txn(txn));
            }
            let response = self.txn(op, Txn::new().and_then(chunk)).await?;
            for r in response.op_responses() {
                match r {
                    TxnOpResponse::Txn(inner) => out.push(inner.succeeded()),
                    _ => return Err(unexpected(op)),
                }
            }
        }
        Ok(out)
    }
}

/// Bytes written per outer transaction at most (a single larger write
/// still goes alone).
pub(crate) const MAX_TXN_BYTES: usize = 1024 * 1024;

/// Whether a request failed before any member could have received it.
pub(crate) fn never_sent(error: &CoordError) -> bool {
    matches!(error, CoordError::Unreachable { message, .. }
        if message.contains("tcp connect error") || message.contains("Connection refused"))
}

/// A reply of a shape the request cannot produce.
pub(crate) fn unexpected(op: &'static str) -> CoordError {
    CoordError::Corrupt {
        what: format!("etcd reply to {op}"),
        message: "unexpected response shape".into(),
    }
}

/// Text of a value, or a `Corrupt` error naming it.
pub(crate) fn text<'a>(kv: &'a KeyValue, what: &str) -> CoordResult<&'a str> {
    std::str::from_utf8(kv.value()).map_err(|e| crate::error::corrupt(what, e))
}

/// JSON of a value, or a `Corrupt` error naming it.
pub(crate) fn json<T: serde::de::DeserializeOwned>(kv: &KeyValue, what: &str) -> CoordResult<T> {
    serde_json::from_slice(kv.value()).map_err(|e| crate::error::corrupt(what, e))
}

/// Serialises a value to store, or a `Corrupt` error naming it.
pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> CoordResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| crate::error::corrupt(what, e))
}

/// The node's clock, Unix ms: the only clock the etcd store has (see the
/// crate docs for why that is enough).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A duration in ms.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An etcd lease TTL for `d`: whole seconds, rounded up, at least 1. etcd
/// may lengthen it further (its minimum TTL); never shortens it.
pub(crate) fn ttl_secs(d: Duration) -> i64 {
    let ms = ms(d);
    ((ms + 999) / 1000).max(1)
}
