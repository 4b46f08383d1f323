//! The one error type of the facade, and what a caller can do about each case.

use std::fmt;

use shardcron_coord::CoordError;
use shardcron_core::JobValidationError;
use shardcron_runtime::WorkerError;
use shardcron_store::OpenError;

/// What a write expects of the job's stored version, checked in the same
/// atomic step as the write (see [`crate::Jobs::put`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is stored (create or replace).
    #[default]
    Any,
    /// Write only if no job has this id (create only).
    Absent,
    /// Write only if the job exists (replace only).
    Exists,
    /// Write only if the job is stored at exactly this version.
    Version(u64),
}

impl fmt::Display for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Precondition::Any => f.write_str("any version"),
            Precondition::Absent => f.write_str("absent"),
            Precondition::Exists => f.write_str("any existing version"),
            Precondition::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// Why a scheduler could not start, stopped with an error, or refused a job
/// operation.
///
/// Each variant says what the caller can do. In short: fix the input for
/// [`Error::InvalidJob`] and [`Error::Config`], read again for
/// [`Error::Conflict`], retry later when [`Error::is_retryable`] says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job definition is invalid: a bad cron expression or time zone, a
    /// schedule that never fires, a handler this scheduler does not have,
    /// arguments its handler refuses, a duplicate id among the builder's
    /// jobs... The error names the job and the field. Nothing was written;
    /// fix that field and try again (retrying unchanged cannot succeed).
    #[error(transparent)]
    InvalidJob(#[from] JobValidationError),
    /// The scheduler is misconfigured: no store given, a store URL whose
    /// scheme is not supported or that cannot be parsed, an invalid
    /// namespace, node id or worker settings, or a namespace created with
    /// other ring settings (found at start, or by a running worker, which
    /// then leaves the fleet gracefully). Fix the builder call, the URL or
    /// the ring settings; retrying unchanged does not help.
    #[error("{0}")]
    Config(String),
    /// No job with this id exists in the namespace. Check the id, or add the
    /// job first.
    #[error("job {job_id:?} not found in namespace {namespace:?}")]
    NotFound {
        /// The id asked for.
        job_id: String,
        /// The namespace searched.
        namespace: String,
    },
    /// The job is not as the write's [`Precondition`] requires (it already
    /// exists, no longer exists, or is at another version). Nothing was
    /// written. Read the job again and decide whether to write.
    #[error("job {job_id:?} is at version {current} (0: absent), not {expected}")]
    Conflict {
        /// The job's id.
        job_id: String,
        /// What the write expected.
        expected: Precondition,
        /// The version stored when the write was refused (0: absent).
        current: u64,
    },
    /// The job kept changing under a read-modify-write (a pause or resume
    /// racing other writers) for every attempt. Nothing was written by the
    /// last attempt; retry.
    #[error("job {job_id:?} kept changing; gave up after {attempts} attempts")]
    Busy {
        /// The job's id.
        job_id: String,
        /// Attempts made.
        attempts: usize,
    },
    /// The store failed: unreachable ([`Error::is_retryable`]: retry later,
    /// the fleet keeps its guarantees meanwhile) or answering with an error
    /// (see the message; a corrupt value needs an operator).
    #[error(transparent)]
    Store(CoordError),
    /// The scheduler's task ended abnormally (a panic outside any handler, or
    /// the async runtime shutting down under it). Its shards are taken over
    /// by the other nodes once its leases expire; start a new scheduler.
    #[error("the scheduler task ended abnormally: {0}")]
    Crashed(String),
}

impl Error {
    /// True when the same call may succeed later unchanged: the store was
    /// unreachable or answered with a transient error, or the job was busy.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => {
                matches!(e, CoordError::Unreachable { .. } | CoordError::Store { .. })
            }
            Error::Busy { .. } => true,
            _ => false,
        }
    }
}

impl From<CoordError> for Error {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::InvalidJob(e) => Error::InvalidJob(e),
            e @ CoordError::ConfigMismatch { .. } => Error::Config(e.to_string()),
            e => Error::Store(e),
        }
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Coord(e) => e.into(),
            e => Error::Config(e.to_string()),
        }
    }
}

impl From<WorkerError> for Error {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Coord(e) => e.into(),
            e @ (WorkerError::Settings(_) | WorkerError::NodeId(_)) => Error::Config(e.to_string()),
        }
    }
}

/// Result of the facade's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
