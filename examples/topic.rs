//! Topic routing: bind queues with `*` and `#` patterns and see which messages each one receives.
//!
//! `cargo run --release --example topic [URL]`

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        "example.logs".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let bindings = [
        ("example.errors", "*.error"),
        ("example.kernel", "kern.#"),
        ("example.all", "#"),
    ];
    for (queue, pattern) in bindings {
        let opts = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        ch.queue_declare(queue.into(), opts, FieldTable::default())
            .await?;
        ch.queue_bind(
            queue.into(),
            "example.logs".into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    for key in ["kern.error", "app.error", "kern.info.disk", "app.info"] {
        ch.basic_publish(
            "example.logs".into(),
            key.into(),
            BasicPublishOptions::default(),
            key.as_bytes(),
            BasicProperties::default(),
        )
        .await?;
    }
    let expected = [
        ("example.errors", 2),
        ("example.kernel", 2),
        ("example.all", 4),
    ];
    for (queue, want) in expected {
        let mut keys = Vec::new();
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            keys.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        }
        println!("{queue}: {keys:?}");
        if keys.len() != want {
            return Err(
                format!("{queue} received {} messages, expected {want}", keys.len()).into(),
            );
        }
    }
    conn.close(200, "bye".into()).await?;
    Ok(())
}
