//! Start Warren inside your own program or test, talk to it, reset it, stop it.
//!
//! `cargo run --release --example embedded`

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = warren::Server::builder()
        .vhost("tests")
        .user("app", "secret")
        .start()
        .await?;
    let url = server.url_for("app", "secret", "tests");
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.basic_publish(
        "".into(),
        "jobs".into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await?;
    let got = ch
        .basic_get("jobs".into(), BasicGetOptions { no_ack: true })
        .await?
        .ok_or("no message")?;
    println!(
        "embedded broker at {url} delivered {:?}",
        String::from_utf8_lossy(&got.delivery.data)
    );
    // Between tests: empty the vhost (its connections are closed) instead of restarting.
    server.broker().reset_vhost("tests");
    server.shutdown().await;
    Ok(())
}
