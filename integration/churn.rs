//! Connection churn: a thousand connections opened and dropped abruptly (mid-handshake and after open),
//! and silent peers that never finish the handshake. The broker (the real binary, so that its file
//! descriptors and memory are its own) must release every socket, task and buffer: its descriptor count
//! returns to where it was and its RSS stays bounded.

use crate::common::raw::Raw;
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Close with RST rather than FIN, as a crashed client or a reset network does. (tokio deprecates
/// SO_LINGER because a non-zero linger blocks on drop; a zero linger resets at once.)
#[allow(deprecated)]
fn abort(s: TcpStream) {
    let _ = s.set_linger(Some(std::time::Duration::ZERO));
}

async fn tcp(b: &TestBroker) -> TcpStream {
    let (host, port) = host_port(b);
    TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_abrupt_connections_leave_nothing_behind() {
    let w = Child::spawn("churn", "");
    let b = &w.broker;
    // Warm up once so lazily allocated state does not count as a leak.
    drop(Raw::handshake(b, 2047, 131_072, 0).await);
    let fds = w.fds();
    wait_until(|| w.fds() <= fds).await;
    let (fds, rss) = (w.fds(), w.rss_kib());
    let mut peak = 0;
    for _round in 0..10 {
        let mut held = Vec::new();
        for i in 0..100 {
            match i % 4 {
                // TCP only, nothing sent
                0 => held.push(tcp(b).await),
                // half a protocol header
                1 => {
                    let mut s = tcp(b).await;
                    s.write_all(b"AMQ").await.expect("write");
                    held.push(s);
                }
                // the header, then gone before start-ok
                2 => {
                    let mut s = tcp(b).await;
                    s.write_all(b"AMQP\x00\x00\x09\x01").await.expect("write");
                    held.push(s);
                }
                // fully open, with a channel
                _ => {
                    let mut r = Raw::handshake(b, 2047, 131_072, 0).await;
                    r.channel_open(1).await;
                    held.push(r.sock);
                }
            }
        }
        peak = peak.max(w.fds());
        for s in held {
            abort(s);
        }
    }
    assert!(
        peak >= fds + 90,
        "the connections were not all open at once ({peak} fds)"
    );
    // Every socket is closed once its connection task ends.
    wait_until(|| w.fds() <= fds).await;
    let grown = w.rss_kib().saturating_sub(rss);
    println!(
        "churn: fds {fds} -> peak {peak} -> {}; RSS grew {grown} KiB",
        w.fds()
    );
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB over 1,000 connections"
    );
    // Still serving.
    let conn = connect(b).await;
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn silent_peers_are_dropped_at_the_handshake_timeout() {
    let w = Child::spawn("silent", "handshake_timeout_ms = 500");
    let b = &w.broker;
    let fds = w.fds();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(tcp(b).await);
    }
    // Nobody sends anything, nobody closes: the broker closes them all itself.
    wait_until(|| w.fds() <= fds).await;
    drop(silent);
}
