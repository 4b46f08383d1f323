//! Errors of the coordination layer.

/// What can go wrong talking to the coordination store.
///
/// What a caller can do: retry [`CoordError::Unreachable`] later (the
/// runtime waits it out by itself; [`CoordError::is_unreachable`] tells it
/// apart); re-read and decide again on [`CoordError::VersionConflict`];
/// fix the input on [`CoordError::InvalidJob`] or the configuration on
/// [`CoordError::ConfigMismatch`]; [`CoordError::Store`] and
/// [`CoordError::Corrupt`] need a look at the message (a transient server
/// error, missing privileges, a damaged value).
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// The store could not be reached or did not answer in time. Retry
    /// later; nothing is known to have been written.
    #[error("{} unreachable at {url}: {message}", store_name(url))]
    Unreachable {
        /// Redacted URL of the server.
        url: String,
        /// Cause.
        message: String,
    },
    /// The store answered with an error (a server loading its data, a
    /// statement refused for missing privileges...). Retrying may help
    /// when the cause is transient; the message says which.
    #[error("store error during {op}: {message}")]
    Store {
        /// Operation that failed.
        op: &'static str,
        /// Cause.
        message: String,
    },
    /// The namespace was created with other ring settings. Use the same
    /// shard count, virtual nodes and load bound on every node, or another
    /// namespace; retrying cannot help.
    #[error("namespace {namespace:?} was created with {field}={stored}, this node is configured with {field}={given}; use the same value on every node or another namespace")]
    ConfigMismatch {
        /// Namespace.
        namespace: String,
        /// Setting that differs.
        field: String,
        /// Stored value.
        stored: String,
        /// This node's value.
        given: String,
    },
    /// Optimistic concurrency: the job's version is not the expected one,
    /// and nothing was written. Read the job again and decide.
    #[error("job {job_id:?} is at version {current}, not the expected {expected}")]
    VersionConflict {
        /// Job id.
        job_id: String,
        /// Version the caller expected.
        expected: u64,
        /// Version stored (0 = absent).
        current: u64,
    },
    /// A stored value could not be decoded (written by a newer version, or
    /// damaged). An operator has to look at it; retrying does not help.
    #[error("corrupt stored value for {what}: {message}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Cause.
        message: String,
    },
    /// The job is invalid; nothing was written. Fix the field it names.
    #[error(transparent)]
    InvalidJob(#[from] shardcron_core::JobValidationError),
}

/// How often a job write looks for the job again when a concurrent write
/// moved it between its candidate shards (a store's write answers "look
/// again" when the job is no longer where it was found).
pub const MAX_RELOCATIONS: usize = 8;

impl CoordError {
    /// The job moved between its candidate shards on each of
    /// [`MAX_RELOCATIONS`] looks: other writers keep changing its placement
    /// faster than this write can follow. Nothing was written; retrying is
    /// safe.
    pub fn moved_while_written(job_id: &str) -> Self {
        Self::Store {
            op: "write job",
            message: format!(
                "job {job_id:?} moved between shards {MAX_RELOCATIONS} times while being written; another writer keeps changing its placement, retry"
            ),
        }
    }

    /// True when the store was unreachable (worth retrying later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// The store a (redacted) URL names, by its scheme, for messages:
/// `Redis`, `PostgreSQL`, `etcd`, else `the store`.
pub fn store_name(url: &str) -> &'static str {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => "Redis",
        "postgres" | "postgresql" => "PostgreSQL",
        "etcd" | "etcds" => "etcd",
        _ => "the store",
    }
}
