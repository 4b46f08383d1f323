//! FaultProxy against a real redis-server: pass, blackhole, dropped replies,
//! delay, refuse, cut.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shardcron_testkit::{FaultMode, FaultProxy, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, PartialEq)]
enum Reply {
    Line(String),
    Closed,
    TimedOut,
}

/// Sends PING and reads one reply line, with a timeout.
async fn ping(stream: &mut TcpStream, timeout: Duration) -> Reply {
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_err() {
        return Reply::Closed;
    }
    read_line(stream, timeout).await
}

async fn read_line(stream: &mut TcpStream, timeout: Duration) -> Reply {
    let mut line = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return Reply::Closed,
                Ok(_) => {
                    line.push(byte[0]);
                    if line.ends_with(b"\r\n") {
                        return Reply::Line(String::from_utf8_lossy(&line).trim_end().to_owned());
                    }
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Reply::TimedOut)
}

async fn wait_for_count(proxy: &FaultProxy, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.connection_count() != expected {
        assert!(
            Instant::now() < deadline,
            "connection_count stuck at {} (expected {expected})",
            proxy.connection_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pong() -> Reply {
    Reply::Line("+PONG".into())
}

async fn setup() -> (RedisServer, FaultProxy) {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.addr()).await.unwrap();
    assert_eq!(proxy.target(), server.addr());
    assert_eq!(
        proxy.url(),
        format!("redis://127.0.0.1:{}", proxy.addr().port())
    );
    assert_ne!(proxy.addr(), server.addr());
    (server, proxy)
}

const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3);

#[tokio::test]
async fn pass_blackhole_pass_on_the_same_connection() {
    let (_server, proxy) = setup().await;
    assert_eq!(proxy.mode(), FaultMode::Pass);
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    wait_for_count(&proxy, 1).await;

    proxy.set_mode(FaultMode::Blackhole);
    let started = Instant::now();
    assert_eq!(ping(&mut conn, SHORT).await, Reply::TimedOut);
    assert!(started.elapsed() >= SHORT);
    // The socket is still open while black-holed.
    assert_eq!(proxy.connection_count(), 1);

    proxy.set_mode(FaultMode::Pass);
    // The black-holed PING was dropped, so exactly one PONG comes back.
    assert_eq!(ping(&mut conn, LONG).await, pong());
    assert_eq!(
        read_line(&mut conn, Duration::from_millis(100)).await,
        Reply::TimedOut
    );
}

#[tokio::test]
async fn blackhole_applies_to_new_connections_and_hides_the_close() {
    let (_server, proxy) = setup().await;
    proxy.set_mode(FaultMode::Blackhole);
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, SHORT).await, Reply::TimedOut);
    wait_for_count(&proxy, 1).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The client's close is withheld while partitioned ...
    assert_eq!(proxy.connection_count(), 1);
    // ... and delivered once the partition heals.
    proxy.set_mode(FaultMode::Pass);
    wait_for_count(&proxy, 0).await;
}

#[tokio::test]
async fn dropped_replies_let_writes_apply_unseen() {
    let (server, proxy) = setup().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    proxy.set_mode(FaultMode::DropReplies);
    conn.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        .await
        .unwrap();
    assert_eq!(read_line(&mut conn, SHORT).await, Reply::TimedOut);
    // The write applied: a direct connection reads it.
    let mut direct = TcpStream::connect(server.addr()).await.unwrap();
    direct
        .write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        .await
        .unwrap();
    assert_eq!(read_line(&mut direct, LONG).await, Reply::Line("$1".into()));
    assert_eq!(read_line(&mut direct, LONG).await, Reply::Line("v".into()));
    // Back to pass: the dropped +OK never arrives, the next reply does.
    proxy.set_mode(FaultMode::Pass);
    assert_eq!(ping(&mut conn, LONG).await, pong());
}

#[tokio::test]
async fn delay_adds_latency_and_keeps_order() {
    let (_server, proxy) = setup().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());

    proxy.set_mode(FaultMode::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "took {elapsed:?}");

    // Pipelined commands come back in order.
    conn.write_all(b"*2\r\n$4\r\nECHO\r\n$1\r\n1\r\n")
        .await
        .unwrap();
    conn.write_all(b"*2\r\n$4\r\nECHO\r\n$1\r\n2\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        match read_line(&mut conn, LONG).await {
            Reply::Line(l) => got.push(l),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["$1", "1", "$1", "2"]);

    proxy.set_mode(FaultMode::Pass);
    let started = Instant::now();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn refuse_closes_existing_and_new_connections() {
    let (_server, proxy) = setup().await;
    let mut existing = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut existing, LONG).await, pong());

    proxy.set_mode(FaultMode::Refuse);
    assert_eq!(proxy.connection_count(), 0);
    assert_eq!(read_line(&mut existing, LONG).await, Reply::Closed);

    // New connections are accepted, then closed at once.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(read_line(&mut fresh, LONG).await, Reply::Closed);
    assert_eq!(proxy.connection_count(), 0);

    proxy.set_mode(FaultMode::Pass);
    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut again, LONG).await, pong());
}

#[tokio::test]
async fn cut_connections_closes_current_ones_only() {
    let (_server, proxy) = setup().await;
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut a, LONG).await, pong());
    assert_eq!(ping(&mut b, LONG).await, pong());
    wait_for_count(&proxy, 2).await;

    proxy.cut_connections();
    assert_eq!(proxy.connection_count(), 0);
    assert_eq!(read_line(&mut a, LONG).await, Reply::Closed);
    assert_eq!(read_line(&mut b, LONG).await, Reply::Closed);

    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut c, LONG).await, pong());
    wait_for_count(&proxy, 1).await;
}

#[tokio::test]
async fn server_side_close_is_forwarded() {
    let (server, proxy) = setup().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    server.kill();
    assert_eq!(read_line(&mut conn, LONG).await, Reply::Closed);
    wait_for_count(&proxy, 0).await;

    server.restart().unwrap();
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_through_proxy_on_multi_thread_runtime() {
    let (server, proxy) = setup().await;
    let addr: SocketAddr = proxy.addr();
    let mut conn = shardcron_testkit::RespConnection::connect(addr, SHORT).unwrap();
    conn.command(&["SET", "via", "proxy"]).unwrap();
    assert_eq!(server.command(&["GET", "via"]).unwrap(), "proxy");
    proxy.set_mode(FaultMode::Blackhole);
    assert!(matches!(
        conn.command(&["GET", "via"]),
        Err(shardcron_testkit::TestkitError::Timeout { .. })
    ));
    proxy.set_mode(FaultMode::Pass);
    assert_eq!(conn.command(&["GET", "via"]).unwrap(), "proxy");
}

#[tokio::test]
async fn drop_stops_the_proxy() {
    let (_server, proxy) = setup().await;
    let addr = proxy.addr();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ping(&mut conn, LONG).await, pong());
    drop(proxy);
    assert_eq!(read_line(&mut conn, LONG).await, Reply::Closed);
    // The listener goes away once the aborted accept task is dropped.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        tokio::task::yield_now().await;
        if TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy still accepting after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
