//! The etcd client with the store's timeouts, error mapping and the few
//! request shapes every module uses.
//!
//! Every request is bounded by the response timeout (no reply in time is
//! `Unreachable`, like a lost Redis reply), and batched reads and writes
//! are split so that no transaction exceeds [`MAX_OPS`] operations: the
//! store requires etcd's `--max-txn-ops` to be at least that (the default
//! is 128).

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use shardcron_coord::{CoordError, CoordResult};

use crate::error::{map_err, timed_out};
use crate::keys::prefix_end;

/// Operations per transaction the store sends at most (reads and writes
/// alike). etcd must allow this many (`--max-txn-ops`, default 128).
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

    /// One transaction.
    pub(crate) async fn txn(&self, op: &'static str, txn: Txn) -> CoordResult<TxnResponse> {
        let mut client = self.client();
        self.call(op, client.txn(txn)).await
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
        let mut client = self.client();
        let mut response = self.call(op, client.get(key, Some(options))).await?;
        Ok(response.take_kvs())
    }

    /// Sends `txns` (each with its own compares) nested in as few outer
    /// transactions as [`MAX_OPS`] allows; per inner transaction, whether
    /// its compares held (and so its writes applied).
    pub(crate) async fn txns(&self, op: &'static str, txns: Vec<Txn>) -> CoordResult<Vec<bool>> {
        let mut out = Vec::with_capacity(txns.len());
        let mut rest = txns.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<TxnOp> = rest.by_ref().take(MAX_OPS).map(TxnOp::txn).collect();
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
