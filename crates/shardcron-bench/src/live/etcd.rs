//! `live --store etcd`: the private etcd and what is counted on it.
//!
//! The server is the test kit's one-member etcd ([`EtcdServer`]: free
//! loopback ports, data in a temporary directory, raft timing shortened).
//! Around the window its Prometheus metrics are read from the client URL's
//! `/metrics` (plain HTTP, the same port as gRPC):
//!
//! * requests: `grpc_server_msg_received_total`, by method. A unary call
//!   (`Range`, `Txn`, `Put`, `LeaseGrant`, …) is one request message and
//!   one client round trip; on the keep-alive stream each renewal is one
//!   message and one round trip too, and on the watch stream each message
//!   is a watch created or cancelled (the events etcd pushes back are not
//!   requests). With `--churn` the benchmark's own lease reads (one `Range`
//!   each) are in the `Range` count; `bench lease reads` says how many;
//! * proposals: `etcd_server_proposals_committed_total`, the raft entries
//!   committed (every write, lease grant and revoke is one; reads and
//!   keep-alives are not);
//! * CPU: `process_cpu_seconds_total` of the etcd process;
//! * size: `etcd_mvcc_db_total_size_in_use_in_bytes` (the bbolt file's
//!   pages in use; etcd keeps every revision until compacted, so it grows
//!   by the window's writes until the next compaction) and
//!   `etcd_mvcc_db_total_size_in_bytes` at the end (the file, what the
//!   backend quota limits);
//! * bytes written: `etcd_network_client_grpc_received_bytes_total`, the
//!   bytes of every client request, nearly all of it the claims' writes:
//!   the history each fire adds before compaction.
//!
//! The server runs with etcd's defaults (no auto-compaction, 2 GiB backend
//! quota): the store compacts history itself (`shardcron_etcd::compaction`);
//! `--etcd-compact-every 0` turns that off to see what it prevents.
//!
//! Missed fires are attributed from the claim records in the shards' state
//! documents (`/shardcron/<ns>/shard/<shard>`: its claim keys, else the
//! job's watermark when it is at the fire), and those left over are looked
//! up in the run history (`Coordinator::recent_runs`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;
use shardcron_core::{shard_of, RingConfig};
use shardcron_testkit::EtcdServer;

use super::claims::{attribute, Attribution, CrashedInstance};
use super::fleet::NAMESPACE;
use super::results::RecordedMisses;
use crate::error::BenchError;

/// A started private etcd.
pub struct EtcdStore {
    server: EtcdServer,
    /// The workers' URL query (`?compact_every=…`), or empty.
    query: String,
    /// `etcd_server_version`.
    pub version: String,
}

/// Counters read before and after the window.
#[derive(Clone, Debug, Default)]
pub struct EtcdCounters {
    /// Request messages received, by gRPC method.
    requests: BTreeMap<String, u64>,
    proposals_committed: u64,
    /// CPU seconds of the etcd process so far.
    pub cpu_s: f64,
    /// Bytes of client requests received so far.
    received_bytes: f64,
}

/// What `live --store etcd` measured on the server during the window.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdReport {
    /// etcd's version.
    pub server_version: String,
    /// Database bytes in use from registering the jobs, per job.
    pub db_bytes_per_job: f64,
    /// Database bytes in use at the end of the window minus at its start.
    pub db_growth_bytes: i64,
    /// The database file's size at the end of the window (what etcd's
    /// backend quota limits).
    pub db_file_bytes_end: u64,
    /// Bytes of client requests in the window per fire: the history each
    /// fire writes until it is compacted.
    pub received_bytes_per_fire: f64,
    /// gRPC request messages in the window (each one client round trip).
    pub requests: u64,
    /// `requests / fires`.
    pub requests_per_fire: f64,
    /// Requests per fire by gRPC method.
    pub per_method_per_fire: BTreeMap<String, f64>,
    /// The benchmark's own lease reads in the window (one `Range` each,
    /// included in `requests`).
    pub bench_lease_reads: u64,
    /// Raft proposals committed in the window.
    pub proposals_committed: u64,
    /// `proposals_committed / fires`.
    pub proposals_per_fire: f64,
    /// CPU seconds of the etcd process during the window.
    pub server_cpu_s: f64,
    /// `server_cpu_s` per 1,000 fires.
    pub server_cpu_s_per_1000_fires: f64,
}

impl EtcdStore {
    /// Starts a one-member etcd with etcd's default compaction and quota
    /// (none, 2 GiB); the workers' URL asks for self-compaction every
    /// `compact_every` seconds (0: off) if given, else the store's default.
    ///
    /// # Errors
    ///
    /// The server does not start (no `etcd` binary on `PATH` nor in
    /// `SHARDCRON_ETCD`), or its metrics cannot be read.
    pub fn start(compact_every: Option<f64>) -> Result<EtcdStore, BenchError> {
        let server = EtcdServer::start().map_err(|e| BenchError::live("starting etcd", e))?;
        let query = compact_every.map_or_else(String::new, |s| format!("?compact_every={s}"));
        let metrics = scrape(server.addrs()[0])?;
        let version = metrics
            .lines()
            .find_map(|l| {
                let rest = l.strip_prefix("etcd_server_version{server_version=\"")?;
                rest.split('"').next().map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(EtcdStore {
            server,
            query,
            version,
        })
    }

    /// URL the workers connect with.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.url(), self.query)
    }

    /// The database file's size (`etcd_mvcc_db_total_size_in_bytes`).
    pub fn db_file_size(&self) -> Result<u64, BenchError> {
        let metrics = scrape(self.server.addrs()[0])?;
        Ok(metric_sum(&metrics, "etcd_mvcc_db_total_size_in_bytes") as u64)
    }

    /// Database bytes in use.
    pub fn db_size(&self) -> Result<u64, BenchError> {
        let metrics = scrape(self.server.addrs()[0])?;
        Ok(metric_sum(&metrics, "etcd_mvcc_db_total_size_in_use_in_bytes") as u64)
    }

    /// Keys in the store (`etcd_debugging_mvcc_keys_total`).
    pub fn key_count(&self) -> Result<i64, BenchError> {
        let metrics = scrape(self.server.addrs()[0])?;
        Ok(metric_sum(&metrics, "etcd_debugging_mvcc_keys_total") as i64)
    }

    /// Reads the counters.
    pub fn counters(&self) -> Result<EtcdCounters, BenchError> {
        Ok(parse_counters(&scrape(self.server.addrs()[0])?))
    }

    /// Attributes missed fires to crashes from the claim records of the
    /// shards' state documents, and counts those with a run record saying
    /// why they did not run.
    pub fn attribute_misses(
        &self,
        ring: RingConfig,
        missing: &[(u32, i64)],
        events: usize,
        crashes: &[CrashedInstance],
    ) -> Result<(Attribution, RecordedMisses), BenchError> {
        if missing.is_empty() {
            return Ok((
                Attribution {
                    lost_per_event: vec![0; events],
                    lost_instants_per_event: vec![0; events],
                    unexplained: Vec::new(),
                },
                RecordedMisses::new(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::live("building a runtime to read claims", e))?;
        let endpoints: Vec<String> = self
            .server
            .addrs()
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
        let shards: std::collections::BTreeSet<u32> = missing
            .iter()
            .map(|(job, _)| shard_of(&format!("job-{job}"), ring.shard_count))
            .collect();
        let documents: HashMap<u32, serde_json::Value> = runtime.block_on(async {
            let mut client = etcd_client::Client::connect(endpoints, None)
                .await
                .map_err(|e| BenchError::live("connecting to etcd to read claims", e))?;
            let mut documents = HashMap::new();
            for shard in shards {
                let key = format!("/shardcron/{NAMESPACE}/shard/{shard}");
                let reply = client
                    .get(key, None)
                    .await
                    .map_err(|e| BenchError::live("reading a shard's state", e))?;
                let doc = reply
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice(kv.value()).ok())
                    .unwrap_or(serde_json::Value::Null);
                documents.insert(shard, doc);
            }
            Ok::<_, BenchError>(documents)
        })?;
        let mut attribution = attribute(missing, events, crashes, |job, at| {
            let job_id = format!("job-{job}");
            let doc = documents.get(&shard_of(&job_id, ring.shard_count))?;
            claim_of(doc, &job_id, at)
        });
        let mut recorded = RecordedMisses::new();
        if attribution.unexplained.is_empty() {
            return Ok((attribution, recorded));
        }
        let outcomes: HashMap<String, String> = runtime.block_on(async {
            let coordinator = super::fleet::connect(&self.url(), ring).await?;
            let jobs: std::collections::BTreeSet<u32> = attribution
                .unexplained
                .iter()
                .map(|(job, _, _)| *job)
                .collect();
            let mut outcomes = HashMap::new();
            for job in jobs {
                let Ok(runs) = coordinator
                    .recent_runs(Some(&format!("job-{job}")), 100)
                    .await
                else {
                    continue;
                };
                for run in runs {
                    outcomes.insert(run.fire_id, run.outcome.as_str().to_owned());
                }
            }
            Ok::<_, BenchError>(outcomes)
        })?;
        attribution.unexplained.retain(|(job, at, _)| {
            match outcomes.get(&format!("job-{job}@{at}")) {
                Some(outcome) => {
                    *recorded.entry(outcome.clone()).or_default() += 1;
                    false
                }
                None => true,
            }
        });
        Ok((attribution, recorded))
    }
}

/// A fire's claim record (`holder|token|attempt`) in a shard's state
/// document: its claim key, else the job's watermark when it is at `at`.
fn claim_of(doc: &serde_json::Value, job_id: &str, at: i64) -> Option<String> {
    let key = doc["claims"][format!("{job_id}@{at}")][0]
        .as_str()
        .map(str::to_owned);
    let mark = &doc["watermarks"][job_id];
    let watermark = match (mark["at"].as_i64(), mark["record"].as_str()) {
        (Some(ms), Some(record)) => Some(format!("{ms}|{record}")),
        (Some(ms), None) => Some(ms.to_string()),
        _ => None,
    };
    shardcron_coord::claim_record(key.as_deref(), watermark.as_deref(), at)
}

impl EtcdCounters {
    /// The report of the window between `self` and `after`, over `fired`
    /// fires (`db_*` filled in by the caller).
    pub fn report(
        &self,
        after: &EtcdCounters,
        fired: u64,
        version: &str,
        bench_lease_reads: u64,
    ) -> EtcdReport {
        let per_fire = |n: u64| n as f64 / fired.max(1) as f64;
        let per_method: BTreeMap<String, u64> = after
            .requests
            .iter()
            .filter_map(|(method, &n)| {
                let delta = n.saturating_sub(self.requests.get(method).copied().unwrap_or(0));
                (delta > 0).then(|| (method.clone(), delta))
            })
            .collect();
        let requests = per_method.values().sum();
        let proposals = after
            .proposals_committed
            .saturating_sub(self.proposals_committed);
        let server_cpu_s = after.cpu_s - self.cpu_s;
        EtcdReport {
            server_version: version.to_owned(),
            db_bytes_per_job: 0.0,
            db_growth_bytes: 0,
            db_file_bytes_end: 0,
            received_bytes_per_fire: (after.received_bytes - self.received_bytes)
                / fired.max(1) as f64,
            requests,
            requests_per_fire: per_fire(requests),
            per_method_per_fire: per_method
                .into_iter()
                .map(|(method, n)| (method, per_fire(n)))
                .collect(),
            bench_lease_reads,
            proposals_committed: proposals,
            proposals_per_fire: per_fire(proposals),
            server_cpu_s,
            server_cpu_s_per_1000_fires: if fired == 0 {
                0.0
            } else {
                server_cpu_s * 1000.0 / fired as f64
            },
        }
    }
}

/// `GET /metrics` of a member's client URL.
fn scrape(addr: SocketAddr) -> Result<String, BenchError> {
    let action = "reading etcd's /metrics";
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| BenchError::live(action, e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| BenchError::live(action, e))?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| BenchError::live(action, e))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| BenchError::live(action, e))?;
    match reply.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(BenchError::live(
            action,
            format!("unexpected reply: {:.200}", reply),
        )),
    }
}

/// The sum of every sample of metric `name` (any labels).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            rest.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum()
}

/// The value of label `label` in a sample's `{…}`.
fn label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let start = line.find(&format!("{label}=\""))? + label.len() + 2;
    line[start..].split('"').next()
}

fn parse_counters(text: &str) -> EtcdCounters {
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("grpc_server_msg_received_total{") else {
            continue;
        };
        let (Some(method), Some(value)) = (
            label(rest, "grpc_method"),
            rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        *requests.entry(method.to_owned()).or_default() += value as u64;
    }
    EtcdCounters {
        requests,
        proposals_committed: metric_sum(text, "etcd_server_proposals_committed_total") as u64,
        cpu_s: metric_sum(text, "process_cpu_seconds_total"),
        received_bytes: metric_sum(text, "etcd_network_client_grpc_received_bytes_total"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 120
grpc_server_msg_received_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 30
grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 7
etcd_server_proposals_committed_total 99
etcd_server_proposals_committed_totals 1000
process_cpu_seconds_total 1.5
";

    #[test]
    fn parses_the_counters() {
        let c = parse_counters(METRICS);
        assert_eq!(c.requests["Txn"], 120);
        assert_eq!(c.requests["Range"], 30);
        assert_eq!(c.requests["LeaseKeepAlive"], 7);
        assert_eq!(c.proposals_committed, 99);
        assert!((c.cpu_s - 1.5).abs() < 1e-9);
    }

    #[test]
    fn window_deltas_per_fire() {
        let before = parse_counters(METRICS);
        let mut after = before.clone();
        *after.requests.get_mut("Txn").unwrap() += 200;
        *after.requests.get_mut("Range").unwrap() += 50;
        after.proposals_committed += 100;
        after.cpu_s += 0.5;
        let r = before.report(&after, 100, "3.4", 0);
        assert_eq!(r.requests, 250);
        assert!((r.requests_per_fire - 2.5).abs() < 1e-9);
        assert!((r.per_method_per_fire["Txn"] - 2.0).abs() < 1e-9);
        assert!(!r.per_method_per_fire.contains_key("LeaseKeepAlive"));
        assert!((r.proposals_per_fire - 1.0).abs() < 1e-9);
        assert!((r.server_cpu_s_per_1000_fires - 5.0).abs() < 1e-9);
    }

    #[test]
    fn claim_records_from_the_shard_document() {
        let doc = serde_json::json!({
            "claims": {"job-1@2000": ["n1|7|1"]},
            "watermarks": {"job-2": {"at": 3000, "record": "n2|8|1"}},
        });
        assert_eq!(claim_of(&doc, "job-1", 2000).as_deref(), Some("n1|7|1"));
        assert_eq!(claim_of(&doc, "job-2", 3000).as_deref(), Some("n2|8|1"));
        assert_eq!(claim_of(&doc, "job-2", 4000), None);
        assert_eq!(claim_of(&doc, "job-3", 2000), None);
    }
}
