//! A private Redis Sentinel group: a master, a replica and three
//! sentinels, each a [`RedisServer`].
//!
//! The sentinel store finds its master by asking sentinels and must follow
//! a failover without a restart; only real sentinels, which really promote
//! the replica when the master is killed (and turn the old master, once
//! back, into a replica of the new one), show that it does. Three sentinels
//! with a quorum of two is the smallest group that still elects a leader
//! with one sentinel down, and the usual production shape. The failover
//! settings are fast (the master counts as down after
//! [`DOWN_AFTER_MS`]) so a test crosses a failover in seconds.

use std::fs;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::poll::poll_until;
use crate::redis_server::RedisServer;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "shardcron";
/// `down-after-milliseconds`: how long the master may be unreachable
/// before the sentinels fail it over.
///
/// Not 1 s, although that would fail over a second sooner: a sentinel
/// pings a master once a second, and at a master switch it links to the
/// promoted replica afresh and counts it as awaiting a reply from that
/// instant. With 1 s of grace, a loaded machine answering that first ping
/// a little late made the sentinels see the new master down one second
/// after promoting it, and fail over back to the lost master, restarted
/// empty and not yet their replica: every key gone. 2 s leaves a full
/// ping period of slack.
pub const DOWN_AFTER_MS: u64 = 2_000;
/// `failover-timeout`, ms: how long one failover attempt may take before
/// another sentinel retries it.
const FAILOVER_TIMEOUT_MS: u64 = 3_000;
/// Sentinels that must agree the master is down.
const QUORUM: usize = 2;
/// How long setting up the group, or a failover, may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private Sentinel group. Dropping it kills every process.
#[derive(Debug)]
pub struct SentinelGroup {
    /// The master as started, then the replica.
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    url_options: std::sync::Mutex<String>,
    /// The passwords of [`Self::start_with_passwords`], if any.
    passwords: Option<GroupPasswords>,
    // Removed after the sentinels (declared after them).
    config_dir: TempDir,
}

/// The passwords a client must give, to the data servers and to the
/// sentinels (see [`SentinelGroup::start_with_passwords`]).
#[derive(Clone, Debug)]
pub struct GroupPasswords {
    /// `requirepass` of the master and its replica (and the `masterauth`
    /// of a replica, the `auth-pass` the sentinels use).
    pub data: String,
    /// `requirepass` of the sentinels (and the `sentinel-pass` they use
    /// with each other).
    pub sentinel: String,
}

impl SentinelGroup {
    /// Starts a master, one replica of it and three sentinels monitoring
    /// it, and waits until the replica's link is up and every sentinel
    /// knows the replica and the other two sentinels (so that a failover
    /// can be voted and has a replica to promote).
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(None)
    }

    /// Like [`Self::start`], with every server protected as in production:
    /// the data servers need `passwords.data` (replicas log in to their
    /// master with it, and so do the sentinels), the sentinels need
    /// `passwords.sentinel` (they log in to each other with it). A client
    /// without them is refused. [`Self::url`] then carries both.
    pub fn start_with_passwords(passwords: GroupPasswords) -> Result<Self, TestkitError> {
        Self::start_with(Some(passwords))
    }

    fn start_with(passwords: Option<GroupPasswords>) -> Result<Self, TestkitError> {
        // Replicas sync without the default 5 s wait for more replicas to
        // share one transfer: the group is ready, and a lost master back
        // as a replica, in about a second.
        let data_server = || {
            let builder = RedisServer::builder()
                .arg("--repl-diskless-sync-delay")
                .arg("0");
            match &passwords {
                Some(p) => builder
                    .password(p.data.clone())
                    .arg("--masterauth")
                    .arg(p.data.clone()),
                None => builder,
            }
        };
        let master = data_server().start()?;
        let replica = data_server()
            .arg("--replicaof")
            .arg("127.0.0.1")
            .arg(master.port().to_string())
            .start()?;
        let config_dir = tempfile::Builder::new()
            .prefix("shardcron-sentinel-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating a directory for sentinel configs", e))?;
        let mut config = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} {QUORUM}\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = master.port()
        );
        if let Some(p) = &passwords {
            config.push_str(&format!(
                "sentinel auth-pass {MASTER_NAME} {}\nsentinel sentinel-pass {}\n",
                p.data, p.sentinel
            ));
        }
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let path = config_dir.path().join(format!("sentinel-{i}.conf"));
            fs::write(&path, &config)
                .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
            let sentinel = RedisServer::builder().config_file(path).arg("--sentinel");
            let sentinel = match &passwords {
                Some(p) => sentinel.password(p.sentinel.clone()),
                None => sentinel,
            };
            sentinels.push(sentinel.start()?);
        }
        let group = Self {
            servers: vec![master, replica],
            sentinels,
            url_options: std::sync::Mutex::default(),
            passwords,
            config_dir,
        };
        group.wait_replicas()?;
        wait_for("every sentinel to know the replica and the others", || {
            for sentinel in &group.sentinels {
                let info = sentinel.command(&["SENTINEL", "MASTER", MASTER_NAME])?;
                let field = |name: &str| {
                    let mut lines = info.lines();
                    lines.find(|l| *l == name)?;
                    lines.next()?.parse::<usize>().ok()
                };
                if field("num-slaves") < Some(1) || field("num-other-sentinels") < Some(2) {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(group)
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/shardcron`:
    /// the store URL of this group, with the options given to
    /// [`Self::set_url_options`] as its query (and, for a group with
    /// passwords, `:password@` and `sentinel_password`).
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let mut options: Vec<String> = Vec::new();
        let mut login = String::new();
        if let Some(p) = &self.passwords {
            login = format!(":{}@", p.data);
            options.push(format!("sentinel_password={}", p.sentinel));
        }
        let set = self
            .url_options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !set.is_empty() {
            options.push(set);
        }
        let query = if options.is_empty() {
            String::new()
        } else {
            format!("?{}", options.join("&"))
        };
        format!(
            "redis+sentinel://{login}{}/{MASTER_NAME}{query}",
            sentinels.join(",")
        )
    }

    /// Store URL options that [`Self::url`] carries from now on (e.g.
    /// `min_replicas=0`).
    pub fn set_url_options(&self, options: &str) {
        *self
            .url_options
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = options.to_owned();
    }

    /// The data servers as started: the master first, then the replica (a
    /// failover may have swapped their roles since: see [`Self::master`]).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The port of the master, as the first running sentinel names it.
    pub fn master_port(&self) -> Result<u16, TestkitError> {
        let sentinel = self
            .sentinels
            .iter()
            .find(|s| s.is_running())
            .ok_or(TestkitError::NotRunning)?;
        named_master(sentinel)
    }

    /// The data server the sentinels name as master now.
    pub fn master(&self) -> Result<&RedisServer, TestkitError> {
        let port = self.master_port()?;
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .ok_or_else(|| TestkitError::SentinelSetup(format!("no server on port {port}")))
    }

    /// Waits until the master on `port` (killed) is replaced: every running
    /// sentinel names another server, and that server says it is master.
    pub fn wait_failover(&self, port: u16) -> Result<(), TestkitError> {
        wait_for("the sentinels to promote the replica", || {
            not_yet_on_io(self.failed_over(port))
        })
    }

    /// Whether every running sentinel names one server other than `port`,
    /// and that server says it is master.
    fn failed_over(&self, port: u16) -> Result<bool, TestkitError> {
        let mut named = None;
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            let master = named_master(sentinel)?;
            if master == port || named.is_some_and(|n| n != master) {
                return Ok(false);
            }
            named = Some(master);
        }
        let Some(server) = self.servers.iter().find(|s| Some(s.port()) == named) else {
            return Ok(false);
        };
        Ok(server.command(&["ROLE"])?.starts_with("master"))
    }

    /// Waits until every running data server but the master is its replica
    /// with the link up (after a failover: the old master, restarted, was
    /// turned into a replica of the new one and has synced).
    pub fn wait_replicas(&self) -> Result<(), TestkitError> {
        wait_for("every replica linked to the master", || {
            not_yet_on_io(self.replicas_linked())
        })
    }

    /// Whether every running data server but the named master is its
    /// replica with the link up, and acknowledges what the master writes.
    ///
    /// A link that is up is not enough for a test that then needs `WAIT`
    /// to succeed: after a diskless full sync the master holds back the
    /// stream until the replica acknowledges it is online, and an
    /// acknowledgement that arrives before the master has seen the
    /// transfer end is not taken for one; the next comes a second later.
    fn replicas_linked(&self) -> Result<bool, TestkitError> {
        let master = self.master_port()?;
        let Some(master_server) = self.servers.iter().find(|s| s.port() == master) else {
            return Ok(false);
        };
        let mut replicas = 0;
        for server in self.servers.iter().filter(|s| s.is_running()) {
            if server.port() == master {
                continue;
            }
            let info = server.command(&["INFO", "replication"])?;
            let linked = info.contains("role:slave")
                && info.contains(&format!("master_port:{master}\r"))
                && info.contains("master_link_status:up");
            if !linked {
                return Ok(false);
            }
            replicas += 1;
        }
        acknowledged_by(master_server, replicas)
    }

    /// What the sentinels did, from their logs, in time order: each line a
    /// sentinel's index and one failover event it logged (a master or
    /// replica seen down or back, a vote, a promotion, a master switch, a
    /// replica reconfigured). A failover run that went wrong prints this:
    /// whether the sentinels failed over more than once, and to which
    /// server, is the first question about it.
    pub fn failover_events(&self) -> String {
        // Each line starts with its time, so sorting the lines orders them.
        let mut events: Vec<String> = Vec::new();
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            for line in sentinel.log().lines() {
                if let Some((time, event)) = sentinel_event(line) {
                    events.push(format!("{time} sentinel-{i} {event}"));
                }
            }
        }
        events.sort();
        events.join("\n")
    }

    /// The directory of the sentinels' configuration files.
    pub fn config_dir(&self) -> &std::path::Path {
        self.config_dir.path()
    }
}

/// The master port `sentinel` names (`SENTINEL get-master-addr-by-name`).
fn named_master(sentinel: &RedisServer) -> Result<u16, TestkitError> {
    let reply = sentinel.command(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
    reply
        .lines()
        .nth(1)
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| TestkitError::SentinelSetup(format!("unexpected master address {reply:?}")))
}

/// Failover events a sentinel logs (`+sdown`, `+odown`, `+vote-for-leader`,
/// `+promoted-slave`, `+switch-master`, `+convert-to-slave`, …).
const FAILOVER_EVENTS: &[&str] = &[
    "sdown",
    "odown",
    "try-failover",
    "vote-for-leader",
    "elected-leader",
    "selected-slave",
    "promoted-slave",
    "failover-end",
    "failover-abort",
    "switch-master",
    "convert-to-slave",
    "reboot",
];

/// The time (`07 Dec 2026 16:05:43.137`) and the event of a sentinel log
/// line that records a failover event, or `None` for other lines.
fn sentinel_event(line: &str) -> Option<(&str, &str)> {
    // `pid:X 07 Dec 2026 16:05:43.137 # +sdown master shardcron …`
    let (_, rest) = line.split_once(":X ")?;
    let time = rest.get(..24)?;
    let event = rest.get(25..)?.trim_start_matches(['#', '*', ' ']);
    let name = event
        .split_whitespace()
        .next()?
        .trim_start_matches(['+', '-']);
    FAILOVER_EVENTS
        .contains(&name)
        .then_some((time.get(12..)?, event))
}

/// The channel of the probe [`acknowledged_by`] publishes.
const PROBE_CHANNEL: &str = "shardcron-testkit:replication-probe";

/// Whether `replicas` replicas of `master` acknowledge, within 100 ms, a
/// write it propagates to them: a `PUBLISH` (which stores nothing, so the
/// data a test reads is untouched), then `WAIT` on the same connection.
fn acknowledged_by(master: &RedisServer, replicas: usize) -> Result<bool, TestkitError> {
    let mut connection = master.connect(Duration::from_secs(5))?;
    connection.command(&["PUBLISH", PROBE_CHANNEL, "probe"])?;
    let acknowledged = connection.command(&["WAIT", &replicas.to_string(), "100"])?;
    Ok(acknowledged.parse::<usize>().is_ok_and(|n| n >= replicas))
}

/// A server asked mid-failover (restarting, or dropping its clients as it
/// turns into a replica) may reset the connection: that is "not yet", and
/// the wait's own deadline still ends a wait that never succeeds.
fn not_yet_on_io(asked: Result<bool, TestkitError>) -> Result<bool, TestkitError> {
    match asked {
        Err(e @ TestkitError::Io { .. }) => {
            tracing::debug!(error = %e, "a server of the sentinel group did not answer; asking again");
            Ok(false)
        }
        other => other,
    }
}

fn wait_for(
    what: &str,
    ready: impl FnMut() -> Result<bool, TestkitError>,
) -> Result<(), TestkitError> {
    poll_until(what, SETUP_TIMEOUT, TestkitError::SentinelSetup, ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_events_are_read_from_sentinel_log_lines() {
        let line =
            "4242:X 07 Dec 2026 16:05:43.137 # +switch-master shardcron 127.0.0.1 1 127.0.0.1 2";
        assert_eq!(
            sentinel_event(line),
            Some((
                "16:05:43.137",
                "+switch-master shardcron 127.0.0.1 1 127.0.0.1 2"
            ))
        );
        let line = "4242:X 07 Dec 2026 16:05:44.001 * +convert-to-slave slave 127.0.0.1:1 127.0.0.1 1 @ shardcron 127.0.0.1 2";
        assert_eq!(sentinel_event(line).map(|(t, _)| t), Some("16:05:44.001"));
        assert_eq!(
            sentinel_event("4242:X 07 Dec 2026 16:05:40.000 # -sdown master shardcron 127.0.0.1 1")
                .map(|(_, e)| e),
            Some("-sdown master shardcron 127.0.0.1 1")
        );
        // Other lines, and lines that are not a sentinel's, are not events.
        assert_eq!(
            sentinel_event("4242:X 07 Dec 2026 16:05:40.000 * Sentinel ID is 1234"),
            None
        );
        assert_eq!(
            sentinel_event("4242:X 07 Dec 2026 16:05:40.000 * +slave slave 127.0.0.1:2"),
            None
        );
        assert_eq!(sentinel_event("garbage +sdown"), None);
    }
}
