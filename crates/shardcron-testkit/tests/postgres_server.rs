//! Real PostgreSQL lifecycle: start, write, kill, restart and read back;
//! pause and resume; stop; cleanup on drop.

use std::net::TcpStream;
use std::time::Duration;

use shardcron_testkit::PostgresServer;

#[test]
fn a_write_survives_a_kill_and_restart() {
    let server = PostgresServer::start().expect("start postgres");
    assert!(server.is_running());
    assert_ne!(server.port(), 5432);
    assert_eq!(
        server.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
    );
    server
        .psql("CREATE TABLE t (k text PRIMARY KEY, v text); INSERT INTO t VALUES ('k', 'v')")
        .expect("write");
    server.kill();
    assert!(!server.is_running());
    assert!(server.psql("SELECT 1").is_err(), "killed server answered");
    server.restart().expect("restart");
    assert_eq!(
        server.psql("SELECT v FROM t WHERE k = 'k'").expect("read"),
        "v"
    );
}

#[test]
fn pause_freezes_the_server_and_stop_ends_it() {
    let server = PostgresServer::start().expect("start postgres");
    assert_eq!(server.psql("SELECT 40 + 2").expect("query"), "42");
    server.pause();
    assert!(server.is_paused());
    // The kernel still accepts connections, nothing answers.
    assert!(TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)).is_ok());
    server.resume();
    assert!(!server.is_paused());
    assert_eq!(server.psql("SELECT 1").expect("query"), "1");
    let dir = server.dir().to_owned();
    server.stop();
    assert!(!server.is_running());
    drop(server);
    assert!(!dir.exists(), "directory left behind");
}
