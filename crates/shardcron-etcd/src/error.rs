//! How etcd and client failures become [`CoordError`]s.
//!
//! The runtime treats [`CoordError::Unreachable`] as "try again later" and
//! everything else as a real answer, so the split matters: a dead or
//! paused member, a lost leader, a timed-out request and a closed
//! connection are all `Unreachable` (the request may or may not have been
//! applied, exactly like a lost Redis reply, and the protocol's lost-reply
//! handling covers both outcomes); an error etcd answered on purpose
//! (permission denied, request too large, too many operations in a
//! transaction) is a `Store` error naming the operation.

use shardcron_coord::CoordError;

/// gRPC codes that mean "no answer": the request may or may not have been
/// applied, so the caller must treat it like a lost reply.
fn is_unreachable(status: &tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        status,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
    )
}

/// Maps a client error of operation `op` against `url` (redacted).
pub(crate) fn map_err(url: &str, op: &'static str, error: etcd_client::Error) -> CoordError {
    use etcd_client::Error;
    let unreachable = |message: String| CoordError::Unreachable {
        url: url.to_owned(),
        message,
    };
    match error {
        Error::GRpcStatus(status) if is_unreachable(&status.code()) => {
            unreachable(format!("{op}: {}", status.message()))
        }
        Error::GRpcStatus(status) => CoordError::Store {
            op,
            message: format!("etcd answered {:?}: {}", status.code(), status.message()),
        },
        Error::TransportError(e) => unreachable(format!("{op}: {}", with_causes(&e))),
        Error::IoError(e) => unreachable(format!("{op}: {e}")),
        Error::WatchError(e) | Error::LeaseKeepAliveError(e) | Error::EndpointError(e) => {
            unreachable(format!("{op}: {e}"))
        }
        other => CoordError::Store {
            op,
            message: format!("etcd client: {other}"),
        },
    }
}

/// The error of a request that got no reply within the response timeout.
pub(crate) fn timed_out(url: &str, op: &'static str) -> CoordError {
    CoordError::Unreachable {
        url: url.to_owned(),
        message: format!("{op}: no reply in time"),
    }
}

/// A stored value this version cannot decode.
pub(crate) fn corrupt(what: impl Into<String>, error: impl std::fmt::Display) -> CoordError {
    CoordError::Corrupt {
        what: what.into(),
        message: error.to_string(),
    }
}

/// Whether etcd refused a write because its lease no longer exists.
pub(crate) fn is_lease_not_found(error: &CoordError) -> bool {
    matches!(error, CoordError::Store { message, .. } if message.contains("lease not found"))
}

/// An error's text followed by its causes' (`error: cause: cause`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
