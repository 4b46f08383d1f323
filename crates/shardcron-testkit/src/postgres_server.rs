//! A real, private PostgreSQL server per test.
//!
//! The PostgreSQL store's guarantees rest on real PostgreSQL behaviour
//! (row locks, `ON CONFLICT`, advisory locks, what survives a crash), and on
//! how clients behave when the server dies or stalls. Only a server the test
//! owns can be killed, paused and restarted without touching a developer's
//! own PostgreSQL (which tests must never connect to). So every
//! [`PostgresServer`]:
//!
//! * has its own cluster (`initdb`) in a fresh temporary directory, and runs
//!   `postgres` on a free `127.0.0.1` port with its Unix socket directory
//!   inside that temporary directory (never the system's socket directory);
//! * signals the postmaster *and* every process it forked (each backend
//!   is a session of its own, so a process group does not reach them), so
//!   [`kill`](PostgresServer::kill), [`pause`](PostgresServer::pause) and
//!   [`resume`](PostgresServer::resume) act on open connections too;
//! * runs as the unprivileged `postgres` user when the tests run as root
//!   (PostgreSQL refuses to run as root), the temporary directory handed
//!   over to that user;
//! * is killed, and its directory removed, when dropped.
//!
//! `initdb` and `postgres` are taken from `PATH`, or else from the highest
//! version under `/usr/lib/postgresql/*/bin` (where Debian installs them).
//! The cluster trusts local connections: user `postgres`, database
//! `postgres`, no password.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::redis_server::{find_executable, is_port_in_use, read_from, spawn, tail_lines};
use crate::{free_port, retry_taken_ports};

/// How long to wait for a freshly started server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`PostgresServer::restart`] keeps retrying a busy port.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`PostgresServer::stop`] waits for a clean exit before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the log included in startup errors.
const ERROR_LOG_LINES: usize = 30;
/// Where Debian installs the server binaries, one directory per version.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";
/// The unprivileged user the server runs as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// Where the temporary directory goes when the server runs as another user.
const SHARED_TMP: &str = "/tmp";

const LOG_FILE: &str = "postgres.log";
const DATA_DIR: &str = "data";

/// A PostgreSQL server on `127.0.0.1:<port>`, owned by the test.
///
/// All methods take `&self`, so a server can be shared between the test
/// body and tasks that inject faults.
#[derive(Debug)]
pub struct PostgresServer {
    state: Mutex<Option<Child>>,
    paused: Mutex<bool>,
    port: u16,
    bin: PathBuf,
    user: Option<(libc::uid_t, libc::gid_t)>,
    // Dropped after `Drop::drop` has killed the processes.
    dir: TempDir,
}

impl PostgresServer {
    /// Creates a cluster and starts it on a free port.
    pub fn start() -> Result<PostgresServer, TestkitError> {
        let bin = resolve_bin_dir()?;
        let user = server_user()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("shardcron-pg-");
        // The server user must reach the directory: under root, a TMPDIR
        // inside a private home would not do, /tmp does.
        let dir = match user {
            Some(_) if Path::new(SHARED_TMP).is_dir() => builder.tempdir_in(SHARED_TMP),
            _ => builder.tempdir(),
        }
        .map_err(|e| TestkitError::io("creating a temporary directory", e))?;
        if let Some((uid, gid)) = user {
            chown(dir.path(), uid, gid)?;
        }
        run_initdb(&bin, dir.path(), user)?;
        let (port, child) = retry_taken_ports(is_port_in_use, || {
            let port = free_port()?;
            Ok((port, launch(&bin, dir.path(), port, user)?))
        })?;
        Ok(PostgresServer {
            state: Mutex::new(Some(child)),
            paused: Mutex::new(false),
            port,
            bin,
            user,
            dir,
        })
    }

    /// The TCP port (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, ready for a client.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The temporary directory (cluster, socket, log). Removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's process id, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.live().as_ref().map(Child::id)
    }

    /// Whether the postmaster is alive (a paused server is still running).
    pub fn is_running(&self) -> bool {
        self.live().is_some()
    }

    /// Kills the postmaster and every backend with SIGKILL (a crash: the
    /// next start replays the WAL) and waits for the postmaster.
    pub fn kill(&self) {
        let mut state = self.live();
        kill_group(&mut state);
        *self.paused_flag() = false;
    }

    /// Shuts the server down (SIGINT, PostgreSQL's fast shutdown) and waits;
    /// SIGKILL after 10 s. Works on a paused server too.
    pub fn stop(&self) {
        let mut state = self.live();
        let Some(child) = state.as_mut() else {
            return;
        };
        let pid = child.id();
        // A stopped process only acts on a signal once continued; fast
        // shutdown is SIGINT to the postmaster alone.
        signal_group(pid, libc::SIGCONT);
        signal_only(pid, libc::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    kill_group(&mut state);
                    break;
                }
            }
        }
        *state = None;
        *self.paused_flag() = false;
    }

    /// Starts the server again on the same port and cluster (data written
    /// before a [`kill`](Self::kill) is recovered from the WAL). A running
    /// server is killed first. Retries for up to 10 s while the port is busy.
    pub fn restart(&self) -> Result<(), TestkitError> {
        let mut state = self.live();
        kill_group(&mut state);
        *self.paused_flag() = false;
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match launch(&self.bin, self.dir.path(), self.port, self.user) {
                Ok(child) => {
                    *state = Some(child);
                    return Ok(());
                }
                Err(TestkitError::PortInUse { .. }) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes the postmaster and every backend with SIGSTOP: connections
    /// stay open, nothing is answered.
    pub fn pause(&self) {
        let state = self.live();
        if let Some(child) = state.as_ref() {
            signal_group(child.id(), libc::SIGSTOP);
            *self.paused_flag() = true;
        }
    }

    /// Continues a paused server with SIGCONT.
    pub fn resume(&self) {
        let state = self.live();
        if let Some(child) = state.as_ref() {
            signal_group(child.id(), libc::SIGCONT);
            *self.paused_flag() = false;
        }
    }

    /// Whether the server is paused with [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.is_running() && *self.paused_flag()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_lines(&read_from(&self.dir.path().join(LOG_FILE), 0), n)
    }

    /// Runs `sql` with `psql` (unaligned, tuples only) and returns its
    /// output without the final newline; for setup and assertions without
    /// a client library.
    pub fn psql(&self, sql: &str) -> Result<String, TestkitError> {
        let psql = self.bin.join("psql");
        let out = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestkitError::io(format!("running {}", psql.display()), e))?;
        if !out.status.success() {
            return Err(TestkitError::ErrorReply(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_owned())
    }

    fn live(&self) -> MutexGuard<'_, Option<Child>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let exited = match state.as_mut() {
            None => false,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        };
        if exited {
            // Backends of a dead postmaster exit by themselves; make sure.
            kill_group(&mut state);
        }
        state
    }

    fn paused_flag(&self) -> MutexGuard<'_, bool> {
        self.paused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        kill_group(state);
    }
}

/// SIGKILLs the child's process group and reaps the child, if any.
fn kill_group(state: &mut Option<Child>) {
    if let Some(mut child) = state.take() {
        signal_group(child.id(), libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends `sig` to the postmaster `pid` and to every process it forked
/// (backends and auxiliary processes, found in `/proc` by parent pid).
/// SIGSTOP goes to the postmaster first, so it forks no child after the
/// scan; SIGCONT goes to it last. SIGKILL stops the postmaster first and
/// kills it last: children of a dead postmaster are re-parented at once,
/// so a scan after its death finds none, and a backend left alive can
/// still answer a query on its open connection (seen: a read succeeding
/// right after `kill`).
fn signal_group(pid: u32, sig: libc::c_int) {
    let send = |pid: u32| signal_only(pid, sig);
    if sig == libc::SIGKILL {
        signal_only(pid, libc::SIGSTOP);
        children(pid).into_iter().for_each(send);
        send(pid);
    } else if sig == libc::SIGSTOP {
        send(pid);
        children(pid).into_iter().for_each(send);
    } else {
        children(pid).into_iter().for_each(send);
        send(pid);
    }
}

/// Sends `sig` to `pid` alone.
fn signal_only(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Processes whose parent is `pid`, from `/proc/<pid>/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            // The fields after the command name (which may hold spaces and
            // parentheses): state, then the parent pid.
            let after = stat.rsplit_once(')')?.1;
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The directory holding `initdb` and `postgres`: `PATH` first, then the
/// highest version under `/usr/lib/postgresql/*/bin`.
fn resolve_bin_dir() -> Result<PathBuf, TestkitError> {
    if let (Some(initdb), Some(_)) = (
        find_executable(Path::new("initdb")),
        find_executable(Path::new("postgres")),
    ) {
        // Follow a symlink (a `/usr/local/bin` link into the Debian tree)
        // so `psql` is found next to it.
        let real = fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent() {
            if dir.join("postgres").is_file() {
                return Ok(dir.to_owned());
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_LIB_DIR)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("postgres").is_file().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(TestkitError::PostgresNotFound)
}

/// The user to run the server as: `None` (the caller) unless running as
/// root, then the `postgres` system user.
fn server_user() -> Result<Option<(libc::uid_t, libc::gid_t)>, TestkitError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SERVER_USER).map_err(|_| TestkitError::NoServerUser)?;
    // SAFETY: getpwnam gets a valid NUL-terminated string; the returned
    // record is read at once, before any other call that could reuse it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(TestkitError::NoServerUser);
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown(path: &Path, uid: libc::uid_t, gid: libc::gid_t) -> Result<(), TestkitError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| TestkitError::io(format!("handing {} to {SERVER_USER}", path.display()), e))
}

fn log_file(dir: &Path) -> Result<(File, File), TestkitError> {
    let path = dir.join(LOG_FILE);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TestkitError::io(format!("opening {}", path.display()), e))?;
    let err = log
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating the log handle", e))?;
    Ok((log, err))
}

fn run_initdb(
    bin: &Path,
    dir: &Path,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Result<(), TestkitError> {
    let (stdout, stderr) = log_file(dir)?;
    if let Some((uid, gid)) = user {
        chown(&dir.join(LOG_FILE), uid, gid)?;
    }
    let args: Vec<OsString> = vec![
        "-D".into(),
        dir.join(DATA_DIR).into(),
        "-U".into(),
        "postgres".into(),
        "-A".into(),
        "trust".into(),
        "-E".into(),
        "UTF8".into(),
        "--no-locale".into(),
        "--no-sync".into(),
    ];
    let initdb = bin.join("initdb");
    let mut child = spawn::spawn(spawn::SpawnSpec {
        program: initdb.clone(),
        args,
        stdout,
        stderr,
        user,
        new_group: false,
    })
    .map_err(|e| TestkitError::io(format!("spawning {}", initdb.display()), e))?;
    let status = child
        .wait()
        .map_err(|e| TestkitError::io("waiting for initdb", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(TestkitError::InitdbFailed {
            status: status.to_string(),
            log_tail: tail_lines(&read_from(&dir.join(LOG_FILE), 0), ERROR_LOG_LINES),
        })
    }
}

/// Starts `postgres` and waits until it accepts connections; on failure
/// the processes are killed.
fn launch(
    bin: &Path,
    dir: &Path,
    port: u16,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Result<Child, TestkitError> {
    let offset = fs::metadata(dir.join(LOG_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let (stdout, stderr) = log_file(dir)?;
    let settings = [
        "listen_addresses=127.0.0.1".to_owned(),
        format!("unix_socket_directories={}", dir.display()),
        "fsync=off".to_owned(),
        "full_page_writes=off".to_owned(),
        "shared_buffers=16MB".to_owned(),
        "max_connections=200".to_owned(),
        "logging_collector=off".to_owned(),
    ];
    let mut args: Vec<OsString> = vec![
        "-D".into(),
        dir.join(DATA_DIR).into(),
        "-p".into(),
        port.to_string().into(),
    ];
    for s in settings {
        args.push("-c".into());
        args.push(s.into());
    }
    let postgres = bin.join("postgres");
    let mut child = spawn::spawn(spawn::SpawnSpec {
        program: postgres.clone(),
        args,
        stdout,
        stderr,
        user,
        new_group: true,
    })
    .map_err(|e| TestkitError::io(format!("spawning {}", postgres.display()), e))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let output = || tail_lines(&read_from(&dir.join(LOG_FILE), offset), ERROR_LOG_LINES);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = output();
                let mut state = Some(child);
                kill_group(&mut state);
                return Err(
                    if log.contains("could not bind") || log.contains("in use") {
                        TestkitError::PortInUse { port }
                    } else {
                        TestkitError::PostgresExited {
                            port,
                            status: status.to_string(),
                            log_tail: log,
                        }
                    },
                );
            }
            Ok(None) => {}
            Err(e) => return Err(TestkitError::io("checking postgres status", e)),
        }
        let log = read_from(&dir.join(LOG_FILE), offset);
        if log.contains("ready to accept connections")
            && TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_millis(250),
            )
            .is_ok()
        {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let mut state = Some(child);
            kill_group(&mut state);
            return Err(TestkitError::PostgresStartTimeout {
                port,
                timeout: READY_TIMEOUT,
                log_tail: output(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}
