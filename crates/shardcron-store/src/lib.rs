//! One entry point that opens any shardcron coordination store from a URL.
//!
//! Commands, the daemon and embedders should not care which store a fleet
//! runs on: the URL's scheme picks it (`redis://`/`rediss://`: Redis,
//! `redis+cluster://host:port[,host:port…]`: a Redis Cluster,
//! `rediss+cluster://…` for one reached over TLS,
//! `redis+sentinel://host:port[,host:port…]/<master>`: the master of a
//! Redis Sentinel group,
//! `postgres://`/`postgresql://`: PostgreSQL, `etcd://`/`etcds://`: etcd,
//! `host:port[,host:port…]`), and every caller gets the
//! same [`Coordinator`] behind an `Arc`. It lives in a crate of its own
//! because it depends on every store crate, which the coordination crate
//! (that defines the contract) cannot.

#![warn(missing_docs)]

use std::sync::Arc;

use shardcron_coord::{check_redis_url, redact_url, CoordError, Coordinator, RedisCoordinator};
use shardcron_core::RingConfig;
use shardcron_etcd::{redact_etcd_url, EtcdCoordinator};
use shardcron_postgres::PostgresCoordinator;

/// The URL schemes [`open_store`] accepts, as written before `://`.
pub const SUPPORTED_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "postgres",
    "postgresql",
    "etcd",
    "etcds",
    "redis+cluster",
    "redis+sentinel",
    "rediss+cluster",
];

/// Which store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Redis (`redis://`, `rediss://`; `redis+cluster://`,
    /// `rediss+cluster://` for a cluster, `redis+sentinel://` for a
    /// Sentinel group).
    Redis,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// etcd (`etcd://`, `etcds://` for TLS; several members comma-separated).
    Etcd,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL's scheme names no store this build supports.
    #[error(
        "unsupported store URL {url:?}: the scheme must be one of {}",
        supported_list()
    )]
    UnsupportedScheme {
        /// The URL, without any password.
        url: String,
    },
    /// The URL names a supported store but cannot be parsed (a bad port,
    /// an unknown option...): a configuration error, not worth retrying.
    #[error("invalid store URL {url:?}: {message}")]
    InvalidUrl {
        /// The URL, without any password.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store answered, or could not be reached.
    #[error(transparent)]
    Coord(#[from] CoordError),
}

fn supported_list() -> String {
    SUPPORTED_SCHEMES
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The store `url` names, by its scheme (case-insensitive).
pub fn store_kind(url: &str) -> Result<StoreKind, OpenError> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+sentinel") => {
            Ok(StoreKind::Redis)
        }
        Some("postgres" | "postgresql") => Ok(StoreKind::Postgres),
        Some("etcd" | "etcds") => Ok(StoreKind::Etcd),
        _ => Err(OpenError::UnsupportedScheme {
            url: redact_url(url),
        }),
    }
}

/// Connects to the store `url` names, in `namespace`, checking the ring
/// settings (and on PostgreSQL creating or migrating the namespace's
/// schema), with each store's default timeouts.
pub async fn open_store(
    url: &str,
    namespace: &str,
    ring: RingConfig,
) -> Result<Arc<dyn Coordinator>, OpenError> {
    Ok(match store_kind(url)? {
        StoreKind::Redis => {
            check_redis_url(url).map_err(|message| OpenError::InvalidUrl {
                url: redact_url(url),
                message,
            })?;
            Arc::new(RedisCoordinator::connect(url, namespace, ring).await?)
        }
        StoreKind::Postgres => {
            check_postgres_url(url)?;
            Arc::new(PostgresCoordinator::connect(url, namespace, ring).await?)
        }
        StoreKind::Etcd => {
            shardcron_etcd::parse_url(url).map_err(|message| OpenError::InvalidUrl {
                url: redact_etcd_url(url),
                message,
            })?;
            Arc::new(EtcdCoordinator::connect(url, namespace, ring).await?)
        }
    })
}

/// Refuses a PostgreSQL URL its client cannot parse, before any connection
/// is tried: a typo in the URL is not an unreachable server.
fn check_postgres_url(url: &str) -> Result<(), OpenError> {
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| OpenError::InvalidUrl {
            url: redact_url(url),
            message: with_causes(&e),
        })
}

/// An error's text followed by its causes' (`error: cause: cause`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_store() {
        assert_eq!(store_kind("redis://h:1").ok(), Some(StoreKind::Redis));
        assert_eq!(store_kind("rediss://h:1").ok(), Some(StoreKind::Redis));
        assert_eq!(
            store_kind("rediss+cluster://h:1,h:2").ok(),
            Some(StoreKind::Redis)
        );
        assert_eq!(
            store_kind("postgres://u@h/db").ok(),
            Some(StoreKind::Postgres)
        );
        assert_eq!(
            store_kind("PostgreSQL://u@h/db").ok(),
            Some(StoreKind::Postgres)
        );
        assert_eq!(store_kind("etcd://h:1,h:2").ok(), Some(StoreKind::Etcd));
        assert_eq!(store_kind("ETCDS://h:1").ok(), Some(StoreKind::Etcd));
        for bad in ["mysql://u:secret@h/db", "h:6379", ""] {
            let err = store_kind(bad).expect_err(bad).to_string();
            assert!(
                err.contains("redis://, rediss://, postgres://, postgresql://, etcd://, etcds://"),
                "{err}"
            );
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_malformed_postgres_url_is_invalid_not_unreachable() {
        let err = open_store(
            "postgres://u:secret@127.0.0.1:notaport/db",
            "x",
            RingConfig::default(),
        )
        .await
        .err();
        assert!(matches!(err, Some(OpenError::InvalidUrl { .. })), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("invalid value for option `port`"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn a_malformed_etcd_url_is_invalid_not_unreachable() {
        let err = open_store(
            "etcd://u:secret@127.0.0.1:notaport",
            "x",
            RingConfig::default(),
        )
        .await
        .err();
        assert!(matches!(err, Some(OpenError::InvalidUrl { .. })), "{err:?}");
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("invalid port"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn an_unknown_scheme_connects_to_nothing() {
        let err = open_store("memcached://127.0.0.1:1", "x", RingConfig::default())
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unsupported store URL"), "{err}");
    }
}
