//! Bad input through the real binary: each case gets a message naming what is
//! wrong and the documented exit code, and nothing stored changes.

mod common;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn listing(cli: &Cli) -> String {
    let o = cli.run(&["job", "ls", "--json"]);
    assert!(o.status.success(), "job ls: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stores the job that bad input must leave untouched.
fn put_kept_job(cli: &Cli) {
    let ok = cli.run(&[
        "job",
        "put",
        "--id",
        "keep",
        "--schedule",
        "@every 5s",
        "--exec",
        "true",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_exit_code() {
    let cli = Cli::new("cli-errors");
    put_kept_job(&cli);
    let before = listing(&cli);
    let get_before = cli.run(&["job", "get", "keep"]);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "job",
                "put",
                "--id",
                "x",
                "--schedule",
                "61 * * * *",
                "--exec",
                "true",
            ],
            "schedule",
        ),
        (
            vec![
                "job",
                "put",
                "--id",
                "x",
                "--schedule",
                "@every 1s",
                "--tz",
                "Mars/Base",
                "--exec",
                "true",
            ],
            "Mars/Base",
        ),
        (
            vec!["job", "put", "--id", "x", "--schedule", "@every 1s"],
            "exec",
        ),
        (
            vec![
                "job",
                "put",
                "--id",
                "keep",
                "--schedule",
                "bogus",
                "--exec",
                "true",
            ],
            "schedule",
        ),
        (
            vec![
                "job",
                "put",
                "--id",
                "bad@id",
                "--schedule",
                "@every 1s",
                "--exec",
                "true",
            ],
            "id",
        ),
    ];
    for (args, needle) in cases {
        let o = cli.run(&args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: message must name {needle:?}: {}",
            stderr(&o)
        );
    }

    let dup = cli.write(
        "dup.json",
        r#"[{"id":"a","schedule":"@every 1s","exec":"true"},{"id":"a","schedule":"@every 2s","exec":"true"}]"#,
    );
    let o = cli.run(&["job", "put", "--file", dup.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("\"a\""),
        "duplicate id must be named: {}",
        stderr(&o)
    );

    let mixed = cli.write(
        "mixed.toml",
        "[[job]]\nid = \"fine\"\nschedule = \"@every 1s\"\nexec = \"true\"\n\n[[job]]\nid = \"broken\"\nschedule = \"* * *\"\nexec = \"true\"\n",
    );
    let o = cli.run(&["job", "put", "--file", mixed.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("broken") && stderr(&o).contains("schedule"),
        "{}",
        stderr(&o)
    );

    let missing = cli.run(&["job", "get", "nope"]);
    assert_eq!(missing.status.code(), Some(5), "{}", stderr(&missing));

    assert_eq!(listing(&cli), before, "nothing stored may change");
    assert_eq!(cli.run(&["job", "get", "keep"]).stdout, get_before.stdout);

    let port = shardcron_testkit::free_port().expect("port");
    let o = std::process::Command::new(bin())
        .args(["--redis", &format!("redis://127.0.0.1:{port}"), "job", "ls"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));

    let o = cli.run(&[
        "worker",
        "--config",
        cli.write("bad.toml", "[worker]\nhartbeat = \"1s\"\n")
            .to_str()
            .expect("p"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hartbeat"),
        "unknown key must be named: {}",
        stderr(&o)
    );
}

#[test]
fn a_node_with_another_shard_count_refuses_to_start() {
    let cli = Cli::new("cli-mismatch");
    put_kept_job(&cli);
    let cfg = cli.write("odd.toml", "[worker]\nshard_count = 512\n");
    let o = cli.run(&["worker", "--config", cfg.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("shard_count"), "{}", stderr(&o));
}

/// A malformed Redis Cluster or Sentinel URL or option is a configuration
/// error (exit code 3) naming what is wrong, found before any connection is
/// tried.
#[test]
fn a_bad_cluster_url_or_option_is_refused_before_connecting() {
    let cases = [
        ("redis+cluster://", "names no host"),
        ("redis+cluster://127.0.0.1:1/2", "no database or options"),
        (
            "redis+cluster://127.0.0.1:1?min_replicas=two",
            "min_replicas",
        ),
        ("redis://127.0.0.1:1?replica_wait_ms=0", "replica_wait_ms"),
        ("redis+sentinel://127.0.0.1:1", "names no master"),
        ("redis+sentinel://127.0.0.1:1/", "names no master"),
        (
            "redis+sentinel://127.0.0.1:1,127.0.0.1:x/m",
            "bad sentinel address \"127.0.0.1:x\"",
        ),
        ("redis+sentinel:///m", "names no sentinel"),
        (
            "redis+sentinel://127.0.0.1:1/m?min_replicas=two",
            "min_replicas",
        ),
    ];
    for (url, expected) in cases {
        let o = std::process::Command::new(bin())
            .args(["--store", url, "job", "ls"])
            .output()
            .expect("run shardcron");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{url}: {err}");
        assert!(err.contains(expected), "{url}: {err}");
    }
}

/// A TLS store whose certificate files are unusable is a configuration
/// error (exit code 3) naming the option and the file, found before any
/// connection; a server certificate the given CA did not sign makes the
/// store unreachable (exit code 4) with a message that says the TLS
/// certificate verification failed.
#[test]
fn a_tls_store_with_bad_certificates_is_refused_with_what_is_wrong() {
    use shardcron_testkit::{ClientAuth, RedisServer, TestPki};

    let run = |url: &str| {
        std::process::Command::new(bin())
            .args(["--store", url, "job", "ls"])
            .output()
            .expect("run shardcron")
    };
    let cases = [
        (
            "rediss://127.0.0.1:1?tls_ca=/nonexistent/ca.pem",
            "tls_ca=/nonexistent/ca.pem: cannot be read",
        ),
        (
            "rediss://127.0.0.1:1?tls_cert=/nonexistent/client.pem",
            "has no tls_key",
        ),
        ("redis://127.0.0.1:1?tls_ca=/x.pem", "need a rediss:// URL"),
        (
            "redis+cluster://127.0.0.1:1,127.0.0.1:2?tls_ca=/x.pem",
            "or a rediss+cluster:// one",
        ),
        (
            "rediss+cluster://127.0.0.1:1,127.0.0.1:2?tls_ca=/nonexistent/ca.pem",
            "tls_ca=/nonexistent/ca.pem: cannot be read",
        ),
    ];
    for (url, expected) in cases {
        let o = run(url);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{url}: {err}");
        assert!(err.contains(expected), "{url}: {err}");
    }

    let server = RedisServer::builder()
        .tls(ClientAuth::Optional)
        .start()
        .expect("TLS redis-server");
    let other = TestPki::new().expect("another CA");
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca={}",
        server.port(),
        other.ca().display()
    );
    let o = run(&url);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("TLS certificate verification failed"), "{err}");
}
