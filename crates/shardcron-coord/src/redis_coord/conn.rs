//! The connection to the store: one server, a Redis Cluster, or the master
//! of a Redis Sentinel group (see `sentinel_link.rs`).
//!
//! All are behind [`StoreConn`], so every operation is written once. What
//! differs is what may share one request: a server takes a pipeline of
//! commands of any keys; a cluster serves each slot on one node and refuses
//! a command or script whose keys span slots (`CROSSSLOT`).
//! [`StoreConn::pipeline`] therefore splits a pipeline by node on a cluster
//! (with the slot map the link keeps) and sends the parts in parallel (each
//! one round trip to its node, and they overlap), then puts the replies back
//! in the pipeline's order. Callers build every command to fit one slot (see
//! `by_slot` in the coordinator).

use std::collections::HashMap;
use std::time::Duration;

use futures::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};

use super::cluster_link::{key_slot, ClusterLink};
use super::cluster_tls::{cluster_seeds, with_certs};
use super::sentinel_link::{parse_sentinel_url, SentinelLink, SentinelTarget, SENTINEL_SCHEME};
use super::tls_options::{client, take_tls_options, StoreTls};
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
    Cluster(ClusterLink),
    /// The master of a Sentinel group (`redis+sentinel://`).
    Sentinel(SentinelLink),
}

/// What a store URL names.
pub(crate) struct Target {
    /// `redis://` URLs of the nodes: one for a server, the seeds of a cluster.
    pub nodes: Vec<String>,
    /// Whether it is a cluster.
    pub cluster: bool,
    /// The sentinels and master name of a `redis+sentinel://` URL.
    pub sentinel: Option<SentinelTarget>,
    /// `min_replicas=N`: replicas that must have a claim or a lease
    /// acquisition before it counts (`None`: the topology's default).
    pub min_replicas: Option<u32>,
    /// `replica_wait_ms=N`: how long a `WAIT` may take.
    pub replica_wait_ms: Option<u64>,
}

/// Takes shardcron's own options (`min_replicas`, `replica_wait_ms`) out of
/// a URL's query; the rest stays for the Redis client.
fn own_options(url: &str) -> Result<(String, Option<u32>, Option<u64>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut min_replicas, mut wait_ms) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "min_replicas" => {
                min_replicas = Some(value.parse().map_err(|_| {
                    format!("min_replicas must be a whole number of replicas, got {value:?}")
                })?)
            }
            "replica_wait_ms" => {
                let ms: u64 = value.parse().map_err(|_| {
                    format!("replica_wait_ms must be a whole number of ms, got {value:?}")
                })?;
                if ms == 0 {
                    return Err("replica_wait_ms must be above 0 (WAIT 0 waits forever)".into());
                }
                wait_ms = Some(ms)
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, min_replicas, wait_ms))
}

/// Reads a store URL: `redis://…` (one server) or
/// `redis+cluster://[user:pass@]h:p[,h:p…]` (a cluster, through any of
/// these seed nodes; `rediss+cluster://` over TLS) or
/// `redis+sentinel://…/<master-name>` (see `sentinel_link.rs`). Returns why
/// a URL is unusable.
pub(crate) fn parse_target(url: &str) -> Result<Target, String> {
    let (url, min_replicas, replica_wait_ms) = own_options(url)?;
    if let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) {
        return Ok(Target {
            nodes: Vec::new(),
            cluster: false,
            sentinel: Some(parse_sentinel_url(rest)?),
            min_replicas,
            replica_wait_ms,
        });
    }
    let Some((rest, node_scheme)) = cluster_seeds(&url) else {
        return Ok(Target {
            nodes: vec![url.clone()],
            cluster: false,
            sentinel: None,
            min_replicas,
            replica_wait_ms,
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
            "a cluster URL takes no database or options after its hosts but min_replicas and replica_wait_ms, found {tail:?}"
        ));
    }
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("{node_scheme}{auth}{h}"))
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
        sentinel: None,
        min_replicas,
        replica_wait_ms,
    })
}

/// Checks a Redis store URL before any connection: `Err` says what is
/// wrong with it (a cluster URL without hosts, a bad node address, a path
/// or options after a cluster's hosts, a TLS option's file unusable).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let (url, tls) = take_tls_options(url)?;
    let target = parse_target(&url)?;
    for node in &target.nodes {
        client(node, tls.as_ref()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

impl StoreConn {
    /// Connects to `target` (with `tls`'s certificates for a `rediss://`
    /// server or a `rediss+cluster://` cluster) with these timeouts.
    pub async fn open(
        target: &Target,
        tls: Option<&StoreTls>,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        if let Some(sentinel) = &target.sentinel {
            let link = SentinelLink::connect(sentinel, response_timeout, connect_timeout).await?;
            return Ok(Self::Sentinel(link));
        }
        if target.cluster {
            let builder = ClusterClientBuilder::new(target.nodes.clone())
                .response_timeout(response_timeout)
                .connection_timeout(connect_timeout)
                .retries(2)
                .max_retry_wait(500);
            let client = with_certs(builder, tls).build()?;
            Ok(Self::Cluster(
                ClusterLink::connect(client, connect_timeout).await?,
            ))
        } else {
            let node = target.nodes.first().map(String::as_str).unwrap_or_default();
            let client = client(node, tls)?;
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

    /// Whether any master of a cluster has a replica (`CLUSTER NODES`).
    pub async fn has_replicas(&self) -> Result<bool, RedisError> {
        let mut conn = self.clone();
        match self {
            // A server named alone is not failed over by shardcron's
            // settings: min_replicas stays 0 unless the URL asks.
            Self::Single(_) => Ok(false),
            // A Sentinel group is there to fail over to a replica.
            Self::Sentinel(_) => Ok(true),
            Self::Cluster(_) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await?;
                Ok(nodes.lines().any(|l| l.contains("slave")))
            }
        }
    }

    /// Whether this is a cluster (commands must keep to one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs `pipe`, split by node on a cluster; after a server restart
    /// (empty script cache) loads the scripts and retries once.
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        Ok(self.pipeline_waiting(pipe, None).await?.0)
    }

    /// Runs `pipe` like [`Self::pipeline`]; with `wait` = (replicas,
    /// timeout ms), each part sent to a node ends with `WAIT replicas
    /// timeout` in the same round trip, which answers once that many
    /// replicas have every earlier write of this connection (so the part's
    /// own writes) or the timeout passed. Returns the replies (without the
    /// `WAIT`s') and whether every part was confirmed by enough replicas.
    pub async fn pipeline_waiting(
        &self,
        pipe: &Pipeline,
        wait: Option<(u32, u64)>,
    ) -> Result<(Vec<Value>, bool), RedisError> {
        let with_wait = |mut part: Pipeline| {
            if let Some((replicas, timeout_ms)) = wait {
                part.cmd("WAIT").arg(replicas).arg(timeout_ms);
            }
            part
        };
        let confirmed = |values: &mut Vec<Value>| match wait {
            None => true,
            Some((replicas, _)) => {
                matches!(values.pop(), Some(Value::Int(acks)) if acks >= i64::from(replicas))
            }
        };
        match self {
            Self::Single(_) | Self::Sentinel(_) if wait.is_none() => {
                Ok((self.pipeline_once(pipe).await?, true))
            }
            Self::Single(_) | Self::Sentinel(_) => {
                let mut values = self.pipeline_once(&with_wait(pipe.clone())).await?;
                let ok = confirmed(&mut values);
                Ok((values, ok))
            }
            Self::Cluster(link) => {
                // One part per node (per the link's slot map; a slot it
                // does not know yet is a part of its own), each ending with
                // its WAIT: a node answers one WAIT per request.
                let mut parts: Vec<(Pipeline, Vec<usize>, Option<u16>)> = Vec::new();
                let mut part_of: HashMap<String, usize> = HashMap::new();
                for (i, cmd) in pipe.cmd_iter().enumerate() {
                    let slot = first_key(cmd).map(|k| key_slot(&k));
                    let node = match slot {
                        Some(slot) => link.node_of(slot).unwrap_or_else(|| format!("slot {slot}")),
                        None => String::new(),
                    };
                    let part = *part_of.entry(node).or_insert_with(|| {
                        parts.push((redis::pipe(), Vec::new(), slot));
                        parts.len() - 1
                    });
                    parts[part].0.add_command(cmd.clone());
                    parts[part].1.push(i);
                }
                let replies = try_join_all(
                    parts
                        .iter()
                        .map(|(part, _, slot)| send_part(link, with_wait(part.clone()), *slot)),
                )
                .await?;
                let mut out = vec![Value::Nil; pipe.len()];
                let mut all_confirmed = true;
                for ((_, indices, _), mut values) in parts.iter().zip(replies) {
                    all_confirmed &= confirmed(&mut values);
                    for (&i, value) in indices.iter().zip(values) {
                        out[i] = value;
                    }
                }
                Ok((out, all_confirmed))
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

/// Sends one node's part of a pipeline to the master serving `slot`
/// (any node for a keyless part). An error reply fails the part: after
/// `NOSCRIPT` (a node restarted, or a replica promoted, with an empty
/// script cache) the scripts are loaded and the part sent once more;
/// after `MOVED`/`ASK` the link reads the slot map again.
async fn send_part(
    link: &ClusterLink,
    part: Pipeline,
    slot: Option<u16>,
) -> Result<Vec<Value>, RedisError> {
    let route = match slot {
        Some(slot) => SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)),
        None => SingleNodeRoutingInfo::Random,
    };
    for attempt in 0..2 {
        let mut conn = link.current();
        let values = match conn
            .route_pipeline(part.clone(), 0, part.len(), route.clone())
            .await
        {
            Ok(values) => values,
            Err(e) => {
                link.note(&e);
                return Err(e);
            }
        };
        let error = values.iter().find_map(|v| match v {
            Value::ServerError(e) => Some(RedisError::from(e.clone())),
            _ => None,
        });
        match error {
            None => return Ok(values),
            Some(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && attempt == 0 => {
                tracing::debug!("script cache empty on a node, loading scripts");
                for source in Scripts::sources() {
                    let _: Value = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(source)
                        .query_async(&mut conn)
                        .await?;
                }
            }
            Some(e) => {
                if matches!(
                    e.kind(),
                    ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
                ) {
                    link.refresh_slots();
                }
                return Err(e);
            }
        }
    }
    Err(RedisError::from((
        ErrorKind::Server(ServerErrorKind::NoScript),
        "scripts missing after loading them",
    )))
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
            Self::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    let reply = link.current().req_packed_command(cmd).await;
                    link.note(&reply);
                    reply
                })
            }
            Self::Cluster(link) => {
                let link = link.clone();
                Box::pin(async move {
                    let mut conn = link.current();
                    let reply = conn.req_packed_command(cmd).await;
                    if let Err(e) = &reply {
                        link.note(e);
                    }
                    reply
                })
            }
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
            Self::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    let mut conn = link.current();
                    let reply = conn.req_packed_commands(pipeline, offset, count).await;
                    link.note(&reply);
                    reply
                })
            }
            Self::Cluster(link) => {
                let link = link.clone();
                Box::pin(async move {
                    let mut conn = link.current();
                    let reply = conn.req_packed_commands(pipeline, offset, count).await;
                    if let Err(e) = &reply {
                        link.note(e);
                    }
                    reply
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) | Self::Sentinel(_) => 0,
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
        let t = parse_target("redis+cluster://h:1,h:2?min_replicas=1&replica_wait_ms=50").unwrap();
        assert_eq!((t.min_replicas, t.replica_wait_ms), (Some(1), Some(50)));
        let t = parse_target("redis://h:1/2?min_replicas=0&protocol=resp3").unwrap();
        assert_eq!(t.nodes, ["redis://h:1/2?protocol=resp3"]);
        assert_eq!(t.min_replicas, Some(0));
        for bad in ["redis://h?min_replicas=x", "redis://h?replica_wait_ms=0"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
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
