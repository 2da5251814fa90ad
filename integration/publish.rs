//! basic.publish and what a message carries: round trips of bodies from empty to past frame_max,
//! mandatory returns, CC/BCC headers, every property (and none) intact, the user-id check, and
//! immediate=true refused.

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
