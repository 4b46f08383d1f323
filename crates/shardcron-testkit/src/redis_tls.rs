//! A `redis-server` that speaks TLS only.
//!
//! With [`RedisServerBuilder::tls`](crate::RedisServerBuilder::tls) the
//! server gets a fresh [`TestPki`] in its directory and listens with TLS on
//! its port and nowhere in plain TCP (`--port 0`), so a client that does
//! not do TLS, or does not trust the test CA, cannot talk to it at all.
//! Whether it asks clients for a certificate is the builder's choice
//! ([`ClientAuth`]).
//!
//! Readiness cannot be a plaintext `PING` then: the server is ready when
//! its own log (in its own directory, its pid on every line) says so and
//! its port accepts connections. The synchronous helpers
//! ([`RedisServer::command`](crate::RedisServer::command),
//! [`RedisServer::query`](crate::RedisServer::query)) reach such a server
//! through `redis-cli --tls` with the test CA and the client certificate:
//! the kit's own RESP client speaks plain TCP only, and setting up a
//! cluster needs a few commands on each node, not a second TLS stack.
//! [`RedisServer::connect`](crate::RedisServer::connect) stays plain TCP;
//! for anything else use a TLS client built from
//! [`RedisServer::tls`](crate::RedisServer::tls).
//!
//! Servers of one Redis Cluster share one CA
//! ([`RedisServerBuilder::tls_with`](crate::RedisServerBuilder::tls_with)):
//! they talk to each other over TLS (cluster bus, replication), each
//! presenting the client certificate when it connects out.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::TestkitError;
use crate::redis_server::{find_executable, read_from, LOG_FILE};
use crate::resp::RespValue;
use crate::test_pki::TestPki;

/// Whether a TLS server asks its clients for a certificate signed by its CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present one (`--tls-auth-clients yes`).
    Required,
    /// Clients may connect without one (`--tls-auth-clients optional`).
    Optional,
}

/// The TLS side of a server: its certificates and its client policy.
#[derive(Debug)]
pub struct ServerTls {
    pki: Arc<TestPki>,
    auth: ClientAuth,
}

impl ServerTls {
    /// Makes the certificates in `dir` (the server's directory).
    pub(crate) fn create(dir: &Path, auth: ClientAuth) -> Result<Self, TestkitError> {
        Ok(Self {
            pki: Arc::new(TestPki::write_to(dir)?),
            auth,
        })
    }

    /// Uses the certificates of `pki`, shared with other servers.
    pub(crate) fn shared(pki: Arc<TestPki>, auth: ClientAuth) -> Self {
        Self { pki, auth }
    }

    /// The CA and the certificates it signed (the client's among them).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// Whether clients must present a certificate.
    pub fn auth(&self) -> ClientAuth {
        self.auth
    }

    /// The arguments that move the server to TLS on `port` (after the
    /// defaults, which they override).
    pub(crate) fn args(&self, port: u16) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &OsString| args.push(a.clone());
        for (flag, value) in [
            ("--port", OsString::from("0")),
            ("--tls-port", OsString::from(port.to_string())),
            ("--tls-cert-file", self.pki.server_cert().into()),
            ("--tls-key-file", self.pki.server_key().into()),
            ("--tls-ca-cert-file", self.pki.ca().into()),
            // Presented when the server connects out (cluster bus,
            // replication): its own certificate is for servers only.
            ("--tls-client-cert-file", self.pki.client_cert().into()),
            ("--tls-client-key-file", self.pki.client_key().into()),
            (
                "--tls-auth-clients",
                OsString::from(match self.auth {
                    ClientAuth::Required => "yes",
                    ClientAuth::Optional => "optional",
                }),
            ),
        ] {
            push(&OsString::from(flag));
            push(&value);
        }
        args
    }

    /// shardcron's store URL of the server on `port`: `rediss://` with the
    /// test CA and the client certificate as its TLS options.
    pub(crate) fn url(&self, port: u16) -> String {
        format!(
            "rediss://127.0.0.1:{port}?tls_ca={}&tls_cert={}&tls_key={}",
            self.pki.ca().display(),
            self.pki.client_cert().display(),
            self.pki.client_key().display()
        )
    }
}

impl ServerTls {
    /// Sends one command to the server on `port` with `redis-cli --tls`
    /// (the test CA, the client certificate), waiting up to `timeout` for
    /// the reply. The reply comes back as text in a
    /// [`RespValue::Bulk`] (`redis-cli`'s raw output without its last
    /// newline), an error reply (or a failure to connect) as a
    /// [`RespValue::Error`].
    pub(crate) fn query(
        &self,
        port: u16,
        args: &[&str],
        timeout: Duration,
    ) -> Result<RespValue, TestkitError> {
        let cli = find_executable(Path::new("redis-cli")).ok_or(TestkitError::RedisCliNotFound)?;
        let mut child = Command::new(cli)
            .arg("--tls")
            .arg("--cacert")
            .arg(self.pki.ca())
            .arg("--cert")
            .arg(self.pki.client_cert())
            .arg("--key")
            .arg(self.pki.client_key())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            // -e: an error reply exits with a non-zero status.
            .arg("-e")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestkitError::io("running redis-cli", e))?;
        // redis-cli has no timeout of its own: a paused server would keep
        // it waiting, so it is killed once `timeout` has passed.
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(TestkitError::Timeout {
                        context: format!("waiting for redis-cli --tls on port {port}"),
                        timeout,
                    });
                }
                Err(e) => return Err(TestkitError::io("waiting for redis-cli", e)),
            }
        }
        let output = child
            .wait_with_output()
            .map_err(|e| TestkitError::io("reading redis-cli's output", e))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.ends_with('\n') {
            text.pop();
        }
        if output.status.success() {
            Ok(RespValue::Bulk(text.into_bytes()))
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Ok(RespValue::Error(
                format!("{} {}", text.trim(), stderr.trim())
                    .trim()
                    .to_owned(),
            ))
        }
    }
}

/// Whether the server (process `pid`, logging in `dir` from `log_offset`
/// on) said it is ready and its TLS port on `port` accepts connections.
pub(crate) fn is_ready(pid: u32, dir: &Path, log_offset: u64, port: u16) -> bool {
    let log = read_from(&dir.join(LOG_FILE), log_offset);
    let ours = format!("{pid}:M");
    let ready = log
        .lines()
        .any(|l| l.starts_with(&ours) && l.contains("Ready to accept connections"));
    ready
        && TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(250),
        )
        .is_ok()
}
