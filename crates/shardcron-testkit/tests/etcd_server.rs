//! The private etcd: starts on free loopback ports, answers, can be
//! paused, killed and restarted with its data, and forms a cluster.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shardcron_testkit::EtcdServer;

/// `GET /health` on one member: whether it says it is healthy in time.
fn healthy(server: &EtcdServer, member: usize) -> bool {
    let addr = server.addrs()[member];
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.contains("\"health\":\"true\"")
}

#[test]
fn a_server_starts_pauses_dies_and_comes_back() {
    let server = EtcdServer::start().expect("start etcd");
    assert!(server.url().starts_with("etcd://127.0.0.1:"));
    assert_ne!(server.addrs()[0].port(), 2379, "never the standard port");
    assert!(healthy(&server, 0));
    server.pause();
    assert!(!healthy(&server, 0), "a paused server answers nothing");
    server.resume();
    assert!(healthy(&server, 0));
    server.kill();
    assert!(!server.is_running());
    assert!(!healthy(&server, 0));
    server.restart().expect("restart");
    assert!(server.is_running() && healthy(&server, 0));
}

#[test]
fn a_cluster_of_three_keeps_serving_without_one_member() {
    let cluster = EtcdServer::start_cluster().expect("start a cluster");
    assert_eq!(cluster.addrs().len(), 3);
    assert_eq!(cluster.url().matches(',').count(), 2);
    cluster.kill_member(2);
    assert!(!cluster.is_running());
    // If the killed member led, the others elect a new leader first.
    let healthy_soon = (0..50).any(|_| {
        healthy(&cluster, 0) || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(healthy_soon, "two of three keep the quorum");
    cluster.restart().expect("restart the member");
    assert!(healthy(&cluster, 2));
}
