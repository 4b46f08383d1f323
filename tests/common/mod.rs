//! Harness for tests that drive the real `shardcron` binary as several processes.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shardcron_testkit::{
    EtcdServer, PostgresServer, RedisCluster, RedisServer, RespValue, SentinelGroup,
};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shardcron")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Fast timings so a test crosses every boundary in seconds.
pub const FAST_CONFIG: &str = r#"
[worker]
heartbeat = "250ms"
member_ttl = "1500ms"
lease_ttl = "1500ms"
drift_margin = "300ms"
drain_timeout = "5s"
handoff_timeout = "2s"
poll_interval = "2s"
"#;

/// Which store a test's fleet runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Postgres,
    Etcd,
    /// A three-master Redis Cluster with one replica per master.
    RedisCluster,
    /// A Redis Sentinel group: a master, a replica, three sentinels.
    Sentinel,
}

impl StoreKind {
    /// The store's name, as a label of printed rows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "Redis",
            Self::Postgres => "PostgreSQL",
            Self::Etcd => "etcd",
            Self::RedisCluster => "Redis Cluster",
            Self::Sentinel => "Redis Sentinel",
        }
    }
}

/// A private store server: the commands and workers reach it with
/// `--store <url>`.
pub enum Store {
    Redis(RedisServer),
    Postgres(PostgresServer),
    Etcd(EtcdServer),
    RedisCluster(RedisCluster),
    Sentinel(SentinelGroup),
}

impl Store {
    /// Starts a private server of `kind`.
    pub fn start(kind: StoreKind) -> Self {
        match kind {
            StoreKind::Redis => Self::Redis(RedisServer::start().expect("redis-server")),
            StoreKind::Postgres => Self::Postgres(PostgresServer::start().expect("postgres")),
            StoreKind::Etcd => Self::Etcd(EtcdServer::start().expect("etcd")),
            StoreKind::RedisCluster => {
                Self::RedisCluster(RedisCluster::start(3, 1).expect("redis cluster"))
            }
            StoreKind::Sentinel => Self::Sentinel(SentinelGroup::start().expect("sentinel group")),
        }
    }

    pub fn kind(&self) -> StoreKind {
        match self {
            Self::Redis(_) => StoreKind::Redis,
            Self::Postgres(_) => StoreKind::Postgres,
            Self::Etcd(_) => StoreKind::Etcd,
            Self::RedisCluster(_) => StoreKind::RedisCluster,
            Self::Sentinel(_) => StoreKind::Sentinel,
        }
    }

    /// The URL commands and workers are given with `--store`.
    pub fn url(&self) -> String {
        match self {
            Self::Redis(r) => r.url(),
            Self::Postgres(p) => p.url(),
            Self::Etcd(e) => e.url(),
            Self::RedisCluster(c) => c.url(),
            Self::Sentinel(g) => g.url(),
        }
    }

    /// The server's address (for a fault proxy in front of it).
    pub fn addr(&self) -> std::net::SocketAddr {
        match self {
            Self::Redis(r) => r.addr(),
            Self::Postgres(p) => p.addr(),
            Self::Etcd(e) => e.addrs()[0],
            Self::RedisCluster(c) => c.masters()[0].addr(),
            Self::Sentinel(g) => g.servers()[0].addr(),
        }
    }
}

pub struct Cli {
    pub store: Store,
    pub namespace: String,
    pub dir: tempfile::TempDir,
}

impl Cli {
    /// A namespace on a private Redis.
    pub fn new(namespace: &str) -> Self {
        Self::on(StoreKind::Redis, namespace)
    }

    /// A namespace on a private server of `kind`.
    pub fn on(kind: StoreKind, namespace: &str) -> Self {
        Self::with_store(Store::start(kind), namespace)
    }

    /// A namespace on a server already started.
    pub fn with_store(store: Store, namespace: &str) -> Self {
        Self {
            store,
            namespace: namespace.to_owned(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The Redis server of a Redis-only test.
    pub fn redis(&self) -> &RedisServer {
        match &self.store {
            Store::Redis(r) => r,
            Store::Postgres(_) => panic!("this test needs Redis, not PostgreSQL"),
            Store::Etcd(_) => panic!("this test needs Redis, not etcd"),
            Store::RedisCluster(_) => panic!("this test needs one Redis server, not a cluster"),
            Store::Sentinel(_) => panic!("this test needs one Redis server, not a sentinel group"),
        }
    }

    /// The etcd server of an etcd-only test.
    pub fn etcd(&self) -> &EtcdServer {
        match &self.store {
            Store::Etcd(e) => e,
            Store::Redis(_) => panic!("this test needs etcd, not Redis"),
            Store::Postgres(_) => panic!("this test needs etcd, not PostgreSQL"),
            Store::RedisCluster(_) => panic!("this test needs etcd, not a Redis Cluster"),
            Store::Sentinel(_) => panic!("this test needs etcd, not a Redis Sentinel group"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.arg("--store")
            .arg(self.store.url())
            .arg("--namespace")
            .arg(&self.namespace)
            .env_remove("SHARDCRON_STORE")
            .env_remove("SHARDCRON_REDIS_URL")
            .env_remove("SHARDCRON_NAMESPACE")
            .stdin(Stdio::null());
        c
    }

    /// Runs a one-shot command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run shardcron")
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write file");
        p
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: plain kill(2) on a child we own.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Audit of `@every 1s` fires appended as `job scheduled_ms node` lines.
#[derive(Debug, Default)]
pub struct FileAudit {
    pub expected: usize,
    pub seen: usize,
    pub duplicates: Vec<(String, i64, Vec<String>)>,
    pub missing: Vec<(String, i64)>,
    pub per_node: BTreeMap<String, usize>,
}

pub fn audit_file(path: &Path, job_ids: &[String], from_ms: i64, to_ms: i64) -> FileAudit {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let first = (from_ms + 999) / 1000 * 1000;
    let mut runs: HashMap<(String, i64), Vec<String>> = HashMap::new();
    let mut a = FileAudit::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(job), Some(at), Some(node)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<i64>() else { continue };
        if at < first || at > to_ms {
            continue;
        }
        runs.entry((job.to_owned(), at))
            .or_default()
            .push(node.to_owned());
        *a.per_node.entry(node.to_owned()).or_default() += 1;
    }
    for job in job_ids {
        let mut t = first;
        while t <= to_ms {
            a.expected += 1;
            match runs.get(&(job.clone(), t)) {
                None => a.missing.push((job.clone(), t)),
                Some(nodes) => {
                    a.seen += 1;
                    if nodes.len() > 1 {
                        a.duplicates.push((job.clone(), t, nodes.clone()));
                    }
                }
            }
            t += 1000;
        }
    }
    a
}

/// The shard of a fleet test's job: the fleets name their `leader` jobs
/// `lead-*` (they live in the leader shard), every other job is sharded.
pub fn fleet_job_shard(job: &str, shard_count: u32) -> u32 {
    if job.starts_with("lead-") {
        shardcron_core::leader_shard(shard_count)
    } else {
        shardcron_core::shard_of(job, shard_count)
    }
}

/// A read of one key on a cluster: asked of each running node in turn
/// until one that serves its slot answers (the others answer `MOVED`).
pub fn cluster_read(cluster: &RedisCluster, args: &[&str]) -> Option<String> {
    for node in cluster.nodes().filter(|n| n.is_running()) {
        match node.query(args) {
            Ok(RespValue::Bulk(bytes)) => {
                return Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            Ok(RespValue::Nil) => return None,
            _ => continue,
        }
    }
    None
}

/// Who claimed a fire (`holder|token|attempt`), read from the store's own
/// claim record: on Redis its claim key, else its job's watermark when that
/// is at the fire; on PostgreSQL its row in the namespace's `fires` table;
/// on etcd the same claim key or watermark, in the shard's state document.
pub fn claim_holder(
    store: &Store,
    ns: &str,
    job: &str,
    at: i64,
    shard_count: u32,
) -> Option<String> {
    let shard = fleet_job_shard(job, shard_count);
    match store {
        Store::Redis(redis) => redis_claim_holder(redis, ns, job, at, shard),
        Store::Sentinel(group) => {
            let master = group.master().expect("the master the sentinels name");
            redis_claim_holder(master, ns, job, at, shard)
        }
        Store::RedisCluster(cluster) => {
            let keys = shardcron_coord::Keyspace::new(ns);
            let key = format!("{}{job}@{at}", keys.claim_prefix(shard));
            let key_value = cluster_read(cluster, &["GET", &key]);
            let watermark = cluster_read(cluster, &["HGET", &keys.last_fired(shard), job]);
            shardcron_coord::claim_record(key_value.as_deref(), watermark.as_deref(), at)
        }
        Store::Postgres(pg) => {
            let table = shardcron_postgres::NamespaceSchema::new(ns).object("fires");
            let job = job.replace('\'', "''");
            let sql = format!(
                "SELECT holder || '|' || token || '|' || attempt FROM {table} \
                 WHERE job_id = '{job}' AND at_ms = {at}"
            );
            let value = pg.psql(&sql).expect("read the fires table");
            (!value.is_empty()).then_some(value)
        }
        Store::Etcd(etcd) => {
            let endpoints: Vec<String> = etcd.addrs().iter().map(|a| a.to_string()).collect();
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &endpoints.join(","),
                    "get",
                    "--print-value-only",
                ])
                .arg(format!("/shardcron/{ns}/shard/{shard}"))
                .output()
                .expect("run etcdctl (apt-get install etcd-client)");
            let doc: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
            let key = doc["claims"][format!("{job}@{at}")][0]
                .as_str()
                .map(str::to_owned);
            let mark = &doc["watermarks"][job];
            let watermark = match (mark["at"].as_i64(), mark["record"].as_str()) {
                (Some(ms), Some(record)) => Some(format!("{ms}|{record}")),
                (Some(ms), None) => Some(ms.to_string()),
                _ => None,
            };
            shardcron_coord::claim_record(key.as_deref(), watermark.as_deref(), at)
        }
    }
}

/// [`claim_holder`] on one Redis server: its claim key, else its job's
/// watermark when that is at the fire.
fn redis_claim_holder(
    redis: &RedisServer,
    ns: &str,
    job: &str,
    at: i64,
    shard: u32,
) -> Option<String> {
    let keys = shardcron_coord::Keyspace::new(ns);
    let key = format!("{}{job}@{at}", keys.claim_prefix(shard));
    let present = |v: String| (v != "(nil)").then_some(v);
    let key_value = redis.command(&["GET", &key]).ok().and_then(present);
    let watermark = redis
        .command(&["HGET", &keys.last_fired(shard), job])
        .ok()
        .and_then(present);
    shardcron_coord::claim_record(key_value.as_deref(), watermark.as_deref(), at)
}

/// A fleet of worker processes running `@every 1s` exec jobs that append
/// `job scheduled_ms node started_ms` to one file.
pub struct ProcFleet {
    pub cli: Cli,
    pub config: PathBuf,
    pub out: PathBuf,
    pub jobs: Vec<String>,
    pub workers: BTreeMap<String, Child>,
    /// Extra environment per node (e.g. a clock skew).
    pub env: BTreeMap<String, Vec<(String, String)>>,
    /// Store URL per node when it differs (e.g. through a fault proxy).
    pub store_url: BTreeMap<String, String>,
}

pub fn exec_line(out: &Path) -> String {
    format!(
        "echo \"$SHARDCRON_JOB_ID $SHARDCRON_SCHEDULED_AT $SHARDCRON_NODE_ID $(date +%s%3N)\" >> {}",
        out.display()
    )
}

impl ProcFleet {
    pub fn new(namespace: &str, jobs: usize) -> Self {
        Self::with_cli(Cli::new(namespace), jobs)
    }

    /// A fleet of `jobs` `@every 1s` jobs on a private server of `store`.
    pub fn new_on(store: StoreKind, namespace: &str, jobs: usize) -> Self {
        Self::with_cli(Cli::on(store, namespace), jobs)
    }

    /// [`Self::new_on`] plus `leaders` `@every 1s` jobs of placement
    /// `leader`, named `lead-*` (none on a Redis Cluster, whose store keeps
    /// sharded jobs only).
    pub fn new_on_with_leader_jobs(
        store: StoreKind,
        namespace: &str,
        jobs: usize,
        leaders: usize,
    ) -> Self {
        let leaders = if store == StoreKind::RedisCluster {
            0
        } else {
            leaders
        };
        Self::with_entries(Cli::on(store, namespace), |out| {
            let mut entries: Vec<serde_json::Value> = (0..jobs)
                .map(|i| {
                    serde_json::json!({"id": format!("tick-{i:03}"), "schedule": "@every 1s",
                        "exec": exec_line(out)})
                })
                .collect();
            entries.extend((0..leaders).map(|i| {
                serde_json::json!({"id": format!("lead-{i}"), "schedule": "@every 1s",
                    "exec": exec_line(out), "placement": "leader"})
            }));
            entries
        })
    }

    /// The node the status reports as leader.
    pub fn leader(&self) -> Option<String> {
        self.status()["leader"]["node"].as_str().map(str::to_owned)
    }

    pub fn with_cli(cli: Cli, jobs: usize) -> Self {
        let schedules: Vec<(String, String)> = (0..jobs)
            .map(|i| (format!("tick-{i:03}"), "@every 1s".to_owned()))
            .collect();
        Self::with_schedules(cli, &schedules)
    }

    /// A fleet whose exec jobs have the given `(id, schedule)` pairs.
    pub fn with_schedules(cli: Cli, schedules: &[(String, String)]) -> Self {
        let out = cli.path("fires.log");
        let config = cli.write("worker.toml", FAST_CONFIG);
        let ids: Vec<String> = schedules.iter().map(|(id, _)| id.clone()).collect();
        let entries: Vec<serde_json::Value> = schedules
            .iter()
            .map(|(id, schedule)| serde_json::json!({"id": id, "schedule": schedule, "exec": exec_line(&out)}))
            .collect();
        let file = cli.write("jobs.json", &serde_json::to_string(&entries).expect("json"));
        let put = cli.run(&["job", "put", "--file", file.to_str().expect("path")]);
        assert!(
            put.status.success(),
            "job put --file: {}",
            String::from_utf8_lossy(&put.stderr)
        );
        Self::of_jobs(cli, config, out, ids)
    }

    /// A fleet whose jobs are the jobs-file entries `entries(out)` builds,
    /// `out` being the fleet's audit file; stored by [`put_job_entries`].
    pub fn with_entries(cli: Cli, entries: impl FnOnce(&Path) -> Vec<serde_json::Value>) -> Self {
        let out = cli.path("fires.log");
        let config = cli.write("worker.toml", FAST_CONFIG);
        let entries = entries(&out);
        let ids: Vec<String> = entries
            .iter()
            .map(|e| e["id"].as_str().expect("entry id").to_owned())
            .collect();
        put_job_entries(&cli, &entries);
        Self::of_jobs(cli, config, out, ids)
    }

    /// A fleet of no workers yet, over jobs already stored.
    fn of_jobs(cli: Cli, config: PathBuf, out: PathBuf, jobs: Vec<String>) -> Self {
        Self {
            cli,
            config,
            out,
            jobs,
            workers: BTreeMap::new(),
            env: BTreeMap::new(),
            store_url: BTreeMap::new(),
        }
    }

    pub fn start(&mut self, node: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cli.path(&format!("{node}.log")))
            .expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("--store")
            .arg(
                self.store_url
                    .get(node)
                    .cloned()
                    .unwrap_or_else(|| self.cli.store.url()),
            )
            .arg("--namespace")
            .arg(&self.cli.namespace)
            .arg("worker")
            .arg("--node-id")
            .arg(node)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env_remove("SHARDCRON_STORE")
            .env_remove("SHARDCRON_REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in self.env.get(node).into_iter().flatten() {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn worker");
        self.workers.insert(node.to_owned(), child);
    }

    pub fn signal(&self, node: &str, sig: i32) {
        signal(&self.workers[node], sig);
    }

    /// SIGTERM and wait; asserts a clean exit.
    pub fn stop(&mut self, node: &str) {
        if let Some(child) = self.workers.get(node) {
            signal(child, libc::SIGTERM);
        }
        self.wait_stopped(node);
    }

    /// Waits for a worker already sent SIGTERM (a second SIGTERM would make
    /// it exit at once); asserts a clean exit.
    pub fn wait_stopped(&mut self, node: &str) {
        if let Some(mut child) = self.workers.remove(node) {
            let status = wait_exit(&mut child, Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{node} did not stop after SIGTERM"));
            assert!(
                status.success(),
                "{node} exit status {status:?}: {}",
                self.log_tail(node)
            );
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, node: &str) {
        if let Some(mut child) = self.workers.remove(node) {
            signal(&child, libc::SIGKILL);
            let _ = wait_exit(&mut child, Duration::from_secs(5));
        }
    }

    pub fn stop_all(&mut self) {
        let nodes: Vec<String> = self.workers.keys().cloned().collect();
        for n in &nodes {
            signal(&self.workers[n], libc::SIGTERM);
        }
        for n in nodes {
            self.wait_stopped(&n);
        }
    }

    pub fn log_tail(&self, node: &str) -> String {
        let text =
            std::fs::read_to_string(self.cli.path(&format!("{node}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The last `n` lines of `node`'s log that are warnings or errors, or
    /// say whom its store connection follows: what a failed chaos
    /// assertion needs to tell a stall from a fault.
    pub fn log_warnings(&self, node: &str, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.cli.path(&format!("{node}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("following"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Status JSON of the namespace, from the real binary.
    pub fn status(&self) -> serde_json::Value {
        let o = self.cli.run(&["status", "--json"]);
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn audit(&self, from_ms: i64, to_ms: i64) -> FileAudit {
        audit_file(&self.out, &self.jobs, from_ms, to_ms)
    }

    /// `started - scheduled` of every fire in the window, ms.
    fn lateness_ms(&self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                let at: i64 = p.get(1)?.parse().ok()?;
                let started: i64 = p.get(3)?.parse().ok()?;
                (at >= from_ms && at <= to_ms).then_some(started - at)
            })
            .collect()
    }

    /// Largest `started - scheduled` among fires in the window, ms.
    pub fn max_lateness_ms(&self, from_ms: i64, to_ms: i64) -> i64 {
        self.lateness_ms(from_ms, to_ms)
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// Smallest `started - scheduled` (negative means a fire ran early), ms.
    pub fn min_lateness_ms(&self, from_ms: i64, to_ms: i64) -> i64 {
        self.lateness_ms(from_ms, to_ms)
            .into_iter()
            .min()
            .unwrap_or(0)
    }

    /// Of `missing`, the fires a node not in `dead` recorded `cancelled`
    /// because their shard's lease ended before or while they ran (its
    /// validity lapsed on a node starved past it, or the lease was lost or
    /// handed off): claimed fires that at-most-once delivery gives up and
    /// records (docs/RELIABILITY.md, "Where at-most-once wins"), not fires
    /// nobody claimed. Each is printed with its record.
    pub fn cancelled_by_lease(
        &self,
        missing: &[(String, i64)],
        dead: &[&str],
    ) -> Vec<(String, i64)> {
        let mut found = Vec::new();
        for (job, at) in missing {
            let out = self
                .cli
                .run(&["runs", "--job", job, "--limit", "100", "--json"]);
            let runs: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_default();
            let fire = format!("{job}@{at}");
            let record = runs.iter().find(|r| {
                r["fire_id"] == fire.as_str()
                    && r["outcome"] == "cancelled"
                    && r["error"].as_str().is_some_and(|e| e.contains("lease"))
                    && r["node_id"]
                        .as_str()
                        .is_some_and(|node| !dead.contains(&node))
            });
            if let Some(record) = record {
                eprintln!("{fire}: cancelled by its lease on a live node: {record}");
                found.push((job.clone(), *at));
            }
        }
        found
    }

    /// Missing fires split into (claimed by a node in `dead`, unclaimed).
    pub fn split_missing(&self, a: &FileAudit, dead: &[&str]) -> (usize, Vec<(String, i64)>) {
        let mut lost = 0;
        let mut unclaimed = Vec::new();
        for (job, at) in &a.missing {
            let holder = claim_holder(&self.cli.store, &self.cli.namespace, job, *at, 1024);
            if holder
                .as_ref()
                .is_some_and(|h| dead.iter().any(|d| h.starts_with(&format!("{d}/"))))
            {
                lost += 1;
            } else {
                // Diagnostics for the failure message: who claimed it, and
                // what the run history says happened to it.
                eprintln!("missing {job}@{at}: claim {holder:?}");
                let out = self.cli.run(&["runs", "--job", job, "--limit", "40"]);
                let fire = format!("{job}@{at}");
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if line.contains(&fire) {
                        eprintln!("  run record: {line}");
                    }
                }
                if let Some(node) = holder.as_deref().and_then(|h| h.split('/').next()) {
                    let log = std::fs::read_to_string(self.cli.path(&format!("{node}.log")))
                        .unwrap_or_default();
                    for line in log.lines().filter(|l| {
                        l.contains("WARN")
                            || l.contains("handing off")
                            || l.contains("ring changed")
                    }) {
                        eprintln!("  {node} log: {line}");
                    }
                }
                unclaimed.push((job.clone(), *at));
            }
        }
        (lost, unclaimed)
    }
}

impl Drop for ProcFleet {
    fn drop(&mut self) {
        for child in self.workers.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Stores jobs given as jobs-file entries (`exec` form, and any other field
/// of the entry format such as `delivery`) with `job put --file`.
pub fn put_job_entries(cli: &Cli, entries: &[serde_json::Value]) {
    let file = cli.write("jobs.json", &serde_json::to_string(entries).expect("json"));
    let put = cli.run(&["job", "put", "--file", file.to_str().expect("path")]);
    assert!(
        put.status.success(),
        "job put --file: {}",
        String::from_utf8_lossy(&put.stderr)
    );
}

/// Polls `cond` every 20 ms up to `limit`; returns the time it took.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// True when the status report shows `members` members and every shard leased
/// by its ring owner (`churn` lists unleased shards too).
pub fn fleet_settled(status: &serde_json::Value, members: usize) -> bool {
    let Some(list) = status.get("members").and_then(|m| m.as_array()) else {
        return false;
    };
    let churn = status
        .get("churn")
        .and_then(|c| c.as_array())
        .map_or(usize::MAX, |c| c.len());
    list.len() == members && churn == 0
}

/// Exactly once, audited: no duplicate, no fire that nobody claimed, and the
/// fires lost with crashed or paused nodes (claimed, never started) all from
/// at most `crash_instants` instants.
pub fn assert_exactly_once(
    name: &str,
    a: &FileAudit,
    unclaimed: &[(String, i64)],
    crash_instants: usize,
) {
    assert!(
        a.duplicates.is_empty(),
        "{name}: duplicates {:?}",
        &a.duplicates[..a.duplicates.len().min(10)]
    );
    assert!(
        unclaimed.is_empty(),
        "{name}: fires nobody ran {:?}",
        &unclaimed[..unclaimed.len().min(10)]
    );
    let instants: std::collections::BTreeSet<i64> = a
        .missing
        .iter()
        .filter(|m| !unclaimed.contains(m))
        .map(|(_, t)| *t)
        .collect();
    assert!(
        instants.len() <= crash_instants,
        "{name}: fires lost with a crash must come from its instant: {instants:?}"
    );
}
