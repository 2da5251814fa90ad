//! queue.declare: server-named queues, the reserved amq. prefix, passive declares, equivalence of
//! flags and x-arguments on redeclare, and x-argument validation.

use crate::common::queue_delete as delete;
use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
};

#[tokio::test]
async fn server_named_queue() {
    let (_conn, ch) = setup().await;
    let q = declare(&ch, "", exclusive(), FieldTable::default())
        .await
        .unwrap();
    let name = q.name().as_str();
    let suffix = name
        .strip_prefix("amq.gen-")
        .unwrap_or_else(|| panic!("bad generated name {name}"));
    assert_eq!(suffix.len(), 22, "{name}");
    assert!(
        suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{name}"
    );
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    let q2 = declare(&ch, "", exclusive(), FieldTable::default())
        .await
        .unwrap();
    assert_ne!(q2.name(), q.name());
}

#[tokio::test]
async fn redeclare_server_named_queue_is_403() {
    let (conn, ch) = setup().await;
    let q = declare(&ch, "", exclusive(), FieldTable::default())
        .await
        .unwrap();
    let name = q.name().as_str().to_string();
    // passive is fine
    declare(&ch, &name, passive(), FieldTable::default())
        .await
        .expect("passive on amq.gen");
    let res = declare(&ch, &name, exclusive(), FieldTable::default()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        &format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"),
    )
    .await;
}

#[tokio::test]
async fn amq_prefix_is_reserved() {
    let (conn, ch) = setup().await;
    let name = format!("amq.{}", unique("foo"));
    let res = declare(
        &ch,
        &name,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        &format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"),
    )
    .await;
}

#[tokio::test]
async fn passive_missing_is_404() {
    let (conn, ch) = setup().await;
    let q = unique("nope");
    let res = declare(&ch, &q, passive(), FieldTable::default()).await;
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
async fn passive_ignores_flags_and_args() {
    let (_conn, ch) = setup().await;
    let q = unique("q-passive");
    declare_queue_with(
        &ch,
        &q,
        exclusive(),
        table(vec![("x-message-ttl", AMQPValue::LongInt(1000))]),
    )
    .await;
    let opts = QueueDeclareOptions {
        passive: true,
        durable: true,
        exclusive: false,
        auto_delete: true,
        nowait: false,
    };
    let r = declare(
        &ch,
        &q,
        opts,
        table(vec![("x-message-ttl", AMQPValue::LongInt(5))]),
    )
    .await
    .expect("passive");
    assert_eq!(r.name().as_str(), q);
}

#[tokio::test]
async fn durable_queue_and_durable_inequivalence() {
    let (conn, ch) = setup().await;
    let q = unique("q-durable");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    let res = declare(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"),
    )
    .await;
    let ch = open(&conn).await;
    delete(&ch, &q).await;
}

#[tokio::test]
async fn auto_delete_inequivalence() {
    let (conn, ch) = setup().await;
    let q = unique("q-ad-eq");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    let res = declare(
        &ch,
        &q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
    )
    .await;
    let ch = open(&conn).await;
    delete(&ch, &q).await;
}

#[tokio::test]
async fn exclusive_durable_is_stored_non_durable() {
    let (_conn, ch) = setup().await;
    let q = unique("q-ex-dur");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            durable: true,
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    declare(&ch, &q, exclusive(), FieldTable::default())
        .await
        .expect("durable=false matches the stored queue");
}

#[tokio::test]
async fn x_arg_equivalence_texts() {
    let (conn, _) = setup().await;
    let ttl = |v: i32| table(vec![("x-message-ttl", AMQPValue::LongInt(v))]);
    // received a value, current none
    let ch = open(&conn).await;
    let q = unique("q-ttl");
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    let res = declare(&ch, &q, exclusive(), ttl(1000)).await;
    expect_channel_close(&conn, &ch, res, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received the value '1000' of type 'signedint' but current is none")).await;
    // different values, same type class
    let ch = open(&conn).await;
    let q = unique("q-ttl");
    declare_queue_with(&ch, &q, exclusive(), ttl(1000)).await;
    let res = declare(
        &ch,
        &q,
        exclusive(),
        table(vec![("x-message-ttl", AMQPValue::LongLongInt(2000))]),
    )
    .await;
    expect_channel_close(&conn, &ch, res, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received '2000' but current is '1000'")).await;
    // received none, current a value
    let ch = open(&conn).await;
    let q = unique("q-ttl");
    declare_queue_with(&ch, &q, exclusive(), ttl(1000)).await;
    let res = declare(&ch, &q, exclusive(), FieldTable::default()).await;
    expect_channel_close(&conn, &ch, res, 406, &format!("PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received none but current is the value '1000' of type 'signedint'")).await;
}

#[tokio::test]
async fn equivalence_only_on_known_args() {
    let (_conn, ch) = setup().await;
    let q = unique("q-known");
    declare_queue_with(
        &ch,
        &q,
        exclusive(),
        table(vec![
            ("foo", lstr("a")),
            ("x-max-length", AMQPValue::LongInt(10)),
        ]),
    )
    .await;
    // unknown arg differs or is missing: fine; integer type class compare: short == long
    declare(
        &ch,
        &q,
        exclusive(),
        table(vec![
            ("foo", AMQPValue::LongInt(7)),
            ("x-max-length", AMQPValue::ShortInt(10)),
        ]),
    )
    .await
    .expect("unknown args ignored, ints compared by class");
    declare(
        &ch,
        &q,
        exclusive(),
        table(vec![("x-max-length", AMQPValue::LongLongInt(10))]),
    )
    .await
    .expect("long long");
    // x-queue-type classic equals absent
    let q2 = unique("q-classic");
    declare_queue_with(&ch, &q2, exclusive(), FieldTable::default()).await;
    declare(
        &ch,
        &q2,
        exclusive(),
        table(vec![("x-queue-type", lstr("classic"))]),
    )
    .await
    .expect("classic == absent");
}

#[tokio::test]
async fn invalid_x_args_rejected() {
    let (conn, _) = setup().await;
    // (argument, value, what RabbitMQ says about it)
    let cases: Vec<(&str, AMQPValue, &str)> = vec![
        (
            "x-message-ttl",
            lstr("soon"),
            "\"expected integer, got longstr\"",
        ),
        (
            "x-message-ttl",
            AMQPValue::LongInt(-1),
            "{value_negative,-1}",
        ),
        ("x-expires", AMQPValue::LongInt(0), "{value_zero,0}"),
        (
            "x-max-priority",
            AMQPValue::LongInt(256),
            "{max_value_exceeded,256}",
        ),
        (
            "x-queue-type",
            lstr("bogus"),
            "\"unsupported queue type 'bogus'\"",
        ),
        (
            "x-queue-mode",
            lstr("bogus"),
            "\"unsupported queue mode 'bogus'\"",
        ),
    ];
    for (arg, value, detail) in cases {
        let ch = open(&conn).await;
        let q = unique("q-badarg");
        let res = declare(&ch, &q, exclusive(), table(vec![(arg, value)])).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {detail}"
        );
        expect_channel_close(&conn, &ch, res, 406, &text).await;
    }
}

#[tokio::test]
async fn quorum_server_named_is_406() {
    let (conn, ch) = setup().await;
    let res = declare(
        &ch,
        "",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(vec![("x-queue-type", lstr("quorum"))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue",
    )
    .await;
}
