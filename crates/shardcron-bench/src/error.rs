//! Errors of the benchmark tool, each naming what it was doing.

use std::path::PathBuf;

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument combination that cannot be simulated.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("writing", "creating directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Serializing results failed.
    #[error("serializing results: {0}")]
    Json(#[from] serde_json::Error),
    /// Setting up or running the live fleet failed.
    #[error("{action}: {message}")]
    Live {
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Something the peer comparison needs is not there: Node.js, npm, the
    /// BullMQ folder or its packages, redis-server.
    #[error("missing {what}: {hint}")]
    Missing {
        /// What is missing ("node", "npm", "the BullMQ peer folder").
        what: String,
        /// How to provide it.
        hint: String,
    },
    /// A peer's result could not be read: the harness and this tool
    /// disagree about its format.
    #[error("cannot parse {origin}: {message}")]
    PeerOutput {
        /// Where the result came from (the file run.js wrote).
        origin: String,
        /// What was wrong with it.
        message: String,
    },
    /// Drawing a chart failed.
    #[error("drawing chart {path}: {message}")]
    Chart {
        /// The chart file.
        path: PathBuf,
        /// What the plotting backend reported.
        message: String,
    },
}

impl BenchError {
    /// A live-run failure while doing `action`.
    pub fn live(action: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Live {
            action,
            message: error.to_string(),
        }
    }

    /// Wraps an I/O error with the action and path it happened on.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
