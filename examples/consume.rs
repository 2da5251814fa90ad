//! Consume messages with manual acknowledgements and a prefetch limit.
//!
//! Run after the `publish` example: `cargo run --release --example consume [URL] [COUNT]`.

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let count: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(10, BasicQosOptions::default()).await?;
    ch.queue_declare(
        "example.hello".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut consumer = ch
        .basic_consume(
            "example.hello".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = 0;
    while got < count {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        let delivery = delivery?;
        println!("received: {}", String::from_utf8_lossy(&delivery.data));
        delivery.ack(BasicAckOptions::default()).await?;
        got += 1;
    }
    if got < count {
        return Err(format!("expected {count} messages, got {got}").into());
    }
    println!("consumed {got} messages");
    conn.close(200, "bye".into()).await?;
    Ok(())
}
