//! exchange.declare: every type (and unknown ones), passive declares, equivalence of type, flags and
//! arguments, the reserved amq. prefix, and the default exchange that cannot be declared or deleted.

use crate::common::try_declare_exchange as declare_x;
use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    ExchangeKind,
};

/// exchange.declare options: passive (the `passive()` from common is the queue.declare one).
fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
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
