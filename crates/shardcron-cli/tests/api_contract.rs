//! The admin API keeps the promises of its OpenAPI document: schemathesis
//! (<https://schemathesis.io>) runs every check, stateful phase included,
//! with a fixed seed against a real `shardcron worker` process over a
//! private Redis, once with the bearer token and once without, and must
//! find nothing.
//!
//! The worker is this test binary started again with
//! `SHARDCRON_CONTRACT_WORKER=1`, in which case `main` is exactly the
//! `shardcron` binary's (`shardcron_cli::main`); Cargo only hands the
//! binary's path to the tests of the root package.
//!
//! schemathesis comes from PyPI: `.ci/run` installs the pinned version
//! ([`SCHEMATHESIS_VERSION`]) into `target/schemathesis-venv`. The test
//! looks for `st` in `$SHARDCRON_SCHEMATHESIS`, then in that venv, then on
//! `PATH`, and fails (never skips) when it is missing.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shardcron_testkit::RedisServer;

/// The schemathesis release the contract is checked with.
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// Marks the re-executed binary as the worker.
const WORKER_ENV: &str = "SHARDCRON_CONTRACT_WORKER";

/// Explicit path of the `st` executable.
const ST_ENV: &str = "SHARDCRON_SCHEMATHESIS";

const TOKEN: &str = "contract-token-0123456789";

/// Seed of every schemathesis run.
const SEED: &str = "18";

/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";

fn main() -> ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return shardcron_cli::main();
    }
    // `cargo test -- --list` and filters: this binary holds one test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("api_contract: test");
        return ExitCode::SUCCESS;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-')) {
        if !"api_contract".contains(filter.as_str()) {
            return ExitCode::SUCCESS;
        }
    }
    contract();
    ExitCode::SUCCESS
}

/// Kills the worker when the test ends, however it ends.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `<target>/` from `<target>/<profile>/deps/<this test>`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

fn find_schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os(ST_ENV) {
        return PathBuf::from(path);
    }
    if let Some(venv) = target_dir().map(|t| t.join("schemathesis-venv/bin/st")) {
        if venv.is_file() {
            return venv;
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("st");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "schemathesis is not installed: run .ci/run (it installs schemathesis=={SCHEMATHESIS_VERSION} \
         from PyPI into target/schemathesis-venv), or point {ST_ENV} at an `st` executable"
    );
}

fn http_get(base: &str, path: &str) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().ok()?;
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

/// The worker's config: the token, and a failed-authentication budget no
/// run exhausts (the run without the token fails every request; the limit
/// has its own test, and a 429 would hide the 401 under test).
fn start_worker(redis: &RedisServer, dir: &Path, listen: &str) -> WorkerProcess {
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nshard_count = 64\n\n[api]\ntoken = \"{TOKEN}\"\nauth_failures_per_minute = 1000000\n"
        ),
    )
    .expect("write config");
    let exe = std::env::current_exe().expect("test binary");
    let child = Command::new(exe)
        .env(WORKER_ENV, "1")
        .env_remove("SHARDCRON_API_TOKEN")
        .env_remove("SHARDCRON_REDIS_URL")
        .env_remove("SHARDCRON_NAMESPACE")
        .env("RUST_LOG", "warn")
        .args(["--redis", &redis.url(), "--namespace", "contract", "worker"])
        .args(["--node-id", "contract-1", "--listen", listen])
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the worker");
    WorkerProcess(child)
}

/// Runs schemathesis; returns whether it passed and its output.
fn schemathesis(st: &Path, dir: &Path, schema: &Path, base: &str, token: bool) -> (bool, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let mut command = Command::new(st);
    command
        .current_dir(dir)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(schema)
        .args(["--url", base])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", SEED])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"])
        .env("NO_COLOR", "1");
    if token {
        command.args(["--header", &format!("Authorization: Bearer {TOKEN}")]);
    }
    let started = Instant::now();
    let output = command.output().expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "--- schemathesis {} the token ({:.0} s) ---\n{text}",
        if token { "with" } else { "without" },
        started.elapsed().as_secs_f64()
    );
    (output.status.success(), text)
}

fn contract() {
    let st = find_schemathesis();
    let version = Command::new(&st).arg("--version").output();
    match version {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            println!("{text}");
            assert!(
                text.ends_with(SCHEMATHESIS_VERSION),
                "expected schemathesis {SCHEMATHESIS_VERSION}, found {text:?}: run .ci/run"
            );
        }
        _ => panic!(
            "{} does not run: run .ci/run to install schemathesis=={SCHEMATHESIS_VERSION}",
            st.display()
        ),
    }
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut worker = start_worker(&redis, dir.path(), &listen);

    let start = Instant::now();
    let document = loop {
        if let Some((200, text)) = http_get(&base, "/v1/openapi.json") {
            if let Some((200, _)) = http_get(&base, "/v1/status") {
                break text;
            }
        }
        if let Ok(Some(status)) = worker.0.try_wait() {
            panic!("the worker exited with {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker never served the API"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let schema = dir.path().join("openapi.json");
    std::fs::File::create(&schema)
        .and_then(|mut f| f.write_all(document.as_bytes()))
        .expect("write the document");

    let started = Instant::now();
    let (with_token, with_output) = schemathesis(&st, dir.path(), &schema, &base, true);
    let (without_token, without_output) = schemathesis(&st, dir.path(), &schema, &base, false);
    println!(
        "schemathesis runs took {:.0} s in total",
        started.elapsed().as_secs_f64()
    );
    assert!(
        worker.0.try_wait().ok().flatten().is_none(),
        "the worker died during the run"
    );
    assert!(
        with_token,
        "schemathesis with the token failed:\n{with_output}"
    );
    assert!(
        without_token,
        "schemathesis without the token failed:\n{without_output}"
    );
}
