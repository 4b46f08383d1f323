//! The connection to the store: one server, or a Redis Cluster.
//!
//! Both are behind [`StoreConn`], so every operation is written once. What
//! differs is what may share one request: a server takes a pipeline of
//! commands of any keys; a cluster routes each command by the slot of its
//! keys, refuses a script whose keys span slots (`CROSSSLOT`), and its
//! client sends a pipeline to one slot only. [`StoreConn::pipeline`]
//! therefore splits a pipeline by slot on a cluster and sends the parts in
//! parallel (each is one round trip to its node, and they overlap), then
//! puts the replies back in the pipeline's order. Callers build every
//! command to fit one slot (see `by_slot` in the coordinator).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use crate::scripts::Scripts;

/// URL scheme of a Redis Cluster store.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A connection to a server or to a cluster; cheap to clone (both are
/// multiplexed and reconnect by themselves).
#[derive(Clone)]
pub(crate) enum StoreConn {
    /// One server (`redis://`).
    Single(ConnectionManager),
    /// A Redis Cluster (`redis+cluster://`).
    Cluster(ClusterConnection),
}

/// What a store URL names.
pub(crate) struct Target {
    /// `redis://` URLs of the nodes: one for a server, the seeds of a cluster.
    pub nodes: Vec<String>,
    /// Whether it is a cluster.
    pub cluster: bool,
}

/// Reads a store URL: `redis://…` (one server) or
/// `redis+cluster://[user:pass@]h:p[,h:p…]` (a cluster, through any of
/// these seed nodes). Returns why a URL is unusable.
pub(crate) fn parse_target(url: &str) -> Result<Target, String> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return Ok(Target {
            nodes: vec![url.to_owned()],
            cluster: false,
        });
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let (hosts, tail) = match hosts.find(['/', '?']) {
        Some(i) => hosts.split_at(i),
        None => (hosts, ""),
    };
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "a cluster URL takes no database or options after its hosts, found {tail:?}"
        ));
    }
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("redis://{auth}{h}"))
        .collect();
    if nodes.is_empty() {
        return Err(
            "a cluster URL names no host (redis+cluster://host:port[,host:port...])".into(),
        );
    }
    for node in &nodes {
        redis::parse_redis_url(node)
            .ok_or_else(|| format!("bad cluster node address in {hosts:?}"))?;
    }
    Ok(Target {
        nodes,
        cluster: true,
    })
}

/// Checks a Redis store URL before any connection: `Err` says what is
/// wrong with it (a cluster URL without hosts, a bad node address, a path
/// or options after a cluster's hosts).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let target = parse_target(url)?;
    for node in &target.nodes {
        redis::Client::open(node.as_str()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl StoreConn {
    /// Connects to `target` with these timeouts.
    pub async fn open(
        target: &Target,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        if target.cluster {
            let client = ClusterClientBuilder::new(target.nodes.clone())
                .response_timeout(response_timeout)
                .connection_timeout(connect_timeout)
                .retries(2)
                .max_retry_wait(500)
                .build()?;
            Ok(Self::Cluster(client.get_async_connection().await?))
        } else {
            let node = target.nodes.first().map(String::as_str).unwrap_or_default();
            let client = redis::Client::open(node)?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(connect_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            Ok(Self::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// Whether this is a cluster (commands must keep to one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs `pipe`, split by slot on a cluster; after a server restart
    /// (empty script cache) loads the scripts and retries once.
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        match self {
            Self::Single(_) => self.pipeline_once(pipe).await,
            Self::Cluster(_) => {
                let mut parts: Vec<(Pipeline, Vec<usize>)> = Vec::new();
                let mut part_of: HashMap<Option<Slot>, usize> = HashMap::new();
                for (i, cmd) in pipe.cmd_iter().enumerate() {
                    let slot = first_key(cmd).map(Slot::for_key);
                    let part = *part_of.entry(slot).or_insert_with(|| {
                        parts.push((redis::pipe(), Vec::new()));
                        parts.len() - 1
                    });
                    parts[part].0.add_command(cmd.clone());
                    parts[part].1.push(i);
                }
                let replies =
                    try_join_all(parts.iter().map(|(part, _)| self.pipeline_once(part))).await?;
                let mut out = vec![Value::Nil; pipe.len()];
                for ((_, indices), values) in parts.iter().zip(replies) {
                    for (&i, value) in indices.iter().zip(values) {
                        out[i] = value;
                    }
                }
                Ok(out)
            }
        }
    }

    async fn pipeline_once(&self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        let mut conn = self.clone();
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!("script cache empty, loading scripts");
                // On a cluster, SCRIPT LOAD goes to every master.
                for source in Scripts::sources() {
                    let _: Value = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(source)
                        .query_async(&mut conn)
                        .await?;
                }
                pipe.query_async(&mut conn).await
            }
            other => other,
        }
    }
}

/// The first key of a command: after the script hash and key count of an
/// `EVALSHA`/`EVAL`, else its first argument. `None` for a keyless command.
fn first_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(bytes) => Some(bytes.to_vec()),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    match name.as_slice() {
        b"EVALSHA" | b"EVAL" => {
            let _hash = args.next()?;
            let count = args.next()?;
            (count.as_slice() != b"0").then(|| args.next()).flatten()
        }
        b"TIME" | b"PING" | b"SCRIPT" | b"WAIT" => None,
        _ => args.next(),
    }
}

impl ConnectionLike for StoreConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        let t = parse_target("redis+cluster://u:p@h1:7000,h2:7001").unwrap();
        assert!(t.cluster);
        assert_eq!(t.nodes, ["redis://u:p@h1:7000", "redis://u:p@h2:7001"]);
        let t = parse_target("redis://h:1/0").unwrap();
        assert!(!t.cluster);
        assert!(parse_target("redis+cluster://").is_err());
        assert!(parse_target("redis+cluster://h:1/3").is_err());
    }

    #[test]
    fn keys_of_scripts_and_commands() {
        let mut c = redis::cmd("EVALSHA");
        c.arg("abc").arg(2).arg("{a:1}:lease").arg("{a:1}:x");
        assert_eq!(first_key(&c).as_deref(), Some(&b"{a:1}:lease"[..]));
        let mut c = redis::cmd("GET");
        c.arg("k");
        assert_eq!(first_key(&c).as_deref(), Some(&b"k"[..]));
        assert_eq!(first_key(&redis::cmd("TIME")), None);
    }
}
