//! Exit codes and the error type every command returns.
//!
//! Scripts and supervisors act on *why* a command failed (retry when the
//! store is unreachable, fix the file on a validation error, re-read on a conflict), so
//! the kind of failure is part of the contract, not just the message. Every
//! error is built with its [`ExitKind`] at the place that knows what went
//! wrong, and [`EXIT_CODES`] is the single table that `--help` prints and tests
//! check against.

use std::fmt;
use std::process::ExitCode;

use shardcron_coord::CoordError;

/// Why the process ends; each kind has one fixed exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// Success.
    Ok,
    /// A runtime failure not covered by another kind.
    Failure,
    /// Bad command-line usage, as reported by clap.
    Usage,
    /// Invalid configuration or job definition.
    Config,
    /// The store (Redis or PostgreSQL) could not be reached.
    Unreachable,
    /// The named job (or other object) does not exist.
    NotFound,
    /// A concurrent change won (version conflict).
    Conflict,
}

impl ExitKind {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Config => 3,
            Self::Unreachable => 4,
            Self::NotFound => 5,
            Self::Conflict => 6,
        }
    }

    /// The kind as a process exit code.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// The exit codes of `shardcron`: `(code, kind, meaning)`, in code order.
pub const EXIT_CODES: &[(u8, ExitKind, &str)] = &[
    (0, ExitKind::Ok, "success"),
    (
        1,
        ExitKind::Failure,
        "runtime failure (also the store refusing a statement, e.g. a role without the privileges it needs)",
    ),
    (2, ExitKind::Usage, "usage error (bad flags or arguments)"),
    (
        3,
        ExitKind::Config,
        "config or validation error (bad cron, unknown zone, missing exec/http, duplicate ids, unknown config keys, mismatched shard count, malformed store URL, store schema newer than this binary)",
    ),
    (4, ExitKind::Unreachable, "store unreachable (Redis or PostgreSQL)"),
    (5, ExitKind::NotFound, "not found (unknown job id)"),
    (6, ExitKind::Conflict, "conflict (the job changed concurrently)"),
];

/// The exit-code table as shown at the end of `--help`.
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, _, meaning) in EXIT_CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text
}

/// A failed command: what to tell the user and which exit code to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    /// Kind of failure (decides the exit code).
    pub kind: ExitKind,
    /// Human-readable message, printed as `error: MESSAGE`.
    pub message: String,
}

impl CliError {
    /// An error of the given kind.
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A runtime failure (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Failure, message)
    }

    /// A configuration or validation error (exit 3).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ExitKind::Config, message)
    }

    /// A not-found error (exit 5).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ExitKind::NotFound, message)
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        self.kind.exit_code()
    }

    /// Prefixes the message with context (`context: message`), keeping the kind.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The exit kind of a coordination error.
pub fn coord_error_kind(error: &CoordError) -> ExitKind {
    match error {
        CoordError::Unreachable { .. } => ExitKind::Unreachable,
        CoordError::ConfigMismatch { .. } | CoordError::InvalidJob(_) => ExitKind::Config,
        CoordError::VersionConflict { .. } => ExitKind::Conflict,
        CoordError::Store { .. } | CoordError::Corrupt { .. } => ExitKind::Failure,
    }
}

/// The user-facing text of a coordination error: an unreachable store is
/// named by its URL's scheme, a refused statement is a store error, a schema
/// newer than this binary says to upgrade; anything else is the error's own
/// text.
pub fn coord_error_message(error: &CoordError) -> String {
    match error {
        CoordError::ConfigMismatch {
            namespace,
            field,
            stored,
            given,
        } if field == "schema_version" => format!(
            "namespace {namespace:?} has store schema version {stored}, newer than this binary's {given}; upgrade shardcron (nothing was changed)"
        ),
        other => other.to_string(),
    }
}

impl From<CoordError> for CliError {
    fn from(error: CoordError) -> Self {
        Self::new(coord_error_kind(&error), coord_error_message(&error))
    }
}

impl From<shardcron_store::OpenError> for CliError {
    fn from(error: shardcron_store::OpenError) -> Self {
        match error {
            shardcron_store::OpenError::Coord(e) => e.into(),
            other => Self::config(other.to_string()),
        }
    }
}

impl From<shardcron_core::JobValidationError> for CliError {
    fn from(error: shardcron_core::JobValidationError) -> Self {
        Self::config(error.to_string())
    }
}

impl From<shardcron_runtime::WorkerError> for CliError {
    fn from(error: shardcron_runtime::WorkerError) -> Self {
        match error {
            shardcron_runtime::WorkerError::Coord(e) => e.into(),
            other => Self::config(other.to_string()),
        }
    }
}

/// Errors of the library's job operations, which the `job` commands share
/// (`shardcron::jobs`): not found exits 5, a version conflict or a job that
/// kept changing exits 6, the rest as the store error they wrap.
impl From<shardcron::Error> for CliError {
    fn from(error: shardcron::Error) -> Self {
        match error {
            shardcron::Error::Store(e) => e.into(),
            shardcron::Error::InvalidJob(e) => e.into(),
            e @ shardcron::Error::NotFound { .. } => Self::not_found(e.to_string()),
            e @ (shardcron::Error::Conflict { .. } | shardcron::Error::Busy { .. }) => {
                Self::new(ExitKind::Conflict, e.to_string())
            }
            e @ shardcron::Error::Config(_) => Self::config(e.to_string()),
            e => Self::failure(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_code_order_and_matches_kinds() {
        for (i, (code, kind, _)) in EXIT_CODES.iter().enumerate() {
            assert_eq!(usize::from(*code), i);
            assert_eq!(kind.code(), *code);
        }
    }

    #[test]
    fn help_lists_every_code() {
        let help = exit_codes_help();
        for (code, _, meaning) in EXIT_CODES {
            assert!(help.contains(&format!("{code}  {meaning}")), "{help}");
        }
    }
}
