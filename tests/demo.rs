//! `shardcron demo` runs to completion with no Redis and reports zero duplicates.

mod common;

#[test]
fn demo_runs_to_completion_without_duplicates() {
    let o = std::process::Command::new(common::bin())
        .arg("demo")
        .env_remove("SHARDCRON_REDIS_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run demo");
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!("{stdout}");
    assert!(
        o.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = stdout.to_lowercase();
    assert!(
        summary.contains("duplicates"),
        "summary must report duplicates: {stdout}"
    );
}
