//! The harness the conformance suites share: the stores (the in-memory
//! one, a real `redis-server`, a Redis Cluster, a Redis Sentinel group, a
//! real PostgreSQL and a real etcd, all started by the test kit), raw
//! access to them, small builders, and the macro that runs every case on
//! each. The Redis store runs the cases twice: in plain TCP, and on a
//! TLS-only server that requires client certificates (`rediss://` with the
//! TLS options); so does the Redis Cluster store (`redis+cluster://`, and
//! `rediss+cluster://` on a TLS-only cluster that requires client
//! certificates).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{
    ClaimBatch, CoordError, Coordinator, FireClaim, FireKind, LeaseGrant, MemberInfo, MemoryStore,
    RedisCoordinator,
};
use shardcron_core::{JobSpec, RingConfig};
use shardcron_etcd::EtcdCoordinator;
use shardcron_postgres::{NamespaceSchema, PostgresCoordinator};
use shardcron_testkit::{
    ClientAuth, EtcdServer, PostgresServer, RedisCluster, RedisServer, SentinelGroup, TestPki,
};

/// The store a case runs against.
pub enum Env {
    Memory(MemoryStore),
    /// A private redis-server: plain TCP, or TLS only ([`Env::redis_tls`]).
    Redis(RedisServer),
    /// A private three-master Redis Cluster (no replicas): plain TCP, or
    /// TLS only ([`Env::redis_cluster_tls`]).
    RedisCluster(RedisCluster),
    /// A Redis Sentinel group (master, replica, three sentinels), reached
    /// through its sentinels with the default `min_replicas` (1).
    Sentinel(SentinelGroup),
    Postgres(PostgresServer),
    Etcd(EtcdServer),
}

pub const RING: RingConfig = RingConfig::new(64, 40);

impl Env {
    pub fn memory() -> Self {
        Env::Memory(MemoryStore::new())
    }

    pub fn redis() -> Self {
        Env::Redis(RedisServer::start().expect("start redis-server"))
    }

    /// A TLS-only redis-server that requires a client certificate; the
    /// coordinators reach it with `rediss://…?tls_ca=…&tls_cert=…&tls_key=…`.
    pub fn redis_tls() -> Self {
        Env::Redis(
            RedisServer::builder()
                .tls(ClientAuth::Required)
                .start()
                .expect("start a TLS redis-server"),
        )
    }

    pub fn redis_cluster() -> Self {
        Env::RedisCluster(RedisCluster::start(3, 0).expect("start redis cluster"))
    }

    pub fn sentinel() -> Self {
        Env::Sentinel(SentinelGroup::start().expect("start a sentinel group"))
    }

    /// A TLS-only three-master Redis Cluster that requires a client
    /// certificate; the coordinators reach it with
    /// `rediss+cluster://…?tls_ca=…&tls_cert=…&tls_key=…`.
    pub fn redis_cluster_tls() -> Self {
        Env::RedisCluster(
            RedisCluster::start_tls(3, 0, ClientAuth::Required).expect("start a TLS redis cluster"),
        )
    }

    pub fn postgres() -> Self {
        Env::Postgres(PostgresServer::start().expect("start postgres"))
    }

    pub fn etcd() -> Self {
        Env::Etcd(EtcdServer::start().expect("start etcd"))
    }

    /// How long to wait for a lease or registration of `ttl` to expire.
    /// etcd leases count whole seconds (rounded up, at least 1 s) and
    /// etcd revokes expired ones every 500 ms, so there it is longer.
    pub fn expiry_wait(&self, ttl: Duration, wait: Duration) -> Duration {
        match self {
            Env::Etcd(_) => {
                let secs = ttl.as_millis().div_ceil(1000).max(1) as u64;
                Duration::from_millis(secs * 1000 + 1200)
            }
            _ => wait,
        }
    }

    pub async fn coord_with(&self, ring: RingConfig) -> Result<Arc<dyn Coordinator>, CoordError> {
        Ok(match self {
            Env::Memory(store) => Arc::new(store.coordinator("conf", ring)?),
            Env::Redis(server) => {
                Arc::new(RedisCoordinator::connect(&server.url(), "conf", ring).await?)
            }
            Env::RedisCluster(cluster) => {
                Arc::new(RedisCoordinator::connect(&cluster.url(), "conf", ring).await?)
            }
            Env::Sentinel(group) => {
                Arc::new(RedisCoordinator::connect(&group.url(), "conf", ring).await?)
            }
            Env::Postgres(server) => {
                Arc::new(PostgresCoordinator::connect(&server.url(), "conf", ring).await?)
            }
            Env::Etcd(server) => {
                Arc::new(EtcdCoordinator::connect(&server.url(), "conf", ring).await?)
            }
        })
    }

    pub async fn coord(&self) -> Arc<dyn Coordinator> {
        self.coord_with(RING).await.expect("coordinator")
    }

    /// Loses the stored ring settings, as a store that lost data would.
    pub async fn forget_config(&self) {
        match self {
            Env::Memory(store) => store.forget_config(),
            Env::Redis(server) => {
                let () = raw_redis(server, ::redis::cmd("DEL").arg("{conf}:config")).await;
            }
            Env::RedisCluster(cluster) => {
                let () = raw_cluster(cluster, ::redis::cmd("DEL").arg("{conf}:config")).await;
            }
            Env::Sentinel(group) => {
                let master = group.master().expect("the master");
                let () = raw_redis(master, ::redis::cmd("DEL").arg("{conf}:config")).await;
            }
            Env::Postgres(server) => {
                raw_pg(server, &format!("DELETE FROM {}", pg_table("config")), &[]).await;
            }
            Env::Etcd(server) => {
                raw_etcd(server)
                    .await
                    .delete("/shardcron/conf/config", None)
                    .await
                    .expect("delete config");
            }
        }
    }

    /// Stores a job record as raw text (a newer version's, or a damaged one).
    pub async fn put_raw_job(&self, shard: u32, id: &str, json: &str) {
        match self {
            Env::Memory(store) => store.put_raw_job(shard, id, json),
            Env::Redis(server) => Self::put_raw_redis_job(server, shard, id, json).await,
            Env::Sentinel(group) => {
                let master = group.master().expect("the master");
                Self::put_raw_redis_job(master, shard, id, json).await
            }
            Env::RedisCluster(cluster) => {
                let () = raw_cluster(
                    cluster,
                    ::redis::cmd("HSET")
                        .arg(format!("{{conf:{shard}}}:jobs"))
                        .arg(id)
                        .arg(json),
                )
                .await;
                let () = raw_cluster(
                    cluster,
                    ::redis::cmd("HSET")
                        .arg(format!("{{conf:{shard}}}:last"))
                        .arg(format!("{id}|v"))
                        .arg(999_999),
                )
                .await;
            }
            Env::Postgres(server) => {
                let sql = format!(
                    "INSERT INTO {} (job_id, shard, version, record) VALUES ($1, $2, 999999, $3)
                     ON CONFLICT (job_id) DO UPDATE SET record = excluded.record,
                         version = excluded.version",
                    pg_table("jobs")
                );
                raw_pg(server, &sql, &[&id, &(shard as i32), &json]).await;
            }
            Env::Etcd(server) => {
                raw_etcd(server)
                    .await
                    .put(format!("/shardcron/conf/job/{shard:05}/{id}"), json, None)
                    .await
                    .expect("put raw job");
            }
        }
    }

    /// [`Self::put_raw_job`] on one Redis server.
    async fn put_raw_redis_job(server: &RedisServer, shard: u32, id: &str, json: &str) {
        let () = raw_redis(
            server,
            ::redis::cmd("HSET")
                .arg(format!("{{conf:{shard}}}:jobs"))
                .arg(id)
                .arg(json),
        )
        .await;
        let () = raw_redis(
            server,
            ::redis::cmd("HSET")
                .arg(format!("{{conf:{shard}}}:last"))
                .arg(format!("{id}|v"))
                .arg(999_999),
        )
        .await;
    }
}

/// One raw command on a cluster, routed by its key.
pub async fn raw_cluster<T: ::redis::FromRedisValue>(
    cluster: &RedisCluster,
    cmd: &::redis::Cmd,
) -> T {
    let client = match cluster.pki() {
        None => ::redis::cluster::ClusterClient::new(
            cluster.nodes().map(|n| n.url()).collect::<Vec<_>>(),
        ),
        Some(pki) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let nodes: Vec<String> = cluster
                .nodes()
                .map(|n| format!("rediss://127.0.0.1:{}", n.port()))
                .collect();
            ::redis::cluster::ClusterClientBuilder::new(nodes)
                .certs(test_certificates(pki))
                .build()
        }
    }
    .expect("cluster client");
    let mut conn = client
        .get_async_connection()
        .await
        .expect("connect to cluster");
    let value: ::redis::Value = cmd.query_async(&mut conn).await.expect("raw command");
    ::redis::from_redis_value(value).unwrap_or_else(|e| panic!("reply: {e}"))
}

/// A plain client of the private server, outside any coordinator (with the
/// test CA and client certificate on a TLS server).
pub fn raw_client(server: &RedisServer) -> ::redis::Client {
    let Some(tls) = server.tls() else {
        return ::redis::Client::open(server.url()).expect("client");
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ::redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{}", server.port()),
        test_certificates(tls.pki()),
    )
    .expect("TLS client")
}

/// The test CA and client certificate, for a raw TLS client.
fn test_certificates(pki: &TestPki) -> ::redis::TlsCertificates {
    let read = |path: &std::path::Path| std::fs::read(path).expect("read a test certificate");
    ::redis::TlsCertificates {
        client_tls: Some(::redis::ClientTlsConfig {
            client_cert: read(pki.client_cert()),
            client_key: read(pki.client_key()),
        }),
        root_cert: Some(read(pki.ca())),
    }
}

pub async fn raw_redis<T: ::redis::FromRedisValue>(server: &RedisServer, cmd: &::redis::Cmd) -> T {
    let client = raw_client(server);
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let value: ::redis::Value = cmd.query_async(&mut conn).await.expect("raw command");
    ::redis::from_redis_value(value).unwrap_or_else(|e| panic!("reply: {e}"))
}

/// A plain client of the private etcd, outside any coordinator.
pub async fn raw_etcd(server: &EtcdServer) -> etcd_client::Client {
    let endpoints: Vec<String> = server
        .addrs()
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    etcd_client::Client::connect(endpoints, None)
        .await
        .expect("connect to etcd")
}

/// A table of the conformance namespace on PostgreSQL, quoted.
pub fn pg_table(table: &str) -> String {
    NamespaceSchema::new("conf").object(table)
}

/// Runs one statement on the private PostgreSQL, outside any coordinator.
pub async fn raw_pg(
    server: &PostgresServer,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    let rows = client.query(sql, params).await.expect("raw statement");
    drop(client);
    let _ = driver.await;
    rows
}

pub fn member(id: &str) -> MemberInfo {
    MemberInfo {
        id: id.to_owned(),
        version: "test".to_owned(),
        started_ms: 1,
        addr: None,
        instance: None,
    }
}

pub fn job(id: &str) -> JobSpec {
    JobSpec::new(id, "@every 1s", "noop")
}

/// A first attempt at claiming a fire of `job`, with a fresh attempt id.
pub fn first_attempt(job: &str, at: i64, version: u64, kind: FireKind) -> FireClaim {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let attempt = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    FireClaim::new(job, at, kind, version, attempt)
}

pub async fn acquire(c: &Arc<dyn Coordinator>, shard: u32, holder: &str) -> u64 {
    match c
        .acquire_leases(&[shard], holder, Duration::from_secs(10))
        .await
        .expect("acq")[0]
    {
        LeaseGrant::Granted { token } => token,
        ref other => panic!("{other:?}"),
    }
}

pub fn one_batch(shard: u32, holder: &str, token: u64, fires: Vec<FireClaim>) -> Vec<ClaimBatch> {
    vec![ClaimBatch {
        shard,
        holder: holder.into(),
        token,
        fires,
        ahead_ms: 0,
        loaded_at: None,
    }]
}

/// Jobs spread over the ring's shards (`jobs` of them, by shard: id and
/// version), and every shard of the ring held by `holder` for `ttl` (the
/// token of shard `s` at index `s`): what one node of a one-node fleet
/// holds.
pub async fn every_shard_held(
    c: &Arc<dyn Coordinator>,
    jobs: usize,
    holder: &str,
    ttl: Duration,
) -> (BTreeMap<u32, Vec<(String, u64)>>, Vec<u64>) {
    let mut by_shard: BTreeMap<u32, Vec<(String, u64)>> = BTreeMap::new();
    for i in 0..jobs {
        let id = format!("job-{i}");
        let stored = c.put_job(&job(&id), None).await.expect("put");
        by_shard
            .entry(shardcron_core::shard_of(&id, RING.shard_count))
            .or_default()
            .push((id, stored.version));
    }
    let shards: Vec<u32> = (0..RING.shard_count).collect();
    let tokens = c
        .acquire_leases(&shards, holder, ttl)
        .await
        .expect("acquire")
        .into_iter()
        .map(|g| match g {
            LeaseGrant::Granted { token } => token,
            other => panic!("{other:?}"),
        })
        .collect();
    (by_shard, tokens)
}

/// The batches of one claim step over `by_shard` (from
/// [`every_shard_held`]): a batch per shard with jobs, each job's fire at
/// `at`; the `i`th batch promises its shard's load (the shard-version
/// form) when `promise(i)`, else sends its fires one by one.
pub async fn claim_step(
    c: &Arc<dyn Coordinator>,
    by_shard: &BTreeMap<u32, Vec<(String, u64)>>,
    tokens: &[u64],
    holder: &str,
    at: i64,
    promise: impl Fn(usize) -> bool,
) -> Vec<ClaimBatch> {
    let loaded = c
        .load_shards(&by_shard.keys().copied().collect::<Vec<_>>())
        .await
        .expect("load");
    by_shard
        .iter()
        .zip(&loaded)
        .enumerate()
        .map(|(i, ((&shard, jobs), load))| ClaimBatch {
            shard,
            holder: holder.to_owned(),
            token: tokens[shard as usize],
            fires: jobs
                .iter()
                .map(|(id, v)| first_attempt(id, at, *v, FireKind::Scheduled))
                .collect(),
            ahead_ms: 0,
            loaded_at: promise(i).then_some(load.version),
        })
        .collect()
}

/// Runs every named case against every store.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::memory()).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis()).await } )*
        }
        mod redis_tls {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis_tls()).await } )*
        }
        mod redis_cluster {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis_cluster()).await } )*
        }
        mod sentinel {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::sentinel()).await } )*
        }
        mod redis_cluster_tls {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::redis_cluster_tls()).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::postgres()).await } )*
        }
        mod etcd {
            $( #[tokio::test] async fn $name() { super::$name(super::Env::etcd()).await } )*
        }
    };
}

/// Calls per command since the last `CONFIG RESETSTAT` (commands a script
/// runs are counted too), leaving out the connection's own (`HELLO`,
/// `CLIENT …`) and the test's (`INFO`, `CONFIG …`).
pub async fn command_calls(server: &RedisServer) -> BTreeMap<String, u64> {
    let info: String = raw_redis(server, ::redis::cmd("INFO").arg("commandstats")).await;
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| {
            !(name == "info"
                || name == "hello"
                || name.starts_with("client")
                || name.starts_with("config"))
        })
        .collect()
}
