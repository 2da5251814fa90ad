//! Publish messages with publisher confirms.
//!
//! Run a broker (`cargo run --release`), then: `cargo run --release --example publish [URL] [COUNT]`.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let count: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.queue_declare(
        "example.hello".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for i in 0..count {
        let body = format!("hello {i}");
        let confirm = ch
            .basic_publish(
                "".into(),
                "example.hello".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_content_type("text/plain".into()),
            )
            .await?
            .await?;
        if !confirm.is_ack() {
            return Err(format!("message {i} was not confirmed").into());
        }
    }
    println!("published and confirmed {count} messages to example.hello");
    conn.close(200, "bye".into()).await?;
    Ok(())
}
