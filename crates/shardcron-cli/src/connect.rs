//! Connecting one-shot commands to Redis.
//!
//! A namespace's ring settings are fixed by the first node that used it, and
//! `RedisCoordinator::connect` refuses other values. A one-shot command (`job
//! put`, `status`) has no config of its own and must use the namespace's
//! settings, since the shard of a job depends on the shard count. It starts
//! from the defaults and, when the namespace answers with a mismatch, adopts
//! the stored value and connects again. (On a fresh namespace the defaults are
//! stored, exactly as a worker without a config would.)

use shardcron_coord::{redact_url, CoordError, RedisCoordinator, RedisOptions};
use shardcron_core::RingConfig;

use crate::exit::CliError;

/// Where a command works: the Redis URL and the namespace (global flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `redis://` URL.
    pub redis: String,
    /// Namespace.
    pub namespace: String,
}

impl Target {
    /// Connects a one-shot command (see [`connect_one_shot`]).
    pub async fn connect(&self) -> Result<RedisCoordinator, CliError> {
        connect_one_shot(&self.redis, &self.namespace).await
    }
}

/// Connects to `url`/`namespace` with the namespace's own ring settings.
pub async fn connect_one_shot(url: &str, namespace: &str) -> Result<RedisCoordinator, CliError> {
    let mut ring = RingConfig::default();
    for _ in 0..4 {
        match RedisCoordinator::connect_with(RedisOptions::new(url, namespace, ring)).await {
            Ok(coordinator) => return Ok(coordinator),
            Err(CoordError::ConfigMismatch { field, stored, .. }) => {
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
