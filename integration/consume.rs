//! Getting messages out: basic.consume (consumer tags, exclusive consumers, errors, round robin),
//! basic.cancel from either side, basic.get, and basic.qos prefetch.

use crate::common::excl_queue as excl;
use crate::common::raw::{self, Raw};
use crate::common::*;
use lapin::{options::*, types::FieldTable};

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
