//! Shared harness for the integration suite.
//!
//! Every test starts its own Warren in-process on a free port (`broker()`) and talks to it over TCP with
//! lapin 4 (plus a little raw AMQP). The suite only talks AMQP, so with `AMQP_URL` set it runs unchanged
//! against any broker, which is how it was checked against RabbitMQ 3.10.
//!
//! How lapin 4 surfaces broker errors (read from lapin-4.12 source):
//! * a server `channel.close` / `connection.close` becomes
//!   `ErrorKind::ProtocolError(AMQPError)`; `AMQPError::get_id()` is the reply code and
//!   `get_message()` the full reply text.
//! * channel.close: delivered to every RPC still waiting for a reply on that channel, to the
//!   channel's consumers (one `Err` item, then end of stream), to pending publisher confirms and
//!   to the ackers of the channel's deliveries. lapin answers with channel.close-ok itself.
//! * connection.close: delivered to every RPC waiting on any channel (and to `connect()` during
//!   the handshake); consumers only see a plain end of stream (no error), so a connection close
//!   caused by a method without reply is asserted on raw frames instead (see [`raw`]).
//! * lapin builds `AMQPError` from the reply code alone, so 403 is classified as "soft" even when
//!   it arrives in a `connection.close` (auth failure). Tests therefore check the connection state
//!   as well as code and text.
//! * a method issued after the channel is already closed fails locally with
//!   `InvalidChannelState`, which carries no reply code; channel errors raised by methods that
//!   have no reply (publish, ack, nack, reject) are therefore observed through a
//!   [`ChannelWatch`].
//! * lapin queues publishes (method + header + body) at LOW priority: an RPC issued while a
//!   publish is still unsent may overtake it on the wire. `basic_publish(..).await` returns once
//!   the publish is written, so always await it before the next method.
//!
//! This module holds the broker, connections, timeouts and error assertions; its submodules hold
//! consumers and acks (`consumers`), declarations (`topology`), publishing, getting and field
//! tables (`messages`), x-death headers (`dead_letter`) and a raw-frame client (`raw`). All but
//! `raw` are re-exported here, so `use crate::common::*` is all a test file needs.
#![allow(dead_code)]

mod consumers;
mod dead_letter;
mod messages;
pub mod raw;
mod topology;

pub use consumers::*;
pub use dead_letter::*;
pub use messages::*;
pub use topology::*;

use lapin::{
    protocol::AMQPErrorKind, uri::AMQPUri, Channel, Connection, ConnectionProperties, ErrorKind,
};
use std::{
    future::Future,
    io::{BufRead, BufReader},
    process::ChildStdout,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Upper bound for anything we wait for; a broken broker must fail a test, not hang the suite.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long we listen to make sure something does NOT happen.
pub const QUIET: Duration = Duration::from_millis(200);

pub struct TestBroker {
    url: String,
}

thread_local! {
    /// The Warren of the test running on this thread (libtest runs each test on its own thread), so that every
    /// `broker()` call in one test reaches the same broker. It stops when the test's thread ends.
    static WARREN: std::cell::RefCell<Option<(String, warren::Server)>> = const { std::cell::RefCell::new(None) };
}

impl TestBroker {
    /// A handle on a broker the test started itself.
    pub fn from_url(url: String) -> TestBroker {
        TestBroker { url }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

/// A fresh Warren on a free port for this test, or the broker at `AMQP_URL` when that is set (e.g. a RabbitMQ,
/// to check that the suite itself asserts RabbitMQ's behaviour).
pub async fn broker() -> TestBroker {
    if let Ok(url) = std::env::var("AMQP_URL") {
        return TestBroker { url };
    }
    if let Some(url) = WARREN.with(|w| w.borrow().as_ref().map(|(u, _)| u.clone())) {
        return TestBroker { url };
    }
    let server = warren::Server::start(test_config())
        .await
        .expect("start Warren");
    let url = format!("amqp://guest:guest@127.0.0.1:{}/", server.port());
    WARREN.with(|w| *w.borrow_mut() = Some((url.clone(), server)));
    TestBroker { url }
}

/// The configuration of a test's own Warren: loopback, a free port, nothing on disk.
/// Add user `name` with `password` and [configure, write, read] permissions on "/".
pub async fn add_user(server: &warren::Server, name: &str, password: &str, perms: [&str; 3]) {
    use warren::broker::{Actor, Command, StoredPassword};
    let [configure, write, read] = perms.map(String::from);
    for cmd in [
        Command::PutUser {
            name: name.into(),
            password: StoredPassword::hash(password),
            tags: Vec::new(),
        },
        Command::SetPermissions {
            user: name.into(),
            vhost: "/".into(),
            configure,
            write,
            read,
        },
    ] {
        server
            .broker()
            .run(cmd, &Actor::internal())
            .await
            .expect("command");
    }
}

pub fn test_config() -> warren::Config {
    warren::Config {
        bind: "127.0.0.1".into(),
        port: 0,
        ephemeral: true,
        ..Default::default()
    }
}

/// A Warren of the test's own with `config` (for settings a shared broker must not see: limits, timeouts,
/// TLS), and a handle on it for the helpers.
pub async fn own_warren_with(config: warren::Config) -> (warren::Server, TestBroker) {
    let server = warren::Server::start(config).await.expect("start Warren");
    let b = TestBroker::from_url(server.amqp_url());
    (server, b)
}

/// The warren binary started as a child process (so its file descriptors and RSS are its own), with
/// `config` as its TOML config file, on a free loopback port, with a data directory of its own. Killed when
/// dropped.
pub struct Child {
    pub child: std::process::Child,
    pub broker: TestBroker,
    pub dir: std::path::PathBuf,
}

/// Start the warren binary on a free loopback port with `config` as its TOML config file (written next to
/// `data`) and `data` as its data directory; returns the process and its AMQP port.
pub fn spawn_warren(
    data: &std::path::Path,
    config: &str,
) -> Result<(std::process::Child, u16), String> {
    let file = data.with_extension("toml");
    std::fs::write(&file, config).map_err(|e| format!("write {file:?}: {e}"))?;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--config")
        .arg(&file)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn warren: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let port = listening_port(stdout)?;
    Ok((child, port))
}

/// Resident memory of process `pid`, in KiB (0 when it cannot be read).
pub fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Child {
    pub fn spawn(tag: &str, config: &str) -> Child {
        let dir = data_dir(tag);
        std::fs::create_dir_all(&dir).expect("data dir");
        let config =
            format!("{config}\n[management]\nenabled = false\n[prometheus]\nenabled = false\n");
        let (child, port) = spawn_warren(&dir.join("data"), &config).expect("start warren");
        let broker = TestBroker::from_url(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
        Child { child, broker, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the broker process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// Resident memory of the broker process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parse an amqp URL the way the tests mean it.
///
/// amq-protocol-uri maps the path "/" to the vhost "" and an IP host to "localhost"; we want
/// "amqp://h:p/" to mean vhost "/" on exactly host h.
pub fn amqp_uri(url: &str) -> AMQPUri {
    let mut uri: AMQPUri = url
        .parse()
        .unwrap_or_else(|e| panic!("bad AMQP url {url}: {e}"));
    if uri.vhost.is_empty() {
        uri.vhost = "/".to_string();
    }
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = if let Some(stripped) = hostport.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("").to_string()
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    if !host.is_empty() {
        uri.authority.host = host;
    }
    uri
}

/// (host, port) of the broker, for raw-socket tests.
pub fn host_port(b: &TestBroker) -> (String, u16) {
    let uri = amqp_uri(&b.url());
    (uri.authority.host, uri.authority.port)
}

pub async fn connect(b: &TestBroker) -> lapin::Connection {
    try_connect_uri(amqp_uri(&b.url()))
        .await
        .unwrap_or_else(|e| panic!("connect to {} failed: {e:?}", b.url()))
}

/// Connect with a modified URI (user, password, vhost, channel_max, heartbeat ...).
pub async fn try_connect_with(
    b: &TestBroker,
    f: impl FnOnce(&mut AMQPUri),
) -> lapin::Result<Connection> {
    let mut uri = amqp_uri(&b.url());
    f(&mut uri);
    try_connect_uri(uri).await
}

async fn try_connect_uri(uri: AMQPUri) -> lapin::Result<Connection> {
    within(Connection::connect_uri(
        uri,
        ConnectionProperties::default(),
    ))
    .await
}

pub async fn open(conn: &Connection) -> Channel {
    within(conn.create_channel()).await.expect("channel.open")
}

/// Connection + channel in one go.
pub async fn setup() -> (Connection, Channel) {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    (conn, ch)
}

pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}-{}",
        std::process::id(),
        nanos % 0xffff_ffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh data directory under the system temp dir, for tests that restart a broker on it.
pub fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("warren-it-{}", unique(tag)))
}

/// The port that the warren binary, started with `--port 0`, prints on its first stdout line
/// (`LISTENING port=N`); or, as the error, what it printed instead.
pub fn listening_port(stdout: ChildStdout) -> Result<u16, String> {
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the LISTENING line: {e}"))?;
    line.trim()
        .strip_prefix("LISTENING port=")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("unexpected first stdout line {line:?}"))
}

/// Await `f`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Error assertions
// ---------------------------------------------------------------------------------------------

/// (reply code, reply text) of a broker-sent close, or a panic describing what we got instead.
pub fn amqp_error(err: &lapin::Error) -> (u16, String) {
    match err.kind() {
        ErrorKind::ProtocolError(e) => (e.get_id(), e.get_message().as_str().to_string()),
        other => panic!("expected a broker close (ProtocolError), got {other:?}"),
    }
}

/// The broker closed the channel with `code` and exactly `text`.
pub fn assert_channel_closed(err: &lapin::Error, code: u16, text: &str) {
    let (c, t) = amqp_error(err);
    assert_eq!((c, t.as_str()), (code, text), "channel close code/text");
    if let ErrorKind::ProtocolError(e) = err.kind() {
        assert!(
            matches!(e.kind(), AMQPErrorKind::Soft(_)),
            "code {code} is not a channel-level (soft) error"
        );
    }
}

/// The broker closed the connection with `code` and exactly `text`.
pub fn assert_connection_closed(err: &lapin::Error, code: u16, text: &str) {
    let (c, t) = amqp_error(err);
    assert_eq!((c, t.as_str()), (code, text), "connection close code/text");
}

/// `res` must be a channel close with `code`/`text`, the channel must be closed and the
/// connection must still be usable.
pub async fn expect_channel_close<T: std::fmt::Debug>(
    conn: &Connection,
    ch: &Channel,
    res: lapin::Result<T>,
    code: u16,
    text: &str,
) {
    let err = res.expect_err("expected the broker to close the channel");
    assert_channel_closed(&err, code, text);
    assert_conn_usable(conn).await;
    wait_until(|| !ch.status().connected()).await;
}

/// `res` must be a connection close with `code`/`text` and the connection must be gone.
pub async fn expect_connection_close<T: std::fmt::Debug>(
    conn: &Connection,
    res: lapin::Result<T>,
    code: u16,
    text: &str,
) {
    let err = res.expect_err("expected the broker to close the connection");
    assert_connection_closed(&err, code, text);
    wait_until(|| !conn.status().connected()).await;
    assert!(
        conn.create_channel().await.is_err(),
        "connection still accepts channels"
    );
}

/// The connection is still open: a fresh channel can be opened and closed.
pub async fn assert_conn_usable(conn: &Connection) {
    assert!(
        conn.status().connected(),
        "connection is not connected any more"
    );
    let ch = within(conn.create_channel())
        .await
        .expect("connection should still accept channels");
    within(ch.close(200, "bye".into()))
        .await
        .expect("channel close");
}

pub async fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
