//! Job files (JSON and TOML) and `job put` flags: parsing, validation, and
//! messages that name the entry (position and id) and the field.

use std::path::Path;

use shardcron_cli::jobs_input::{
    builtin_registry, parse_jobs, validate_all, validate_parsed, FileFormat, JobInput, Origin,
    ParsedJobs,
};
use shardcron_cli::ExitKind;
use shardcron_core::{MisfirePolicy, OverlapPolicy};

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
