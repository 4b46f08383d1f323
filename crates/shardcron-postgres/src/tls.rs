//! TLS for the connections to PostgreSQL.
//!
//! Managed PostgreSQL services usually require TLS, so every connection
//! (pool and listener) is made with a rustls connector trusting the
//! system's root certificates. The URL's `sslmode` decides whether it is
//! used: `prefer` (the default) uses TLS when the server offers it and
//! plain TCP otherwise, `require` refuses a server without TLS, `disable`
//! never uses it.

use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector, with the system's root certificates.
pub(crate) fn connector() -> Result<MakeRustlsConnect, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system store has but rustls cannot parse are
    // skipped: one bad entry must not disable TLS altogether.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
