//! A minimal, synchronous RESP2 client.
//!
//! Tests need to poke at the server *around* the code under test: flush it,
//! delete a key behind the scheduler's back, read `INFO commandstats`, or check
//! that a paused server really does not answer. Doing that through the same
//! Redis client library the production code uses would couple the test
//! harness to the code under test (and to its connection pooling, retries and
//! async runtime). This module speaks just enough RESP over a plain
//! [`std::net::TcpStream`] with explicit timeouts, so it works from sync and
//! async tests alike and never hangs a test forever.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::TestkitError;

/// Maximum nesting depth accepted when parsing arrays.
const MAX_DEPTH: usize = 32;

/// Maximum bulk-string length accepted (512 MiB, Redis' own limit).
const MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// One parsed RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK` style simple string.
    Simple(String),
    /// `-ERR ...` error reply (message without the leading `-`).
    Error(String),
    /// `:42` integer reply.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `*n` array (possibly nested).
    Array(Vec<RespValue>),
    /// `$-1` or `*-1` null reply.
    Nil,
}

impl fmt::Display for RespValue {
    /// Renders the reply as text, similar to `redis-cli --raw`:
    /// simple strings and bulk strings verbatim (bulk as lossy UTF-8),
    /// integers in decimal, nulls as `(nil)`, errors as `(error) msg`, and
    /// arrays as their elements joined by `\n` (an empty array renders as an
    /// empty string).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespValue::Simple(s) => f.write_str(s),
            RespValue::Error(e) => write!(f, "(error) {e}"),
            RespValue::Integer(i) => write!(f, "{i}"),
            RespValue::Bulk(b) => f.write_str(&String::from_utf8_lossy(b)),
            RespValue::Nil => f.write_str("(nil)"),
            RespValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

impl RespValue {
    /// Converts the reply into text (see the [`Display`](fmt::Display) impl),
    /// turning a top-level error reply into [`TestkitError::ErrorReply`].
    pub fn into_text(self) -> Result<String, TestkitError> {
        match self {
            RespValue::Error(e) => Err(TestkitError::ErrorReply(e)),
            other => Ok(other.to_string()),
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one complete RESP2 reply from `reader`.
///
/// Read timeouts configured on the underlying socket surface as
/// [`TestkitError::Timeout`] only when called through [`RespConnection`]; here
/// they are reported as [`TestkitError::Io`].
pub fn read_reply<R: BufRead>(reader: &mut R) -> Result<RespValue, TestkitError> {
    read_value(reader, 0)
}

fn read_line<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, TestkitError> {
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .map_err(|e| TestkitError::io("reading RESP reply", e))?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(TestkitError::ConnectionClosed);
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(bytes: &[u8]) -> Result<i64, TestkitError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            TestkitError::Protocol(format!(
                "invalid integer {:?}",
                String::from_utf8_lossy(bytes)
            ))
        })
}

fn read_value<R: BufRead>(reader: &mut R, depth: usize) -> Result<RespValue, TestkitError> {
    if depth > MAX_DEPTH {
        return Err(TestkitError::Protocol("arrays nested too deeply".into()));
    }
    let line = read_line(reader)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(TestkitError::Protocol("empty reply line".into()));
    };
    match kind {
        b'+' => Ok(RespValue::Simple(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        b'-' => Ok(RespValue::Error(String::from_utf8_lossy(rest).into_owned())),
        b':' => parse_int(rest).map(RespValue::Integer),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(RespValue::Nil);
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_BULK_LEN)
                .ok_or_else(|| TestkitError::Protocol(format!("bulk length {len} too large")))?;
            let mut buf = vec![0u8; len + 2];
            reader.read_exact(&mut buf).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    TestkitError::ConnectionClosed
                } else {
                    TestkitError::io("reading RESP bulk string", e)
                }
            })?;
            if !buf.ends_with(b"\r\n") {
                return Err(TestkitError::Protocol(
                    "bulk string not terminated by CRLF".into(),
                ));
            }
            buf.truncate(len);
            Ok(RespValue::Bulk(buf))
        }
        b'*' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(RespValue::Nil);
            }
            let mut items = Vec::new();
            for _ in 0..len {
                items.push(read_value(reader, depth + 1)?);
            }
            Ok(RespValue::Array(items))
        }
        other => Err(TestkitError::Protocol(format!(
            "unsupported reply type byte {:?}",
            char::from(other)
        ))),
    }
}

/// A synchronous RESP connection with explicit timeouts.
///
/// Keeping one connection open lets a test check behaviour on the *same*
/// socket across faults (e.g. through a [`FaultProxy`](crate::FaultProxy)).
/// After a [`TestkitError::Timeout`] the connection may be out of step (the
/// late reply can still arrive); open a fresh connection unless the request is
/// known to have been dropped.
#[derive(Debug)]
pub struct RespConnection {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
    timeout: Option<Duration>,
}

impl RespConnection {
    /// Connects to `addr`, using `timeout` both for the TCP connect and as the
    /// read/write timeout of every subsequent command.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, TestkitError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| map_timeout(e, format!("connecting to {addr}"), Some(timeout)))?;
        // Best effort: Nagle only adds latency to request/response traffic.
        let _ = stream.set_nodelay(true);
        let conn = RespConnection {
            reader: BufReader::new(stream),
            addr,
            timeout: None,
        };
        conn.set_timeout_inner(Some(timeout))
    }

    fn set_timeout_inner(mut self, timeout: Option<Duration>) -> Result<Self, TestkitError> {
        self.set_timeout(timeout)?;
        Ok(self)
    }

    /// Changes the read/write timeout (`None` = block forever; a zero
    /// duration is rejected by the OS).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), TestkitError> {
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(timeout)
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(|e| TestkitError::io("setting socket timeout", e))?;
        self.timeout = timeout;
        Ok(())
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a command and returns the parsed reply (error replies are
    /// returned as [`RespValue::Error`], not as `Err`).
    pub fn query(&mut self, args: &[&str]) -> Result<RespValue, TestkitError> {
        let request = encode_command(args);
        let addr = self.addr;
        let timeout = self.timeout;
        self.reader
            .get_mut()
            .write_all(&request)
            .map_err(|e| map_timeout(e, format!("sending command to {addr}"), timeout))?;
        match read_reply(&mut self.reader) {
            Err(TestkitError::Io { source, .. }) => Err(map_timeout(
                source,
                format!("waiting for a reply from {addr}"),
                timeout,
            )),
            other => other,
        }
    }

    /// Sends a command and returns the reply rendered as text (see
    /// [`RespValue`]'s `Display`); an error reply becomes
    /// [`TestkitError::ErrorReply`].
    pub fn command(&mut self, args: &[&str]) -> Result<String, TestkitError> {
        self.query(args)?.into_text()
    }
}

/// Maps socket timeouts (`WouldBlock`/`TimedOut`) to [`TestkitError::Timeout`].
fn map_timeout(e: io::Error, context: String, timeout: Option<Duration>) -> TestkitError {
    match (e.kind(), timeout) {
        (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some(timeout)) => {
            TestkitError::Timeout { context, timeout }
        }
        _ => TestkitError::io(context, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<RespValue, TestkitError> {
        read_reply(&mut io::Cursor::new(bytes.to_vec()))
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            encode_command(&["SET", "k", "v"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".to_vec()
        );
    }

    #[test]
    fn parses_all_reply_types() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), RespValue::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR boom\r\n").unwrap(),
            RespValue::Error("ERR boom".into())
        );
        assert_eq!(parse(b":-7\r\n").unwrap(), RespValue::Integer(-7));
        assert_eq!(
            parse(b"$5\r\nhe\r\no\r\n").unwrap(),
            RespValue::Bulk(b"he\r\no".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), RespValue::Nil);
        let arr = parse(b"*3\r\n$1\r\na\r\n:2\r\n*1\r\n+c\r\n").unwrap();
        assert_eq!(arr.to_string(), "a\n2\nc");
        assert_eq!(parse(b"*0\r\n").unwrap().to_string(), "");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(matches!(parse(b"?x\r\n"), Err(TestkitError::Protocol(_))));
        assert!(matches!(parse(b":abc\r\n"), Err(TestkitError::Protocol(_))));
        assert!(matches!(parse(b"+OK"), Err(TestkitError::ConnectionClosed)));
        assert!(matches!(
            parse(b"$10\r\nabc"),
            Err(TestkitError::ConnectionClosed)
        ));
    }

    #[test]
    fn error_reply_into_text_is_err() {
        assert!(matches!(
            RespValue::Error("ERR x".into()).into_text(),
            Err(TestkitError::ErrorReply(m)) if m == "ERR x"
        ));
        assert_eq!(RespValue::Nil.into_text().unwrap(), "(nil)");
    }
}
