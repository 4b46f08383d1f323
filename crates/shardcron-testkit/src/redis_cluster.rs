//! A private Redis Cluster: several [`RedisServer`]s in cluster mode.
//!
//! The cluster store splits every multi-shard call by slot and keeps each
//! script in one slot; only a real cluster (which answers `CROSSSLOT` and
//! `MOVED`, and promotes a replica when a master dies) shows that this is
//! done right. The cluster is formed with plain commands (`CLUSTER
//! ADDSLOTSRANGE`, `CLUSTER MEET`, `CLUSTER REPLICATE`) rather than
//! `redis-cli --cluster create`, so it needs nothing beyond `redis-server`,
//! and its slots are split evenly between the masters in order.
//!
//! [`RedisCluster::start_tls`] starts one that speaks TLS only: every node
//! has certificates of one shared [`TestPki`], listens with TLS alone
//! (`--port 0`) and talks TLS to the others (`tls-cluster`,
//! `tls-replication`), so it announces its TLS port in `CLUSTER SLOTS`; the
//! cluster is formed with the same commands, sent with `redis-cli --tls`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::TestkitError;
use crate::poll::poll_until;
use crate::redis_server::RedisServer;
use crate::redis_tls::ClientAuth;
use crate::resp::RespValue;
use crate::test_pki::TestPki;

/// Hash slots of a Redis Cluster.
const SLOTS: u32 = 16_384;
/// How long forming the cluster may take.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// `cluster-node-timeout` of the nodes, ms: how long a master may be
/// unreachable before its replica is promoted.
pub const NODE_TIMEOUT_MS: u64 = 2_000;

/// A running private Redis Cluster. Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    masters: Vec<RedisServer>,
    replicas: Vec<RedisServer>,
    url_options: std::sync::Mutex<String>,
    /// The certificates every node shares, on a TLS cluster.
    pki: Option<Arc<TestPki>>,
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3) with `replicas_per_master`
    /// replicas each, forms the cluster and waits until every node reports
    /// `cluster_state:ok` (and every replica's link to its master is up).
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<Self, TestkitError> {
        Self::start_with(masters, replicas_per_master, None)
    }

    /// Starts a cluster like [`Self::start`] that speaks TLS only (see the
    /// [module docs](self)), its nodes asking clients for a certificate per
    /// `auth`. [`Self::url`] is then a `rediss+cluster://` URL naming the
    /// test CA and the client certificate.
    pub fn start_tls(
        masters: usize,
        replicas_per_master: usize,
        auth: ClientAuth,
    ) -> Result<Self, TestkitError> {
        let pki = Arc::new(TestPki::new()?);
        Self::start_with(masters, replicas_per_master, Some((pki, auth)))
    }

    fn start_with(
        masters: usize,
        replicas_per_master: usize,
        tls: Option<(Arc<TestPki>, ClientAuth)>,
    ) -> Result<Self, TestkitError> {
        if masters < 3 {
            return Err(TestkitError::ClusterSetup(format!(
                "a cluster needs at least 3 masters, {masters} asked"
            )));
        }
        let node = || {
            let builder = RedisServer::builder()
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-config-file")
                .arg("nodes.conf")
                .arg("--cluster-node-timeout")
                .arg(NODE_TIMEOUT_MS.to_string());
            match &tls {
                Some((pki, auth)) => builder
                    .tls_with(Arc::clone(pki), *auth)
                    .arg("--tls-cluster")
                    .arg("yes")
                    .arg("--tls-replication")
                    .arg("yes")
                    .start(),
                None => builder.start(),
            }
        };
        let masters: Vec<RedisServer> = (0..masters).map(|_| node()).collect::<Result<_, _>>()?;
        let replicas: Vec<RedisServer> = (0..masters.len() * replicas_per_master)
            .map(|_| node())
            .collect::<Result<_, _>>()?;
        let cluster = Self {
            masters,
            replicas,
            url_options: std::sync::Mutex::default(),
            pki: tls.map(|(pki, _)| pki),
        };
        cluster.form()?;
        Ok(cluster)
    }

    fn form(&self) -> Result<(), TestkitError> {
        let n = self.masters.len() as u32;
        for (i, master) in self.masters.iter().enumerate() {
            let i = i as u32;
            let first = i * SLOTS / n;
            let last = (i + 1) * SLOTS / n - 1;
            expect_ok(master.query(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])?)?;
        }
        let first = &self.masters[0];
        for other in self.nodes().skip(1) {
            expect_ok(first.query(&[
                "CLUSTER",
                "MEET",
                "127.0.0.1",
                &other.port().to_string(),
            ])?)?;
        }
        let total = self.nodes().count();
        wait_for("every node to know every other", || {
            for node in self.nodes() {
                let nodes = node.command(&["CLUSTER", "NODES"])?;
                if nodes.lines().filter(|l| !l.contains("handshake")).count() < total {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let per_master = self.replicas.len() / self.masters.len();
        for (i, replica) in self.replicas.iter().enumerate() {
            let master = &self.masters[i / per_master.max(1)];
            let id = master.command(&["CLUSTER", "MYID"])?;
            expect_ok(replica.query(&["CLUSTER", "REPLICATE", &id])?)?;
        }
        wait_for("cluster_state:ok on every node", || {
            for node in self.nodes() {
                if !node
                    .command(&["CLUSTER", "INFO"])?
                    .contains("cluster_state:ok")
                {
                    return Ok(false);
                }
            }
            for replica in &self.replicas {
                if !replica
                    .command(&["INFO", "replication"])?
                    .contains("master_link_status:up")
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Every node, masters first.
    pub fn nodes(&self) -> impl Iterator<Item = &RedisServer> {
        self.masters.iter().chain(&self.replicas)
    }

    /// The masters as started (a failover may have made a replica master
    /// since: see [`Self::master_ports`]).
    pub fn masters(&self) -> &[RedisServer] {
        &self.masters
    }

    /// The replicas as started.
    pub fn replicas(&self) -> &[RedisServer] {
        &self.replicas
    }

    /// The certificates of a TLS cluster's nodes (`None`: plain TCP).
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_deref()
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...` naming every node:
    /// the store URL of this cluster, with the options given to
    /// [`Self::set_url_options`] as its query. On a TLS cluster,
    /// `rediss+cluster://…?tls_ca=…&tls_cert=…&tls_key=…` (the test CA and
    /// the client certificate) and those options.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let options = self
            .url_options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut query: Vec<String> = Vec::new();
        if let Some(pki) = &self.pki {
            query.push(format!(
                "tls_ca={}&tls_cert={}&tls_key={}",
                pki.ca().display(),
                pki.client_cert().display(),
                pki.client_key().display()
            ));
        }
        if !options.is_empty() {
            query.push(options);
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let scheme = if self.pki.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{}{query}", nodes.join(","))
    }

    /// Store URL options that [`Self::url`] carries from now on (e.g.
    /// `min_replicas=0`).
    pub fn set_url_options(&self, options: &str) {
        *self
            .url_options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = options.to_owned();
    }

    /// Ports of the nodes that are masters with slots now, per a running node.
    pub fn master_ports(&self) -> Result<Vec<u16>, TestkitError> {
        let node = self
            .nodes()
            .find(|n| n.is_running())
            .ok_or(TestkitError::NotRunning)?;
        let mut ports = Vec::new();
        for line in node.command(&["CLUSTER", "NODES"])?.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let is_master = fields.get(2).is_some_and(|f| f.contains("master"));
            let failed = fields.get(2).is_some_and(|f| f.contains("fail"));
            // A promoted replica serves its slots as soon as it is master;
            // its line lists them from then on.
            if is_master && !failed && fields.len() > 8 {
                let port = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse::<u16>().ok());
                ports.extend(port);
            }
        }
        ports.sort_unstable();
        Ok(ports)
    }

    /// Waits until the master on `port` (killed) is replaced: a running
    /// node lists as many masters with slots as the cluster was started
    /// with, none of them on `port`, and every running node reports
    /// `cluster_state:ok`.
    pub fn wait_failover(&self, port: u16) -> Result<(), TestkitError> {
        let masters = self.masters.len();
        wait_for("a replica promoted in place of the lost master", || {
            let ports = self.master_ports()?;
            Ok(ports.len() == masters && !ports.contains(&port))
        })?;
        self.wait_ok()
    }

    /// Waits until every running node that is a replica has its link to
    /// its master up, and every master has a replica.
    pub fn wait_replicas(&self) -> Result<(), TestkitError> {
        wait_for("every replica linked to its master", || {
            let mut replicas = 0;
            for node in self.nodes().filter(|n| n.is_running()) {
                let info = node.command(&["INFO", "replication"])?;
                if info.contains("role:slave") {
                    if !info.contains("master_link_status:up") {
                        return Ok(false);
                    }
                    replicas += 1;
                }
            }
            Ok(replicas >= self.replicas.len())
        })
    }

    /// Waits until every running node reports `cluster_state:ok` (after a
    /// failover: the replica was promoted and its slots are served).
    pub fn wait_ok(&self) -> Result<(), TestkitError> {
        wait_for("cluster_state:ok on every running node", || {
            for node in self.nodes().filter(|n| n.is_running()) {
                if !node
                    .command(&["CLUSTER", "INFO"])?
                    .contains("cluster_state:ok")
                {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }
}

fn expect_ok(reply: RespValue) -> Result<(), TestkitError> {
    match reply {
        // A TLS node answers through redis-cli, as text.
        RespValue::Simple(s) if s == "OK" => Ok(()),
        RespValue::Bulk(b) if b == b"OK" => Ok(()),
        other => Err(TestkitError::ClusterSetup(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

fn wait_for(
    what: &str,
    ready: impl FnMut() -> Result<bool, TestkitError>,
) -> Result<(), TestkitError> {
    poll_until(what, FORM_TIMEOUT, TestkitError::ClusterSetup, ready)
}
