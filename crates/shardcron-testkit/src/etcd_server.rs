//! A private `etcd` for tests: one member (or a three-member cluster) on
//! free loopback ports, data in a temporary directory, killed on drop.
//!
//! Why its own server: the etcd store's guarantees rest on etcd's leases,
//! transactions and watches, which only a real etcd shows, and a test must
//! never touch a machine's own etcd on port 2379. Raft timing is shortened
//! (`--heartbeat-interval 10 --election-timeout 100`) so a member starts and
//! elects itself in well under a second and leases can be as short as etcd
//! allows (1 s); `--max-txn-ops` is set explicitly to etcd's default
//! ([`MAX_TXN_OPS`]), so the tests prove the store needs no more.
//!
//! [`EtcdServer::kill`], [`stop`](EtcdServer::stop),
//! [`pause`](EtcdServer::pause), [`resume`](EtcdServer::resume) and
//! [`restart`](EtcdServer::restart) act on every member, the way the Redis
//! and PostgreSQL servers of this kit act on their process;
//! [`EtcdServer::kill_member`] kills one member of a cluster.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, retry_taken_ports, TestkitError};

/// Environment variable naming the `etcd` binary to use instead of `PATH`'s.
pub const ETCD_ENV: &str = "SHARDCRON_ETCD";

/// `--max-txn-ops` of the test servers: etcd's default, which the etcd
/// store keeps every transaction within.
pub const MAX_TXN_OPS: u32 = 128;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_FILE: &str = "etcd.log";

/// One member process of a private etcd.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    args: Vec<OsString>,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Member {
    fn live_child(&mut self) -> Option<&mut Child> {
        let exited = match self.child.as_mut() {
            None => return None,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        };
        if exited {
            self.child = None;
            self.paused = false;
        }
        self.child.as_mut()
    }

    fn launch(&mut self, binary: &Path) -> Result<(), TestkitError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))
            .map_err(|e| TestkitError::io("opening the etcd log", e))?;
        let err = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the etcd log handle", e))?;
        let child = Command::new(binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| TestkitError::io(format!("spawning {}", binary.display()), e))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    fn signal(&mut self, sig: libc::c_int) {
        if let Some(child) = self.live_child() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: kill(2) with a pid we spawned and still own (not reaped).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    fn kill(&mut self) {
        if let Some(child) = self.live_child() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
        self.paused = false;
    }

    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.signal(libc::SIGCONT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Some(child) = self.live_child() {
            match child.try_wait() {
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    self.kill();
                    return;
                }
                Ok(Some(_)) => break,
            }
        }
        self.child = None;
        self.paused = false;
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(LOG_FILE)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A private etcd (one member, or a cluster of three). See the
/// [module docs](self). All methods take `&self`.
#[derive(Debug)]
pub struct EtcdServer {
    members: Mutex<Vec<Member>>,
    binary: PathBuf,
    client_ports: Vec<u16>,
    // Dropped after `Drop::drop` has killed the processes.
    _dir: TempDir,
}

impl EtcdServer {
    /// Starts a one-member etcd and waits until it serves clients.
    pub fn start() -> Result<EtcdServer, TestkitError> {
        Self::start_members(1, &[])
    }

    /// Starts a one-member etcd given `extra` command-line flags after the
    /// kit's own (for example `--auto-compaction-retention`), and waits
    /// until it serves clients.
    pub fn start_with_args(extra: &[&str]) -> Result<EtcdServer, TestkitError> {
        Self::start_members(1, extra)
    }

    /// Starts a three-member etcd cluster and waits until every member
    /// serves clients.
    pub fn start_cluster() -> Result<EtcdServer, TestkitError> {
        Self::start_members(3, &[])
    }

    /// Starts `count` members on free ports, again on fresh ports (and a
    /// fresh directory) while a member finds one of its ports taken: a port
    /// found free can be bound by another process before etcd binds it.
    fn start_members(count: usize, extra: &[&str]) -> Result<EtcdServer, TestkitError> {
        let binary = resolve_binary()?;
        retry_taken_ports(port_taken, || {
            let mut ports = Vec::new();
            for _ in 0..count {
                ports.push((free_port()?, free_port()?));
            }
            Self::start_on(&binary, &ports, extra)
        })
    }

    /// Starts one member per `(client, peer)` port pair and waits until
    /// every member serves clients.
    fn start_on(
        binary: &Path,
        ports: &[(u16, u16)],
        extra: &[&str],
    ) -> Result<EtcdServer, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("shardcron-etcd-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating a temporary directory for etcd", e))?;
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let cluster = cluster.join(",");
        let mut members = Vec::new();
        for (i, &(client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let member_dir = dir.path().join(&name);
            std::fs::create_dir_all(&member_dir)
                .map_err(|e| TestkitError::io("creating an etcd member directory", e))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let args: Vec<OsString> = [
                "--name",
                &name,
                "--data-dir",
                &member_dir.join("data").to_string_lossy(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "shardcron-test",
                "--heartbeat-interval",
                "10",
                "--election-timeout",
                "100",
                "--max-txn-ops",
                &MAX_TXN_OPS.to_string(),
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            .iter()
            .chain(extra)
            .map(OsString::from)
            .collect();
            members.push(Member {
                name,
                client_port: client,
                args,
                dir: member_dir,
                child: None,
                paused: false,
            });
        }
        for member in &mut members {
            member.launch(binary)?;
        }
        let server = EtcdServer {
            members: Mutex::new(members),
            binary: binary.to_owned(),
            client_ports: ports.iter().map(|(c, _)| *c).collect(),
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every running member accepts client connections and
    /// answers `/health` with `true`.
    fn wait_ready(&self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut members = self.lock();
        for i in 0..members.len() {
            loop {
                // Any member that exited (a port taken, say) is reported at
                // once, not after the others time out without a quorum.
                for member in members.iter_mut() {
                    if member.live_child().is_none() {
                        return Err(TestkitError::EtcdStartFailed {
                            port: member.client_port,
                            reason: "exited".into(),
                            log_tail: member.log_tail(),
                        });
                    }
                }
                let member = &members[i];
                if healthy(member.client_port) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(TestkitError::EtcdStartFailed {
                        port: member.client_port,
                        reason: format!("not healthy within {START_TIMEOUT:?}"),
                        log_tail: member.log_tail(),
                    });
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The store URL of every member: `etcd://127.0.0.1:p1,127.0.0.1:p2,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Client addresses, one per member.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.client_ports
            .iter()
            .map(|&p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .collect()
    }

    /// Member names (`m0`, `m1`, …), in the order of [`Self::addrs`].
    pub fn member_names(&self) -> Vec<String> {
        self.lock().iter().map(|m| m.name.clone()).collect()
    }

    /// Whether every member runs.
    pub fn is_running(&self) -> bool {
        self.lock().iter_mut().all(|m| m.live_child().is_some())
    }

    /// SIGKILLs every member.
    pub fn kill(&self) {
        self.lock().iter_mut().for_each(Member::kill);
    }

    /// SIGKILLs member `i` only (a cluster keeps its quorum with two).
    pub fn kill_member(&self, i: usize) {
        if let Some(m) = self.lock().get_mut(i) {
            m.kill();
        }
    }

    /// Stops every member gracefully (SIGTERM; SIGKILL after 10 s).
    pub fn stop(&self) {
        self.lock().iter_mut().for_each(Member::stop);
    }

    /// Freezes every member with SIGSTOP.
    pub fn pause(&self) {
        for m in self.lock().iter_mut() {
            m.signal(libc::SIGSTOP);
            m.paused = true;
        }
    }

    /// Continues every member with SIGCONT.
    pub fn resume(&self) {
        for m in self.lock().iter_mut() {
            m.signal(libc::SIGCONT);
            m.paused = false;
        }
    }

    /// Starts every member that is not running again on the same ports and
    /// data (killing none that runs), and waits until all are healthy.
    pub fn restart(&self) -> Result<(), TestkitError> {
        {
            let mut members = self.lock();
            for m in members.iter_mut() {
                if m.live_child().is_none() {
                    m.launch(&self.binary)?;
                }
            }
        }
        self.wait_ready()
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        self.lock().get(i).map(Member::log_tail).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /health` answers `{"health":"true"}` once the member has a leader.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.contains("\"health\":\"true\"")
}

fn resolve_binary() -> Result<PathBuf, TestkitError> {
    if let Some(path) = std::env::var_os(ETCD_ENV) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .ok_or(TestkitError::EtcdNotFound)
}

/// Whether a start failed because a member could not bind one of its ports.
fn port_taken(e: &TestkitError) -> bool {
    matches!(e, TestkitError::EtcdStartFailed { log_tail, .. } if log_tail.contains("address already in use"))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_member_whose_port_is_taken_fails_as_a_taken_port() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let binary = resolve_binary().expect("etcd");
        for ports in [
            (port, free_port().expect("port")),
            (free_port().expect("port"), port),
        ] {
            let err = EtcdServer::start_on(&binary, &[ports], &[]).expect_err("the port is taken");
            assert!(port_taken(&err), "{err}");
        }
        // A start that fails for another reason is not retried.
        let err = EtcdServer::start_on(&binary, &[(port, port)], &["--no-such-flag"])
            .expect_err("a bad flag");
        assert!(!port_taken(&err), "{err}");
    }
}
