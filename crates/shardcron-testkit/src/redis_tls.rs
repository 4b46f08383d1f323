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
//! its port accepts connections. The plaintext helpers
//! ([`RedisServer::command`](crate::RedisServer::command) and the like) do
//! not reach such a server; talk to it with a TLS client built from
//! [`RedisServer::tls`](crate::RedisServer::tls).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::error::TestkitError;
use crate::redis_server::{read_from, LOG_FILE};
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
    pki: TestPki,
    auth: ClientAuth,
}

impl ServerTls {
    /// Makes the certificates in `dir` (the server's directory).
    pub(crate) fn create(dir: &Path, auth: ClientAuth) -> Result<Self, TestkitError> {
        Ok(Self {
            pki: TestPki::write_to(dir)?,
            auth,
        })
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
