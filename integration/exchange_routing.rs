//! Where a message goes beyond its exchange's type: exchange-to-exchange bindings (bind, unbind,
//! several paths), alternate exchanges for unroutable messages, internal exchanges that only other
//! exchanges may publish to, and publishing to the trace exchange or a missing one.

use crate::common::try_declare_exchange as declare_x;
use crate::common::*;
use lapin::{options::*, types::FieldTable, BasicProperties, ExchangeKind};

#[tokio::test]
async fn exchange_to_exchange_bind_unbind() {
    let (_conn, ch) = setup().await;
    let src = unique("e2e-src");
    let dst = unique("e2e-dst");
    let q = unique("e2e-q");
    declare_exchange(&ch, &src, ExchangeKind::Topic).await;
    declare_exchange(&ch, &dst, ExchangeKind::Direct).await;
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    bind(&ch, &q, &dst, "a.b").await;
    within(ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, &src, "a.b", b"via-e2e").await;
    publish(&ch, &src, "a.c", b"dropped-by-dst").await;
    publish(&ch, &src, "b.b", b"dropped-by-src").await;
    wait_for_count(&ch, &q, 1).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "via-e2e");
    assert_eq!(
        m.delivery.exchange.as_str(),
        src,
        "delivery names the exchange published to"
    );
    assert_eq!(m.delivery.routing_key.as_str(), "a.b");

    within(ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "a.*".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, &src, "a.b", b"after-unbind").await;
    publish(&ch, &dst, "a.b", b"direct").await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["direct"]);
    for x in [&src, &dst] {
        within(ch.exchange_delete(x.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn exchange_bind_missing_is_404_unbind_missing_ok() {
    let (conn, ch) = setup().await;
    let x = unique("e2e-real");
    let missing = unique("e2e-missing");
    declare_exchange(&ch, &x, ExchangeKind::Fanout).await;
    within(ch.exchange_unbind(
        x.as_str().into(),
        missing.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .expect("unbind of a missing binding is ok");
    let res = within(ch.exchange_bind(
        x.as_str().into(),
        missing.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
    )
    .await;
    let ch = open(&conn).await;
    let res = within(ch.exchange_bind(
        missing.as_str().into(),
        x.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no exchange '{missing}' in vhost '/'"),
    )
    .await;
    let ch = open(&conn).await;
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn e2e_multiple_paths_deliver_once() {
    let (_conn, ch) = setup().await;
    let a = unique("path-a");
    let b = unique("path-b");
    let c = unique("path-c");
    let q = unique("path-q");
    for x in [&a, &b, &c] {
        declare_exchange(&ch, x, ExchangeKind::Fanout).await;
    }
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    // a -> b -> q, a -> c -> q, a -> q, and a cycle b -> a
    for (dst, src) in [(&b, &a), (&c, &a), (&a, &b)] {
        within(ch.exchange_bind(
            dst.as_str().into(),
            src.as_str().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();
    }
    bind(&ch, &q, &b, "").await;
    bind(&ch, &q, &c, "").await;
    bind(&ch, &q, &a, "").await;
    publish(&ch, &a, "", b"once").await;
    publish(&ch, &b, "", b"twice?").await;
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, vec!["once", "twice?"]);
    for x in [&a, &b, &c] {
        within(ch.exchange_delete(x.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn alternate_exchange_routes_unroutable() {
    let (_conn, ch) = setup().await;
    let ae = unique("ae");
    let x = unique("x-with-ae");
    let q_main = unique("q-main");
    let q_ae = unique("q-ae");
    declare_exchange(&ch, &ae, ExchangeKind::Fanout).await;
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("alternate-exchange", lstr(&ae))]),
    )
    .await
    .unwrap();
    for q in [&q_main, &q_ae] {
        declare_queue_with(
            &ch,
            q,
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    }
    bind(&ch, &q_main, &x, "main").await;
    bind(&ch, &q_ae, &ae, "").await;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    for (rk, body) in [("main", "m1"), ("other", "a1")] {
        within(ch.basic_publish(
            x.as_str().into(),
            rk.into(),
            mandatory,
            body.as_bytes(),
            BasicProperties::default(),
        ))
        .await
        .unwrap();
    }
    wait_for_count(&ch, &q_ae, 1).await;
    wait_for_count(&ch, &q_main, 1).await;
    assert_eq!(drain(&ch, &q_main).await, vec!["m1"]);
    let m = get_one(&ch, &q_ae, true).await;
    assert_eq!(body(&m.delivery), "a1");
    assert_eq!(m.delivery.exchange.as_str(), x);
    assert_eq!(m.delivery.routing_key.as_str(), "other");
    // routed via AE => not returned even though mandatory
    assert!(
        ch.wait_for_confirms().await.unwrap().is_empty(),
        "AE-routed message must not be returned"
    );
    for e in [&x, &ae] {
        within(ch.exchange_delete(e.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn missing_alternate_exchange_means_return() {
    let (_conn, ch) = setup().await;
    let x = unique("x-ae-missing");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("alternate-exchange", lstr(&unique("no-ae")))]),
    )
    .await
    .unwrap();
    within(ch.basic_publish(
        x.as_str().into(),
        "nowhere".into(),
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        b"lost",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    let r = returned(&ch, 1).await;
    assert_eq!(r[0].reply_code, 312);
    assert_eq!(r[0].reply_text.as_str(), "NO_ROUTE");
    assert_eq!(r[0].delivery.exchange.as_str(), x);
    assert_eq!(r[0].delivery.routing_key.as_str(), "nowhere");
    assert_eq!(r[0].delivery.data, b"lost");
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn publish_to_internal_exchange_is_403() {
    let (conn, ch) = setup().await;
    let x = unique("x-internal");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let w = watch(&ch).await;
    publish(&ch, &x, "", b"nope").await;
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        403,
        &format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'"),
    );
    assert_conn_usable(&conn).await;
    let ch = open(&conn).await;
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn internal_exchange_routes_via_e2e() {
    let (_conn, ch) = setup().await;
    let front = unique("x-front");
    let internal = unique("x-int");
    let q = unique("q-int");
    declare_exchange(&ch, &front, ExchangeKind::Fanout).await;
    declare_x(
        &ch,
        &internal,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    bind(&ch, &q, &internal, "").await;
    within(ch.exchange_bind(
        internal.as_str().into(),
        front.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, &front, "rk", b"through").await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["through"]);
    for x in [&front, &internal] {
        within(ch.exchange_delete(x.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn publish_to_trace_exchange_is_403() {
    let (conn, ch) = setup().await;
    let w = watch(&ch).await;
    publish(&ch, "amq.rabbitmq.trace", "x", b"nope").await;
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        403,
        "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'",
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404() {
    let (conn, ch) = setup().await;
    let x = unique("x-absent");
    let w = watch(&ch).await;
    publish(&ch, &x, "k", b"nope").await;
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        404,
        &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
    );
    assert_conn_usable(&conn).await;
}
