//! Declaring, binding and probing queues and exchanges.

use super::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, Confirmation, Connection, ExchangeKind,
};
use tokio::time::{sleep, Instant};

/// queue.declare options: exclusive.
pub fn exclusive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    }
}

/// queue.declare options: durable.
pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// queue.declare options: passive.
pub fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
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

/// queue.declare with the broker's answer, for tests that expect it to fail.
pub async fn try_declare_queue(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
    args: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within(ch.queue_declare(name.into(), opts, args)).await
}

/// An exclusive queue with a unique name and the given arguments.
pub async fn xq(ch: &Channel, prefix: &str, args: Vec<(&str, AMQPValue)>) -> String {
    declare_queue_with(ch, &unique(prefix), exclusive(), table(args)).await
}

/// An exclusive queue with a unique name and no arguments.
pub async fn excl_queue(ch: &Channel, prefix: &str) -> String {
    xq(ch, prefix, vec![]).await
}

/// queue.delete of `name` on `ch` (no if-empty / if-unused), which must succeed.
pub async fn queue_delete(ch: &Channel, name: &str) {
    within(ch.queue_delete(name.into(), Default::default()))
        .await
        .unwrap_or_else(|e| panic!("queue.delete {name} failed: {e:?}"));
}

/// (message_count, consumer_count) via passive declare.
pub async fn queue_counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = within(ch.queue_declare(name.into(), passive(), FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("passive declare {name} failed: {e:?}"));
    (q.message_count(), q.consumer_count())
}

/// Whether a queue exists, checked on a throwaway channel.
pub async fn queue_exists(conn: &Connection, name: &str) -> bool {
    let ch = open(conn).await;
    let res = within(ch.queue_declare(name.into(), passive(), FieldTable::default())).await;
    found(ch, res, "queue", name).await
}

/// Whether an exchange exists, checked on a throwaway channel.
pub async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = open(conn).await;
    let res = within(ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    found(ch, res, "exchange", name).await
}

/// The answer to a passive declare of the `kind` (queue or exchange) `name` on the throwaway
/// channel `ch`: found (the channel is closed again), or not found (the broker closed it with 404).
async fn found<T>(ch: Channel, res: lapin::Result<T>, kind: &str, name: &str) -> bool {
    match res {
        Ok(_) => {
            let _ = ch.close(200, "ok".into()).await;
            true
        }
        Err(e) => {
            assert_channel_closed(
                &e,
                404,
                &format!("NOT_FOUND - no {kind} '{name}' in vhost '/'"),
            );
            false
        }
    }
}

/// exchange.declare with the broker's answer, for tests that expect it to fail.
pub async fn try_declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) -> lapin::Result<()> {
    within(ch.exchange_declare(name.into(), kind, opts, args)).await
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

/// Whether the default exchange can route to `q` (i.e. the queue exists), checked with a
/// mandatory publish on a confirm channel. Unlike a passive declare, this does not count as a
/// use of the queue, so it does not reset its x-expires timer.
pub async fn routable(ch: &Channel, q: &str) -> bool {
    match publish_confirm(ch, "", q, true, b"probe").await {
        Confirmation::Ack(None) => true,
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312, "{ret:?}");
            false
        }
        other => panic!("unexpected confirmation {other:?}"),
    }
}

/// Poll with mandatory publishes until `q` is gone; returns when that was observed.
pub async fn wait_gone(ch: &Channel, q: &str) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if !routable(ch, q).await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "queue {q} did not expire");
        sleep(Duration::from_millis(10)).await;
    }
}
