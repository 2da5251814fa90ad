//! Restarts: what survives a broker restart on the same data directory, and what does not (RabbitMQ's rules).

use crate::common::*;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;

fn data_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("warren-it-{}", unique(tag)))
}

async fn start(dir: &std::path::Path) -> (warren::Server, TestBroker) {
    let server = warren::Server::builder()
        .ephemeral(false)
        .data_dir(dir)
        .start()
        .await
        .expect("start");
    let b = TestBroker::from_url(server.url_for("guest", "guest", "%2f"));
    (server, b)
}

#[tokio::test]
async fn durable_topology_survives_restart_and_transient_does_not() {
    let dir = data_dir("topology");
    let (server, b) = start(&dir).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.exchange_declare(
        "dx".into(),
        ExchangeKind::Topic,
        durable_x,
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.exchange_declare(
        "tx".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(60000));
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.queue_declare("dq".into(), durable_q, args))
        .await
        .unwrap();
    within(ch.queue_declare(
        "tq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    let bind = QueueBindOptions::default();
    within(ch.queue_bind(
        "dq".into(),
        "dx".into(),
        "a.#".into(),
        bind,
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.queue_bind(
        "tq".into(),
        "dx".into(),
        "b.#".into(),
        bind,
        FieldTable::default(),
    ))
    .await
    .unwrap();
    // A durable queue that was deleted stays deleted.
    within(ch.queue_declare("gone".into(), durable_q, FieldTable::default()))
        .await
        .unwrap();
    within(ch.queue_delete("gone".into(), Default::default()))
        .await
        .unwrap();
    server.broker().add_vhost("kept-vhost");
    drop(conn);
    server.shutdown().await;

    let (server, b) = start(&dir).await;
    let conn = connect(&b).await;
    assert!(exchange_exists(&conn, "dx").await, "durable exchange lost");
    assert!(
        !exchange_exists(&conn, "tx").await,
        "transient exchange survived"
    );
    assert!(queue_exists(&conn, "dq").await, "durable queue lost");
    assert!(!queue_exists(&conn, "tq").await, "transient queue survived");
    assert!(
        !queue_exists(&conn, "gone").await,
        "deleted queue came back"
    );
    assert!(server.broker().vhost("kept-vhost").is_some(), "vhost lost");
    let v = server.broker().vhost("/").expect("default vhost");
    let bindings = v.exchange("dx").expect("dx").bindings();
    let keys: Vec<&str> = bindings.iter().map(|b| b.routing_key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["a.#"],
        "only the binding between durable ends survives"
    );
    let q = v.queue("dq").expect("dq");
    assert_eq!(
        q.arguments.inner().get("x-message-ttl"),
        Some(&AMQPValue::LongInt(60000))
    );
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ephemeral_writes_nothing() {
    let dir = data_dir("ephemeral");
    let server = warren::Server::builder()
        .ephemeral(true)
        .data_dir(&dir)
        .start()
        .await
        .expect("start");
    let b = TestBroker::from_url(server.url_for("guest", "guest", "%2f"));
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.queue_declare("dq".into(), durable_q, FieldTable::default()))
        .await
        .unwrap();
    server.shutdown().await;
    assert!(!dir.exists(), "ephemeral broker created {}", dir.display());
}
