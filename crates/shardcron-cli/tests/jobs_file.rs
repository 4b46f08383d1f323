//! Job files (JSON and TOML) and `job put` flags: parsing, validation, and
//! messages that name the entry (position and id) and the field.

use std::path::Path;

use clap::Parser;

use shardcron_cli::jobs_input::{
    builtin_registry, parse_jobs, validate_all, validate_parsed, FileFormat, JobInput, Origin,
    ParsedJobs,
};
use shardcron_cli::ExitKind;
use shardcron_core::{Delivery, MisfirePolicy, OverlapPolicy};

fn parse(text: &str, format: FileFormat) -> ParsedJobs {
    parse_jobs(text, format).expect("file-level parse")
}

fn check(parsed: &ParsedJobs) -> Result<Vec<shardcron_core::JobSpec>, String> {
    validate_parsed(parsed, None, &builtin_registry()).map_err(|e| e.to_string())
}

#[test]
fn json_array_of_exec_and_http_jobs_becomes_specs() {
    let text = r#"[
      {"id": "backup", "schedule": "0 3 * * *", "tz": "Europe/Berlin", "exec": "backup.sh",
       "timeout": "10m", "retries": 3, "misfire": "run_once", "overlap": "queue_one",
       "misfire_grace": "5m", "paused": true},
      {"id": "ping", "schedule": "@every 30s",
       "http": {"url": "https://example.com/ping", "method": "POST", "headers": {"X-Token": "t"},
                "body": "{}", "expect_status": "200-204", "timeout": "5s"}}
    ]"#;
    let specs = check(&parse(text, FileFormat::Json)).expect("valid");
    assert_eq!(specs.len(), 2);
    let backup = &specs[0];
    assert_eq!(backup.handler, "exec");
    assert_eq!(backup.args["command"], "backup.sh");
    assert_eq!(backup.tz, "Europe/Berlin");
    assert_eq!(backup.timeout, Some(std::time::Duration::from_secs(600)));
    assert_eq!(backup.retry.max_retries, 3);
    assert_eq!(backup.misfire, MisfirePolicy::RunOnce);
    assert_eq!(backup.overlap, OverlapPolicy::QueueOne);
    assert_eq!(backup.misfire_grace, std::time::Duration::from_secs(300));
    assert!(backup.paused);
    let ping = &specs[1];
    assert_eq!(ping.handler, "http");
    assert_eq!(ping.args["url"], "https://example.com/ping");
    assert_eq!(ping.args["headers"]["X-Token"], "t");
    assert_eq!(ping.args["expect_status"], "200-204");
    assert_eq!(ping.tz, "UTC");
}

#[test]
fn toml_job_tables_become_specs() {
    let text = r#"
[[job]]
id = "a"
schedule = "*/3 * * * * *"
exec = "true"

[[job]]
id = "b"
schedule = "@hourly"
http = { url = "http://127.0.0.1:8080/hook", expect_status = 204 }
"#;
    let specs = check(&parse(text, FileFormat::Toml)).expect("valid");
    assert_eq!(
        specs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        specs[1].args["expect_status"], "204",
        "an integer status is accepted"
    );
}

#[test]
fn bad_entry_is_named_by_position_id_and_field() {
    let text = r#"[
      {"id": "ok", "schedule": "@every 1s", "exec": "true"},
      {"id": "x", "schedule": "61 * * * *", "exec": "true"}
    ]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("bad schedule");
    assert!(err.contains("job #2 \"x\": field `schedule`"), "{err}");
    assert!(err.contains("61 * * * *"), "{err}");
    assert!(
        !err.contains("\"ok\""),
        "valid entries are not reported: {err}"
    );
}

#[test]
fn unknown_zone_names_the_zone() {
    let text = r#"[{"id": "z", "schedule": "@daily", "tz": "Mars/Base", "exec": "true"}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("bad zone");
    assert!(
        err.contains("field `tz`") && err.contains("Mars/Base"),
        "{err}"
    );
}

#[test]
fn duplicate_ids_are_rejected_naming_both_entries() {
    let text = r#"
[[job]]
id = "same"
schedule = "@every 1s"
exec = "true"

[[job]]
id = "same"
schedule = "@every 2s"
exec = "true"
"#;
    let err = check(&parse(text, FileFormat::Toml)).expect_err("duplicate");
    assert!(
        err.contains("job #2 \"same\": field `id`: duplicate id \"same\""),
        "{err}"
    );
    assert!(err.contains("job #1"), "{err}");
}

#[test]
fn exactly_one_of_exec_and_http() {
    let both =
        r#"[{"id": "b", "schedule": "@every 1s", "exec": "true", "http": {"url": "http://x"}}]"#;
    let err = check(&parse(both, FileFormat::Json)).expect_err("both");
    assert!(
        err.contains("job #1 \"b\": field `exec`") && err.contains("mutually exclusive"),
        "{err}"
    );
    let neither = r#"[{"id": "n", "schedule": "@every 1s"}]"#;
    let err = check(&parse(neither, FileFormat::Json)).expect_err("neither");
    assert!(
        err.contains("job #1 \"n\": field `exec`") && err.contains("required"),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let text = r#"[{"id": "u", "schedule": "@every 1s", "exec": "true", "shedule": "x"}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("unknown");
    assert!(
        err.contains("job #1 \"u\": field `shedule`: unknown field"),
        "{err}"
    );
    let text =
        r#"[{"id": "h", "schedule": "@every 1s", "http": {"url": "http://x", "verb": "GET"}}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("unknown http key");
    assert!(err.contains("field `http.verb`"), "{err}");
    let err = parse_jobs("[[job]]\nid = \"a\"\n\n[other]\nx = 1\n", FileFormat::Toml)
        .expect_err("unknown top-level key");
    assert!(err.message.contains("`other`"), "{err}");
    assert_eq!(err.kind, ExitKind::Config);
}

#[test]
fn handler_arguments_are_checked_by_the_handlers() {
    let text = r#"[{"id": "f", "schedule": "@every 1s", "http": {"url": "ftp://example.com/x"}},
                   {"id": "e", "schedule": "@every 1s", "exec": "   "}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("bad args");
    assert!(
        err.contains("job #1 \"f\": field `http`") && err.contains("ftp"),
        "{err}"
    );
    assert!(
        err.contains("job #2 \"e\": field `exec`") && err.contains("command"),
        "{err}"
    );
}

#[test]
fn type_errors_name_the_field_and_every_bad_entry_is_reported() {
    let text = r#"[{"id": "r", "schedule": "@every 1s", "exec": "true", "retries": "three"},
                   {"id": "t", "schedule": "@every 1s", "exec": "true", "timeout": "3 fortnights"},
                   {"id": "p", "schedule": "@every 1s", "exec": "true", "paused": "yes"},
                   {"id": "m", "schedule": "@every 1s", "exec": "true", "misfire": "later"},
                   "not a table"]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("type errors");
    for needle in [
        "job #1 \"r\": field `retries`",
        "job #2 \"t\": field `timeout`",
        "job #3 \"p\": field `paused`",
        "job #4 \"m\": field `misfire`",
        "job #5: expected a table/object",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("job #1"),
        "reported in file order: {err}"
    );
}

#[test]
fn default_misfire_grace_applies_only_where_unset() {
    let text = r#"[{"id": "a", "schedule": "@every 1s", "exec": "true"},
                   {"id": "b", "schedule": "@every 1s", "exec": "true", "misfire_grace": "10s"}]"#;
    let specs = validate_parsed(
        &parse(text, FileFormat::Json),
        Some(std::time::Duration::from_secs(120)),
        &builtin_registry(),
    )
    .expect("valid");
    assert_eq!(specs[0].misfire_grace, std::time::Duration::from_secs(120));
    assert_eq!(specs[1].misfire_grace, std::time::Duration::from_secs(10));
}

#[test]
fn file_level_errors() {
    let err = parse_jobs("{\"id\": \"a\"}", FileFormat::Json).expect_err("object");
    assert!(err.message.contains("JSON array"), "{err}");
    let err = parse_jobs("[1,", FileFormat::Json).expect_err("syntax");
    assert!(err.message.contains("invalid JSON"), "{err}");
    let err = parse_jobs("job = 3", FileFormat::Toml).expect_err("job not tables");
    assert!(err.message.contains("[[job]]"), "{err}");
    let empty = parse_jobs("", FileFormat::Toml).expect("empty file");
    assert!(empty.inputs.is_empty() && empty.errors.is_empty());
}

#[test]
fn format_is_detected_by_extension_then_content() {
    assert_eq!(
        FileFormat::detect(Path::new("j.json"), "[[job]]"),
        FileFormat::Json
    );
    assert_eq!(
        FileFormat::detect(Path::new("j.TOML"), "[]"),
        FileFormat::Toml
    );
    assert_eq!(
        FileFormat::detect(Path::new("jobs"), "  [{\"id\": 1}]"),
        FileFormat::Json
    );
    assert_eq!(
        FileFormat::detect(Path::new("jobs"), "[[job]]\nid = 1"),
        FileFormat::Toml
    );
    assert_eq!(
        FileFormat::detect(Path::new("-"), "# comment\n[[job]]"),
        FileFormat::Toml
    );
}

#[test]
fn flag_jobs_are_named_without_position() {
    let input = JobInput {
        id: "x".into(),
        schedule: "61 * * * *".into(),
        exec: Some("true".into()),
        ..JobInput::default()
    };
    let err = validate_all(&[(Origin::Flags, input)], None, &builtin_registry())
        .expect_err("bad schedule")
        .to_string();
    assert!(
        err.starts_with("job \"x\": field `schedule`: invalid schedule \"61 * * * *\""),
        "{err}"
    );
}

#[test]
fn cost_is_read_from_json_and_toml() {
    let json = r#"[{"id": "a", "schedule": "@every 1s", "exec": "true", "cost": 2.5},
                   {"id": "b", "schedule": "@every 1s", "exec": "true"}]"#;
    let specs = check(&parse(json, FileFormat::Json)).expect("valid");
    assert_eq!(specs[0].cost, Some(2.5));
    assert_eq!(specs[1].cost, None, "absent means the default 1");
    let toml = "[[job]]\nid = \"a\"\nschedule = \"@hourly\"\nexec = \"true\"\ncost = 3\n\n[[job]]\nid = \"b\"\nschedule = \"@hourly\"\nexec = \"true\"\ncost = 0.25\n";
    let specs = check(&parse(toml, FileFormat::Toml)).expect("valid");
    assert_eq!(specs[0].cost, Some(3.0), "an integer cost is accepted");
    assert_eq!(specs[1].cost, Some(0.25));
}

#[test]
fn bad_costs_are_named_by_entry_and_field() {
    let text = r#"[{"id": "zero", "schedule": "@every 1s", "exec": "true", "cost": 0},
                   {"id": "negative", "schedule": "@every 1s", "exec": "true", "cost": -2},
                   {"id": "above", "schedule": "@every 1s", "exec": "true", "cost": 10001},
                   {"id": "huge", "schedule": "@every 1s", "exec": "true", "cost": 1e300},
                   {"id": "text", "schedule": "@every 1s", "exec": "true", "cost": "NaN"},
                   {"id": "ok", "schedule": "@every 1s", "exec": "true", "cost": 10000}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("bad costs");
    for needle in [
        "job #1 \"zero\": field `cost`: is 0",
        "job #2 \"negative\": field `cost`: is -2",
        "job #3 \"above\": field `cost`: is 10001",
        "job #4 \"huge\": field `cost`: is 1",
        "job #5 \"text\": field `cost`: expected a positive number",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(!err.contains("\"ok\""), "a cost of 10000 is valid: {err}");
    assert_eq!(err.lines().count(), 5, "{err}");
}

#[test]
fn non_finite_toml_costs_are_refused_not_dropped() {
    for value in ["nan", "inf", "-inf", "+nan"] {
        let text = format!(
            "[[job]]\nid = \"ok\"\nschedule = \"@hourly\"\nexec = \"true\"\n\n[[job]]\nid = \"x\"\nschedule = \"@hourly\"\nexec = \"true\"\ncost = {value}\n"
        );
        let err = parse_jobs(&text, FileFormat::Toml).expect_err(value);
        assert_eq!(err.kind, ExitKind::Config, "{value}: {err}");
        assert!(
            err.message.contains("job #2 \"x\": field `cost`")
                && err.message.contains("not a finite number"),
            "{value}: {err}"
        );
    }
}

/// Runs a command line through the library (as the binary does).
async fn run_cli(args: &[&str]) -> Result<(), shardcron_cli::CliError> {
    let cli = shardcron_cli::args::Cli::try_parse_from(args).expect("command line parses");
    shardcron_cli::run(cli, true, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_costs_exit_3_and_store_nothing() {
    let server = shardcron_testkit::RedisServer::start().expect("redis-server");
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nid = \"good\"\nschedule = \"@hourly\"\nexec = \"true\"\ncost = 2\n\n[[job]]\nid = \"bad\"\nschedule = \"@hourly\"\nexec = \"true\"\ncost = -1\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let base = ["shardcron", "--redis", url.as_str(), "--namespace", "cost"];
    let with = |rest: &[&'static str]| -> Vec<&str> {
        let mut args = base.to_vec();
        args.extend_from_slice(rest);
        args
    };
    let mut file_args = with(&["job", "put", "--file"]);
    file_args.push(path);
    let err = run_cli(&file_args).await.expect_err("bad file");
    assert_eq!(err.kind, ExitKind::Config, "{err}");
    assert_eq!(err.kind.code(), 3);
    assert!(
        err.message.contains("job #2 \"bad\": field `cost`: is -1"),
        "{err}"
    );
    for cost in ["0", "-1", "NaN", "inf", "1e300", "10000.001"] {
        let mut args = with(&[
            "job",
            "put",
            "--id",
            "flagged",
            "--schedule",
            "@hourly",
            "--exec",
            "true",
            "--cost",
        ]);
        args.push(cost);
        let err = run_cli(&args).await.expect_err(cost);
        assert_eq!(err.kind, ExitKind::Config, "--cost {cost}: {err}");
        assert!(
            err.message
                .starts_with("job \"flagged\": field `cost`: is "),
            "--cost {cost}: {err}"
        );
    }
    let coord = shardcron_coord::RedisCoordinator::connect(
        &url,
        "cost",
        shardcron_core::RingConfig::default(),
    )
    .await
    .expect("connect");
    let page = shardcron_coord::Coordinator::list_jobs(&coord, "", None, 10)
        .await
        .expect("list");
    assert!(page.ids.is_empty(), "nothing was stored: {:?}", page.ids);

    // A valid cost from the flags is stored.
    let args = with(&[
        "job",
        "put",
        "--id",
        "flagged",
        "--schedule",
        "@hourly",
        "--exec",
        "true",
        "--cost",
        "2.5",
    ]);
    run_cli(&args).await.expect("valid cost");
    let stored = shardcron_coord::Coordinator::get_job(&coord, "flagged")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.spec.cost, Some(2.5));
}

#[test]
fn delivery_is_read_from_json_and_toml() {
    let json = r#"[{"id": "a", "schedule": "@every 1s", "exec": "true", "delivery": "at_least_once"},
                   {"id": "b", "schedule": "@every 1s", "exec": "true", "delivery": "at_most_once"},
                   {"id": "c", "schedule": "@every 1s", "exec": "true"}]"#;
    let specs = check(&parse(json, FileFormat::Json)).expect("valid");
    let deliveries: Vec<Delivery> = specs.iter().map(|s| s.delivery).collect();
    assert_eq!(
        deliveries,
        [
            Delivery::AtLeastOnce,
            Delivery::AtMostOnce,
            Delivery::AtMostOnce
        ],
        "absent means at_most_once"
    );
    let toml = "[[job]]\nid = \"a\"\nschedule = \"@hourly\"\nhttp = { url = \"https://example.com/hook\" }\ndelivery = \"at_least_once\"\n\n[[job]]\nid = \"b\"\nschedule = \"@hourly\"\nexec = \"true\"\ndelivery = \"at_most_once\"\n";
    let specs = check(&parse(toml, FileFormat::Toml)).expect("valid");
    assert_eq!(specs[0].delivery, Delivery::AtLeastOnce);
    assert_eq!(specs[1].delivery, Delivery::AtMostOnce);
}

#[test]
fn bad_deliveries_are_named_by_entry_and_field() {
    let text = r#"[{"id": "unknown", "schedule": "@every 1s", "exec": "true", "delivery": "exactly_once"},
                   {"id": "case", "schedule": "@every 1s", "exec": "true", "delivery": "AT_LEAST_ONCE"},
                   {"id": "number", "schedule": "@every 1s", "exec": "true", "delivery": 1},
                   {"id": "flag", "schedule": "@every 1s", "exec": "true", "delivery": true},
                   {"id": "ok", "schedule": "@every 1s", "exec": "true", "delivery": "at_least_once"}]"#;
    let err = check(&parse(text, FileFormat::Json)).expect_err("bad deliveries");
    for needle in [
        "job #1 \"unknown\": field `delivery`: unknown delivery \"exactly_once\"; expected at_most_once (the default) or at_least_once",
        "job #2 \"case\": field `delivery`: unknown delivery \"AT_LEAST_ONCE\"",
        "job #3 \"number\": field `delivery`: expected a string, found a number",
        "job #4 \"flag\": field `delivery`: expected a string, found a boolean",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(!err.contains("\"ok\""), "{err}");
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_from_flags_and_files_bad_values_store_nothing() {
    let server = shardcron_testkit::RedisServer::start().expect("redis-server");
    let url = server.url();
    let base = [
        "shardcron",
        "--redis",
        url.as_str(),
        "--namespace",
        "delivery",
    ];
    let with = |rest: &[&str]| -> Vec<String> {
        base.iter().chain(rest).map(|s| (*s).to_owned()).collect()
    };
    let coord = shardcron_coord::RedisCoordinator::connect(
        &url,
        "delivery",
        shardcron_core::RingConfig::default(),
    )
    .await
    .expect("connect");
    let stored_ids = || async {
        shardcron_coord::Coordinator::list_jobs(&coord, "", None, 10)
            .await
            .expect("list")
            .ids
    };

    // A bad value in a file: exit 3 naming the entry and the field.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        "[[job]]\nid = \"good\"\nschedule = \"@hourly\"\nexec = \"true\"\ndelivery = \"at_least_once\"\n\n[[job]]\nid = \"bad\"\nschedule = \"@hourly\"\nexec = \"true\"\ndelivery = \"twice\"\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let args = with(&["job", "put", "--file", path]);
    let err = run_cli(&args_of(&args)).await.expect_err("bad file");
    assert_eq!(err.kind, ExitKind::Config, "{err}");
    assert_eq!(err.kind.code(), 3);
    assert!(
        err.message
            .contains("job #2 \"bad\": field `delivery`: unknown delivery \"twice\""),
        "{err}"
    );

    // A bad value of the flag: a usage error (exit 2) naming the flag and
    // the values it takes.
    for bad in ["twice", "AT_LEAST_ONCE", ""] {
        let args = with(&[
            "job",
            "put",
            "--id",
            "flagged",
            "--schedule",
            "@hourly",
            "--exec",
            "true",
            "--delivery",
            bad,
        ]);
        let err = shardcron_cli::args::Cli::try_parse_from(&args).expect_err(bad);
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue, "{bad:?}");
        assert_eq!(err.exit_code(), 2, "{bad:?}");
        let message = err.to_string();
        assert!(
            message.contains("--delivery")
                && message.contains("at_most_once")
                && message.contains("at_least_once"),
            "{bad:?}: {message}"
        );
    }
    assert!(stored_ids().await.is_empty(), "nothing was stored");

    // Both values from the flags are stored; no flag means at_most_once.
    for (id, flags) in [
        ("least", &["--delivery", "at_least_once"][..]),
        ("most", &["--delivery", "at_most_once"][..]),
        ("plain", &[][..]),
    ] {
        let mut args = with(&[
            "job",
            "put",
            "--id",
            id,
            "--schedule",
            "@hourly",
            "--exec",
            "true",
        ]);
        args.extend(flags.iter().map(|s| (*s).to_owned()));
        run_cli(&args_of(&args)).await.expect(id);
    }
    for (id, expected) in [
        ("least", Delivery::AtLeastOnce),
        ("most", Delivery::AtMostOnce),
        ("plain", Delivery::AtMostOnce),
    ] {
        let stored = shardcron_coord::Coordinator::get_job(&coord, id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(stored.spec.delivery, expected, "{id}");
    }

    // The good file is stored with its deliveries.
    std::fs::write(
        &file,
        "[[job]]\nid = \"file-least\"\nschedule = \"@hourly\"\nexec = \"true\"\ndelivery = \"at_least_once\"\n",
    )
    .expect("write");
    run_cli(&args_of(&with(&["job", "put", "--file", path])))
        .await
        .expect("valid file");
    let stored = shardcron_coord::Coordinator::get_job(&coord, "file-least")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.spec.delivery, Delivery::AtLeastOnce);
}

fn args_of(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
