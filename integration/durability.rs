//! Restarts: what survives a broker restart on the same data directory, and what does not (RabbitMQ's rules).

use crate::common::*;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::ExchangeKind;

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

#[tokio::test]
async fn persistent_messages_survive_restart_in_order_and_transient_do_not() {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
    use lapin::BasicProperties;
    let dir = data_dir("messages");
    let (server, b) = start(&dir).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.queue_declare("pq".into(), durable_q, FieldTable::default()))
        .await
        .unwrap();
    within(ch.queue_declare(
        "tq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    let mut headers = FieldTable::default();
    headers.insert("h".into(), AMQPValue::LongString("v".into()));
    for i in 0..10u8 {
        let props = if i % 2 == 0 {
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers.clone())
        } else {
            BasicProperties::default()
        };
        let c = within(ch.basic_publish(
            "".into(),
            "pq".into(),
            BasicPublishOptions::default(),
            &[i],
            props,
        ))
        .await
        .unwrap();
        assert!(within(c).await.unwrap().is_ack());
    }
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let c = within(ch.basic_publish(
        "".into(),
        "tq".into(),
        BasicPublishOptions::default(),
        b"x",
        persistent,
    ))
    .await
    .unwrap();
    assert!(within(c).await.unwrap().is_ack());
    // Take 0 (acked: gone for good) and 2 (left unacked: comes back redelivered).
    let m0 = within(ch.basic_get("pq".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .expect("m0");
    assert_eq!(m0.delivery.data, vec![0]);
    within(m0.delivery.ack(Default::default())).await.unwrap();
    let m1 = within(ch.basic_get("pq".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .expect("m1");
    assert_eq!(m1.delivery.data, vec![1]);
    let m2 = within(ch.basic_get("pq".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .expect("m2");
    assert_eq!(m2.delivery.data, vec![2]);
    // Make sure the ack reached the broker before it stops.
    within(ch.queue_declare("pq".into(), durable_q, FieldTable::default()))
        .await
        .unwrap();
    drop(conn);
    server.shutdown().await;

    let (server, b) = start(&dir).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let mut got = Vec::new();
    while let Some(m) = within(ch.basic_get("pq".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
    {
        got.push((
            m.delivery.data[0],
            m.delivery.redelivered,
            m.delivery.properties.headers().clone(),
        ));
    }
    let ids: Vec<u8> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        ids,
        vec![2, 4, 6, 8],
        "persistent messages in order, acked and transient ones gone"
    );
    assert!(got[0].1, "an unacked delivery comes back redelivered");
    assert!(
        !got[1].1,
        "an undelivered message is not marked redelivered"
    );
    assert_eq!(got[1].2.as_ref(), Some(&headers), "headers survive");
    assert!(!queue_exists(&conn, "tq").await);
    drop(conn);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
