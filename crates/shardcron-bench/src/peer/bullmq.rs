//! The BullMQ side of `peer`: finding Node.js and the peer's folder,
//! installing its pinned packages with `npm ci` when they are missing, and
//! running `run.js` for one point.
//!
//! run.js is a complete benchmark of its own (private redis-server, worker
//! processes, audit); this module only starts it with the point's options,
//! an explicit redis-server binary and an `--out` file, waits for it with a
//! deadline, and reads back the JSON report it wrote.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::compare::{parse_bullmq_report, PeerVersions, Requested, SystemRun};
use crate::error::BenchError;

/// The peer's folder inside the workspace.
pub const DEFAULT_DIR: &str = "benches/peers/bullmq";

/// Oldest Node.js major version the peer supports (`engines` in its
/// package.json).
pub const MIN_NODE_MAJOR: u32 = 20;

/// Time allowed on top of warm-up and window: start-up, upserts, the tail
/// (run.js's own cap is 60 s) and shutdown.
const SLACK: Duration = Duration::from_secs(300);

/// The peer's folder: `explicit`, else the first `benches/peers/bullmq`
/// with a run.js found going up from `cwd`, else the one of the workspace
/// this tool was built from.
pub fn find_dir(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, BenchError> {
    let dir = match explicit {
        Some(dir) => dir.to_owned(),
        None => cwd
            .ancestors()
            .map(|a| a.join(DEFAULT_DIR))
            .find(|d| d.join("run.js").is_file())
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(DEFAULT_DIR)
            }),
    };
    for file in ["run.js", "package.json", "package-lock.json"] {
        if !dir.join(file).is_file() {
            return Err(BenchError::Missing {
                what: format!("the BullMQ peer folder ({} not found)", dir.join(file).display()),
                hint: format!(
                    "run from the shardcron workspace or pass --bullmq-dir pointing at {DEFAULT_DIR}"
                ),
            });
        }
    }
    std::path::absolute(&dir).map_err(|e| BenchError::io("resolving", &dir, e))
}

/// Runs `program --version` and returns its first output line; `None` when
/// the program cannot be started.
fn version_of(program: &Path) -> Option<String> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next().unwrap_or("").trim().to_owned())
}

/// The major version of a `node --version` line (`v20.20.2` → 20).
pub fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Checks that `node` runs and is recent enough; returns its version.
pub fn check_node(node: &Path) -> Result<String, BenchError> {
    let version = version_of(node).ok_or_else(|| BenchError::Missing {
        what: format!("node ({} cannot be run)", node.display()),
        hint: format!(
            "install Node.js {MIN_NODE_MAJOR} or newer with npm (e.g. apt-get install nodejs npm) or pass --node PATH"
        ),
    })?;
    match node_major(&version) {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(version),
        _ => Err(BenchError::Missing {
            what: format!(
                "Node.js {MIN_NODE_MAJOR} or newer ({} is {version})",
                node.display()
            ),
            hint: "install a newer Node.js or pass --node PATH".to_owned(),
        }),
    }
}

/// Installs the peer's pinned packages with `npm ci` unless BullMQ and
/// ioredis are already in its node_modules.
pub fn ensure_packages(dir: &Path, npm: &Path) -> Result<(), BenchError> {
    let installed = ["bullmq", "ioredis"].iter().all(|p| {
        dir.join("node_modules")
            .join(p)
            .join("package.json")
            .is_file()
    });
    if installed {
        return Ok(());
    }
    let npm_version = version_of(npm).ok_or_else(|| BenchError::Missing {
        what: format!(
            "npm ({} cannot be run), needed because {} has no node_modules",
            npm.display(),
            dir.display()
        ),
        hint: "install npm (e.g. apt-get install npm), pass --npm PATH, or run `npm ci` in that folder yourself"
            .to_owned(),
    })?;
    eprintln!("peer: npm {npm_version}: npm ci in {}", dir.display());
    let status = Command::new(npm)
        .arg("ci")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| BenchError::live("running npm ci", e))?;
    if !status.success() {
        return Err(BenchError::Missing {
            what: format!(
                "BullMQ's packages (`npm ci` in {} failed: {status})",
                dir.display()
            ),
            hint: "see npm's output above; the npm registry must be reachable".to_owned(),
        });
    }
    Ok(())
}

/// One point of BullMQ.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    /// Node.js binary.
    pub node: &'a Path,
    /// The peer's folder (absolute).
    pub dir: &'a Path,
    /// The redis-server binary (absolute).
    pub redis_server: &'a Path,
    /// Jobs, workers, window.
    pub requested: Requested,
    /// Warm-up, s.
    pub warmup_s: u64,
    /// Concurrency per worker.
    pub concurrency: u32,
    /// Where run.js writes its JSON report (absolute).
    pub out: &'a Path,
}

impl Invocation<'_> {
    /// run.js's arguments (`--aligned`: every scheduler due at the same
    /// whole seconds, like shardcron's `@every 1s` jobs).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![self.dir.join("run.js").into()];
        for (name, value) in [
            ("--jobs", self.requested.jobs.to_string()),
            ("--workers", self.requested.workers.to_string()),
            ("--duration", self.requested.duration_s.to_string()),
            ("--warmup", self.warmup_s.to_string()),
            ("--concurrency", self.concurrency.to_string()),
        ] {
            args.push(name.into());
            args.push(value.into());
        }
        args.push("--aligned".into());
        args.push("--redis-server".into());
        args.push(self.redis_server.into());
        args.push("--out".into());
        args.push(self.out.into());
        args
    }
}

/// What became of one run.js run that did not break the comparison.
pub type RunResult = Result<(SystemRun, PeerVersions), String>;

/// Runs run.js for one point. `Ok(Err(reason))` when that run failed
/// without a result (the sweep goes on); `Err` when its report cannot be
/// parsed or it rejected its arguments (the sweep stops: this tool and
/// run.js disagree).
pub fn run_point(inv: &Invocation<'_>) -> Result<RunResult, BenchError> {
    match std::fs::remove_file(inv.out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(BenchError::io("removing the old report", inv.out, e)),
    }
    let mut child = Command::new(inv.node)
        .args(inv.args())
        .current_dir(inv.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| BenchError::live("starting node run.js", e))?;
    // run.js prints one line on stdout; read it on the side so the pipe can
    // never fill while we wait.
    let reader = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        })
    });
    let deadline = Duration::from_secs(inv.warmup_s + inv.requested.duration_s) + SLACK;
    let status = wait_with_deadline(&mut child, deadline)?;
    let row = reader
        .and_then(|r| r.join().ok())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !row.is_empty() {
        eprintln!("peer: run.js: {row}");
    }
    let Some(status) = status else {
        return Ok(Err(format!(
            "run.js did not finish within {} s and was stopped",
            deadline.as_secs()
        )));
    };
    if status.code() == Some(2) {
        return Err(BenchError::live(
            "running BullMQ's run.js",
            format!("it rejected its arguments ({status}); see its usage above"),
        ));
    }
    let text = match std::fs::read_to_string(inv.out) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(format!(
                "run.js exited with {status} without writing {}; its stderr above says why",
                inv.out.display()
            )))
        }
        Err(e) => return Err(BenchError::io("reading", inv.out, e)),
    };
    let origin = inv.out.display().to_string();
    parse_bullmq_report(&text, &origin, inv.requested).map(Ok)
}

/// Waits for `child` until `limit`; past it sends SIGTERM (run.js then stops
/// its workers and redis-server), and SIGKILL 20 s later. `None` when it
/// had to be stopped.
fn wait_with_deadline(
    child: &mut Child,
    limit: Duration,
) -> Result<Option<ExitStatus>, BenchError> {
    let start = Instant::now();
    let wait_error = |e| BenchError::live("waiting for node run.js", e);
    loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            return Ok(Some(status));
        }
        if start.elapsed() >= limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the pid of a child we have not reaped yet
        // (try_wait returned None), so it cannot name another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let grace = Instant::now();
    while grace.elapsed() < Duration::from_secs(20) {
        if child.try_wait().map_err(wait_error)?.is_some() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    child.wait().map_err(wait_error)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions() {
        assert_eq!(node_major("v20.20.2\n"), Some(20));
        assert_eq!(node_major("v18.1.0"), Some(18));
        assert_eq!(node_major("22"), Some(22));
        assert_eq!(node_major("nope"), None);
    }

    #[test]
    fn runjs_arguments() {
        let inv = Invocation {
            node: Path::new("node"),
            dir: Path::new("/b"),
            redis_server: Path::new("/usr/bin/redis-server"),
            requested: Requested {
                jobs: 5000,
                workers: 4,
                duration_s: 30,
            },
            warmup_s: 10,
            concurrency: 100,
            out: Path::new("/o/bullmq-j5000.json"),
        };
        let args: Vec<String> = inv
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "/b/run.js --jobs 5000 --workers 4 --duration 30 --warmup 10 --concurrency 100 \
             --aligned --redis-server /usr/bin/redis-server --out /o/bullmq-j5000.json"
        );
    }

    #[test]
    fn missing_folder_is_named() {
        let tmp = std::env::temp_dir().join("shardcron-peer-no-such-dir");
        let e = find_dir(Some(&tmp), Path::new("/")).unwrap_err();
        assert!(matches!(e, BenchError::Missing { .. }));
        assert!(e.to_string().contains("run.js not found"), "{e}");
    }

    #[test]
    fn missing_node_is_named() {
        let e = check_node(Path::new("/nonexistent/node")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("missing node (/nonexistent/node cannot be run)"),
            "{e}"
        );
    }
}
