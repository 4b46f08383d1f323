//! The `exec` handler: runs a shell command for each fire.
//!
//! A fire must run once and then be *over*. A shell command can fork helpers,
//! background jobs and pipelines whose members outlive the shell, and a worker
//! that loses its shard lease (or hits the job's timeout) must be able to stop
//! all of them, or a "cancelled" fire keeps running next to its retry on another
//! node. So the command runs as `sh -c COMMAND` in a process group of its own
//! (`process_group(0)`), and every way out of [`ExecHandler::run`] ends that
//! whole group:
//!
//! * cancellation or timeout: `SIGTERM` to the group, up to
//!   [`TERMINATE_GRACE`] for the shell to exit, then `SIGKILL` to the group;
//! * the shell exiting on its own: `SIGKILL` to whatever it left behind in the
//!   group, since a straggler would otherwise hold the output pipes open and
//!   outlive the fire;
//! * the `run` future being dropped (the runtime enforces timeouts by dropping
//!   it): a guard's `Drop` sends `SIGKILL` to the group, and the child itself is
//!   spawned with `kill_on_drop`.
//!
//! A process that leaves the group on purpose (`setsid`, a double-forking
//! daemon) escapes this; that is the usual Unix contract.
//!
//! Output is kept bounded: stdout and stderr are drained concurrently (so the
//! command never blocks on a full pipe) but only the last
//! `output_tail_bytes` of each are kept, for the run history.
//!
//! The command learns which fire it runs from `SHARDCRON_*` environment
//! variables (see [`ExecHandler`]), so that it can make its own effects
//! idempotent with `SHARDCRON_FIRE_ID`.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shardcron_runtime::{FireContext, Handler, HandlerError, RunOutput};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Name under which [`ExecHandler`] is registered.
pub const EXEC_HANDLER_NAME: &str = "exec";

/// Bytes of stdout and of stderr kept when `output_tail_bytes` is not given.
pub const DEFAULT_OUTPUT_TAIL_BYTES: usize = 4096;

/// Largest accepted `output_tail_bytes`, so that a job cannot make a worker
/// (or the run history) hold arbitrarily large output.
pub const MAX_OUTPUT_TAIL_BYTES: usize = 1024 * 1024;

/// How long the command's process group gets between `SIGTERM` and `SIGKILL`
/// when a fire is cancelled or times out.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(2);

/// How long output is still read after the shell has exited and its group has
/// been killed; only a process that left the group can keep the pipes open
/// longer, and its output is not waited for.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Arguments of the `exec` handler, as stored in a job's `args`.
///
/// JSON form: `{"command": "...", "env": {"K": "V"}, "cwd": "...",
/// "output_tail_bytes": N}`; only `command` is required and unknown keys are
/// rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Shell command, run as `sh -c COMMAND`.
    pub command: String,
    /// Extra environment variables, added to the worker's environment (the
    /// `SHARDCRON_*` variables are set after these and win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory; the worker's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Bytes kept from the end of stdout and of stderr each; defaults to
    /// [`DEFAULT_OUTPUT_TAIL_BYTES`], at most [`MAX_OUTPUT_TAIL_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tail_bytes: Option<usize>,
}

impl ExecArgs {
    /// Arguments that run `command` with no extra settings.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    /// Parses and checks a job's `args`.
    pub fn from_json(args: &serde_json::Value) -> Result<Self, String> {
        let parsed: Self =
            serde_json::from_value(args.clone()).map_err(|e| format!("exec args: {e}"))?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// The JSON form, suitable as a job's `args`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("command".into(), self.command.clone().into());
        if !self.env.is_empty() {
            let env: serde_json::Map<String, serde_json::Value> = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
            map.insert("env".into(), env.into());
        }
        if let Some(cwd) = &self.cwd {
            map.insert("cwd".into(), cwd.to_string_lossy().into_owned().into());
        }
        if let Some(n) = self.output_tail_bytes {
            map.insert("output_tail_bytes".into(), n.into());
        }
        serde_json::Value::Object(map)
    }

    /// Checks the values: a non-empty command, well-formed environment
    /// variables and a sane output tail size.
    pub fn validate(&self) -> Result<(), String> {
        if self.command.trim().is_empty() {
            return Err("exec args: \"command\" must be a non-empty string".into());
        }
        if self.command.contains('\0') {
            return Err("exec args: \"command\" must not contain NUL".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!(
                    "exec args: invalid environment variable name {k:?} in \"env\""
                ));
            }
            if v.contains('\0') {
                return Err(format!(
                    "exec args: value of environment variable {k:?} contains NUL"
                ));
            }
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err("exec args: \"cwd\" must not be empty".into());
            }
        }
        if let Some(n) = self.output_tail_bytes {
            if n > MAX_OUTPUT_TAIL_BYTES {
                return Err(format!(
                    "exec args: \"output_tail_bytes\" is {n}, at most {MAX_OUTPUT_TAIL_BYTES} allowed"
                ));
            }
        }
        Ok(())
    }

    fn tail_bytes(&self) -> usize {
        self.output_tail_bytes.unwrap_or(DEFAULT_OUTPUT_TAIL_BYTES)
    }
}

/// Runs a shell command per fire; see the [module docs](self).
///
/// The command's environment is the worker's, plus `args.env`, plus:
/// `SHARDCRON_JOB_ID`, `SHARDCRON_FIRE_ID` (`job@unix_ms`, an idempotency
/// key), `SHARDCRON_SCHEDULED_AT` (Unix milliseconds), `SHARDCRON_NODE_ID`,
/// `SHARDCRON_FENCING_TOKEN`, `SHARDCRON_ATTEMPT`, `SHARDCRON_DELIVERY`
/// (above 1: an `at_least_once` fire recovered after its node died, which
/// may have run before) and `SHARDCRON_SHARD`.
///
/// Exit status 0 is success, with the output tails as detail; any other exit
/// status, death by a signal, cancellation and timeout are retryable failures;
/// invalid args are a permanent failure.
#[derive(Clone, Debug, Default)]
pub struct ExecHandler {
    _private: (),
}

impl ExecHandler {
    /// A new `exec` handler.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Handler for ExecHandler {
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError> {
        let args = ExecArgs::from_json(&ctx.args).map_err(HandlerError::permanent)?;
        run_command(&args, &ctx).await
    }

    fn validate_args(&self, args: &serde_json::Value) -> Result<(), String> {
        ExecArgs::from_json(args).map(|_| ())
    }
}

/// Why the supervision of the child ended.
enum Ending {
    /// The shell exited by itself.
    Exited(ExitStatus),
    /// `ctx.cancel` tripped.
    Cancelled,
    /// The timeout elapsed.
    TimedOut(Duration),
}

async fn run_command(args: &ExecArgs, ctx: &FireContext) -> Result<RunOutput, HandlerError> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&args.command)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .envs(&args.env)
        .env("SHARDCRON_JOB_ID", &ctx.job_id)
        .env("SHARDCRON_FIRE_ID", ctx.fire_id.to_string())
        .env("SHARDCRON_SCHEDULED_AT", ctx.scheduled_ms.to_string())
        .env("SHARDCRON_NODE_ID", &ctx.node_id)
        .env("SHARDCRON_FENCING_TOKEN", ctx.fencing_token.to_string())
        .env("SHARDCRON_ATTEMPT", ctx.attempt.to_string())
        .env("SHARDCRON_DELIVERY", ctx.delivery.to_string())
        .env("SHARDCRON_SHARD", ctx.shard.to_string());
    if let Some(cwd) = &args.cwd {
        cmd.current_dir(cwd);
    }

    let mut child = cmd
        .spawn()
        .map_err(|e| HandlerError::new(format!("failed to start sh: {e}")))?;
    // Declared after `child` so that, on an early drop, it is dropped first and
    // kills the group while the leader is still unreaped (its pgid reserved).
    let mut group = match child
        .id()
        .and_then(|pid| libc::pid_t::try_from(pid).ok())
        .and_then(ProcessGroup::new)
    {
        Some(group) => group,
        None => {
            // Cannot happen for a freshly spawned child; do not leave it behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(HandlerError::new("spawned sh has no usable process id"));
        }
    };
    tracing::debug!(fire = %ctx.fire_id, pgid = group.pgid, "exec: started");

    let tail_limit = args.tail_bytes();
    let mut out_tail = Tail::new(tail_limit);
    let mut err_tail = Tail::new(tail_limit);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let ending = {
        let readers =
            async { tokio::join!(drain(stdout, &mut out_tail), drain(stderr, &mut err_tail)) };
        let supervisor = supervise(&mut child, &mut group, &ctx.cancel, ctx.timeout);
        tokio::pin!(readers, supervisor);
        tokio::select! {
            _ = &mut readers => supervisor.await,
            ending = &mut supervisor => {
                // The group is gone; the pipes close unless someone escaped it.
                let _ = tokio::time::timeout(DRAIN_GRACE, readers).await;
                ending
            }
        }
    };

    let tails = format_tails(&out_tail, &err_tail);
    match ending {
        Err(e) => Err(HandlerError::new(format!("waiting for sh failed: {e}")).with_detail(tails)),
        Ok(Ending::Cancelled) => Err(HandlerError::new("cancelled").with_detail(tails)),
        Ok(Ending::TimedOut(d)) => Err(HandlerError::new(format!(
            "timed out after {}",
            humantime::format_duration(d)
        ))
        .with_detail(tails)),
        Ok(Ending::Exited(status)) => {
            if status.success() {
                Ok(RunOutput {
                    detail: Some(tails),
                })
            } else if let Some(code) = status.code() {
                Err(HandlerError::new(format!("exit status {code}")).with_detail(tails))
            } else if let Some(sig) = status.signal() {
                Err(
                    HandlerError::new(format!("killed by signal {}", signal_name(sig)))
                        .with_detail(tails),
                )
            } else {
                Err(HandlerError::new(format!("abnormal exit: {status}")).with_detail(tails))
            }
        }
    }
}

/// Waits for the shell, stopping its group on cancellation or timeout. On every
/// return the group has been sent `SIGKILL` and the leader reaped, and `group`
/// is disarmed.
async fn supervise(
    child: &mut Child,
    group: &mut ProcessGroup,
    cancel: &CancellationToken,
    timeout: Option<Duration>,
) -> std::io::Result<Ending> {
    let deadline = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        biased;
        status = child.wait() => {
            // Stragglers left in the group would outlive the fire.
            group.signal(libc::SIGKILL);
            group.disarm();
            return status.map(Ending::Exited);
        }
        _ = cancel.cancelled() => Ending::Cancelled,
        _ = deadline => Ending::TimedOut(timeout.unwrap_or_default()),
    };
    group.signal(libc::SIGTERM);
    let _ = tokio::time::timeout(TERMINATE_GRACE, child.wait()).await;
    group.signal(libc::SIGKILL);
    let reaped = child.wait().await;
    group.disarm();
    reaped.map(|_| ending)
}

/// A process group that is sent `SIGKILL` when dropped while armed.
struct ProcessGroup {
    pgid: libc::pid_t,
    armed: bool,
}

impl ProcessGroup {
    /// Refuses ids that `killpg` would interpret specially (0 is "my own
    /// group") or that cannot be a child's group (1 is init).
    fn new(pgid: libc::pid_t) -> Option<Self> {
        // Lazily built: a rejected guard must never exist, or its Drop would
        // signal the very group it was refused for.
        (pgid > 1).then(|| Self { pgid, armed: true })
    }

    fn signal(&self, sig: libc::c_int) {
        // The pgid check is repeated here so that no path can ever signal our
        // own group (0) or init's (1).
        if !self.armed || self.pgid <= 1 {
            return;
        }
        // SAFETY: killpg has no memory-safety preconditions; pgid > 1 is the
        // group of a child we spawned and have not yet reaped.
        let rc = unsafe { libc::killpg(self.pgid, sig) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pgid = self.pgid, sig, error = %err, "exec: killpg failed");
            }
        }
    }

    /// Stops the guard from signalling: the leader has been reaped, so the id
    /// may be reused by an unrelated group.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(pgid = self.pgid, "exec: run dropped, killing process group");
            self.signal(libc::SIGKILL);
        }
    }
}

/// The last `limit` bytes of a stream, plus how many bytes went by in total.
struct Tail {
    limit: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: VecDeque::with_capacity(limit.min(64 * 1024)),
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let keep = &bytes[bytes.len().saturating_sub(self.limit)..];
        let overflow = (self.buf.len() + keep.len()).saturating_sub(self.limit);
        self.buf.drain(..overflow.min(self.buf.len()));
        self.buf.extend(keep);
    }

    fn truncated(&self) -> bool {
        self.total > self.buf.len() as u64
    }

    /// The kept bytes as text; a UTF-8 sequence cut at the front is dropped.
    fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(self.buf.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let mut start = 0;
        if self.truncated() {
            while start < bytes.len().min(3) && (bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Reads `pipe` to its end (or the first error), keeping its tail.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, tail: &mut Tail) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = vec![0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => tail.push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "exec: reading output failed");
                return;
            }
        }
    }
}

/// The run-history detail: each non-empty stream's tail under a header.
fn format_tails(out: &Tail, err: &Tail) -> String {
    let mut s = String::new();
    for (name, tail) in [("stdout", out), ("stderr", err)] {
        if tail.total == 0 {
            continue;
        }
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        if tail.truncated() {
            s.push_str(&format!(
                "--- {name} (last {} of {} bytes) ---\n",
                tail.buf.len(),
                tail.total
            ));
        } else {
            s.push_str(&format!("--- {name} ---\n"));
        }
        s.push_str(&tail.text());
    }
    if s.is_empty() {
        s.push_str("(no output)");
    }
    s
}

/// `SIGKILL (9)` and the like.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("{sig}"),
    };
    format!("{name} ({sig})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validate_accepts_full_args_and_round_trips() {
        let v = json!({
            "command": "echo hi",
            "env": {"A": "1"},
            "cwd": "/tmp",
            "output_tail_bytes": 10
        });
        let args = ExecArgs::from_json(&v).unwrap();
        assert_eq!(args.to_json(), v);
        assert_eq!(ExecArgs::new("true").to_json(), json!({"command": "true"}));
        assert!(ExecHandler::new().validate_args(&v).is_ok());
    }

    #[test]
    fn validate_rejects_bad_args() {
        let h = ExecHandler::new();
        let err = h
            .validate_args(&json!({"command": "x", "comand": "y"}))
            .unwrap_err();
        assert!(err.contains("comand"), "{err}");
        assert!(h.validate_args(&json!({"command": ""})).is_err());
        assert!(h.validate_args(&json!({"command": "  "})).is_err());
        assert!(h.validate_args(&json!({"command": 5})).is_err());
        assert!(h.validate_args(&json!({})).is_err());
        assert!(h.validate_args(&json!("echo")).is_err());
        assert!(h
            .validate_args(&json!({"command": "x", "env": {"A=B": "1"}}))
            .is_err());
        assert!(h
            .validate_args(&json!({"command": "x", "output_tail_bytes": 1u64 << 40}))
            .is_err());
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.text(), "cdef");
        t.push(b"g");
        assert_eq!(t.text(), "defg");
        t.push(b"0123456789");
        assert_eq!(t.text(), "6789");
        assert_eq!(t.total, 17);
        assert!(t.truncated());
        let mut z = Tail::new(0);
        z.push(b"abc");
        assert_eq!(z.text(), "");
    }

    #[test]
    fn tail_drops_cut_utf8_prefix() {
        let mut t = Tail::new(3);
        t.push("xé€".as_bytes()); // x, é (2 bytes), € (3 bytes)
        assert_eq!(t.text(), "€");
        let mut t = Tail::new(4);
        t.push("xé€".as_bytes());
        assert_eq!(t.text(), "€");
    }

    #[test]
    fn names_signals() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL (9)");
        assert_eq!(signal_name(200), "200");
    }

    #[test]
    fn refuses_special_group_ids() {
        assert!(ProcessGroup::new(0).is_none());
        assert!(ProcessGroup::new(1).is_none());
        assert!(ProcessGroup::new(-5).is_none());
    }
}
