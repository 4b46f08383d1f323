//! The deployment files in `deploy/` stay consistent with the real flags and
//! config format: the sample config parses (with its static jobs), the
//! command lines parse, and the stop timeouts cover the drain timeout.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shardcron_cli::args::{Cli, Command};
use shardcron_cli::config::parse;
use shardcron_cli::jobs_input::builtin_registry;

fn deploy(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `config.toml: |` block of the ConfigMap, unindented.
fn sample_config() -> String {
    let text = deploy("k8s/configmap.yaml");
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config.toml: |"));
    lines.next();
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The drain timeout of the sample config plus the 15 s margin.
fn stop_budget() -> Duration {
    let config = parse(&sample_config()).expect("sample config parses");
    config.settings.drain_timeout + Duration::from_secs(15)
}

#[test]
fn sample_config_is_valid() {
    let config = parse(&sample_config()).expect("sample config parses");
    let jobs = config
        .static_jobs(&builtin_registry())
        .expect("sample jobs are valid");
    assert!(!jobs.is_empty());
}

#[test]
fn deployment_uses_real_flags_and_matching_grace_period() {
    let text = deploy("k8s/deployment.yaml");
    let args: Vec<String> = text
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- ") || l.trim_start().starts_with('#'))
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start().trim_start_matches("- ").to_owned())
        .collect();
    let cli = Cli::try_parse_from(std::iter::once("shardcron".to_owned()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Worker(w) = cli.command else {
        panic!("not a worker: {args:?}")
    };
    assert_eq!(w.listen.as_deref(), Some("0.0.0.0:9090"));
    assert!(text.contains("replicas: 3"));
    assert!(text.contains("name: SHARDCRON_REDIS_URL") && text.contains("secretKeyRef"));
    assert!(text.contains("path: /readyz") && text.contains("path: /healthz"));
    assert!(text.contains("prometheus.io/scrape: \"true\""));
    let grace = format!("terminationGracePeriodSeconds: {}", stop_budget().as_secs());
    assert!(text.contains(&grace), "expected {grace}");
}

#[test]
fn systemd_unit_uses_real_flags_and_matching_stop_timeout() {
    let text = deploy("shardcron.service");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace().map(str::to_owned);
    let _binary = words.next();
    let cli = Cli::try_parse_from(std::iter::once("shardcron".to_owned()).chain(words))
        .unwrap_or_else(|e| panic!("{exec}: {e}"));
    assert!(matches!(cli.command, Command::Worker(_)));
    assert!(text.contains("Restart=always") && text.contains("KillSignal=SIGTERM"));
    let stop = format!("TimeoutStopSec={}", stop_budget().as_secs());
    assert!(text.contains(&stop), "expected {stop}");
}

#[test]
fn dockerfile_runs_the_binary_as_non_root() {
    let text = deploy("Dockerfile");
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/shardcron\"]"));
    assert!(text.contains("USER 10001"));
    assert!(text.contains("cargo build --release"));
}
