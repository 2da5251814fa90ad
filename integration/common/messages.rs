//! Publishing (plain and with confirms), getting and draining, message properties and field tables.

use super::*;
use lapin::{
    message::{BasicGetMessage, BasicReturnMessage, Delivery},
    options::*,
    protocol::BasicProperties,
    types::{AMQPValue, FieldArray, FieldTable, ShortString},
    Channel, Confirmation,
};
use tokio::time::{sleep, Instant};

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

pub async fn confirm_select(ch: &Channel) {
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
}

/// Publish on a channel in confirm mode and return the broker's confirmation.
pub async fn publish_confirm(
    ch: &Channel,
    exchange: &str,
    key: &str,
    mandatory: bool,
    body: &[u8],
) -> Confirmation {
    let pc = within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions {
            mandatory,
            immediate: false,
        },
        body,
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    within(pc).await.expect("confirmation")
}

pub fn is_plain_ack(c: &Confirmation) -> bool {
    matches!(c, Confirmation::Ack(None))
}

pub fn is_nack(c: &Confirmation) -> bool {
    matches!(c, Confirmation::Nack(_))
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

/// The queue's ready count stays `n` for [`QUIET`].
pub async fn stays_at(ch: &Channel, q: &str, n: u32) {
    let until = Instant::now() + QUIET;
    while Instant::now() < until {
        assert_eq!(queue_counts(ch, q).await.0, n, "queue {q}");
        sleep(Duration::from_millis(5)).await;
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

/// basic.get polled until a message arrives (quorum queues apply publishes asynchronously).
pub async fn get_wait(ch: &Channel, q: &str, no_ack: bool) -> BasicGetMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = get(ch, q, no_ack).await {
            return m;
        }
        assert!(Instant::now() < deadline, "queue {q} stayed empty");
        sleep(Duration::from_millis(10)).await;
    }
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

pub fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(body).collect()
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
// Properties and field tables
// ---------------------------------------------------------------------------------------------

/// Properties with the expiration (per-message TTL) `ms`.
pub fn exp(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

/// Properties with priority `p`.
pub fn prio(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p)
}

/// Properties with these headers.
pub fn with_headers(h: Vec<(&str, AMQPValue)>) -> BasicProperties {
    BasicProperties::default().with_headers(table(h))
}

/// The message's headers, or an empty table when it has none.
pub fn hdrs(props: &BasicProperties) -> FieldTable {
    props.headers().clone().unwrap_or_default()
}

pub fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref().and_then(|h| h.inner().get(key))
}

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

/// A signed 32-bit field value (the type RabbitMQ expects for most x-arguments).
pub fn int(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

/// A signed 64-bit field value.
pub fn long(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

/// A field array of long strings.
pub fn strs(v: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        v.iter().map(|s| lstr(s)).collect::<Vec<_>>(),
    ))
}
