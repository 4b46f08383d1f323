//! TLS for a `rediss://` store: the options that name the certificate
//! files, and the clients that use them.
//!
//! Why shardcron reads these options itself: the Redis client takes a CA
//! and a client certificate only as bytes, never from its URL, while an
//! operator gives a fleet its store in one string (`--store`,
//! `SHARDCRON_STORE`). So the files travel in the URL's query, like
//! `min_replicas`: `tls_ca` (the CA that signed the server's certificate,
//! instead of the system's roots), `tls_cert` and `tls_key` (a client
//! certificate, for a server that asks for one). They are taken out before
//! the client sees the URL and read once, when the URL is read: a missing
//! file, one without a PEM certificate or key, or a certificate without its
//! key is a configuration error naming the option and the path, found before
//! any connection rather than reported as an unreachable store. Every
//! connection of the store (commands and the event listener) is then built
//! from the same certificates.
//!
//! The server's certificate is always verified (against `tls_ca`, else the
//! system's roots), its name included; a failed handshake is reported as
//! such ([`describe`]), not only as an unreachable server.
//!
//! A Redis Cluster reached over TLS (`rediss+cluster://`, see
//! `cluster_tls.rs`) takes the same options, and its certificates serve
//! every node; a plain `redis+cluster://` one takes none.

use std::fs;
use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, RedisError, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The query options this module takes out of a store URL.
const OPTIONS: [&str; 3] = ["tls_ca", "tls_cert", "tls_key"];

/// The certificates of a `rediss://` store, read from the files its URL
/// names (`None` of a field: the default, system roots or no client
/// certificate).
#[derive(Clone, Debug)]
pub(crate) struct StoreTls {
    certs: TlsCertificates,
}

/// Takes `tls_ca`, `tls_cert` and `tls_key` out of `url`'s query and reads
/// the files they name. Returns the URL without them and, for a `rediss://`
/// or `rediss+cluster://` URL, its certificates (`None` for a plain one). `Err` names
/// what is wrong: a TLS option on a URL that is not `rediss://`, an unknown
/// `tls_*` option, a file that cannot be read or holds no PEM certificate
/// or key, a certificate without its key or a key without its certificate.
pub(crate) fn take_tls_options(url: &str) -> Result<(String, Option<StoreTls>), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut files: [Option<PathBuf>; 3] = [None, None, None];
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match OPTIONS.iter().position(|o| *o == key) {
            Some(_) if value.is_empty() => return Err(format!("{key} needs a file path")),
            Some(i) => files[i] = Some(PathBuf::from(percent_decode(value)?)),
            None if key.starts_with("tls_") => {
                return Err(format!(
                    "unknown TLS option {key:?} (the TLS options are {})",
                    OPTIONS.join(", ")
                ))
            }
            None => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let scheme = base.split_once("://").map_or("", |(s, _)| s);
    let tls_scheme =
        scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("rediss+cluster");
    if !tls_scheme {
        if files.iter().any(Option::is_some) {
            return Err(format!(
                "tls_ca, tls_cert and tls_key need a rediss:// URL (TLS to one server) or a rediss+cluster:// one (TLS to a cluster), not {scheme}://"
            ));
        }
        return Ok((url, None));
    }
    let [ca, cert, key] = files;
    let client_tls = match (cert, key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_certificates("tls_cert", &cert)?,
            client_key: read_key(&key)?,
        }),
        (Some(cert), None) => {
            return Err(format!(
                "tls_cert={} has no tls_key: a client certificate needs its private key",
                cert.display()
            ))
        }
        (None, Some(key)) => {
            return Err(format!(
                "tls_key={} has no tls_cert: a client key needs its certificate",
                key.display()
            ))
        }
    };
    let root_cert = ca.map(|ca| read_certificates("tls_ca", &ca)).transpose()?;
    Ok((
        url,
        Some(StoreTls {
            certs: TlsCertificates {
                client_tls,
                root_cert,
            },
        }),
    ))
}

impl StoreTls {
    /// A client of `node` (a `rediss://` URL) with these certificates.
    pub(crate) fn client(&self, node: &str) -> Result<redis::Client, RedisError> {
        install_crypto_provider();
        redis::Client::build_with_tls(node, self.certs.clone())
    }

    /// `builder` (of a cluster whose seeds are `rediss://` URLs) with these
    /// certificates, used for every node it reaches.
    pub(crate) fn cluster_builder(
        &self,
        builder: redis::cluster::ClusterClientBuilder,
    ) -> redis::cluster::ClusterClientBuilder {
        install_crypto_provider();
        builder.certs(self.certs.clone())
    }
}

/// A client of `node`: with `tls`'s certificates if the store uses TLS.
pub(crate) fn client(node: &str, tls: Option<&StoreTls>) -> Result<redis::Client, RedisError> {
    match tls {
        Some(tls) => tls.client(node),
        None => redis::Client::open(node),
    }
}

/// Why a connection failed, in words: a failed TLS handshake says so and
/// what to check; any other error is its own message.
pub(crate) fn describe(error: &RedisError) -> String {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("invalid peer certificate") {
        format!(
            "TLS certificate verification failed: {text} (is tls_ca the CA that signed the server's certificate, and is the URL's host a name the certificate holds?)"
        )
    } else if lower.contains("certificaterequired") || lower.contains("certificate required") {
        format!(
            "TLS handshake refused by the server: {text} (the server requires a client certificate: give tls_cert and tls_key)"
        )
    } else if lower.contains("received fatal alert") || lower.contains("handshake") {
        format!(
            "TLS handshake failed: {text} (does the server accept the client certificate in tls_cert, and speak TLS on this port?)"
        )
    } else {
        text
    }
}

/// Makes the process's rustls crypto provider aws-lc-rs, unless one was
/// chosen already: the Redis client builds its TLS settings with the
/// process default, and with more than one provider compiled in there is
/// none until one is installed.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err: another thread installed one meanwhile, which serves as well.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// Reads `path` and checks it holds at least one PEM certificate.
fn read_certificates(option: &str, path: &Path) -> Result<Vec<u8>, String> {
    let pem = read(option, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("{option}={}: not a PEM certificate: {e}", path.display()))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "{option}={}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(pem)
}

/// Reads `path` and checks it holds a PEM private key.
fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let pem = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("tls_key={}: no PEM private key: {e}", path.display()))?;
    Ok(pem)
}

fn read(option: &str, path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{option}={}: cannot be read: {e}", path.display()))
}

/// Decodes the `%XX` escapes of a query value (a path with a space or an
/// `&` in it).
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad %-escape in {value:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_leave_the_url_and_need_rediss() {
        let (url, tls) = take_tls_options("redis://h:1/0?protocol=resp3").unwrap();
        assert_eq!(url, "redis://h:1/0?protocol=resp3");
        assert!(tls.is_none());
        let (url, tls) = take_tls_options("rediss://h:1?min_replicas=1").unwrap();
        assert_eq!(url, "rediss://h:1?min_replicas=1");
        assert!(tls.is_some());
        let err = take_tls_options("redis://h:1?tls_ca=/x").unwrap_err();
        assert!(err.contains("rediss://"), "{err}");
        let err = take_tls_options("redis+cluster://h:1?tls_ca=/x").unwrap_err();
        assert!(err.contains("rediss+cluster://"), "{err}");
        let (url, tls) = take_tls_options("rediss+cluster://h:1,h:2?min_replicas=1").unwrap();
        assert_eq!(url, "rediss+cluster://h:1,h:2?min_replicas=1");
        assert!(tls.is_some());
        let err = take_tls_options("rediss://h:1?tls_cafile=/x").unwrap_err();
        assert!(err.contains("unknown TLS option"), "{err}");
    }

    #[test]
    fn bad_files_are_named() {
        let err = take_tls_options("rediss://h:1?tls_ca=/no/such/ca.pem").unwrap_err();
        assert!(
            err.contains("tls_ca=/no/such/ca.pem: cannot be read"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("tls-options-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        fs::write(&junk, "not a certificate\n").unwrap();
        let err = take_tls_options(&format!("rediss://h:1?tls_ca={}", junk.display())).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err =
            take_tls_options(&format!("rediss://h:1?tls_cert={}", junk.display())).unwrap_err();
        assert!(err.contains("has no tls_key"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(percent_decode("/a%20b/c%26d").unwrap(), "/a b/c&d");
        assert!(percent_decode("/a%2").is_err());
    }

    #[test]
    fn handshake_failures_are_named() {
        let e = RedisError::from(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(describe(&e).starts_with("TLS certificate verification failed"));
        let e = RedisError::from(std::io::Error::other("connection refused"));
        assert_eq!(describe(&e), e.to_string());
    }
}
