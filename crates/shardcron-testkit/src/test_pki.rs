//! A throw-away certificate authority for TLS tests.
//!
//! TLS tests need a CA, a server certificate it signed for the loopback
//! address, and a client certificate for servers that require one. Made on
//! the spot with `rcgen`, they need nothing installed (no `openssl`), expire
//! with the test, and a second [`TestPki`] is a CA the server never heard
//! of, for the "certificate not signed by the CA" cases.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::error::TestkitError;

/// A CA and two certificates it signed (a server's for `127.0.0.1` and
/// `localhost`, a client's), as PEM files in a directory.
#[derive(Debug)]
pub struct TestPki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// The directory, when this value owns it (removed on drop).
    _dir: Option<TempDir>,
}

impl TestPki {
    /// Makes a fresh CA and its certificates in a temporary directory of
    /// their own, removed when the value is dropped.
    pub fn new() -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("shardcron-pki-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating a directory for test certificates", e))?;
        let mut pki = Self::write_to(dir.path())?;
        pki._dir = Some(dir);
        Ok(pki)
    }

    /// Makes a fresh CA and its certificates as files in `dir`: `ca.pem`,
    /// `server.pem`/`server.key`, `client.pem`/`client.key`.
    pub fn write_to(dir: &Path) -> Result<Self, TestkitError> {
        let ca = ca()?;
        let write = |name: &str, text: String| -> Result<PathBuf, TestkitError> {
            let path = dir.join(name);
            fs::write(&path, text)
                .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))?;
            Ok(path)
        };
        let (server_pem, server_key) = leaf(
            &ca,
            "shardcron test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_pem, client_key) = leaf(
            &ca,
            "shardcron test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca: write("ca.pem", ca.pem())?,
            server_cert: write("server.pem", server_pem)?,
            server_key: write("server.key", server_key)?,
            client_cert: write("client.pem", client_pem)?,
            client_key: write("client.key", client_key)?,
            _dir: None,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The server certificate (PEM), for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self) -> &Path {
        &self.server_cert
    }

    /// The server certificate's private key (PEM).
    pub fn server_key(&self) -> &Path {
        &self.server_key
    }

    /// The client certificate (PEM).
    pub fn client_cert(&self) -> &Path {
        &self.client_cert
    }

    /// The client certificate's private key (PEM).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }
}

fn pki_error(what: &str, e: rcgen::Error) -> TestkitError {
    TestkitError::Protocol(format!("making the test {what}: {e}"))
}

/// A self-signed CA.
fn ca() -> Result<CertifiedIssuer<'static, KeyPair>, TestkitError> {
    let key = KeyPair::generate().map_err(|e| pki_error("CA key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_error("CA certificate", e))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "shardcron test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, key).map_err(|e| pki_error("CA certificate", e))
}

/// A certificate signed by `ca` for `names`: (certificate PEM, key PEM).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), TestkitError> {
    let key = KeyPair::generate().map_err(|e| pki_error("key", e))?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(|e| pki_error("certificate", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, ca)
        .map_err(|e| pki_error("certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}
