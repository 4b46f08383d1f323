//! Property tests: the job parsers never panic, whatever they are fed.
//!
//! The API parses job JSON from the network and workers parse TOML job files
//! and configs from disk; a panic in either is a crash of a node (or of the
//! request task). Random bytes mostly die in the JSON/TOML syntax layer, so
//! besides raw bytes the tests also build syntactically valid documents with
//! the real field names and random values, which reach the schedule, zone,
//! duration and handler-argument checks behind them.

use proptest::prelude::*;
use serde_json::{Map, Value};
use shardcron_cli::api::body::{parse_job_body, validate_job, JOB_SPEC_FIELDS};
use shardcron_cli::api::{ApiAuth, ApiState};
use shardcron_cli::config;
use shardcron_cli::jobs_input::{
    builtin_registry, parse_jobs, validate_parsed, FileFormat, JOB_FIELDS,
};
use shardcron_core::JobSpec;

/// Plausible-looking field values: schedule fragments, zones, durations,
/// numbers, nested objects.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "@every 1s",
            "@every 0s",
            "@every 1ns",
            "@every 99999999999d",
            "0 2 * * *",
            "*/0 * * * *",
            "0 0 31 2 *",
            "@hourly",
            "@yearly",
            "60 * * * * *",
            "1-0 * * * *",
            "UTC",
            "Europe/Berlin",
            "Mars/Base",
            "",
            "30s",
            "0s",
            "1y",
            "catch_up",
            "queue_one",
            "exec",
            "http",
            "true",
        ])
        .prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object over `fields` with random values.
fn object_over(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(fields.to_vec()), value()), 0..10).prop_map(
        |pairs| {
            let mut map = Map::new();
            for (k, v) in pairs {
                map.insert(k.to_owned(), v);
            }
            Value::Object(map)
        },
    )
}

fn toml_value(v: &Value) -> String {
    // Render through the toml crate where possible; fall back to a string.
    toml::Value::try_from(v)
        .ok()
        .and_then(|t| {
            let mut table = toml::Table::new();
            table.insert("k".to_owned(), t);
            toml::to_string(&table).ok()
        })
        .and_then(|s| s.strip_prefix("k = ").map(|r| r.trim_end().to_owned()))
        .unwrap_or_else(|| "\"x\"".to_owned())
}

fn check_api_body(bytes: &[u8]) {
    let state = ApiState::new(
        ApiAuth::default(),
        builtin_registry(),
        Some(std::time::Duration::from_secs(900)),
    );
    if let Ok(spec) = parse_job_body("fuzz", bytes) {
        let _ = validate_job(&spec, &state);
    }
    if let Ok(spec) = serde_json::from_slice::<JobSpec>(bytes) {
        if let Ok(job) = spec.validate() {
            let _ = job.next_after(0);
        }
    }
}

fn check_toml(text: &str) {
    let registry = builtin_registry();
    if let Ok(parsed) = parse_jobs(text, FileFormat::Toml) {
        let _ = validate_parsed(&parsed, None, &registry);
    }
    if let Ok(parsed) = parse_jobs(text, FileFormat::Json) {
        let _ = validate_parsed(&parsed, None, &registry);
    }
    if let Ok(cfg) = config::parse(text) {
        let _ = cfg.static_jobs(&registry);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn api_json_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_api_body(&bytes);
    }

    #[test]
    fn api_json_parser_never_panics_on_job_shaped_objects(job in object_over(JOB_SPEC_FIELDS)) {
        check_api_body(job.to_string().as_bytes());
    }

    #[test]
    fn toml_job_files_never_panic_on_text(text in "\\PC{0,400}") {
        check_toml(&text);
    }

    #[test]
    fn toml_job_files_never_panic_on_job_shaped_tables(
        jobs in prop::collection::vec(object_over(JOB_FIELDS), 0..4),
    ) {
        let mut text = String::new();
        for job in &jobs {
            text.push_str("[[job]]\n");
            if let Value::Object(map) = job {
                for (k, v) in map {
                    text.push_str(&format!("{k} = {}\n", toml_value(v)));
                }
            }
        }
        check_toml(&text);
    }
}
