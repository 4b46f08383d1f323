//! A real, private `redis-server` per test.
//!
//! Why not a mock or the shared server on 6379? The scheduler's correctness
//! rests on Redis semantics (atomic scripts, key expiry, `SET NX PX`, what an
//! AOF restart preserves) and on how clients behave when the server dies,
//! stalls or comes back. Only a real server reproduces that, and only a server
//! the test owns can be killed, paused and restarted without disturbing other
//! tests or a developer's local Redis. So every [`RedisServer`]:
//!
//! * runs its own `redis-server` process bound to `127.0.0.1` on a free port,
//!   with its working directory (AOF/RDB files, `redis.log`) in a fresh
//!   temporary directory;
//! * is driven with plain `std::process` / `std::net` calls, so it can be used
//!   from synchronous tests and from inside async tests alike (the calls block
//!   briefly; prefer a multi-threaded runtime if a blocking call has to wait
//!   on something that runs on the same runtime);
//! * is killed, and its directory removed, when dropped. On Linux the process
//!   is additionally spawned with `PR_SET_PDEATHSIG`, so even a test binary
//!   that is killed outright does not leave servers behind.
//!
//! The binary is taken from the `SHARDCRON_REDIS_SERVER` environment variable,
//! or else `redis-server` on `PATH`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::TestkitError;
use crate::redis_tls::{self, ClientAuth, ServerTls};
use crate::resp::{RespConnection, RespValue};
use crate::test_pki::TestPki;
use crate::{free_port, retry_taken_ports};

/// Environment variable naming the redis-server binary to use.
pub const REDIS_SERVER_ENV: &str = "SHARDCRON_REDIS_SERVER";

/// How long to wait for a freshly started server to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::restart`] keeps retrying a busy port.
const RESTART_BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`RedisServer::stop`] waits for a graceful exit before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default timeout (connect and per read/write) of [`RedisServer::command`].
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of each log included in startup errors.
const ERROR_LOG_LINES: usize = 30;

pub(crate) const LOG_FILE: &str = "redis.log";
const CONSOLE_FILE: &str = "redis.console.log";

/// Configures and starts a [`RedisServer`]. Obtain one with
/// [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    appendonly: bool,
    config_file: Option<PathBuf>,
    extra_args: Vec<String>,
    binary: Option<PathBuf>,
    tls: Option<ClientAuth>,
    tls_pki: Option<Arc<TestPki>>,
    password: Option<String>,
}

impl RedisServerBuilder {
    /// Enables AOF persistence with `appendfsync always`, so every write that
    /// was acknowledged survives [`RedisServer::kill`] + [`RedisServer::restart`].
    /// Default: no persistence at all (`--save "" --appendonly no`).
    pub fn appendonly(mut self, enabled: bool) -> Self {
        self.appendonly = enabled;
        self
    }

    /// Appends one raw command-line argument (e.g. `"--maxmemory"` then
    /// `"10mb"`). Extra arguments come last, so they override the defaults.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Serves TLS only, with certificates of a fresh test CA made in the
    /// server's directory, asking clients for a certificate or not (see
    /// [`crate::redis_tls`]). [`RedisServer::url`] then names the CA and
    /// the client certificate.
    pub fn tls(mut self, auth: ClientAuth) -> Self {
        self.tls = Some(auth);
        self.tls_pki = None;
        self
    }

    /// Serves TLS only like [`Self::tls`], with the certificates of `pki`
    /// (shared by the nodes of one cluster, which must trust each other).
    pub fn tls_with(mut self, pki: Arc<TestPki>, auth: ClientAuth) -> Self {
        self.tls = Some(auth);
        self.tls_pki = Some(pki);
        self
    }

    /// Starts the server on this configuration file, read before the
    /// command-line arguments (which override it). A sentinel
    /// (`--sentinel`) needs one, which it rewrites as it learns the group.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Makes the default user need `password` (`--requirepass`; a
    /// sentinel's clients need it too). Every command this kit sends logs
    /// in with it first (`AUTH`); [`RedisServer::url`] does not carry it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        let password = password.into();
        self.extra_args.push("--requirepass".into());
        self.extra_args.push(password.clone());
        self.password = Some(password);
        self
    }

    /// Uses this redis-server binary instead of `SHARDCRON_REDIS_SERVER` /
    /// `PATH` lookup.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Starts the server on a free loopback port and waits until it answers
    /// `PING` (up to 10 s). Retries with a new port if the chosen one turns
    /// out to be taken.
    pub fn start(self) -> Result<RedisServer, TestkitError> {
        let binary = resolve_binary(self.binary.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix("shardcron-redis-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating temporary directory for redis-server", e))?;
        let tls = match (self.tls, self.tls_pki) {
            (Some(auth), Some(pki)) => Some(ServerTls::shared(pki, auth)),
            (Some(auth), None) => Some(ServerTls::create(dir.path(), auth)?),
            (None, _) => None,
        };
        let password = self.password.as_deref();
        let (port, args, child) = retry_taken_ports(is_port_in_use, || {
            let port = free_port()?;
            let mut args = server_args(port, dir.path(), self.appendonly, &[]);
            if let Some(tls) = &tls {
                args.extend(tls.args(port));
            }
            args.extend(self.extra_args.iter().map(OsString::from));
            if let Some(config) = &self.config_file {
                args.insert(0, config.as_os_str().to_owned());
            }
            let child = launch(&binary, &args, dir.path(), port, tls.is_some(), password)?;
            Ok((port, args, child))
        })?;
        tracing::debug!(port, pid = child.id(), dir = %dir.path().display(), "redis-server started");
        Ok(RedisServer {
            state: Mutex::new(State {
                child: Some(child),
                paused: false,
            }),
            port,
            binary,
            args,
            tls,
            password: self.password.clone(),
            dir,
        })
    }
}

/// A `redis-server` process owned by the test. See the [module docs](self).
///
/// All methods take `&self`, so a server can be shared (e.g. in an `Arc`)
/// between the test body and helper threads or tasks that inject faults.
#[derive(Debug)]
pub struct RedisServer {
    state: Mutex<State>,
    port: u16,
    binary: PathBuf,
    args: Vec<OsString>,
    tls: Option<ServerTls>,
    /// The default user's password, sent before every command.
    password: Option<String>,
    // Dropped after `Drop::drop` has killed the process.
    dir: TempDir,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    paused: bool,
}

impl State {
    /// The child, if it has not exited (reaps it if it has).
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
}

impl RedisServer {
    /// A builder with the defaults (no persistence, default binary lookup).
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a server with the defaults: no persistence
    /// (`--save "" --appendonly no`). Same as `RedisServer::builder().start()`.
    pub fn start() -> Result<RedisServer, TestkitError> {
        Self::builder().start()
    }

    /// The TCP port the server listens on (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:<port>`, ready for a Redis client; for a TLS
    /// server shardcron's `rediss://127.0.0.1:<port>?tls_ca=…&tls_cert=…&tls_key=…`.
    pub fn url(&self) -> String {
        match &self.tls {
            Some(tls) => tls.url(self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The certificates of a TLS server (`None`: plain TCP).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The server's working directory (AOF/RDB files, `redis.log`). Removed
    /// when the server is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, if the server is running.
    pub fn pid(&self) -> Option<u32> {
        self.lock().live_child().map(|c| c.id())
    }

    /// Whether the process is alive (a paused server is still running).
    pub fn is_running(&self) -> bool {
        self.lock().live_child().is_some()
    }

    /// Whether the server is currently paused with [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        let mut state = self.lock();
        state.live_child().is_some() && state.paused
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed beyond what
    /// `appendfsync always` already wrote) and waits for it to exit.
    /// No-op if it is not running.
    pub fn kill(&self) {
        let mut state = self.lock();
        kill_child(&mut state);
    }

    /// Shuts the server down gracefully (SIGTERM, which makes Redis flush and
    /// exit cleanly) and waits for it; falls back to SIGKILL after 10 s.
    /// Works on a paused server too. No-op if it is not running.
    pub fn stop(&self) {
        let mut state = self.lock();
        let Some(child) = state.live_child() else {
            return;
        };
        let pid = child.id();
        signal(pid, libc::SIGTERM);
        // A stopped process only acts on SIGTERM once continued.
        signal(pid, libc::SIGCONT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    tracing::debug!(port = self.port, %status, "redis-server stopped");
                    break;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) | Err(_) => {
                    tracing::warn!(port = self.port, "redis-server ignored SIGTERM, killing it");
                    kill_child(&mut state);
                    return;
                }
            }
        }
        state.child = None;
        state.paused = false;
    }

    /// Starts the server again on the **same port** and in the **same
    /// directory**, so an AOF written before [`kill`](Self::kill) or
    /// [`stop`](Self::stop) is reloaded. A still-running server is killed
    /// first (SIGKILL). Retries for up to 10 s while the port is still busy,
    /// then waits until the server answers `PING` (i.e. the AOF is loaded).
    pub fn restart(&self) -> Result<(), TestkitError> {
        let mut state = self.lock();
        kill_child(&mut state);
        let deadline = Instant::now() + RESTART_BIND_TIMEOUT;
        loop {
            match launch(
                &self.binary,
                &self.args,
                self.dir.path(),
                self.port,
                self.tls.is_some(),
                self.password.as_deref(),
            ) {
                Ok(child) => {
                    tracing::debug!(port = self.port, pid = child.id(), "redis-server restarted");
                    state.child = Some(child);
                    state.paused = false;
                    return Ok(());
                }
                Err(TestkitError::PortInUse { .. }) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes the process with SIGSTOP: connections stay open and the kernel
    /// still accepts new ones, but nothing is answered — like a server stuck
    /// in a long GC pause or on a frozen VM. No-op if it is not running.
    pub fn pause(&self) {
        let mut state = self.lock();
        if let Some(child) = state.live_child() {
            signal(child.id(), libc::SIGSTOP);
            state.paused = true;
        }
    }

    /// Continues a paused server with SIGCONT; requests queued meanwhile are
    /// then processed. No-op if it is not running.
    pub fn resume(&self) {
        let mut state = self.lock();
        if let Some(child) = state.live_child() {
            signal(child.id(), libc::SIGCONT);
            state.paused = false;
        }
    }

    /// All of `redis.log` (empty if it does not exist yet).
    pub fn log(&self) -> String {
        read_from(&self.dir.path().join(LOG_FILE), 0)
    }

    /// The last `n` lines of `redis.log` (empty if it does not exist yet).
    pub fn log_tail(&self, n: usize) -> String {
        tail_lines(&self.log(), n)
    }

    /// Sends one command on a fresh connection and returns the reply as text
    /// (see [`RespValue`]'s `Display`: bulk strings verbatim, integers in
    /// decimal, nulls as `(nil)`, arrays joined by `\n`). An error reply
    /// becomes [`TestkitError::ErrorReply`]. Uses a 5 s timeout; see
    /// [`command_timeout`](Self::command_timeout) for a shorter one. On a
    /// TLS server it runs `redis-cli --tls` (see [`crate::redis_tls`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), shardcron_testkit::TestkitError> {
    /// let server = shardcron_testkit::RedisServer::start()?;
    /// server.command(&["SET", "k", "v"])?;
    /// assert_eq!(server.command(&["GET", "k"])?, "v");
    /// # Ok(()) }
    /// ```
    pub fn command(&self, args: &[&str]) -> Result<String, TestkitError> {
        self.command_timeout(args, COMMAND_TIMEOUT)
    }

    /// Like [`command`](Self::command) with an explicit connect/read/write
    /// timeout; a paused server yields [`TestkitError::Timeout`].
    pub fn command_timeout(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, TestkitError> {
        self.query_timeout(args, timeout)?.into_text()
    }

    /// Like [`command`](Self::command) but returns the parsed reply (error
    /// replies included, as [`RespValue::Error`]).
    pub fn query(&self, args: &[&str]) -> Result<RespValue, TestkitError> {
        self.query_timeout(args, COMMAND_TIMEOUT)
    }

    /// Like [`query`](Self::query) with an explicit timeout.
    pub fn query_timeout(
        &self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<RespValue, TestkitError> {
        if !self.is_running() {
            return Err(TestkitError::NotRunning);
        }
        match &self.tls {
            Some(tls) => tls.query(self.port, args, timeout),
            None => self.connect(timeout)?.query(args),
        }
    }

    /// Opens a persistent [`RespConnection`] to the server with the given
    /// connect/read/write timeout (plain TCP: not to a TLS server).
    /// Logs in first when the server has a password.
    pub fn connect(&self, timeout: Duration) -> Result<RespConnection, TestkitError> {
        log_in(
            RespConnection::connect(self.addr(), timeout)?,
            self.password.as_deref(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        kill_child(state);
        // `dir` (the TempDir) is removed when the fields are dropped.
    }
}

/// SIGKILLs and reaps the child, if any.
fn kill_child(state: &mut State) {
    if let Some(mut child) = state.child.take() {
        // Errors mean it already exited; `wait` then just reaps it.
        let _ = child.kill();
        if let Err(e) = child.wait() {
            tracing::warn!(pid = child.id(), error = %e, "failed to reap redis-server");
        }
    }
    state.paused = false;
}

/// Sends `sig` to `pid`. Only called while the child is un-reaped, so the pid
/// cannot have been recycled.
fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        tracing::warn!(pid, sig, error = %std::io::Error::last_os_error(), "kill(2) failed");
    }
}

fn server_args(port: u16, dir: &Path, appendonly: bool, extra: &[String]) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(OsString::from(a));
    push("--bind");
    push("127.0.0.1");
    push("--port");
    push(&port.to_string());
    push("--daemonize");
    push("no");
    push("--protected-mode");
    push("no");
    push("--save");
    push("");
    if appendonly {
        push("--appendonly");
        push("yes");
        push("--appendfsync");
        push("always");
    } else {
        push("--appendonly");
        push("no");
    }
    args.push("--dir".into());
    args.push(dir.as_os_str().to_owned());
    args.push("--logfile".into());
    args.push(dir.join(LOG_FILE).into_os_string());
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Finds the redis-server binary: explicit path, then `SHARDCRON_REDIS_SERVER`,
/// then `redis-server` on `PATH`.
fn resolve_binary(explicit: Option<&Path>) -> Result<PathBuf, TestkitError> {
    if let Some(path) = explicit {
        return find_executable(path).ok_or_else(|| TestkitError::RedisBinaryInvalid {
            path: path.to_owned(),
            origin: "RedisServerBuilder::binary",
        });
    }
    if let Some(value) = std::env::var_os(REDIS_SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return find_executable(&path).ok_or(TestkitError::RedisBinaryInvalid {
            path,
            origin: REDIS_SERVER_ENV,
        });
    }
    find_executable(Path::new("redis-server")).ok_or(TestkitError::RedisNotFound)
}

/// Resolves `name` like a shell would: paths with a separator are checked
/// directly, bare names are searched on `PATH`.
pub(crate) fn find_executable(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        return is_executable(name).then(|| name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Byte offsets of the two log files before a launch, so errors show only the
/// output of that attempt.
#[derive(Clone, Copy)]
struct LogOffsets {
    log: u64,
    console: u64,
}

impl LogOffsets {
    fn capture(dir: &Path) -> Self {
        let len = |name: &str| fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
        LogOffsets {
            log: len(LOG_FILE),
            console: len(CONSOLE_FILE),
        }
    }

    /// Output written since the offsets were captured.
    fn output_since(&self, dir: &Path) -> String {
        let log = read_from(&dir.join(LOG_FILE), self.log);
        let console = read_from(&dir.join(CONSOLE_FILE), self.console);
        let mut out = String::new();
        if !log.trim().is_empty() {
            out.push_str("--- redis.log ---\n");
            out.push_str(&tail_lines(&log, ERROR_LOG_LINES));
            out.push('\n');
        }
        if !console.trim().is_empty() {
            out.push_str("--- stdout/stderr ---\n");
            out.push_str(&tail_lines(&console, ERROR_LOG_LINES));
            out.push('\n');
        }
        if out.is_empty() {
            out.push_str("(no output)\n");
        }
        out
    }
}

pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    let res = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut buf)
    });
    match res {
        Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => String::new(),
    }
}

pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether a start failed on a taken port (and is worth another port).
pub(crate) fn is_port_in_use(e: &TestkitError) -> bool {
    matches!(e, TestkitError::PortInUse { .. })
}

fn is_bind_failure(output: &str) -> bool {
    output.contains("Address already in use")
        || output.contains("Could not create server TCP listening socket")
}

/// `conn` after `AUTH password`, when there is one.
fn log_in(
    mut conn: RespConnection,
    password: Option<&str>,
) -> Result<RespConnection, TestkitError> {
    if let Some(password) = password {
        if let RespValue::Error(e) = conn.query(&["AUTH", password])? {
            return Err(TestkitError::ErrorReply(e));
        }
    }
    Ok(conn)
}

/// Spawns redis-server with `args` and waits until it is ready (on a TLS
/// server, by its log). On failure the child is killed and reaped.
fn launch(
    binary: &Path,
    args: &[OsString],
    dir: &Path,
    port: u16,
    tls: bool,
    password: Option<&str>,
) -> Result<Child, TestkitError> {
    let offsets = LogOffsets::capture(dir);
    let console_path = dir.join(CONSOLE_FILE);
    let console = File::options()
        .create(true)
        .append(true)
        .open(&console_path)
        .map_err(|e| TestkitError::io(format!("opening {}", console_path.display()), e))?;
    let console_err = console
        .try_clone()
        .map_err(|e| TestkitError::io("duplicating console log handle", e))?;
    let mut child = spawn::spawn(spawn::SpawnSpec {
        program: binary.to_owned(),
        args: args.to_vec(),
        stdout: console,
        stderr: console_err,
        user: None,
        new_group: false,
    })
    .map_err(|e| TestkitError::io(format!("spawning {}", binary.display()), e))?;

    match wait_until_ready(&mut child, port, dir, offsets, tls, password) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn wait_until_ready(
    child: &mut Child,
    port: u16,
    dir: &Path,
    offsets: LogOffsets,
    tls: bool,
    password: Option<&str>,
) -> Result<(), TestkitError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    let exited = |status: ExitStatus| {
        let output = offsets.output_since(dir);
        if is_bind_failure(&output) {
            TestkitError::PortInUse { port }
        } else {
            TestkitError::ExitedDuringStartup {
                port,
                status: status.to_string(),
                log_tail: output,
            }
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(exited(status)),
            Ok(None) => {}
            Err(e) => return Err(TestkitError::io("checking redis-server status", e)),
        }
        if tls {
            if redis_tls::is_ready(child.id(), dir, offsets.log, port) {
                return Ok(());
            }
        } else if let Ok(mut conn) = RespConnection::connect(addr, Duration::from_millis(250))
            .and_then(|conn| log_in(conn, password))
        {
            // `-LOADING` (AOF replay in progress) means: not ready yet.
            if matches!(conn.query(&["PING"]), Ok(RespValue::Simple(s)) if s == "PONG") {
                match verify_pid(&mut conn, child, port, &exited) {
                    Ok(()) => return Ok(()),
                    Err(
                        e @ (TestkitError::PortInUse { .. }
                        | TestkitError::ExitedDuringStartup { .. }),
                    ) => return Err(e),
                    // Transient (timeout, reset, odd reply): poll again.
                    Err(e) => tracing::debug!(port, error = %e, "readiness check failed"),
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(TestkitError::StartTimeout {
                port,
                timeout: READY_TIMEOUT,
                log_tail: offsets.output_since(dir),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Makes sure the server that answered is *our* child and not another process
/// that grabbed the port between `free_port()` and redis-server's bind.
fn verify_pid(
    conn: &mut RespConnection,
    child: &mut Child,
    port: u16,
    exited: &dyn Fn(ExitStatus) -> TestkitError,
) -> Result<(), TestkitError> {
    let info = conn.command(&["INFO", "server"])?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse::<u32>().ok());
    match pid {
        Some(pid) if pid == child.id() => Ok(()),
        Some(_) => match child.try_wait() {
            Ok(Some(status)) => Err(exited(status)),
            _ => Err(TestkitError::PortInUse { port }),
        },
        None => Err(TestkitError::Protocol(
            "INFO server reply has no process_id field".into(),
        )),
    }
}

/// Spawning of redis-server processes.
///
/// On Linux the child gets `PR_SET_PDEATHSIG = SIGKILL` so it dies with the
/// test binary even if that is killed without running destructors. The death
/// signal fires when the *thread* that forked the child exits, not the
/// process, and test harnesses run each test (and tokio its blocking calls) on
/// short-lived threads; so all spawns go through one dedicated thread that
/// lives as long as the process.
pub(crate) mod spawn {
    use std::ffi::OsString;
    use std::fs::File;
    use std::io;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};

    pub(crate) struct SpawnSpec {
        pub(crate) program: PathBuf,
        pub(crate) args: Vec<OsString>,
        pub(crate) stdout: File,
        pub(crate) stderr: File,
        /// Run as this `(uid, gid)` instead of the caller's user.
        pub(crate) user: Option<(libc::uid_t, libc::gid_t)>,
        /// Put the child in a process group of its own, so signals can
        /// reach the processes it forks.
        pub(crate) new_group: bool,
    }

    fn command(spec: SpawnSpec, death_signal: bool) -> io::Result<Child> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(spec.stdout))
            .stderr(Stdio::from(spec.stderr));
        let (user, new_group) = (spec.user, spec.new_group);
        if user.is_some() || new_group {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs between fork and exec and only calls
            // async-signal-safe functions (setpgid, setgroups, setgid,
            // setuid) and builds an io::Error from a raw errno, which does
            // not allocate.
            unsafe {
                cmd.pre_exec(move || {
                    if new_group && libc::setpgid(0, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if let Some((uid, gid)) = user {
                        if libc::setgroups(0, std::ptr::null()) != 0
                            || libc::setgid(gid) != 0
                            || libc::setuid(uid) != 0
                        {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        #[cfg(target_os = "linux")]
        if death_signal {
            use std::os::unix::process::CommandExt;
            let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
            // SAFETY: the closure runs between fork and exec (after the one
            // above, so after any change of user, which clears the death
            // signal) and only calls async-signal-safe functions (prctl,
            // getppid) and builds an io::Error from a raw errno, which does
            // not allocate.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent may have died before prctl took effect.
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = death_signal;
        cmd.spawn()
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn spawn(spec: SpawnSpec) -> io::Result<Child> {
        use std::sync::mpsc;
        use std::sync::OnceLock;

        type Request = (SpawnSpec, mpsc::Sender<io::Result<Child>>);
        static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();

        let spawner = SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("shardcron-testkit-spawner".into())
                .spawn(move || {
                    for (spec, reply) in rx {
                        let _ = reply.send(command(spec, true));
                    }
                })
                .ok()
                .map(|_| tx)
        });
        let Some(spawner) = spawner else {
            return command(spec, false);
        };
        let (reply_tx, reply_rx) = mpsc::channel();
        match spawner.send((spec, reply_tx)) {
            Ok(()) => reply_rx
                .recv()
                .map_err(|_| io::Error::other("spawner thread disappeared"))?,
            Err(mpsc::SendError((spec, _))) => command(spec, false),
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn spawn(spec: SpawnSpec) -> io::Result<Child> {
        command(spec, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_takes_the_end() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn default_args_disable_persistence() {
        let args = server_args(1234, Path::new("/tmp/x"), false, &["--foo".into()]);
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--bind 127.0.0.1 --port 1234"));
        assert!(joined.contains("--save  --appendonly no"));
        assert!(joined.contains("--dir /tmp/x --logfile /tmp/x/redis.log"));
        assert_eq!(args.last().map(String::as_str), Some("--foo"));
    }

    #[test]
    fn finds_executables_on_path() {
        assert!(find_executable(Path::new("sh")).is_some());
        assert!(find_executable(Path::new("/definitely/not/here")).is_none());
    }
}
