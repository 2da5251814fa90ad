//! Retry, then dead-letter: a consumer that fails a message rejects it; the work queue dead-letters it into a
//! retry queue whose TTL sends it back after a delay; after three attempts (counted in the x-death header) the
//! consumer parks it in a dead-letter queue for a human to look at.
//!
//! `cargo run --release --example retry_dead_letter [URL]`

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

const MAX_ATTEMPTS: i64 = 3;

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// How many times the message has already been rejected from the work queue.
fn attempts(props: &BasicProperties) -> i64 {
    let Some(headers) = props.headers() else {
        return 0;
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return 0;
    };
    deaths
        .as_slice()
        .iter()
        .filter_map(|d| match d {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        })
        .filter(|t| matches!(t.inner().get("queue"), Some(AMQPValue::LongString(q)) if q.as_bytes() == b"example.work"))
        .filter_map(|t| match t.inner().get("count") {
            Some(AMQPValue::LongLongInt(n)) => Some(*n),
            _ => None,
        })
        .sum()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let x = ExchangeDeclareOptions::default();
    ch.exchange_declare(
        "example.retry".into(),
        ExchangeKind::Fanout,
        x,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        "example.requeue".into(),
        ExchangeKind::Fanout,
        x,
        FieldTable::default(),
    )
    .await?;
    let q = QueueDeclareOptions::default();
    // Failed work goes to the retry exchange...
    let work_args = args(&[(
        "x-dead-letter-exchange",
        AMQPValue::LongString("example.retry".into()),
    )]);
    ch.queue_declare("example.work".into(), q, work_args)
        .await?;
    // ...waits 200 ms in the retry queue, then expires back to the work queue.
    let retry_args = args(&[
        ("x-message-ttl", AMQPValue::LongInt(200)),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString("example.requeue".into()),
        ),
    ]);
    ch.queue_declare("example.work.retry".into(), q, retry_args)
        .await?;
    ch.queue_declare("example.work.parked".into(), q, FieldTable::default())
        .await?;
    let bind = QueueBindOptions::default();
    ch.queue_bind(
        "example.work.retry".into(),
        "example.retry".into(),
        "".into(),
        bind,
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        "example.work".into(),
        "example.requeue".into(),
        "".into(),
        bind,
        FieldTable::default(),
    )
    .await?;

    ch.basic_publish(
        "".into(),
        "example.work".into(),
        BasicPublishOptions::default(),
        b"always fails",
        BasicProperties::default(),
    )
    .await?;

    let mut consumer = ch
        .basic_consume(
            "example.work".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await?
            .ok_or("consumer closed")??;
        let tried = attempts(&delivery.properties) + 1;
        println!(
            "attempt {tried}: processing {:?} ... failed",
            String::from_utf8_lossy(&delivery.data)
        );
        if tried >= MAX_ATTEMPTS {
            // Give up: park a copy for inspection and take it off the work queue.
            ch.basic_publish(
                "".into(),
                "example.work.parked".into(),
                BasicPublishOptions::default(),
                &delivery.data,
                delivery.properties.clone(),
            )
            .await?
            .await?;
            delivery.ack(BasicAckOptions::default()).await?;
            break;
        }
        delivery
            .reject(BasicRejectOptions { requeue: false })
            .await?;
    }
    let parked = ch
        .basic_get(
            "example.work.parked".into(),
            BasicGetOptions { no_ack: true },
        )
        .await?;
    let parked = parked.ok_or("nothing parked")?;
    println!(
        "parked after {} failed attempts: {:?}",
        MAX_ATTEMPTS,
        String::from_utf8_lossy(&parked.delivery.data)
    );
    for queue in ["example.work", "example.work.retry", "example.work.parked"] {
        ch.queue_delete(queue.into(), Default::default()).await?;
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}
