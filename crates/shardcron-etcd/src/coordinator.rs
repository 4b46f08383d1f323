//! [`EtcdCoordinator`]: connection, options, and the `Coordinator` trait
//! delegating to the modules that do the work.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, ConnectOptions, TlsOptions};
use shardcron_coord::{
    BatchOutcome, ClaimBatch, CloseFire, CoordError, CoordEvent, CoordResult, Coordinator,
    HandBack, JobPage, LeaseGrant, LeaseInfo, MemberInfo, Membership, OpenFire, PlacementInputs,
    QueuedTrigger, RecoverBatch, RecoverOutcome, RunRecord, ShardJobs, StoredJob,
};
use shardcron_core::{JobSpec, PlacementRecord, RingConfig};
use tokio::sync::{broadcast, oneshot};

use crate::client::{now_ms, Etcd};
use crate::compaction::Compacted;
use crate::keys::Keys;

/// An etcd lease this coordinator keeps alive, and its TTL in seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EtcdLease {
    /// etcd's lease id.
    pub(crate) id: i64,
    /// Its TTL, whole seconds.
    pub(crate) ttl: i64,
}

/// Everything the modules share.
pub(crate) struct Inner {
    pub(crate) etcd: Etcd,
    pub(crate) keys: Keys,
    pub(crate) namespace: String,
    pub(crate) ring: RingConfig,
    /// Per holder, the etcd lease its shard keys are attached to.
    pub(crate) holder_leases: Mutex<HashMap<String, EtcdLease>>,
    /// Per member id, the etcd lease its registration is attached to.
    pub(crate) member_leases: Mutex<HashMap<String, EtcdLease>>,
    /// Keys of a holder that renewals stopped naming, since when.
    pub(crate) unnamed_since: Mutex<HashMap<(String, u32, u64), Instant>>,
    /// Record time of the last sweep of deleted jobs' history.
    pub(crate) history_swept_ms: Mutex<Option<i64>>,
}

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `etcd://[user:password@]host:port[,host:port…]`, or `etcds://` for TLS
    /// (server certificates checked against the system's roots).
    pub url: String,
    /// Namespace: every key starts with `/shardcron/<namespace>/`.
    pub namespace: String,
    /// Ring settings every node of the namespace must share.
    pub ring: RingConfig,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long any request may take before it is `Unreachable`.
    pub response_timeout: Duration,
    /// Self-compaction interval ([`crate::compaction`]): the fleet
    /// compacts etcd's history about once per interval, keeping at least
    /// one interval of it. `None`: never (the server's own
    /// `--auto-compaction-*` or an operator must then keep history
    /// bounded, or etcd reaches its quota and refuses every write).
    pub compact_every: Option<Duration>,
}

impl EtcdOptions {
    /// Options with the default timeouts (2 s each, as the other stores).
    pub fn new(url: impl Into<String>, namespace: impl Into<String>, ring: RingConfig) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
            ring,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            compact_every: Some(DEFAULT_COMPACT_EVERY),
        }
    }
}

/// The default self-compaction interval: with it the history kept stays
/// within about 2.5 × 5 s of writes (see docs/ARCHITECTURE.md, "etcd
/// store", Limits, for what that is per fire/s), and a watch further than
/// 5 s behind resyncs.
pub const DEFAULT_COMPACT_EVERY: Duration = Duration::from_secs(2);

/// A store URL split into what the client needs.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// User and password, if the URL names them.
    pub user: Option<(String, String)>,
    /// Whether the URL asks for TLS (`etcds://`).
    pub tls: bool,
    /// The self-compaction interval: [`DEFAULT_COMPACT_EVERY`] unless the
    /// URL says `?compact_every=<seconds>` (`0`: off, for a cluster that
    /// compacts itself or is shared with others; see [`crate::compaction`]).
    pub compact_every: Option<Duration>,
}

/// Parses `etcd://[user:password@]host:port[,host:port…][?compact_every=<s>]`
/// (or `etcds://`).
pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "expected etcd://host:port[,host:port…]".to_owned())?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let compact_every = parse_query(query)?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "etcd" => false,
        "etcds" => true,
        other => return Err(format!("scheme {other:?} is not etcd:// or etcds://")),
    };
    let rest = rest.trim_end_matches('/');
    let (user, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => {
            let (u, p) = auth
                .split_once(':')
                .ok_or_else(|| "credentials must be user:password".to_owned())?;
            (Some((u.to_owned(), p.to_owned())), hosts)
        }
        None => (None, rest),
    };
    let http = if tls { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = host
            .rsplit_once(':')
            .ok_or_else(|| format!("{host:?} has no port (host:port)"))?;
        if name.is_empty() {
            return Err(format!("{host:?} has no host name"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("invalid port {port:?} in {host:?}"))?;
        endpoints.push(format!("{http}://{host}"));
    }
    Ok(ParsedUrl {
        endpoints,
        user,
        tls,
        compact_every,
    })
}

/// The URL's query: `compact_every=<seconds>` (0: off), or nothing.
fn parse_query(query: &str) -> Result<Option<Duration>, String> {
    let mut compact_every = Some(DEFAULT_COMPACT_EVERY);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("compact_every", value)) => {
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| format!("compact_every={value:?} is not seconds (0: off)"))?;
                compact_every = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
            }
            _ => {
                return Err(format!(
                    "unknown URL option {pair:?} (known: compact_every)"
                ))
            }
        }
    }
    Ok(compact_every)
}

/// The URL without its password, for messages.
pub fn redact_etcd_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, hosts))) => {
            let user = rest.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{hosts}")
        }
        _ => url.to_owned(),
    }
}

/// The `Coordinator` contract on etcd. See the [crate docs](crate).
pub struct EtcdCoordinator {
    inner: Inner,
    events: broadcast::Sender<CoordEvent>,
    watch: tokio::task::JoinHandle<()>,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EtcdCoordinator {
    fn drop(&mut self) {
        self.watch.abort();
        if let Some(task) = &self.compactor {
            task.abort();
        }
    }
}

impl EtcdCoordinator {
    /// Connects with the default timeouts, checks (or stores) the ring
    /// settings and starts the event watch.
    /// The URL's `?compact_every=` sets [`EtcdOptions::compact_every`].
    pub async fn connect(url: &str, namespace: &str, ring: RingConfig) -> CoordResult<Self> {
        let mut options = EtcdOptions::new(url, namespace, ring);
        if let Ok(parsed) = parse_url(url) {
            options.compact_every = parsed.compact_every;
        }
        Self::connect_with(options).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(options: EtcdOptions) -> CoordResult<Self> {
        let redacted = redact_etcd_url(&options.url);
        let parsed = parse_url(&options.url).map_err(|message| CoordError::Store {
            op: "parse the store URL",
            message,
        })?;
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.response_timeout)
            .with_keep_alive(Duration::from_secs(2), options.response_timeout);
        if parsed.tls {
            connect = connect.with_tls(TlsOptions::new().with_native_roots());
        }
        if let Some((user, password)) = &parsed.user {
            connect = connect.with_user(user.clone(), password.clone());
        }
        let client = match tokio::time::timeout(
            options.connect_timeout,
            Client::connect(parsed.endpoints.clone(), Some(connect)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(crate::error::map_err(&redacted, "connect", e)),
            Err(_) => return Err(crate::error::timed_out(&redacted, "connect")),
        };
        let keys = Keys::new(&options.namespace);
        let inner = Inner {
            etcd: Etcd::new(client.clone(), redacted.clone(), options.response_timeout),
            keys: keys.clone(),
            namespace: options.namespace.clone(),
            ring: options.ring,
            holder_leases: Mutex::default(),
            member_leases: Mutex::default(),
            unnamed_since: Mutex::default(),
            history_swept_ms: Mutex::default(),
        };
        inner.ensure_config().await?;
        let (events, _) = broadcast::channel(4096);
        let (ready_tx, ready_rx) = oneshot::channel();
        let watch = crate::events::spawn_watch(client, keys.clone(), events.clone(), ready_tx);
        let compactor = options
            .compact_every
            .map(|every| crate::compaction::spawn_compactor(inner.etcd.clone(), keys, every));
        let coordinator = Self {
            inner,
            events,
            watch,
            compactor,
        };
        // Events of this coordinator's own first writes must not be missed.
        if tokio::time::timeout(options.connect_timeout, ready_rx)
            .await
            .is_err()
        {
            return Err(crate::error::timed_out(&redacted, "watch events"));
        }
        Ok(coordinator)
    }
}

impl EtcdCoordinator {
    /// One self-compaction check now, as the background task does every
    /// half interval (see [`crate::compaction`]): compacts history older
    /// than the revision of the last compaction if that is at least
    /// `interval` old and no other node's check won.
    pub async fn compact_history(&self, interval: Duration) -> CoordResult<Compacted> {
        crate::compaction::compact_once(&self.inner.etcd, &self.inner.keys, interval).await
    }
}

#[async_trait]
impl Coordinator for EtcdCoordinator {
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn ring_config(&self) -> RingConfig {
        self.inner.ring
    }

    async fn ensure_config(&self) -> CoordResult<()> {
        self.inner.ensure_config().await
    }

    /// etcd has no clock: this is the node's (see the crate docs).
    async fn server_time_ms(&self) -> CoordResult<i64> {
        Ok(now_ms())
    }

    async fn heartbeat(&self, member: &MemberInfo, ttl: Duration) -> CoordResult<i64> {
        self.inner.heartbeat(member, ttl).await
    }

    async fn deregister(&self, node_id: &str) -> CoordResult<()> {
        self.inner.deregister(node_id).await
    }

    async fn members(&self) -> CoordResult<Membership> {
        self.inner.members().await
    }

    async fn placement_inputs(
        &self,
        known_weights: Option<u64>,
        known_placement: Option<u64>,
        refresh: Duration,
    ) -> CoordResult<PlacementInputs> {
        self.inner
            .placement_inputs(known_weights, known_placement, refresh)
            .await
    }

    async fn store_placement(
        &self,
        expected: u64,
        record: &PlacementRecord,
    ) -> CoordResult<Option<u64>> {
        self.inner.store_placement(expected, record).await
    }

    async fn acquire_leases(
        &self,
        shards: &[u32],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<LeaseGrant>> {
        self.inner.acquire_leases(shards, holder, ttl).await
    }

    async fn renew_leases(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
        ttl: Duration,
    ) -> CoordResult<Vec<bool>> {
        self.inner.renew_leases(leases, holder, ttl).await
    }

    async fn release_leases(&self, leases: &[(u32, u64)], holder: &str) -> CoordResult<Vec<bool>> {
        self.inner.release_leases(leases, holder).await
    }

    async fn lease_holders(&self, shards: &[u32]) -> CoordResult<Vec<Option<LeaseInfo>>> {
        self.inner.lease_holders(shards).await
    }

    async fn claim_fires(
        &self,
        batches: &[ClaimBatch],
        retention: Duration,
    ) -> CoordResult<Vec<BatchOutcome>> {
        self.inner.claim_fires(batches, retention).await
    }

    async fn put_job(
        &self,
        spec: &JobSpec,
        expected_version: Option<u64>,
    ) -> CoordResult<StoredJob> {
        self.inner.put_job(spec, expected_version).await
    }

    async fn get_job(&self, job_id: &str) -> CoordResult<Option<StoredJob>> {
        self.inner.get_job(job_id).await
    }

    async fn delete_job(&self, job_id: &str, expected_version: Option<u64>) -> CoordResult<bool> {
        self.inner.delete_job(job_id, expected_version).await
    }

    async fn trigger_job(&self, job_id: &str) -> CoordResult<Option<i64>> {
        self.inner.trigger_job(job_id).await
    }

    async fn read_triggers(
        &self,
        leases: &[(u32, u64)],
        holder: &str,
    ) -> CoordResult<Vec<QueuedTrigger>> {
        self.inner.read_triggers(leases, holder).await
    }

    async fn list_jobs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> CoordResult<JobPage> {
        self.inner.list_jobs(prefix, after, limit).await
    }

    async fn load_shards(&self, shards: &[u32]) -> CoordResult<Vec<ShardJobs>> {
        self.inner.load_shards(shards).await
    }

    async fn shard_versions(&self, shards: &[u32]) -> CoordResult<Vec<u64>> {
        self.inner.shard_versions(shards).await
    }

    async fn record_runs(&self, runs: &[RunRecord]) -> CoordResult<()> {
        self.inner.record_runs(runs).await
    }

    async fn close_fires(&self, closes: &[CloseFire]) -> CoordResult<()> {
        self.inner.close_fires(closes).await
    }

    async fn record_and_close(&self, runs: &[RunRecord], closes: &[CloseFire]) -> CoordResult<()> {
        self.inner.record_and_close(runs, closes).await
    }

    async fn open_fires(&self, shards: &[u32]) -> CoordResult<Vec<Vec<OpenFire>>> {
        self.inner.open_fires(shards).await
    }

    async fn recover_fires(
        &self,
        batches: &[RecoverBatch],
        retention: Duration,
    ) -> CoordResult<Vec<RecoverOutcome>> {
        self.inner.recover_fires(batches, retention).await
    }

    async fn hand_back_fires(
        &self,
        holder: &str,
        fires: &[HandBack],
        retention: Duration,
    ) -> CoordResult<Vec<bool>> {
        self.inner.hand_back_fires(holder, fires, retention).await
    }

    async fn recent_runs(&self, job_id: Option<&str>, limit: usize) -> CoordResult<Vec<RunRecord>> {
        self.inner.recent_runs(job_id, limit).await
    }

    fn subscribe(&self) -> broadcast::Receiver<CoordEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_credentials_and_tls() {
        let p = parse_url("etcd://127.0.0.1:2379,10.0.0.2:2380").expect("parse");
        assert_eq!(
            p.endpoints,
            vec!["http://127.0.0.1:2379", "http://10.0.0.2:2380"]
        );
        assert!(!p.tls && p.user.is_none());
        let p = parse_url("etcds://u:secret@h:1").expect("parse");
        assert_eq!(p.endpoints, vec!["https://h:1"]);
        assert_eq!(p.user, Some(("u".into(), "secret".into())));
        assert!(parse_url("etcd://h").is_err());
        assert!(parse_url("etcd://h:notaport").is_err());
        assert_eq!(redact_etcd_url("etcds://u:secret@h:1"), "etcds://u:***@h:1");
        assert_eq!(p.compact_every, Some(DEFAULT_COMPACT_EVERY));
        let p = parse_url("etcd://h:1?compact_every=0").expect("parse");
        assert_eq!((p.endpoints.len(), p.compact_every), (1, None));
        let p = parse_url("etcd://h:1,g:2?compact_every=30").expect("parse");
        assert_eq!(p.compact_every, Some(Duration::from_secs(30)));
        assert_eq!(p.endpoints, vec!["http://h:1", "http://g:2"]);
        assert!(parse_url("etcd://h:1?compact_every=-1").is_err());
        assert!(parse_url("etcd://h:1?other=1").is_err());
    }
}
