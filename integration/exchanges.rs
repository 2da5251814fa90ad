//! exchange.declare / delete / bind / unbind, alternate and internal exchanges, auto-delete.

use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, ExchangeKind,
};

fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare_x(
    ch: &lapin::Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) -> lapin::Result<()> {
    within(ch.exchange_declare(name.into(), kind, opts, args)).await
}

#[tokio::test]
async fn declare_each_type_then_passive() {
    let (conn, ch) = setup().await;
    for kind in [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ] {
        let x = unique("x-type");
        declare_x(
            &ch,
            &x,
            kind.clone(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("declare {kind:?}: {e:?}"));
        // same declaration again is fine
        declare_x(
            &ch,
            &x,
            kind.clone(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("redeclare");
        declare_x(&ch, &x, kind, passive(), FieldTable::default())
            .await
            .expect("passive");
        within(ch.exchange_delete(x.as_str().into(), Default::default()))
            .await
            .expect("delete");
        assert!(!exchange_exists(&conn, &x).await);
    }
}

#[tokio::test]
async fn predeclared_exchanges_exist() {
    let (conn, _ch) = setup().await;
    for x in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
        "amq.rabbitmq.trace",
    ] {
        assert!(exchange_exists(&conn, x).await, "{x} should exist");
    }
}

#[tokio::test]
async fn passive_missing_is_404() {
    let (conn, ch) = setup().await;
    let x = unique("nox");
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn passive_ignores_type_flags_and_unknown_type() {
    let (_conn, ch) = setup().await;
    let x = unique("x-pass");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let opts = ExchangeDeclareOptions {
        passive: true,
        durable: true,
        auto_delete: true,
        internal: true,
        nowait: false,
    };
    declare_x(&ch, &x, ExchangeKind::Fanout, opts, FieldTable::default())
        .await
        .expect("passive, other type");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Custom("bogus".into()),
        passive(),
        FieldTable::default(),
    )
    .await
    .expect("passive, unknown type");
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn inequivalent_type_is_406() {
    let (conn, ch) = setup().await;
    let x = unique("x-eq");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'"),
    )
    .await;
}

#[tokio::test]
async fn inequivalent_flags_are_406() {
    let (conn, _ch) = setup().await;
    let cases: Vec<(&str, ExchangeDeclareOptions, &str, &str)> = vec![
        (
            "durable",
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            "true",
            "false",
        ),
        (
            "auto_delete",
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            "true",
            "false",
        ),
        (
            "internal",
            ExchangeDeclareOptions {
                internal: true,
                ..Default::default()
            },
            "true",
            "false",
        ),
    ];
    for (field, opts, received, current) in cases {
        let ch = open(&conn).await;
        let x = unique("x-flag");
        declare_exchange(&ch, &x, ExchangeKind::Topic).await;
        let res = declare_x(&ch, &x, ExchangeKind::Topic, opts, FieldTable::default()).await;
        expect_channel_close(
            &conn,
            &ch,
            res,
            406,
            &format!("PRECONDITION_FAILED - inequivalent arg '{field}' for exchange '{x}' in vhost '/': received '{received}' but current is '{current}'"),
        )
        .await;
        let ch2 = open(&conn).await;
        within(ch2.exchange_delete(x.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn alternate_exchange_equivalence_and_other_args_ignored() {
    let (conn, ch) = setup().await;
    let x = unique("x-args");
    // unknown args are not part of equivalence
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("foo", AMQPValue::LongInt(1))]),
    )
    .await
    .unwrap();
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("foo", lstr("bar"))]),
    )
    .await
    .expect("unknown arg ignored");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("no args");
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("alternate-exchange", lstr("ae"))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': received the value 'ae' of type 'longstr' but current is none"),
    )
    .await;
    let ch = open(&conn).await;
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn alternate_exchange_non_string_is_406() {
    let (conn, ch) = setup().await;
    let x = unique("x-aebad");
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        table(vec![("alternate-exchange", AMQPValue::LongInt(5))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in exchange '{x}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn unknown_type_is_connection_503_even_if_exists() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let res = declare_x(
        &ch,
        &unique("x-bogus"),
        ExchangeKind::Custom("bogus".into()),
        Default::default(),
        FieldTable::default(),
    )
    .await;
    expect_connection_close(
        &conn,
        res,
        503,
        "COMMAND_INVALID - unknown exchange type 'bogus'",
    )
    .await;

    // checked before existence: an existing exchange name does not help
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let x = unique("x-exists");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Custom("x-nope".into()),
        Default::default(),
        FieldTable::default(),
    )
    .await;
    expect_connection_close(
        &conn,
        res,
        503,
        "COMMAND_INVALID - unknown exchange type 'x-nope'",
    )
    .await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn amq_prefix_is_reserved() {
    let (conn, ch) = setup().await;
    let x = format!("amq.{}", unique("foo"));
    let res = declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        &format!("ACCESS_REFUSED - exchange name '{x}' contains reserved prefix 'amq.*'"),
    )
    .await;
}

#[tokio::test]
async fn redeclare_amq_direct() {
    let (conn, ch) = setup().await;
    declare_x(
        &ch,
        "amq.direct",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("matching redeclare of amq.direct");
    let res = declare_x(
        &ch,
        "amq.direct",
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '/': received 'false' but current is 'true'",
    )
    .await;
}

#[tokio::test]
async fn default_exchange_operations_refused() {
    let (conn, _) = setup().await;
    let text = "ACCESS_REFUSED - operation not permitted on the default exchange";
    let ch = open(&conn).await;
    let res = declare_x(
        &ch,
        "",
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    expect_channel_close(&conn, &ch, res, 403, text).await;
    let ch = open(&conn).await;
    let res = declare_x(
        &ch,
        "",
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(&conn, &ch, res, 403, text).await;
    let ch = open(&conn).await;
    let res = within(ch.exchange_delete("".into(), Default::default())).await;
    expect_channel_close(&conn, &ch, res, 403, text).await;
}

#[tokio::test]
async fn delete_system_exchange_refused() {
    let (conn, ch) = setup().await;
    let res = within(ch.exchange_delete("amq.direct".into(), Default::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    )
    .await;
    assert!(exchange_exists(&conn, "amq.direct").await);
}

#[tokio::test]
async fn delete_missing_exchange_ok() {
    let (conn, ch) = setup().await;
    within(ch.exchange_delete(unique("gone").as_str().into(), Default::default()))
        .await
        .expect("delete missing");
    within(ch.exchange_delete(
        unique("gone").as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            nowait: false,
        },
    ))
    .await
    .expect("delete missing if-unused");
    assert!(ch.status().connected());
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn delete_if_unused() {
    let (conn, ch) = setup().await;
    let x = unique("x-used");
    let q = unique("q-used");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
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
    bind(&ch, &q, &x, "k").await;
    let res = within(ch.exchange_delete(
        x.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            nowait: false,
        },
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"),
    )
    .await;
    assert!(exchange_exists(&conn, &x).await);

    let ch = open(&conn).await;
    within(ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.exchange_delete(
        x.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            nowait: false,
        },
    ))
    .await
    .expect("unused now");
    assert!(!exchange_exists(&conn, &x).await);
}

#[tokio::test]
async fn delete_if_unused_ignores_destination_bindings() {
    let (conn, ch) = setup().await;
    let src = unique("x-src");
    let dst = unique("x-dst");
    declare_exchange(&ch, &src, ExchangeKind::Fanout).await;
    declare_exchange(&ch, &dst, ExchangeKind::Fanout).await;
    within(ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.exchange_delete(
        dst.as_str().into(),
        ExchangeDeleteOptions {
            if_unused: true,
            nowait: false,
        },
    ))
    .await
    .expect("destination-only exchange is unused");
    assert!(!exchange_exists(&conn, &dst).await);
    within(ch.exchange_delete(src.as_str().into(), Default::default()))
        .await
        .unwrap();
}

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

#[tokio::test]
async fn auto_delete_exchange_deleted_after_last_unbind() {
    let (conn, ch) = setup().await;
    let x = unique("x-ad");
    let q1 = unique("q-ad1");
    let q2 = unique("q-ad2");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for q in [&q1, &q2] {
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
        bind(&ch, q, &x, "k").await;
    }
    within(ch.queue_unbind(
        q1.as_str().into(),
        x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    assert!(exchange_exists(&conn, &x).await, "still has a binding");
    // deleting the last bound queue removes the last binding
    within(ch.queue_delete(q2.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert!(
        !exchange_exists(&conn, &x).await,
        "auto-delete exchange should be gone"
    );
}

#[tokio::test]
async fn auto_delete_exchange_never_bound_persists() {
    let (conn, ch) = setup().await;
    let x = unique("x-ad-never");
    declare_x(
        &ch,
        &x,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    within(conn.close(200, "bye".into())).await.unwrap();
    let conn = connect(&broker().await).await;
    assert!(exchange_exists(&conn, &x).await);
    // being an e2e destination does not count; deleting that binding leaves it alone
    let ch = open(&conn).await;
    let src = unique("x-ad-src");
    declare_exchange(&ch, &src, ExchangeKind::Fanout).await;
    within(ch.exchange_bind(
        x.as_str().into(),
        src.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.exchange_unbind(
        x.as_str().into(),
        src.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    assert!(exchange_exists(&conn, &x).await);
    for e in [&x, &src] {
        within(ch.exchange_delete(e.as_str().into(), Default::default()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn auto_delete_exchange_as_e2e_source() {
    let (conn, ch) = setup().await;
    let src = unique("x-ad-e2e");
    let dst = unique("x-dst-e2e");
    declare_x(
        &ch,
        &src,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_exchange(&ch, &dst, ExchangeKind::Fanout).await;
    within(ch.exchange_bind(
        dst.as_str().into(),
        src.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    within(ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    assert!(!exchange_exists(&conn, &src).await);
    assert!(exchange_exists(&conn, &dst).await);
    within(ch.exchange_delete(dst.as_str().into(), Default::default()))
        .await
        .unwrap();
}
