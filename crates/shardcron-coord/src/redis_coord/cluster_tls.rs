//! A Redis Cluster over TLS: `rediss+cluster://h:p[,h:p…]`.
//!
//! Why a scheme of its own rather than `redis+cluster://` plus the TLS
//! options: a cluster's nodes are found through the seeds, and the client
//! connects to every node it discovers (`CLUSTER SLOTS`) the way it reached
//! the seeds. TLS is therefore a property of the whole cluster, not of one
//! address, and the scheme says it as `rediss://` says it for one server.
//! The seeds become `rediss://` node URLs; the certificates that
//! `tls_ca`, `tls_cert` and `tls_key` name (read by `tls_options.rs`) go to
//! the cluster client, which uses them for every node, to the slot map the
//! link reads on that client, and to the event listener's clients.
//!
//! The nodes must announce their TLS port in `CLUSTER SLOTS` and
//! `CLUSTER NODES`, which Redis does with `tls-cluster yes` (and, for
//! replicas to sync over TLS, `tls-replication yes`); a cluster whose nodes
//! also listen in plain TCP and announce that port would be reached on it
//! and fail the handshake.

use redis::cluster::ClusterClientBuilder;

use super::conn::CLUSTER_SCHEME;
use super::tls_options::StoreTls;

/// URL scheme of a Redis Cluster reached over TLS.
pub const TLS_CLUSTER_SCHEME: &str = "rediss+cluster://";

/// For a cluster URL, what follows its scheme and the scheme of its node
/// URLs (`redis://` or `rediss://`); `None` for any other URL.
pub(crate) fn cluster_seeds(url: &str) -> Option<(&str, &'static str)> {
    if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
        Some((rest, "redis://"))
    } else {
        url.strip_prefix(TLS_CLUSTER_SCHEME)
            .map(|rest| (rest, "rediss://"))
    }
}

/// `builder` with `tls`'s certificates, for a `rediss+cluster://` store.
pub(crate) fn with_certs(
    builder: ClusterClientBuilder,
    tls: Option<&StoreTls>,
) -> ClusterClientBuilder {
    match tls {
        Some(tls) => tls.cluster_builder(builder),
        None => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_cluster_urls_name_rediss_seeds() {
        assert_eq!(
            cluster_seeds("rediss+cluster://h:1,h:2"),
            Some(("h:1,h:2", "rediss://"))
        );
        assert_eq!(
            cluster_seeds("redis+cluster://h:1"),
            Some(("h:1", "redis://"))
        );
        assert_eq!(cluster_seeds("rediss://h:1"), None);
        let t =
            super::super::conn::parse_target("rediss+cluster://u:p@h1:7000,h2:7001?min_replicas=1")
                .unwrap();
        assert!(t.cluster);
        assert_eq!(t.nodes, ["rediss://u:p@h1:7000", "rediss://u:p@h2:7001"]);
        assert_eq!(t.min_replicas, Some(1));
    }
}
