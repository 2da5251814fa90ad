//! basic.*: publish, consume, get, ack/nack/reject, recover, qos, cancel, properties.

use crate::common::excl_queue as excl;
use crate::common::raw::{self, Raw};
use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, DecimalValue, FieldArray, FieldTable},
    BasicProperties, ExchangeKind,
};

#[tokio::test]
async fn publish_consume_round_trip() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "rt").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"hello world").await;
    let d = c.next().await;
    assert_eq!(d.data, b"hello world");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), q);
    assert!(!d.redelivered);
    assert_eq!(d.delivery_tag, 1);
    assert!(within(d.acker.ack(BasicAckOptions::default()))
        .await
        .unwrap());
    c.assert_quiet().await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 1));
}

#[tokio::test]
async fn empty_body_round_trip() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "empty").await;
    publish(&ch, "", &q, b"").await;
    wait_for_count(&ch, &q, 1).await;
    let m = get_one(&ch, &q, true).await;
    assert!(m.delivery.data.is_empty());
}

#[tokio::test]
async fn large_bodies_round_trip_intact_around_the_frame_size() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "large").await;
    // Around the size where deliveries switch from copying the body to attaching it, and past frame_max
    // (131072), where a body spans several frames.
    let sizes = [4095usize, 4096, 65_536, 131_064, 131_072, 1_000_003];
    let payload =
        |n: usize, k: usize| -> Vec<u8> { (0..n).map(|i| ((i * 31 + k) % 251) as u8).collect() };
    let mut c = consume(&ch, &q, no_ack()).await;
    for (k, &n) in sizes.iter().enumerate() {
        publish(&ch, "", &q, &payload(n, k)).await;
    }
    for (k, &n) in sizes.iter().enumerate() {
        let d = c.next().await;
        assert_eq!(d.data.len(), n);
        assert!(d.data == payload(n, k), "body of {n} bytes corrupted");
    }
    let q2 = excl(&ch, "large-get").await;
    publish(&ch, "", &q2, &payload(300_000, 9)).await;
    wait_for_count(&ch, &q2, 1).await;
    let m = get_one(&ch, &q2, true).await;
    assert!(m.delivery.data == payload(300_000, 9));
}

#[tokio::test]
async fn mandatory_unroutable_is_returned() {
    let (_conn, ch) = setup().await;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let rk = unique("nobody-home");
    // not mandatory: silently dropped
    publish(&ch, "amq.direct", &rk, b"dropped").await;
    within(ch.basic_publish(
        "amq.direct".into(),
        rk.as_str().into(),
        mandatory,
        b"back",
        BasicProperties::default().with_message_id("m1".into()),
    ))
    .await
    .unwrap();
    within(ch.basic_publish(
        "".into(),
        rk.as_str().into(),
        mandatory,
        b"back2",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    let r = returned(&ch, 2).await;
    assert_eq!(r.len(), 2, "only mandatory messages come back: {r:?}");
    assert_eq!(
        (r[0].reply_code, r[0].reply_text.as_str()),
        (312, "NO_ROUTE")
    );
    assert_eq!(r[0].delivery.exchange.as_str(), "amq.direct");
    assert_eq!(r[0].delivery.routing_key.as_str(), rk);
    assert_eq!(r[0].delivery.data, b"back");
    assert_eq!(
        r[0].delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("m1")
    );
    assert_eq!(
        (r[1].reply_code, r[1].reply_text.as_str()),
        (312, "NO_ROUTE")
    );
    assert_eq!(r[1].delivery.exchange.as_str(), "");
    assert_eq!(r[1].delivery.data, b"back2");
}

#[tokio::test]
async fn mandatory_routable_not_returned() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "mand-ok").await;
    within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        b"ok",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    wait_for_count(&ch, &q, 1).await;
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
}

#[tokio::test]
async fn cc_and_bcc_headers() {
    let (_conn, ch) = setup().await;
    let x = unique("x-cc");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let (q1, q2, q3) = (
        excl(&ch, "cc1").await,
        excl(&ch, "cc2").await,
        excl(&ch, "cc3").await,
    );
    bind(&ch, &q1, &x, "k1").await;
    bind(&ch, &q2, &x, "k2").await;
    bind(&ch, &q3, &x, "k3").await;
    let headers = table(vec![
        (
            "CC",
            AMQPValue::FieldArray(FieldArray::from(vec![lstr("k2")])),
        ),
        (
            "BCC",
            AMQPValue::FieldArray(FieldArray::from(vec![lstr("k3"), lstr("k1")])),
        ),
        ("keep", lstr("me")),
    ]);
    publish_props(
        &ch,
        &x,
        "k1",
        b"copied",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    for q in [&q1, &q2, &q3] {
        wait_for_count(&ch, q, 1).await;
        let m = get_one(&ch, q, true).await;
        assert_eq!(body(&m.delivery), "copied");
        assert_eq!(
            m.delivery.routing_key.as_str(),
            "k1",
            "original routing key on {q}"
        );
        let props = &m.delivery.properties;
        assert_eq!(
            header(props, "CC"),
            Some(&AMQPValue::FieldArray(FieldArray::from(vec![lstr("k2")]))),
            "CC kept"
        );
        assert_eq!(header(props, "BCC"), None, "BCC stripped");
        assert_eq!(header(props, "keep"), Some(&lstr("me")));
        assert!(get(&ch, q, true).await.is_none(), "exactly one copy in {q}");
    }
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_generated_consumer_tag() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "ctag").await;
    let c = consume(&ch, &q, no_ack()).await;
    let tag = c.tag();
    let suffix = tag
        .strip_prefix("amq.ctag-")
        .unwrap_or_else(|| panic!("bad tag {tag}"));
    assert_eq!(suffix.len(), 22, "{tag}");
    assert!(
        suffix
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'),
        "{tag}"
    );
    let c2 = consume(&ch, &q, no_ack()).await;
    assert_ne!(c2.tag(), tag);
}

#[tokio::test]
async fn consumer_tag_reuse_is_connection_530() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "reuse").await;
    let _c = consume_tagged(&ch, &q, "t1", no_ack()).await;
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "t1".into(),
        no_ack(),
        FieldTable::default(),
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 't1'",
    )
    .await;
}

#[tokio::test]
async fn same_tag_on_different_channels_ok() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "tag-2ch").await;
    let ch2 = open(&conn).await;
    let c1 = consume_tagged(&ch, &q, "same", no_ack()).await;
    let c2 = consume_tagged(&ch2, &q, "same", no_ack()).await;
    assert_eq!(c1.tag(), c2.tag());
    assert_eq!(queue_counts(&ch, &q).await.1, 2);
}

#[tokio::test]
async fn exclusive_consumer_conflicts_are_403() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "exc-cons").await;
    let _c = consume(&ch, &q, no_ack()).await;
    let ch2 = open(&conn).await;
    let res = within(ch2.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch2,
        res,
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    )
    .await;

    let q2 = excl(&ch, "exc-cons2").await;
    let _e = consume(
        &ch,
        &q2,
        BasicConsumeOptions {
            exclusive: true,
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let ch3 = open(&conn).await;
    let res = within(ch3.basic_consume(
        q2.as_str().into(),
        "".into(),
        no_ack(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch3,
        res,
        403,
        &format!("ACCESS_REFUSED - queue '{q2}' in vhost '/' in exclusive use"),
    )
    .await;
}

#[tokio::test]
async fn consume_missing_queue_is_404() {
    let (conn, ch) = setup().await;
    let q = unique("no-such-q");
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        no_ack(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    )
    .await;
    let ch = open(&conn).await;
    let res = within(ch.basic_get(q.as_str().into(), Default::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn consume_invalid_priority_arg_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "prio-arg").await;
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        no_ack(),
        table(vec![("x-priority", lstr("high"))]),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
    )
    .await;
}

#[tokio::test]
async fn cancel_stops_deliveries() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "cancel").await;
    let mut c = consume_tagged(&ch, &q, "to-cancel", no_ack()).await;
    publish(&ch, "", &q, b"one").await;
    assert_eq!(body(&c.next().await), "one");
    within(ch.basic_cancel("to-cancel".into(), Default::default()))
        .await
        .unwrap();
    c.cancelled().await;
    publish(&ch, "", &q, b"two").await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(queue_counts(&ch, &q).await, (1, 0));
    // cancelling an unknown tag is fine
    within(ch.basic_cancel("never-existed".into(), Default::default()))
        .await
        .expect("cancel unknown tag");
    assert!(ch.status().connected());
}

#[tokio::test]
async fn server_cancels_consumer_when_queue_deleted() {
    let (conn, ch) = setup().await;
    let q = unique("q-srv-cancel");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    let other = open(&conn).await;
    within(other.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    c.cancelled().await;
    assert!(
        ch.status().connected(),
        "server basic.cancel must not close the channel"
    );
    let q2 = excl(&ch, "after-cancel").await;
    publish(&ch, "", &q2, b"still works").await;
    wait_for_count(&ch, &q2, 1).await;
}

#[tokio::test]
async fn get_and_get_empty_with_message_count() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "get").await;
    assert!(
        get(&ch, &q, true).await.is_none(),
        "get-empty on empty queue"
    );
    publish_all(&ch, &q, &["a", "b", "c"]).await;
    let m = get_one(&ch, &q, false).await;
    assert_eq!((body(&m.delivery), m.message_count), ("a".to_string(), 2));
    assert_eq!(m.delivery.delivery_tag, 1);
    assert!(!m.delivery.redelivered);
    assert_eq!(m.delivery.routing_key.as_str(), q);
    let m2 = get_one(&ch, &q, true).await;
    assert_eq!((body(&m2.delivery), m2.message_count), ("b".to_string(), 1));
    assert_eq!(m2.delivery.delivery_tag, 2);
    let m3 = get_one(&ch, &q, true).await;
    assert_eq!((body(&m3.delivery), m3.message_count), ("c".to_string(), 0));
    assert!(get(&ch, &q, true).await.is_none());
    // the unacked one is not ready
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn get_and_consume_share_delivery_tags() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "tags").await;
    publish_all(&ch, &q, &["g1", "g2"]).await;
    assert_eq!(get_one(&ch, &q, false).await.delivery.delivery_tag, 1);
    assert_eq!(get_one(&ch, &q, true).await.delivery.delivery_tag, 2);
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"c1").await;
    let d = c.next().await;
    assert_eq!((body(&d), d.delivery_tag), ("c1".to_string(), 3));
}

#[tokio::test]
async fn ack_multiple() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ackm").await;
    publish_all(&ch, &q, &["1", "2", "3", "4"]).await;
    let cch = open(&conn).await;
    for _ in 0..4 {
        get_one(&cch, &q, false).await;
    }
    within(cch.basic_ack(2, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(cch.close(200, "requeue the rest".into()))
        .await
        .unwrap();
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, vec!["3", "4"]);
}

#[tokio::test]
async fn ack_zero_multiple_acks_everything() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ack0").await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    let cch = open(&conn).await;
    for _ in 0..3 {
        get_one(&cch, &q, false).await;
    }
    within(cch.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(cch.close(200, "bye".into())).await.unwrap();
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn nack_multiple_requeue() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "nackm").await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    for _ in 0..3 {
        get_one(&ch, &q, false).await;
    }
    within(ch.basic_nack(
        3,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    wait_for_count(&ch, &q, 3).await;
    for want in ["1", "2", "3"] {
        let m = get_one(&ch, &q, true).await;
        assert_eq!(body(&m.delivery), want);
        assert!(m.delivery.redelivered);
    }
}

#[tokio::test]
async fn reject_and_nack_without_requeue_drop() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "drop").await;
    publish_all(&ch, &q, &["1", "2"]).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    within(ch.basic_reject(
        m1.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    ))
    .await
    .unwrap();
    within(ch.basic_nack(
        m2.delivery.delivery_tag,
        BasicNackOptions {
            multiple: false,
            requeue: false,
        },
    ))
    .await
    .unwrap();
    // both tags are settled: acking 0-multiple afterwards has nothing to do and no error
    within(ch.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    assert_eq!(queue_counts(&ch, &q).await, (0, 0));
    assert!(ch.status().connected());
}

#[tokio::test]
async fn requeue_restores_original_order_with_redelivered() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "order").await;
    publish_all(&ch, &q, &["m0", "m1", "m2", "m3", "m4", "m5"]).await;
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(get_one(&ch, &q, false).await.delivery.delivery_tag);
    }
    within(ch.basic_nack(
        tags[3],
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    within(ch.basic_nack(
        tags[1],
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    within(ch.basic_reject(tags[4], BasicRejectOptions { requeue: true }))
        .await
        .unwrap();
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("m1".into(), true),
            ("m3".into(), true),
            ("m4".into(), true),
            ("m5".into(), false)
        ]
    );
}

#[tokio::test]
async fn ack_unknown_tag_is_406() {
    let (conn, ch) = setup().await;
    let w = watch(&ch).await;
    within(ch.basic_ack(99, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 99",
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn double_ack_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "dbl").await;
    publish_all(&ch, &q, &["x"]).await;
    let m = get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            m.delivery.delivery_tag
        ),
    );
    assert_conn_usable(&conn).await;
    // the first ack counted: the message is gone
    let ch = open(&conn).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn ack_zero_single_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ack0s").await;
    publish_all(&ch, &q, &["x"]).await;
    get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(0, BasicAckOptions { multiple: false }))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 0",
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn ack_multiple_beyond_last_is_406_and_acks_nothing() {
    let (conn, ch) = setup().await;
    let q = unique("q-beyond");
    let owner = open(&conn).await;
    declare_queue_with(
        &owner,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    publish_all(&owner, &q, &["1", "2"]).await;
    get_one(&ch, &q, false).await;
    get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(7, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 7",
    );
    // nothing was acked: both come back when the channel dies
    wait_for_count(&owner, &q, 2).await;
}

#[tokio::test]
async fn ack_on_other_channel_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "other-ch").await;
    publish_all(&ch, &q, &["x"]).await;
    let m = get_one(&ch, &q, false).await;
    let ch2 = open(&conn).await;
    let w = watch(&ch2).await;
    within(ch2.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            m.delivery.delivery_tag
        ),
    );
    assert!(ch.status().connected());
}

#[tokio::test]
async fn ack_of_auto_ack_delivery_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "autoack").await;
    let mut c = consume(&ch, &q, no_ack()).await;
    publish(&ch, "", &q, b"x").await;
    let d = c.next().await;
    within(ch.basic_ack(d.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &c.error().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            d.delivery_tag
        ),
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn recover_requeue_redelivers() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "recover").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"r1").await;
    publish(&ch, "", &q, b"r2").await;
    let first = c.next_n(2).await;
    assert_eq!(bodies(&first), vec!["r1", "r2"]);
    assert!(first.iter().all(|d| !d.redelivered));
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .unwrap();
    let again = c.next_n(2).await;
    assert_eq!(bodies(&again), vec!["r1", "r2"]);
    assert!(again.iter().all(|d| d.redelivered));
    assert_eq!(
        again.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
        vec![3, 4],
        "redeliveries get new tags"
    );
    within(ch.basic_ack(4, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    c.assert_quiet().await;
}

#[tokio::test]
async fn recover_without_requeue_is_540() {
    let (conn, ch) = setup().await;
    let res = within(ch.basic_recover(BasicRecoverOptions { requeue: false })).await;
    expect_connection_close(&conn, res, 540, "NOT_IMPLEMENTED - requeue=false").await;
}

#[tokio::test]
async fn qos_per_consumer_prefetch() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "qos").await;
    publish_all(&ch, &q, &["1", "2", "3", "4", "5"]).await;
    within(ch.basic_qos(2, BasicQosOptions { global: false }))
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q, manual_ack()).await;
    let got = c1.next_n(2).await;
    assert_eq!(bodies(&got), vec!["1", "2"]);
    c1.assert_quiet().await;
    // a second consumer on the same channel gets its own window of 2
    let mut c2 = consume(&ch, &q, manual_ack()).await;
    assert_eq!(bodies(&c2.next_n(2).await), vec!["3", "4"]);
    c2.assert_quiet().await;
    within(got[0].acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    assert_eq!(body(&c1.next().await), "5");
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn qos_global_prefetch_shared_by_channel() {
    let (_conn, ch) = setup().await;
    let qa = excl(&ch, "gqa").await;
    let qb = excl(&ch, "gqb").await;
    publish_all(&ch, &qa, &["a1", "a2", "a3"]).await;
    publish_all(&ch, &qb, &["b1", "b2", "b3"]).await;
    within(ch.basic_qos(3, BasicQosOptions { global: true }))
        .await
        .unwrap();
    let mut ca = consume(&ch, &qa, manual_ack()).await;
    let got_a = ca.next_n(3).await;
    let mut cb = consume(&ch, &qb, manual_ack()).await;
    cb.assert_quiet().await;
    within(got_a[0].acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    assert_eq!(body(&cb.next().await), "b1");
    cb.assert_quiet().await;
    ca.assert_quiet().await;
}

#[tokio::test]
async fn basic_get_ignores_prefetch() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "get-qos").await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    within(ch.basic_qos(1, BasicQosOptions { global: true }))
        .await
        .unwrap();
    for want in ["1", "2", "3"] {
        assert_eq!(body(&get_one(&ch, &q, false).await.delivery), want);
    }
}

#[tokio::test]
async fn round_robin_across_consumers() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "rr").await;
    let ch2 = open(&conn).await;
    let mut c1 = consume(&ch, &q, no_ack()).await;
    let mut c2 = consume(&ch2, &q, no_ack()).await;
    for i in 0..6 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let a = bodies(&c1.next_n(3).await);
    let b = bodies(&c2.next_n(3).await);
    assert_eq!(a, vec!["m0", "m2", "m4"]);
    assert_eq!(b, vec!["m1", "m3", "m5"]);
    c1.assert_quiet().await;
    c2.assert_quiet().await;
}

#[tokio::test]
async fn unacked_requeued_on_channel_close() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "requeue-close").await;
    publish_all(&ch, &q, &["u1", "u2", "u3"]).await;
    let cch = open(&conn).await;
    let mut c = consume(&cch, &q, manual_ack()).await;
    let ds = c.next_n(3).await;
    within(ds[0].acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    within(cch.close(200, "bye".into())).await.unwrap();
    wait_for_count(&ch, &q, 2).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "u2");
    assert!(m.delivery.redelivered);
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "u3");
}

#[tokio::test]
async fn nack_requeue_redelivers_to_consumer() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "nack-cons").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"again").await;
    let d = c.next().await;
    assert!(!d.redelivered);
    within(d.acker.nack(BasicNackOptions {
        multiple: false,
        requeue: true,
    }))
    .await
    .unwrap();
    let d2 = c.next().await;
    assert_eq!(body(&d2), "again");
    assert!(d2.redelivered);
    assert!(d2.delivery_tag > d.delivery_tag);
    within(d2.acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn no_local_is_ignored() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "nolocal").await;
    let mut c = consume(
        &ch,
        &q,
        BasicConsumeOptions {
            no_local: true,
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    publish(&ch, "", &q, b"mine").await;
    assert_eq!(body(&c.next().await), "mine");
}

/// Raw frames: lapin queues publishes behind other methods, so the async connection.close for
/// immediate=true is observed on the wire instead.
#[tokio::test]
async fn immediate_publish_is_540() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2047, 131072, 0).await;
    r.channel_open(1).await;
    let _open_ok = r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&0u16.to_be_bytes());
    raw::shortstr(&mut a, "amq.direct");
    raw::shortstr(&mut a, "rk");
    a.push(0b10); // immediate
    r.method(1, 60, 40, &a).await;
    r.content(1, 60, b"now").await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (540, "NOT_IMPLEMENTED - immediate=true")
    );
    assert_eq!((class, method), (60, 40));
    r.send_close_ok().await;
}

/// lapin's basic_qos has no prefetch_size parameter, so this one is sent as raw frames.
#[tokio::test]
async fn qos_prefetch_size_is_540_raw() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2047, 131072, 0).await;
    r.channel_open(1).await;
    let _open_ok = r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&1u32.to_be_bytes()); // prefetch_size
    a.extend_from_slice(&0u16.to_be_bytes()); // prefetch_count
    a.push(0); // global
    r.method(1, 60, 10, &a).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1)")
    );
    assert_eq!((class, method), (60, 10));
    r.send_close_ok().await;
}

/// On the wire: the broker's basic.cancel for a deleted queue has nowait=true (lapin answers a
/// nowait=false cancel with basic.cancel-ok, which a RabbitMQ-like broker must not expect).
#[tokio::test]
async fn server_cancel_frame_has_nowait_raw() {
    use lapin::protocol::{basic, queue, AMQPClass};
    let b = broker().await;
    let mut r = Raw::handshake_with(&b, 2047, 131072, 0, &["consumer_cancel_notify"]).await;
    r.channel_open(1).await;
    let _open_ok = r.method_frame().await;
    let q = unique("raw-cancel");
    let mut a = Vec::new();
    a.extend_from_slice(&0u16.to_be_bytes());
    raw::shortstr(&mut a, &q);
    a.push(0b100); // exclusive
    a.extend_from_slice(&0u32.to_be_bytes());
    r.method(1, 50, 10, &a).await;
    assert!(matches!(
        r.method_frame().await,
        (1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))
    ));
    let mut a = Vec::new();
    a.extend_from_slice(&0u16.to_be_bytes());
    raw::shortstr(&mut a, &q);
    raw::shortstr(&mut a, "ctag-raw");
    a.push(0b10); // no_ack
    a.extend_from_slice(&0u32.to_be_bytes());
    r.method(1, 60, 20, &a).await;
    assert!(matches!(
        r.method_frame().await,
        (1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))
    ));
    let mut a = Vec::new();
    a.extend_from_slice(&0u16.to_be_bytes());
    raw::shortstr(&mut a, &q);
    a.push(0);
    r.method(1, 50, 40, &a).await;
    let (mut cancel, mut delete_ok) = (None, false);
    while cancel.is_none() || !delete_ok {
        match r.method_frame().await {
            (1, AMQPClass::Basic(basic::AMQPMethod::Cancel(c))) => cancel = Some(c),
            (1, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(d))) => {
                assert_eq!(d.message_count, 0);
                delete_ok = true;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let cancel = cancel.unwrap();
    assert_eq!(cancel.consumer_tag.as_str(), "ctag-raw");
    assert!(
        cancel.nowait,
        "server-sent basic.cancel must have nowait=true"
    );
}

fn rich_headers() -> FieldTable {
    let inner = table(vec![
        (
            "deep",
            AMQPValue::FieldTable(table(vec![(
                "deeper",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    AMQPValue::LongInt(-1),
                    AMQPValue::Void,
                ])),
            )])),
        ),
        ("s", lstr("inner")),
    ]);
    table(vec![
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-6_400_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "dec",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        ("str", lstr("héllo wörld")),
        ("bytes", AMQPValue::ByteArray(vec![0u8, 1, 2, 255].into())),
        ("ts", AMQPValue::Timestamp(1_700_000_000)),
        ("void", AMQPValue::Void),
        ("table", AMQPValue::FieldTable(inner.clone())),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                lstr("a"),
                AMQPValue::LongInt(2),
                AMQPValue::FieldTable(inner),
                AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Boolean(false)])),
                AMQPValue::DecimalValue(DecimalValue { scale: 0, value: 7 }),
                AMQPValue::Timestamp(42),
            ])),
        ),
        ("empty-table", AMQPValue::FieldTable(FieldTable::default())),
        (
            "empty-array",
            AMQPValue::FieldArray(FieldArray::from(vec![])),
        ),
    ])
}

#[tokio::test]
async fn all_properties_round_trip() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "props").await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(rich_headers())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply.queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_650_000_000)
        .with_type("event.created".into())
        .with_user_id("guest".into())
        .with_app_id("itests".into())
        .with_cluster_id("cluster-x".into());
    let mut c = consume(&ch, &q, no_ack()).await;
    publish_props(&ch, "", &q, b"{}", props.clone()).await;
    let d = c.next().await;
    assert_eq!(d.properties, props, "consumed properties");
    within(ch.basic_cancel(c.tag().as_str().into(), Default::default()))
        .await
        .unwrap();
    c.cancelled().await;
    publish_props(&ch, "", &q, b"{}", props.clone()).await;
    wait_for_count(&ch, &q, 1).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(m.delivery.properties, props, "basic.get properties");
}

#[tokio::test]
async fn no_properties_stay_absent() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "noprops").await;
    publish(&ch, "", &q, b"bare").await;
    wait_for_count(&ch, &q, 1).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(m.delivery.properties, BasicProperties::default());
}

#[tokio::test]
async fn one_mebibyte_body_spans_frames() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "big").await;
    let payload: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut c = consume(&ch, &q, no_ack()).await;
    publish(&ch, "", &q, &payload).await;
    let d = c.next().await;
    assert_eq!(d.data.len(), payload.len());
    assert!(d.data == payload, "body corrupted");
    within(ch.basic_cancel(c.tag().as_str().into(), Default::default()))
        .await
        .unwrap();
    c.cancelled().await;
    publish(&ch, "", &q, &payload).await;
    wait_for_count(&ch, &q, 1).await;
    assert!(get_one(&ch, &q, true).await.delivery.data == payload);
}

#[tokio::test]
async fn user_id_mismatch_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "userid").await;
    let w = watch(&ch).await;
    publish_props(
        &ch,
        "",
        &q,
        b"x",
        BasicProperties::default().with_user_id("bob".into()),
    )
    .await;
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'",
    );
    assert_conn_usable(&conn).await;
}
