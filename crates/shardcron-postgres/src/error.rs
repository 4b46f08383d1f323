//! How PostgreSQL and pool failures map onto [`CoordError`].
//!
//! The runtime decides what to do from the variant alone, exactly as with
//! Redis: [`CoordError::Unreachable`] means "the store did not answer, or
//! the step may not have happened" (retry later; a claim whose reply is
//! lost is handed back), [`CoordError::Store`] means the store refused the
//! statement. So everything that says the server is gone, starting,
//! shutting down, overloaded or too slow (connection errors, SQLSTATE
//! classes 08 and 57, 53xxx, statement timeouts, a client-side timeout) is
//! `Unreachable`, and so are deadlocks and serialisation failures (40xxx)
//! and lock timeouts (55P03): their transaction rolled back, so retrying is
//! right. Anything else is `Store`.

use shardcron_coord::CoordError;

/// A failure of one statement of operation `op` against `url`.
pub(crate) fn map_pg(url: &str, op: &'static str, e: &tokio_postgres::Error) -> CoordError {
    let transient = match e.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code.starts_with("40")
                || code == "55P03"
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(e),
    };
    if transient {
        CoordError::Unreachable {
            url: url.to_owned(),
            message: format!("{op}: {detail}"),
        }
    } else {
        CoordError::Store {
            op,
            message: detail,
        }
    }
}

/// An error's text followed by its causes' (`error connecting to server:
/// Connection refused`): the client's own text says only which step failed.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The pool could not hand out a connection.
pub(crate) fn map_pool(
    url: &str,
    op: &'static str,
    e: &deadpool_postgres::PoolError,
) -> CoordError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_pg(url, op, e),
        other => CoordError::Unreachable {
            url: url.to_owned(),
            message: format!("{op}: {other}"),
        },
    }
}

/// No reply within the response timeout.
pub(crate) fn timed_out(url: &str, op: &'static str) -> CoordError {
    CoordError::Unreachable {
        url: url.to_owned(),
        message: format!("{op}: no reply in time"),
    }
}

/// A reply that does not have the expected shape.
pub(crate) fn corrupt(what: impl Into<String>, message: impl ToString) -> CoordError {
    CoordError::Corrupt {
        what: what.into(),
        message: message.to_string(),
    }
}
