//! Real redis-server lifecycle: start, commands, kill/restart with AOF,
//! pause/resume, graceful stop, cleanup on drop, startup errors.

use std::time::{Duration, Instant};

use shardcron_testkit::{free_port, RedisServer, RespValue, TestkitError};

#[test]
fn set_and_get_through_command_helper() {
    let server = RedisServer::start().unwrap();
    assert!(server.is_running());
    assert_ne!(server.port(), 6379);
    assert_eq!(
        server.addr().to_string(),
        format!("127.0.0.1:{}", server.port())
    );
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));

    assert_eq!(server.command(&["PING"]).unwrap(), "PONG");
    assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");
    assert_eq!(server.command(&["INCRBY", "n", "41"]).unwrap(), "41");
    assert_eq!(server.command(&["GET", "missing"]).unwrap(), "(nil)");
    assert_eq!(server.query(&["GET", "missing"]).unwrap(), RespValue::Nil);
    assert_eq!(server.command(&["RPUSH", "l", "a", "b"]).unwrap(), "2");
    assert_eq!(server.command(&["LRANGE", "l", "0", "-1"]).unwrap(), "a\nb");
    assert!(server
        .command(&["INFO", "commandstats"])
        .unwrap()
        .contains("cmdstat_set:calls=1"));
    assert!(matches!(
        server.command(&["NOSUCHCOMMAND"]),
        Err(TestkitError::ErrorReply(msg)) if msg.starts_with("ERR")
    ));

    // Default server has no persistence configured.
    assert_eq!(
        server.command(&["CONFIG", "GET", "appendonly"]).unwrap(),
        "appendonly\nno"
    );
    assert_eq!(
        server.command(&["CONFIG", "GET", "save"]).unwrap(),
        "save\n"
    );
    assert_eq!(server.command(&["FLUSHALL"]).unwrap(), "OK");
    assert_eq!(server.command(&["DBSIZE"]).unwrap(), "0");
    assert!(server.log_tail(50).contains("Ready to accept connections"));
}

#[test]
fn kill_then_restart_with_aof_keeps_acknowledged_writes() {
    let server = RedisServer::builder().appendonly(true).start().unwrap();
    let port = server.port();
    assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "OK");
    let old_pid = server.pid().unwrap();

    server.kill();
    assert!(!server.is_running());
    assert!(matches!(
        server.command(&["PING"]),
        Err(TestkitError::NotRunning)
    ));
    // Nothing listens on the port any more.
    assert!(std::net::TcpStream::connect(server.addr()).is_err());

    server.restart().unwrap();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid().unwrap(), old_pid);
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");

    // restart() of a running server kills it first; data still there.
    server.command(&["SET", "k2", "v2"]).unwrap();
    server.restart().unwrap();
    assert_eq!(server.command(&["MGET", "k", "k2"]).unwrap(), "v\nv2");
}

#[test]
fn without_aof_a_restart_loses_data() {
    let server = RedisServer::start().unwrap();
    server.command(&["SET", "k", "v"]).unwrap();
    server.kill();
    server.restart().unwrap();
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "(nil)");
}

#[test]
fn pause_makes_commands_time_out_until_resume() {
    let server = RedisServer::start().unwrap();
    server.pause();
    assert!(server.is_paused());
    assert!(server.is_running());

    let started = Instant::now();
    let res = server.command_timeout(&["PING"], Duration::from_millis(300));
    assert!(
        matches!(res, Err(TestkitError::Timeout { .. })),
        "expected timeout, got {res:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(290));

    server.resume();
    assert!(!server.is_paused());
    assert_eq!(
        server
            .command_timeout(&["PING"], Duration::from_secs(2))
            .unwrap(),
        "PONG"
    );
}

#[test]
fn persistent_connection_survives_pause() {
    let server = RedisServer::start().unwrap();
    let mut conn = server.connect(Duration::from_millis(300)).unwrap();
    assert_eq!(conn.command(&["SET", "a", "1"]).unwrap(), "OK");
    server.pause();
    assert!(matches!(
        conn.command(&["GET", "a"]),
        Err(TestkitError::Timeout { .. })
    ));
    server.resume();
    // The late reply to the timed-out GET arrives first: the connection is
    // out of step, exactly as documented.
    conn.set_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap(), "1");
}

#[test]
fn graceful_stop_and_restart_with_aof() {
    let server = RedisServer::builder().appendonly(true).start().unwrap();
    server.command(&["SET", "k", "v"]).unwrap();
    server.pause(); // stop() must also work on a paused server
    server.stop();
    assert!(!server.is_running());
    assert!(server.log_tail(20).contains("ready to exit"));
    server.restart().unwrap();
    assert_eq!(server.command(&["GET", "k"]).unwrap(), "v");
    assert_eq!(
        server.command(&["CONFIG", "GET", "appendfsync"]).unwrap(),
        "appendfsync\nalways"
    );
}

#[test]
fn drop_kills_the_process_and_removes_the_directory() {
    let server = RedisServer::start().unwrap();
    let dir = server.dir().to_owned();
    let addr = server.addr();
    let pid = server.pid().unwrap();
    assert!(dir.join("redis.log").exists());
    drop(server);
    assert!(!dir.exists());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn extra_args_are_passed_and_bad_ones_report_the_log() {
    let server = RedisServer::builder()
        .arg("--maxmemory")
        .arg("12345678")
        .start()
        .unwrap();
    assert_eq!(
        server.command(&["CONFIG", "GET", "maxmemory"]).unwrap(),
        "maxmemory\n12345678"
    );

    let err = RedisServer::builder()
        .arg("--no-such-option")
        .arg("x")
        .start()
        .unwrap_err();
    match &err {
        TestkitError::ExitedDuringStartup { log_tail, .. } => {
            assert!(log_tail.contains("no-such-option"), "{log_tail}")
        }
        other => panic!("unexpected error: {other:?}"),
    }
}

#[test]
fn missing_binary_is_a_clear_error() {
    let err = RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, TestkitError::RedisBinaryInvalid { .. }),
        "{err:?}"
    );
    assert!(TestkitError::RedisNotFound
        .to_string()
        .contains("install it (apt-get install redis-server) or set SHARDCRON_REDIS_SERVER"));
}

#[test]
fn free_port_is_bindable() {
    let port = free_port().unwrap();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn servers_are_independent() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    a.command(&["SET", "k", "a"]).unwrap();
    assert_eq!(b.command(&["GET", "k"]).unwrap(), "(nil)");
}

/// A TLS-only cluster forms (its nodes meet and replicate over TLS), its
/// helpers reach every node through `redis-cli --tls`, and it announces
/// the TLS ports in `CLUSTER SLOTS`.
#[test]
fn a_tls_cluster_forms_and_announces_its_tls_ports() {
    use shardcron_testkit::{ClientAuth, RedisCluster};

    let cluster = RedisCluster::start_tls(3, 1, ClientAuth::Required).expect("TLS cluster");
    assert!(
        cluster.url().starts_with("rediss+cluster://"),
        "{}",
        cluster.url()
    );
    assert!(cluster.url().contains("tls_cert="), "{}", cluster.url());
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
    let mut ports = cluster.master_ports().expect("master ports");
    ports.sort_unstable();
    let mut expected = masters.clone();
    expected.sort_unstable();
    assert_eq!(ports, expected);
    let slots = cluster.masters()[0]
        .command(&["CLUSTER", "SLOTS"])
        .expect("CLUSTER SLOTS");
    for port in masters {
        assert!(slots.contains(&port.to_string()), "{port} in {slots}");
    }
    cluster.wait_replicas().expect("replicas linked over TLS");
    let err = cluster.masters()[0]
        .command(&["NO-SUCH-COMMAND"])
        .expect_err("error reply");
    assert!(
        matches!(err, TestkitError::ErrorReply(ref m) if m.contains("unknown command")),
        "{err}"
    );
}
