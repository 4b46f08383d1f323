//! Connecting one-shot commands to the coordination store.
//!
//! A namespace's ring settings are fixed by the first node that used it, and
//! `RedisCoordinator::connect` refuses other values. A one-shot command (`job
//! put`, `status`) has no config of its own and must use the namespace's
//! settings, since the shard of a job depends on the shard count. The URL's
//! scheme picks the store (`shardcron_store::open_store`). It starts
//! from the defaults and, when the namespace answers with a mismatch, adopts
//! the stored value and connects again. (On a fresh namespace the defaults are
//! stored, exactly as a worker without a config would.)

use std::sync::Arc;

use shardcron_coord::{redact_url, CoordError, Coordinator};
use shardcron_core::RingConfig;
use shardcron_store::{open_store, OpenError};

use crate::exit::CliError;

/// Where a command works: the store URL and the namespace (global flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Store URL (`--store`, or `--redis`).
    pub url: String,
    /// Namespace.
    pub namespace: String,
}

impl Target {
    /// Connects a one-shot command (see [`connect_one_shot`]).
    pub async fn connect(&self) -> Result<Arc<dyn Coordinator>, CliError> {
        connect_one_shot(&self.url, &self.namespace).await
    }
}

/// Connects to `url`/`namespace` with the namespace's own ring settings.
pub async fn connect_one_shot(
    url: &str,
    namespace: &str,
) -> Result<Arc<dyn Coordinator>, CliError> {
    let mut ring = RingConfig::default();
    for _ in 0..4 {
        match open_store(url, namespace, ring).await {
            Ok(coordinator) => return Ok(coordinator),
            // A schema newer than this binary is not a setting to adopt.
            Err(OpenError::Coord(CoordError::ConfigMismatch { field, stored, .. }))
                if field != "schema_version" =>
            {
                let value: u32 = stored.parse().map_err(|_| {
                    CliError::failure(format!(
                        "namespace {namespace:?} at {} has an unreadable {field} {stored:?}",
                        redact_url(url)
                    ))
                })?;
                match field.as_str() {
                    "shard_count" => ring.shard_count = value,
                    "vnodes" => ring.vnodes = value,
                    other => {
                        return Err(CliError::failure(format!(
                            "namespace {namespace:?} has an unknown ring setting {other:?}"
                        )))
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::failure(format!(
        "could not agree on the ring settings of namespace {namespace:?}"
    )))
}
