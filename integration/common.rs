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
//!   caused by a method without reply is asserted on raw frames instead (see connection::raw).
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
#![allow(dead_code)]

use lapin::{
    message::{BasicGetMessage, BasicReturnMessage, Delivery, DeliveryResult},
    options::*,
    protocol::{AMQPErrorKind, BasicProperties},
    types::{AMQPValue, FieldTable, ShortString},
    uri::AMQPUri,
    Channel, Connection, ConnectionProperties, Consumer, ErrorKind, ExchangeKind,
};
use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::sync::mpsc;

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
    let config = warren::Config {
        bind: "127.0.0.1".into(),
        port: 0,
        ephemeral: true,
        ..Default::default()
    };
    let server = warren::Server::start(config).await.expect("start Warren");
    let url = format!("amqp://guest:guest@127.0.0.1:{}/", server.port());
    WARREN.with(|w| *w.borrow_mut() = Some((url.clone(), server)));
    TestBroker { url }
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

// ---------------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------------

/// A consumer whose deliveries are forwarded (in order) into a tokio channel, so tests need no
/// `Stream` trait. Dropping it cancels the consumer (lapin sends basic.cancel).
pub struct Deliveries {
    consumer: Consumer,
    rx: mpsc::UnboundedReceiver<DeliveryResult>,
}

pub fn deliveries(consumer: Consumer) -> Deliveries {
    let (tx, rx) = mpsc::unbounded_channel();
    // The closure runs synchronously in frame order; only the (empty) future is spawned.
    consumer.set_delegate(move |d: DeliveryResult| {
        let _ = tx.send(d);
        async {}
    });
    Deliveries { consumer, rx }
}

impl Deliveries {
    pub fn tag(&self) -> String {
        self.consumer.tag().as_str().to_string()
    }

    /// Next delivery; panics on timeout, error or cancellation.
    pub async fn next(&mut self) -> Delivery {
        match within(self.rx.recv()).await {
            Some(Ok(Some(d))) => d,
            Some(Ok(None)) => panic!("consumer was cancelled while waiting for a delivery"),
            Some(Err(e)) => panic!("consumer error while waiting for a delivery: {e:?}"),
            None => panic!("consumer stream ended"),
        }
    }

    pub async fn next_n(&mut self, n: usize) -> Vec<Delivery> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.next().await);
        }
        v
    }

    /// Nothing at all (no delivery, no cancel, no error) arrives within [`QUIET`].
    pub async fn assert_quiet(&mut self) {
        if let Ok(item) = tokio::time::timeout(QUIET, self.rx.recv()).await {
            panic!("expected no delivery, got {item:?}");
        }
    }

    /// The consumer gets cancelled (server basic.cancel or cancel-ok), with no delivery before.
    pub async fn cancelled(&mut self) {
        match within(self.rx.recv()).await {
            Some(Ok(None)) | None => {}
            other => panic!("expected consumer cancellation, got {other:?}"),
        }
    }

    /// The consumer's channel gets closed by the broker; returns that error.
    pub async fn error(&mut self) -> lapin::Error {
        loop {
            match within(self.rx.recv()).await {
                Some(Err(e)) => return e,
                Some(Ok(Some(_))) => continue,
                other => panic!("expected a channel error on the consumer, got {other:?}"),
            }
        }
    }
}

pub async fn consume(ch: &Channel, queue: &str, opts: BasicConsumeOptions) -> Deliveries {
    consume_tagged(ch, queue, "", opts).await
}

pub async fn consume_tagged(
    ch: &Channel,
    queue: &str,
    tag: &str,
    opts: BasicConsumeOptions,
) -> Deliveries {
    let c = within(ch.basic_consume(queue.into(), tag.into(), opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("basic.consume on {queue} failed: {e:?}"));
    deliveries(c)
}

pub fn no_ack() -> BasicConsumeOptions {
    BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    }
}

pub fn manual_ack() -> BasicConsumeOptions {
    BasicConsumeOptions::default()
}

/// Observes the close of a channel whose failing method has no reply (publish, ack, reject ...).
///
/// It consumes from a private server-named exclusive queue on that channel; lapin hands the
/// close reason to every consumer of the channel no matter when it arrives.
pub struct ChannelWatch(Deliveries);

pub async fn watch(ch: &Channel) -> ChannelWatch {
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("watch queue");
    ChannelWatch(consume(ch, q.name().as_str(), no_ack()).await)
}

impl ChannelWatch {
    /// Wait for the broker to close the channel; returns the close reason.
    pub async fn closed(mut self) -> lapin::Error {
        self.0.error().await
    }
}

// ---------------------------------------------------------------------------------------------
// Declarations, publishing, getting
// ---------------------------------------------------------------------------------------------

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

pub async fn declare_queue(ch: &Channel, name: &str) -> String {
    declare_queue_with(
        ch,
        name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
}

pub async fn declare_queue_with(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
    args: FieldTable,
) -> String {
    within(ch.queue_declare(name.into(), opts, args))
        .await
        .unwrap_or_else(|e| panic!("queue.declare {name} failed: {e:?}"))
        .name()
        .as_str()
        .to_string()
}

/// (message_count, consumer_count) via passive declare.
pub async fn queue_counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("passive declare {name} failed: {e:?}"));
    (q.message_count(), q.consumer_count())
}

/// Whether a queue exists, checked on a throwaway channel.
pub async fn queue_exists(conn: &Connection, name: &str) -> bool {
    let ch = open(conn).await;
    match within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    {
        Ok(_) => {
            let _ = ch.close(200, "ok".into()).await;
            true
        }
        Err(e) => {
            assert_channel_closed(
                &e,
                404,
                &format!("NOT_FOUND - no queue '{name}' in vhost '/'"),
            );
            false
        }
    }
}

/// Whether an exchange exists, checked on a throwaway channel.
pub async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = open(conn).await;
    match within(ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    {
        Ok(_) => {
            let _ = ch.close(200, "ok".into()).await;
            true
        }
        Err(e) => {
            assert_channel_closed(
                &e,
                404,
                &format!("NOT_FOUND - no exchange '{name}' in vhost '/'"),
            );
            false
        }
    }
}

pub async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    within(ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("exchange.declare {name} failed: {e:?}"));
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    bind_args(ch, queue, exchange, key, FieldTable::default()).await
}

pub async fn bind_args(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    ))
    .await
    .unwrap_or_else(|e| panic!("queue.bind {queue} -> {exchange} ({key}) failed: {e:?}"));
}

pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_props(ch, exchange, key, body, BasicProperties::default()).await
}

pub async fn publish_props(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    ))
    .await
    .unwrap_or_else(|e| panic!("basic.publish to {exchange:?}/{key:?} failed: {e:?}"));
}

/// Publish with confirms already selected on `ch` and require an ack.
pub async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    let confirm = within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    let c = within(confirm).await.expect("confirm");
    assert!(c.is_ack(), "expected ack, got {c:?}");
}

/// Publish `bodies` in order to the default exchange and wait until the queue holds exactly
/// that many messages (the queue must be empty before).
pub async fn publish_all(ch: &Channel, queue: &str, bodies: &[&str]) {
    for b in bodies {
        publish(ch, "", queue, b.as_bytes()).await;
    }
    wait_for_count(ch, queue, bodies.len() as u32).await;
}

/// Poll the queue's ready count until it equals `n`.
pub async fn wait_for_count(ch: &Channel, queue: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (c, _) = queue_counts(ch, queue).await;
        if c == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue {queue} has {c} messages, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn get(ch: &Channel, queue: &str, no_ack: bool) -> Option<BasicGetMessage> {
    within(ch.basic_get(queue.into(), BasicGetOptions { no_ack }))
        .await
        .unwrap_or_else(|e| panic!("basic.get {queue} failed: {e:?}"))
}

/// basic.get that must return a message.
pub async fn get_one(ch: &Channel, queue: &str, no_ack: bool) -> BasicGetMessage {
    get(ch, queue, no_ack)
        .await
        .unwrap_or_else(|| panic!("queue {queue} unexpectedly empty"))
}

/// Drain a queue with basic.get(no_ack) and return the bodies as strings.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, queue, true).await {
        out.push(body(&m.delivery));
    }
    out
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

/// Wait for `n` basic.return messages on a channel without confirms.
pub async fn returned(ch: &Channel, n: usize) -> Vec<BasicReturnMessage> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        out.extend(ch.wait_for_confirms().await.expect("wait_for_confirms"));
        if out.len() >= n {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} returns, expected {n}",
            out.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Field tables
// ---------------------------------------------------------------------------------------------

pub fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(k), v);
    }
    t
}

pub fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

pub fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref().and_then(|h| h.inner().get(key))
}
