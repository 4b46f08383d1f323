//! `exec` handler against real processes: environment, exit statuses, output
//! tails, and that timeouts, cancellation and dropping the run future kill the
//! whole process group (grandchildren included).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardcron_core::FireId;
use shardcron_handlers::{ExecArgs, ExecHandler};
use shardcron_runtime::{FireContext, Handler};
use tokio_util::sync::CancellationToken;

const JOB: &str = "billing:nightly";
const SCHEDULED_MS: i64 = 1_767_225_600_000;

fn ctx(args: Value) -> FireContext {
    FireContext {
        job_id: JOB.into(),
        fire_id: FireId::new(JOB, SCHEDULED_MS),
        scheduled_ms: SCHEDULED_MS,
        shard: 7,
        fencing_token: 42,
        attempt: 2,
        delivery: 2,
        node_id: "node-a".into(),
        args,
        timeout: None,
        cancel: CancellationToken::new(),
    }
}

/// Alive means: exists and is not a zombie (an orphan's zombie may wait for a
/// reaper that is not ours).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, None | Some('Z') | Some('X'))
        }
    }
}

async fn wait_dead(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    !alive(pid)
}

async fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(pid) = s.trim().parse() {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "pid file never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A command that backgrounds `sleep 30`, records its pid and waits for it.
fn sleeper(pidfile: &Path, prefix: &str) -> Value {
    json!({
        "command": format!("{prefix}sleep 30 & echo $! > '{}'; wait", pidfile.display())
    })
}

#[tokio::test]
async fn success_exports_fire_env_and_honours_env_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let args = ExecArgs {
        command: "env > \"$OUT\"; pwd > \"$OUT.pwd\"; echo done".into(),
        env: BTreeMap::from([("OUT".to_string(), out.display().to_string())]),
        cwd: Some(dir.path().to_path_buf()),
        output_tail_bytes: None,
    };
    let res = ExecHandler::new().run(ctx(args.to_json())).await.unwrap();
    assert_eq!(res.detail.as_deref(), Some("--- stdout ---\ndone\n"));

    let text = std::fs::read_to_string(&out).unwrap();
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let c = ctx(Value::Null);
    assert_eq!(env["SHARDCRON_JOB_ID"], c.job_id);
    assert_eq!(env["SHARDCRON_FIRE_ID"], "billing:nightly@1767225600000");
    assert_eq!(env["SHARDCRON_FIRE_ID"], c.fire_id.to_string());
    assert_eq!(env["SHARDCRON_SCHEDULED_AT"], c.scheduled_ms.to_string());
    assert_eq!(env["SHARDCRON_NODE_ID"], c.node_id);
    assert_eq!(env["SHARDCRON_FENCING_TOKEN"], c.fencing_token.to_string());
    assert_eq!(env["SHARDCRON_ATTEMPT"], c.attempt.to_string());
    assert_eq!(env["SHARDCRON_DELIVERY"], c.delivery.to_string());
    assert_eq!(env["SHARDCRON_SHARD"], c.shard.to_string());
    assert!(env.contains_key("PATH"), "worker environment is inherited");

    let pwd = std::fs::read_to_string(dir.path().join("env.txt.pwd")).unwrap();
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[tokio::test]
async fn stdin_is_null() {
    let res = ExecHandler::new()
        .run(ctx(json!({"command": "cat; echo eof"})))
        .await
        .unwrap();
    assert_eq!(res.detail.as_deref(), Some("--- stdout ---\neof\n"));
}

#[tokio::test]
async fn nonzero_exit_fails_retryably_with_stderr_tail() {
    let err = ExecHandler::new()
        .run(ctx(
            json!({"command": "echo partial; echo 'disk full' >&2; exit 3"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.message, "exit status 3");
    assert!(err.retryable);
    let detail = err.detail.unwrap();
    assert!(detail.contains("--- stderr ---\ndisk full"), "{detail}");
    assert!(detail.contains("--- stdout ---\npartial"), "{detail}");
}

#[tokio::test]
async fn death_by_signal_names_the_signal() {
    let err = ExecHandler::new()
        .run(ctx(json!({"command": "kill -KILL $$"})))
        .await
        .unwrap_err();
    assert_eq!(err.message, "killed by signal SIGKILL (9)");
    assert!(err.retryable);
}

#[tokio::test]
async fn invalid_args_fail_permanently() {
    let err = ExecHandler::new()
        .run(ctx(json!({"command": "true", "shell": "bash"})))
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("shell"), "{}", err.message);
}

#[tokio::test]
async fn missing_cwd_fails() {
    let err = ExecHandler::new()
        .run(ctx(
            json!({"command": "true", "cwd": "/nonexistent/shardcron"}),
        ))
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("failed to start sh"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn output_tail_is_bounded() {
    let err = ExecHandler::new()
        .run(ctx(json!({
            "command": "head -c 1000000 /dev/zero | tr '\\0' a; echo END; head -c 300000 /dev/zero | tr '\\0' b >&2; exit 1",
            "output_tail_bytes": 100
        })))
        .await
        .unwrap_err();
    let detail = err.detail.unwrap();
    let (out, errs) = detail.split_once("--- stderr").unwrap();
    assert!(
        out.starts_with("--- stdout (last 100 of 1000004 bytes) ---\n"),
        "{out}"
    );
    assert!(out.ends_with(&format!("{}END\n", "a".repeat(96))), "{out}");
    assert!(
        errs.starts_with(" (last 100 of 300000 bytes) ---\n"),
        "{errs}"
    );
    assert!(errs.ends_with(&"b".repeat(100)), "{errs}");
    assert!(detail.len() < 400);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut c = ctx(sleeper(&pidfile, ""));
    c.timeout = Some(Duration::from_millis(800));
    let start = Instant::now();
    let err = ExecHandler::new().run(c).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.message, "timed out after 800ms");
    assert!(err.retryable);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let grandchild = read_pid(&pidfile).await;
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn sigterm_ignorers_get_sigkill_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut c = ctx(sleeper(&pidfile, "trap '' TERM; "));
    c.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let err = ExecHandler::new().run(c).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(err.message, "timed out after 300ms");
    assert!(
        took >= Duration::from_millis(2300) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    let grandchild = read_pid(&pidfile).await;
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived SIGKILL"
    );
}

#[tokio::test]
async fn cancellation_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let c = ctx(sleeper(&pidfile, ""));
    let cancel = c.cancel.clone();
    let run = tokio::spawn(async move { ExecHandler::new().run(c).await });
    let grandchild = read_pid(&pidfile).await;
    assert!(alive(grandchild));
    let start = Instant::now();
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.message, "cancelled");
    assert!(err.retryable);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived cancellation"
    );
}

#[tokio::test]
async fn dropping_the_run_future_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let handler = ExecHandler::new();
    // No timeout in the context: only the outer one, which drops the future.
    let outcome = tokio::time::timeout(
        Duration::from_millis(800),
        handler.run(ctx(sleeper(&pidfile, "trap '' TERM; "))),
    )
    .await;
    assert!(outcome.is_err(), "run should still have been going");
    let grandchild = read_pid(&pidfile).await;
    assert!(
        wait_dead(grandchild, Duration::from_secs(2)).await,
        "grandchild {grandchild} survived the dropped future"
    );
}

#[tokio::test]
async fn stragglers_do_not_hold_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let start = Instant::now();
    let res = ExecHandler::new()
        .run(ctx(json!({
            "command": format!("sleep 30 & echo $! > '{}'; echo started", pidfile.display())
        })))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "waited for the straggler"
    );
    assert_eq!(res.detail.as_deref(), Some("--- stdout ---\nstarted\n"));
    let straggler = read_pid(&pidfile).await;
    assert!(wait_dead(straggler, Duration::from_secs(2)).await);
}
