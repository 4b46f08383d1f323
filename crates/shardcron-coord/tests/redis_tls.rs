//! TLS to the Redis store, where it goes wrong: each misconfiguration gets
//! an error that says what is wrong (a certificate the CA did not sign, a
//! client certificate missing, a CA file that is not there or not PEM),
//! against real TLS-only servers (and a TLS-only cluster) and certificates
//! made by the test. That it works is shown by the conformance suite, which
//! runs on such a server and on such a cluster.

use shardcron_coord::{CoordError, RedisCoordinator};
use shardcron_core::RingConfig;
use shardcron_testkit::{ClientAuth, RedisCluster, RedisServer, TestPki};

const RING: RingConfig = RingConfig::new(64, 40);

fn tls_server(auth: ClientAuth) -> RedisServer {
    RedisServer::builder()
        .tls(auth)
        .start()
        .expect("start a TLS redis-server")
}

async fn connect(url: &str) -> CoordError {
    RedisCoordinator::connect(url, "tls", RING)
        .await
        .err()
        .expect("the connection must be refused")
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_verification() {
    let server = tls_server(ClientAuth::Optional);
    let other = TestPki::new().expect("another CA");
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca={}",
        server.port(),
        other.ca().display()
    );
    let err = connect(&url).await.to_string();
    println!("another CA: {err}");
    assert!(err.contains("TLS certificate verification failed"), "{err}");
    // With the right CA and no client certificate the optional server
    // lets the client in.
    let pki = server.tls().expect("TLS server").pki();
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca={}",
        server.port(),
        pki.ca().display()
    );
    RedisCoordinator::connect(&url, "tls", RING)
        .await
        .expect("the right CA is trusted");
}

#[tokio::test]
async fn a_missing_client_certificate_is_refused_by_a_server_requiring_one() {
    let server = tls_server(ClientAuth::Required);
    let pki = server.tls().expect("TLS server").pki();
    let url = format!(
        "rediss://127.0.0.1:{}?tls_ca={}",
        server.port(),
        pki.ca().display()
    );
    let err = connect(&url).await.to_string();
    println!("no client certificate: {err}");
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(err.contains("client certificate"), "{err}");
}

#[tokio::test]
async fn unusable_certificate_files_are_named() {
    let server = tls_server(ClientAuth::Required);
    let pki = server.tls().expect("TLS server").pki();
    let port = server.port();
    let cases = [
        (
            format!("rediss://127.0.0.1:{port}?tls_ca=/nonexistent/ca.pem"),
            "tls_ca=/nonexistent/ca.pem: cannot be read".to_owned(),
        ),
        (
            format!(
                "rediss://127.0.0.1:{port}?tls_ca={}",
                pki.client_key().display()
            ),
            format!(
                "tls_ca={}: holds no PEM certificate",
                pki.client_key().display()
            ),
        ),
        (
            format!(
                "rediss://127.0.0.1:{port}?tls_ca={}&tls_cert={}",
                pki.ca().display(),
                pki.client_cert().display()
            ),
            format!("tls_cert={} has no tls_key", pki.client_cert().display()),
        ),
        (
            format!("redis://127.0.0.1:{port}?tls_ca={}", pki.ca().display()),
            "need a rediss:// URL".to_owned(),
        ),
    ];
    for (url, expected) in cases {
        let err = connect(&url).await.to_string();
        assert!(err.contains(&expected), "{url}: {err}");
        assert!(
            shardcron_coord::check_redis_url(&url).is_err(),
            "{url} passes the check before connecting"
        );
    }
}

#[tokio::test]
async fn a_cluster_whose_certificates_another_ca_signed_fails_verification() {
    let cluster = RedisCluster::start_tls(3, 0, ClientAuth::Required).expect("TLS cluster");
    let pki = cluster.pki().expect("TLS cluster");
    let other = TestPki::new().expect("another CA");
    let seeds: Vec<String> = cluster
        .nodes()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let url = format!(
        "rediss+cluster://{}?tls_ca={}&tls_cert={}&tls_key={}",
        seeds.join(","),
        other.ca().display(),
        pki.client_cert().display(),
        pki.client_key().display()
    );
    let err = connect(&url).await.to_string();
    println!("cluster, another CA: {err}");
    assert!(err.contains("TLS certificate verification failed"), "{err}");
    // The same cluster URL in plain TCP does not get through either, and a
    // plain cluster URL refuses the TLS options.
    let plain = format!(
        "redis+cluster://{}?tls_ca={}",
        seeds.join(","),
        pki.ca().display()
    );
    let err = connect(&plain).await.to_string();
    assert!(err.contains("rediss+cluster://"), "{err}");
    RedisCoordinator::connect(&cluster.url(), "tls", RING)
        .await
        .expect("the cluster's own CA is trusted");
}
