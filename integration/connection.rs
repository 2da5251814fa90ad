//! Handshake, tuning, channels, authentication and vhost errors.
//!
//! lapin 4 does not expose connection.start (server properties) and never lets us pick channel
//! numbers, so a few tests speak raw AMQP frames over TCP (see [`crate::common::raw`]).

use crate::common::raw::{self, Frame, Raw};
use crate::common::*;
use lapin::{
    options::*,
    protocol::{connection, AMQPClass},
    types::{AMQPValue, FieldTable},
    ErrorKind, ExchangeKind,
};

#[tokio::test]
async fn handshake_ok_and_channel_usable() {
    let b = broker().await;
    let conn = connect(&b).await;
    assert!(conn.status().connected());
    assert_eq!(conn.status().vhost().as_str(), "/");
    assert_eq!(conn.status().username(), "guest");
    let ch = open(&conn).await;
    assert!(ch.status().connected());
    declare_queue_with(
        &ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    within(conn.close(200, "bye".into()))
        .await
        .expect("connection.close");
    assert!(!conn.status().connected());
}

#[tokio::test]
async fn server_properties_and_capabilities() {
    let b = broker().await;
    let mut r = Raw::connect(&b).await;
    r.write(raw::PROTOCOL_HEADER).await;
    let (ty, ch, payload) = r.raw_frame().await.expect("connection.start frame");
    assert_eq!((ty, ch), (1, 0));
    let m = lapin::protocol::parse_class(&payload[..])
        .expect("parse connection.start")
        .1;
    let start = match m {
        AMQPClass::Connection(connection::AMQPMethod::Start(s)) => s,
        other => panic!("expected connection.start, got {other:?}"),
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    // RabbitMQ 3.10.8 live: "PLAIN AMQPLAIN" (the reference file said "AMQPLAIN PLAIN")
    assert_eq!(start.mechanisms.to_string(), "PLAIN AMQPLAIN");
    assert_eq!(start.locales.to_string(), "en_US");
    let props = start.server_properties.inner();
    match props.get("product") {
        Some(AMQPValue::LongString(s)) => assert_eq!(s.to_string(), "RabbitMQ"),
        other => panic!("product: {other:?}"),
    }
    let text = |key: &str| match props.get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("server property {key} missing or not a longstr: {other:?}"),
    };
    // Warren reports the RabbitMQ release it follows (clients sniff product/version) and names itself.
    assert_eq!(text("version"), "3.13.7");
    assert!(
        text("information").starts_with("Warren "),
        "{}",
        text("information")
    );
    assert!(text("platform").starts_with("Rust"), "{}", text("platform"));
    assert!(
        text("cluster_name").contains('@'),
        "{}",
        text("cluster_name")
    );
    assert!(!text("copyright").is_empty());
    assert_eq!(props.len(), 7, "unexpected server properties: {props:?}");
    let caps = match props.get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.inner().clone(),
        other => panic!("capabilities: {other:?}"),
    };
    let expected = [
        "authentication_failure_close",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "consumer_priorities",
        "direct_reply_to",
        "exchange_exchange_bindings",
        "per_consumer_qos",
        "publisher_confirms",
    ];
    for cap in expected {
        assert_eq!(
            caps.get(cap),
            Some(&AMQPValue::Boolean(true)),
            "capability {cap}"
        );
    }
    assert_eq!(
        caps.len(),
        expected.len(),
        "unexpected capability set: {caps:?}"
    );

    // Wire order (lapin's FieldTable is a BTreeMap, so check the raw bytes): top-level keys are
    // sorted, capabilities are in RabbitMQ's own (unsorted) order.
    let pos = |key: &str| {
        let mut needle = vec![key.len() as u8];
        needle.extend_from_slice(key.as_bytes());
        payload
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("{key} not on the wire"))
    };
    let in_order = |keys: &[&str]| {
        let p: Vec<usize> = keys.iter().map(|k| pos(k)).collect();
        assert!(
            p.windows(2).all(|w| w[0] < w[1]),
            "wire order of {keys:?} is {p:?}"
        );
    };
    in_order(&[
        "capabilities",
        "cluster_name",
        "copyright",
        "information",
        "platform",
        "product",
        "version",
    ]);
    in_order(&[
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ]);
}

#[tokio::test]
async fn tune_defaults_negotiated() {
    let b = broker().await;
    let conn = connect(&b).await;
    let cfg = conn.configuration();
    assert_eq!(cfg.channel_max(), 2047);
    assert_eq!(cfg.frame_max(), 131072);
    assert_eq!(cfg.heartbeat(), 60);
}

#[tokio::test]
async fn tune_raw_values() {
    let b = broker().await;
    let mut r = Raw::connect(&b).await;
    r.write(raw::PROTOCOL_HEADER).await;
    let _start = r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&0u32.to_be_bytes());
    raw::shortstr(&mut a, "PLAIN");
    raw::longstr(&mut a, b"\0guest\0guest");
    raw::shortstr(&mut a, "en_US");
    r.method(0, 10, 11, &a).await;
    match r.method_frame().await {
        (0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => {
            assert_eq!(
                (t.channel_max, t.frame_max, t.heartbeat),
                (2047, 131072, 60)
            );
        }
        other => panic!("expected connection.tune, got {other:?}"),
    }
}

#[tokio::test]
async fn heartbeat_client_value_negotiated() {
    let b = broker().await;
    let conn = try_connect_with(&b, |u| u.query.heartbeat = Some(5))
        .await
        .expect("connect");
    assert_eq!(conn.configuration().heartbeat(), 5);
    let ch = open(&conn).await;
    declare_exchange(&ch, &unique("hb"), ExchangeKind::Fanout).await;
}

#[tokio::test]
async fn heartbeat_frames_sent_by_server() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2047, 131072, 1).await;
    // With heartbeat=1 the broker must send heartbeats on channel 0 while we are idle.
    let started = std::time::Instant::now();
    match r.frame().await {
        Some(Frame::Heartbeat(0)) => {}
        other => panic!("expected a heartbeat frame, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn frame_max_negotiated_small_frames() {
    let b = broker().await;
    let conn = try_connect_with(&b, |u| u.query.frame_max = Some(4096))
        .await
        .expect("connect");
    assert_eq!(conn.configuration().frame_max(), 4096);
    let ch = open(&conn).await;
    let q = declare_queue_with(
        &ch,
        "",
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", &q, &payload).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(m.delivery.data, payload);
}

#[tokio::test]
async fn channel_open_close_and_reuse() {
    let (conn, ch) = setup().await;
    within(ch.close(200, "done".into()))
        .await
        .expect("channel.close");
    assert!(!ch.status().connected());
    let err = ch
        .queue_declare(
            "x".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("closed channel must refuse methods");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidChannelState(..)),
        "{err:?}"
    );
    // the broker accepts channel.open again for a freed number
    let again = open(&conn).await;
    assert!(again.id() >= 1);
    declare_exchange(&again, &unique("reuse"), ExchangeKind::Direct).await;
}

#[tokio::test]
async fn many_channels() {
    let (conn, _ch) = setup().await;
    let mut chans = Vec::new();
    for _ in 0..200 {
        chans.push(open(&conn).await);
    }
    let mut ids: Vec<u16> = chans.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    for c in &chans {
        within(c.basic_qos(5, BasicQosOptions::default()))
            .await
            .expect("qos on every channel");
    }
    for c in &chans {
        within(c.close(200, "bye".into())).await.expect("close");
    }
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn channel_max_negotiated_by_client() {
    let b = broker().await;
    let conn = try_connect_with(&b, |u| u.query.channel_max = Some(2))
        .await
        .expect("connect");
    assert_eq!(conn.configuration().channel_max(), 2);
    let c1 = open(&conn).await;
    let c2 = open(&conn).await;
    // lapin refuses a third channel locally
    let err = conn.create_channel().await.expect_err("third channel");
    assert!(
        matches!(err.kind(), ErrorKind::ChannelsLimitReached),
        "{err:?}"
    );
    within(c1.close(200, "bye".into())).await.expect("close");
    // lapin frees the channel slot asynchronously after close-ok
    let deadline = std::time::Instant::now() + WAIT;
    let c3 = loop {
        match conn.create_channel().await {
            Ok(c) => break c,
            Err(e) if matches!(e.kind(), ErrorKind::ChannelsLimitReached) => {
                assert!(std::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(e) => panic!("create_channel: {e:?}"),
        }
    };
    declare_exchange(&c3, &unique("cmax"), ExchangeKind::Topic).await;
    declare_exchange(&c2, &unique("cmax"), ExchangeKind::Topic).await;
}

#[tokio::test]
async fn channel_max_counts_open_channels_raw() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2, 131072, 0).await;
    for ch in [5u16, 7] {
        r.channel_open(ch).await;
        match r.method_frame().await {
            (c, AMQPClass::Channel(lapin::protocol::channel::AMQPMethod::OpenOk(_))) => {
                assert_eq!(c, ch)
            }
            other => panic!("expected channel.open-ok, got {other:?}"),
        }
    }
    r.channel_open(9).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    );
    assert_eq!((class, method), (0, 0));
    r.send_close_ok().await;
}

#[tokio::test]
async fn method_on_unopened_channel_raw() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2047, 131072, 0).await;
    // basic.qos on channel 3 which was never opened
    let mut a = Vec::new();
    a.extend_from_slice(&0u32.to_be_bytes());
    a.extend_from_slice(&10u16.to_be_bytes());
    a.push(0);
    r.method(3, 60, 10, &a).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (504, "CHANNEL_ERROR - expected 'channel.open'")
    );
    assert_eq!((class, method), (60, 10));
    r.send_close_ok().await;
}

#[tokio::test]
async fn second_channel_open_raw() {
    let b = broker().await;
    let mut r = Raw::handshake(&b, 2047, 131072, 0).await;
    r.channel_open(1).await;
    let _ok = r.method_frame().await;
    r.channel_open(1).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (504, "CHANNEL_ERROR - second 'channel.open' seen")
    );
    assert_eq!((class, method), (20, 10));
    r.send_close_ok().await;
}

#[tokio::test]
async fn bad_protocol_header_gets_server_header() {
    let b = broker().await;
    let mut r = Raw::connect(&b).await;
    r.write(b"GET / HTTP/1.1\r\n\r\n").await;
    let reply = r.read_exact(8).await.expect("server protocol header");
    assert_eq!(reply, raw::PROTOCOL_HEADER);
    assert!(r.read_exact(1).await.is_none(), "socket should be closed");
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let b = broker().await;
    let vhost = unique("novhost");
    let v = vhost.clone();
    let err = try_connect_with(&b, move |u| u.vhost = v)
        .await
        .expect_err("unknown vhost");
    assert_connection_closed(&err, 530, &format!("NOT_ALLOWED - vhost {vhost} not found"));
}

#[tokio::test]
async fn bad_password_is_access_refused() {
    let b = broker().await;
    let err = try_connect_with(&b, |u| u.authority.userinfo.password = "wrong".into())
        .await
        .expect_err("bad password");
    assert_connection_closed(
        &err,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
    );
}

#[tokio::test]
async fn unknown_user_is_access_refused() {
    let b = broker().await;
    let user = unique("nobody");
    let err = try_connect_with(&b, move |u| u.authority.userinfo.username = user)
        .await
        .expect_err("unknown user");
    assert_connection_closed(
        &err,
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
    );
}

#[tokio::test]
async fn client_close_then_connection_unusable() {
    let (conn, ch) = setup().await;
    within(conn.close(200, "bye".into())).await.expect("close");
    assert!(!conn.status().connected());
    assert!(conn.create_channel().await.is_err());
    assert!(ch
        .exchange_declare(
            "x".into(),
            ExchangeKind::Direct,
            Default::default(),
            FieldTable::default()
        )
        .await
        .is_err());
}

#[tokio::test]
async fn channel_flow_active_true_ok() {
    let (conn, ch) = setup().await;
    let active = within(ch.channel_flow(ChannelFlowOptions { active: true }))
        .await
        .expect("flow");
    assert!(active);
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn channel_flow_active_false_not_implemented() {
    let (conn, ch) = setup().await;
    let res = within(ch.channel_flow(ChannelFlowOptions { active: false })).await;
    expect_connection_close(&conn, res, 540, "NOT_IMPLEMENTED - active=false").await;
}

#[tokio::test]
async fn channel_error_leaves_other_channels_alone() {
    let (conn, ch) = setup().await;
    let other = open(&conn).await;
    let q = unique("missing");
    let res = within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
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
    assert!(other.status().connected());
    declare_exchange(&other, &unique("still"), ExchangeKind::Fanout).await;
}

#[tokio::test]
async fn connection_error_closes_every_channel() {
    let (conn, ch) = setup().await;
    let other = open(&conn).await;
    let res = within(ch.exchange_declare(
        unique("bogus").as_str().into(),
        ExchangeKind::Custom("bogus".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        503,
        "COMMAND_INVALID - unknown exchange type 'bogus'",
    )
    .await;
    wait_until(|| !other.status().connected()).await;
}

#[tokio::test]
async fn empty_vhost_is_530() {
    // lapin parses "amqp://host:port/" as vhost "" (common::amqp_uri maps it to "/")
    let b = broker().await;
    let err = try_connect_with(&b, |u| u.vhost = String::new())
        .await
        .expect_err("vhost ''");
    assert_connection_closed(&err, 530, "NOT_ALLOWED - vhost  not found");
}
