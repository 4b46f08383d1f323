//! Every error kind maps to its documented exit code.

use shardcron_cli::exit::{coord_error_kind, coord_error_message, exit_codes_help};
use shardcron_cli::{CliError, ExitKind, EXIT_CODES};
use shardcron_coord::CoordError;
use shardcron_core::JobSpec;
use shardcron_runtime::WorkerError;

#[test]
fn table_is_the_contract() {
    let codes: Vec<(u8, ExitKind)> = EXIT_CODES.iter().map(|(c, k, _)| (*c, *k)).collect();
    assert_eq!(
        codes,
        [
            (0, ExitKind::Ok),
            (1, ExitKind::Failure),
            (2, ExitKind::Usage),
            (3, ExitKind::Config),
            (4, ExitKind::Unreachable),
            (5, ExitKind::NotFound),
            (6, ExitKind::Conflict),
        ]
    );
    let help = exit_codes_help();
    for (code, _, _) in EXIT_CODES {
        assert!(help.contains(&format!("  {code}  ")), "{help}");
    }
}

#[test]
fn coordination_errors_map_to_their_codes() {
    let cases = [
        (
            CoordError::Unreachable {
                url: "redis://127.0.0.1:1".into(),
                message: "refused".into(),
            },
            4,
        ),
        (
            CoordError::ConfigMismatch {
                namespace: "ns".into(),
                field: "shard_count".into(),
                stored: "1024".into(),
                given: "512".into(),
            },
            3,
        ),
        (
            CoordError::VersionConflict {
                job_id: "j".into(),
                expected: 1,
                current: 2,
            },
            6,
        ),
        (
            CoordError::Store {
                op: "put job",
                message: "OOM".into(),
            },
            1,
        ),
        (
            CoordError::Corrupt {
                what: "job j".into(),
                message: "bad json".into(),
            },
            1,
        ),
    ];
    for (error, code) in cases {
        assert_eq!(coord_error_kind(&error).code(), code, "{error}");
        let message = coord_error_message(&error);
        assert!(!message.contains("Redis error"), "{message}");
        let cli: CliError = error.into();
        assert_eq!(cli.kind.code(), code);
        assert_eq!(cli.message, message);
    }
}

#[test]
fn unreachable_message_names_the_url() {
    let cli: CliError = CoordError::Unreachable {
        url: "redis://127.0.0.1:1".into(),
        message: "Connection refused".into(),
    }
    .into();
    assert_eq!(
        cli.to_string(),
        "Redis unreachable at redis://127.0.0.1:1: Connection refused"
    );
    let cli: CliError = CoordError::Unreachable {
        url: "postgres://***@127.0.0.1:1/db".into(),
        message: "Connection refused".into(),
    }
    .into();
    assert_eq!(
        cli.to_string(),
        "PostgreSQL unreachable at postgres://***@127.0.0.1:1/db: Connection refused"
    );
}

#[test]
fn a_refused_statement_is_a_store_error_not_a_redis_one() {
    let cli: CliError = CoordError::Store {
        op: "migrate schema",
        message: "permission denied for database postgres (42501)".into(),
    }
    .into();
    assert_eq!(cli.kind, ExitKind::Failure);
    assert_eq!(
        cli.to_string(),
        "store error during migrate schema: permission denied for database postgres (42501)"
    );
}

#[test]
fn a_newer_schema_says_to_upgrade() {
    let cli: CliError = CoordError::ConfigMismatch {
        namespace: "ns".into(),
        field: "schema_version".into(),
        stored: "9".into(),
        given: "2".into(),
    }
    .into();
    assert_eq!(cli.kind, ExitKind::Config);
    assert!(cli.message.contains("schema version 9"), "{}", cli.message);
    assert!(cli.message.contains("upgrade shardcron"), "{}", cli.message);
}

#[test]
fn validation_and_worker_errors_are_config_errors() {
    let invalid = JobSpec::new("x", "61 * * * *", "exec")
        .validate()
        .expect_err("bad cron");
    let cli: CliError = invalid.clone().into();
    assert_eq!(cli.kind, ExitKind::Config);
    assert!(
        cli.message
            .starts_with("job \"x\": field `schedule`: invalid schedule \"61 * * * *\""),
        "{cli}"
    );
    let cli: CliError = CoordError::InvalidJob(invalid).into();
    assert_eq!(cli.kind, ExitKind::Config);
    let cli: CliError = WorkerError::Settings("heartbeat must be greater than zero".into()).into();
    assert_eq!(cli.kind, ExitKind::Config);
    let cli: CliError = WorkerError::NodeId("a/b".into()).into();
    assert_eq!(cli.kind, ExitKind::Config);
    let cli: CliError = WorkerError::Coord(CoordError::Unreachable {
        url: "u".into(),
        message: "m".into(),
    })
    .into();
    assert_eq!(cli.kind, ExitKind::Unreachable);
}

#[test]
fn exit_code_of_an_error_is_its_kind() {
    for (code, kind, _) in EXIT_CODES {
        let e = CliError::new(*kind, "x");
        assert_eq!(e.exit_code(), std::process::ExitCode::from(*code));
        assert_eq!(e.context("ctx").kind, *kind, "context keeps the kind");
    }
}
