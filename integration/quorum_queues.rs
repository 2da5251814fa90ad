//! Quorum queues: declare validation, the delivery-count header and delivery limit, requeue order
//! (against classic queues), and the operations they refuse. Checked against RabbitMQ 3.10.8.
//!
//! Quorum queues cannot be exclusive, so every test deletes its queues at the end.

use crate::common::*;
use crate::common::{exclusive as excl, try_declare_queue as declare};
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, Connection,
};

/// A durable quorum queue with a unique name; the test deletes it at the end.
async fn quorum(ch: &Channel, prefix: &str, mut args: Vec<(&str, AMQPValue)>) -> String {
    args.push(("x-queue-type", lstr("quorum")));
    declare_queue_with(ch, &unique(prefix), durable(), table(args)).await
}

/// Delete `q` on a throwaway channel of `conn`.
async fn delete_queue(conn: &Connection, q: &str) {
    let ch = open(conn).await;
    queue_delete(&ch, q).await;
    let _ = ch.close(200, "bye".into()).await;
}

#[tokio::test]
async fn quorum_declare_validation() {
    let b = broker().await;
    let conn = connect(&b).await;
    let q = unique("qq-invalid");
    let qq = || table(vec![("x-queue-type", lstr("quorum"))]);
    let cases: Vec<(QueueDeclareOptions, String, String)> = vec![
        (
            QueueDeclareOptions::default(),
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        ),
        (
            durable(),
            String::new(),
            "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
                .to_string(),
        ),
    ];
    for (opts, name, text) in cases {
        let ch = open(&conn).await;
        let res = declare(&ch, &name, opts, qq()).await;
        expect_channel_close(&conn, &ch, res, 406, &text).await;
    }
    assert!(!queue_exists(&conn, &q).await);
}

#[tokio::test]
async fn quorum_rejects_max_priority() {
    let (conn, ch) = setup().await;
    let q = unique("qq-prio");
    let res = declare(
        &ch,
        &q,
        durable(),
        table(vec![
            ("x-queue-type", lstr("quorum")),
            ("x-max-priority", int(5)),
        ]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    )
    .await;
}

#[tokio::test]
async fn classic_queue_rejects_delivery_limit() {
    let (conn, ch) = setup().await;
    let q = unique("classic-dlimit");
    let res = declare(&ch, &q, excl(), table(vec![("x-delivery-limit", int(3))])).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{q}' in vhost '/' of queue type rabbit_classic_queue"),
    )
    .await;
}

#[tokio::test]
async fn quorum_delivery_count_header_with_basic_get() {
    let (conn, ch) = setup().await;
    let dlq = xq(&ch, "qq-dl-dlq", vec![]).await;
    let q = quorum(
        &ch,
        "qq-dlimit-get",
        vec![
            ("x-delivery-limit", int(2)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_props(&ch, "", &q, b"m", with_headers(vec![("a", int(1))])).await;
    // delivered limit+1 times: x-delivery-count 0, 1, 2 (basic.get shows 0 on the first delivery)
    for (i, how) in ["nack", "reject", "nack"].iter().enumerate() {
        let m = get_wait(&ch, &q, false).await;
        assert_eq!(body(&m.delivery), "m");
        assert_eq!(m.delivery.redelivered, i > 0, "delivery {i}");
        assert_eq!(
            hdrs(&m.delivery.properties),
            table(vec![("a", int(1)), ("x-delivery-count", long(i as i64))]),
            "delivery {i}"
        );
        match *how {
            "nack" => nack(&ch, m.delivery.delivery_tag, true).await,
            _ => reject(&ch, m.delivery.delivery_tag, true).await,
        }
    }
    // the third return exceeds the limit: dead-lettered, x-delivery-count removed
    let d = get_wait(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), "m");
    assert_eq!(d.delivery.exchange.as_str(), "");
    assert_eq!(d.delivery.routing_key.as_str(), dlq);
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "delivery_limit", &q, "", &[&q], None)],
            ("delivery_limit", &q, ""),
            vec![("a", int(1))],
        )
    );
    assert!(get(&ch, &q, true).await.is_none());
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_delivery_count_header_with_consumer() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-dlimit-consume", vec![("x-delivery-limit", int(1))]).await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish_props(&ch, "", &q, b"m", with_headers(vec![("a", int(1))])).await;
    // the first delivery to a consumer carries no x-delivery-count
    let d = c.next().await;
    assert!(!d.redelivered);
    assert_eq!(hdrs(&d.properties), table(vec![("a", int(1))]));
    nack(&ch, d.delivery_tag, true).await;
    let d = c.next().await;
    assert!(d.redelivered);
    assert_eq!(
        hdrs(&d.properties),
        table(vec![("a", int(1)), ("x-delivery-count", long(1))])
    );
    // limit 1 reached: no DLX, so the message is dropped
    nack(&ch, d.delivery_tag, true).await;
    c.assert_quiet().await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 1));
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_without_delivery_limit_still_counts_deliveries() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-nolimit", vec![]).await;
    publish(&ch, "", &q, b"m").await;
    for i in 0..4i64 {
        let m = get_wait(&ch, &q, false).await;
        assert_eq!(
            hdrs(&m.delivery.properties),
            table(vec![("x-delivery-count", long(i))])
        );
        reject(&ch, m.delivery.delivery_tag, true).await;
    }
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_channel_close_counts_as_delivery_attempt() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-close", vec![("x-delivery-limit", int(5))]).await;
    publish(&ch, "", &q, b"m").await;
    let ch2 = open(&conn).await;
    let m = get_wait(&ch2, &q, false).await;
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("x-delivery-count", long(0))])
    );
    within(ch2.close(200, "bye".into())).await.expect("close");
    let m = get_wait(&ch, &q, true).await;
    assert!(m.delivery.redelivered);
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("x-delivery-count", long(1))])
    );
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_requeue_goes_to_the_back() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-order", vec![]).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("q{i}").as_bytes()).await;
    }
    wait_for_count(&ch, &q, 5).await;
    let m0 = get_one(&ch, &q, false).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    nack(&ch, m2.delivery.delivery_tag, true).await;
    nack(&ch, m0.delivery.delivery_tag, true).await;
    ack(&ch, m1.delivery.delivery_tag).await;
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("q3".to_string(), false),
            ("q4".to_string(), false),
            ("q2".to_string(), true),
            ("q0".to_string(), true),
        ]
    );
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn classic_requeue_goes_back_to_original_position() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "classic-order", vec![]).await;
    publish_all(&ch, &q, &["c0", "c1", "c2", "c3", "c4"]).await;
    let m0 = get_one(&ch, &q, false).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    nack(&ch, m2.delivery.delivery_tag, true).await;
    nack(&ch, m0.delivery.delivery_tag, true).await;
    ack(&ch, m1.delivery.delivery_tag).await;
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("c0".to_string(), true),
            ("c2".to_string(), true),
            ("c3".to_string(), false),
            ("c4".to_string(), false),
        ]
    );
}

#[tokio::test]
async fn quorum_global_qos_consume_is_540() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = quorum(&ch, "qq-gqos", vec![]).await;
    within(ch.basic_qos(10, BasicQosOptions { global: true }))
        .await
        .expect("qos");
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        540,
        &format!("NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos"),
    )
    .await;
    let conn2 = connect(&b).await;
    delete_queue(&conn2, &q).await;
}

#[tokio::test]
async fn quorum_delete_if_unused_is_540() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = quorum(&ch, "qq-ifunused", vec![]).await;
    let res = within(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        540,
        &format!("NOT_IMPLEMENTED - cannot delete queue '{q}' in vhost '/'. queue.delete operations with if-unused flag set are not supported by quorum queues"),
    )
    .await;
    let conn2 = connect(&b).await;
    assert!(queue_exists(&conn2, &q).await);
    delete_queue(&conn2, &q).await;
}
