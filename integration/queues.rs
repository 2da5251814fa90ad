//! queue.declare / bind / unbind / purge / delete and queue lifetimes.

use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

async fn delete(ch: &Channel, name: &str) {
    within(ch.queue_delete(name.into(), Default::default()))
        .await
        .expect("queue.delete");
}

fn locked(q: &str) -> String {
    format!("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.")
}

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
async fn exclusive_queue_locked_for_other_connections() {
    let b = broker().await;
    let owner = connect(&b).await;
    let och = open(&owner).await;
    let q = unique("q-locked");
    declare_queue_with(&och, &q, exclusive(), FieldTable::default()).await;
    let other = connect(&b).await;
    let text = locked(&q);

    let ch = open(&other).await;
    let res = declare(&ch, &q, exclusive(), FieldTable::default()).await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = declare(&ch, &q, passive(), FieldTable::default()).await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = within(ch.basic_get(q.as_str().into(), Default::default())).await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = within(ch.queue_purge(q.as_str().into(), Default::default())).await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = within(ch.queue_delete(q.as_str().into(), Default::default())).await;
    expect_channel_close(&other, &ch, res, 405, &text).await;
    let ch = open(&other).await;
    let res = within(ch.queue_bind(
        q.as_str().into(),
        "amq.fanout".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(&other, &ch, res, 405, &text).await;

    // publishing to it from another connection is allowed
    let ch = open(&other).await;
    publish(&ch, "", &q, b"hello").await;
    wait_for_count(&och, &q, 1).await;
}

#[tokio::test]
async fn exclusive_mismatch_same_connection_is_405() {
    let (conn, ch) = setup().await;
    let q = unique("q-nonex");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    let res = declare(&ch, &q, exclusive(), FieldTable::default()).await;
    expect_channel_close(&conn, &ch, res, 405, &locked(&q)).await;
    let ch = open(&conn).await;
    delete(&ch, &q).await;
}

#[tokio::test]
async fn exclusive_queue_gone_after_connection_close() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = unique("q-excl-life");
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    let watcher = connect(&b).await;
    let wch = open(&watcher).await;
    // visible (but locked) from the other connection while the owner lives
    let res = declare(&wch, &q, passive(), FieldTable::default()).await;
    expect_channel_close(&watcher, &wch, res, 405, &locked(&q)).await;
    within(conn.close(200, "bye".into())).await.unwrap();
    assert!(
        !queue_exists(&watcher, &q).await,
        "exclusive queue must be deleted with its connection"
    );
}

#[tokio::test]
async fn auto_delete_queue_gone_after_last_consumer_cancel() {
    let (conn, ch) = setup().await;
    let q = unique("q-autodel");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    let c1 = consume_tagged(&ch, &q, "c1", manual_ack()).await;
    let c2 = consume_tagged(&ch, &q, "c2", manual_ack()).await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 2));
    within(ch.basic_cancel("c1".into(), Default::default()))
        .await
        .unwrap();
    assert!(queue_exists(&conn, &q).await, "one consumer left");
    within(ch.basic_cancel("c2".into(), Default::default()))
        .await
        .unwrap();
    drop((c1, c2));
    assert!(
        !queue_exists(&conn, &q).await,
        "auto-delete queue must go with its last consumer"
    );
}

#[tokio::test]
async fn auto_delete_queue_without_consumers_persists() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = unique("q-autodel-never");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    publish(&ch, "", &q, b"x").await;
    wait_for_count(&ch, &q, 1).await;
    assert!(
        get(&ch, &q, true).await.is_some(),
        "basic.get does not count as a consumer"
    );
    within(conn.close(200, "bye".into())).await.unwrap();
    let conn2 = connect(&b).await;
    assert!(queue_exists(&conn2, &q).await);
    let ch2 = open(&conn2).await;
    delete(&ch2, &q).await;
}

#[tokio::test]
async fn auto_delete_queue_gone_when_consumer_channel_closes() {
    let (conn, ch) = setup().await;
    let q = unique("q-autodel-ch");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    let cch = open(&conn).await;
    let _c = consume(&cch, &q, no_ack()).await;
    within(cch.close(200, "bye".into())).await.unwrap();
    assert!(!queue_exists(&conn, &q).await);
}

#[tokio::test]
async fn bind_and_unbind() {
    let (_conn, ch) = setup().await;
    let x = unique("x-bind");
    let q = unique("q-bind");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    bind(&ch, &q, &x, "rk").await;
    publish(&ch, &x, "rk", b"bound").await;
    wait_for_count(&ch, &q, 1).await;
    within(ch.queue_unbind(
        q.as_str().into(),
        x.as_str().into(),
        "rk".into(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, &x, "rk", b"unbound").await;
    publish(&ch, "", &q, b"direct").await;
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, vec!["bound", "direct"]);
    within(ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn bind_errors_and_unbind_missing_ok() {
    let (conn, ch) = setup().await;
    let q = unique("q-binderr");
    let missing_q = unique("q-missing");
    let missing_x = unique("x-missing");
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    // unbind of anything missing is fine
    within(ch.queue_unbind(
        missing_q.as_str().into(),
        "amq.direct".into(),
        "k".into(),
        FieldTable::default(),
    ))
    .await
    .expect("missing queue");
    within(ch.queue_unbind(
        q.as_str().into(),
        missing_x.as_str().into(),
        "k".into(),
        FieldTable::default(),
    ))
    .await
    .expect("missing exchange");
    within(ch.queue_unbind(
        q.as_str().into(),
        "amq.direct".into(),
        "never-bound".into(),
        FieldTable::default(),
    ))
    .await
    .expect("missing binding");

    let res = within(ch.queue_bind(
        missing_q.as_str().into(),
        "amq.direct".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no queue '{missing_q}' in vhost '/'"),
    )
    .await;
    let ch = open(&conn).await;
    let res = within(ch.queue_bind(
        q.as_str().into(),
        missing_x.as_str().into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no exchange '{missing_x}' in vhost '/'"),
    )
    .await;
    let ch = open(&conn).await;
    let res = within(ch.queue_bind(
        q.as_str().into(),
        "".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    .await;
    let ch = open(&conn).await;
    let res = within(ch.queue_unbind(
        q.as_str().into(),
        "".into(),
        q.as_str().into(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    .await;
}

#[tokio::test]
async fn purge_returns_ready_count() {
    let (conn, ch) = setup().await;
    let q = unique("q-purge");
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    publish_all(&ch, &q, &["1", "2", "3", "4"]).await;
    let held = get_one(&ch, &q, false).await; // one unacked
    let purged = within(ch.queue_purge(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(purged, 3, "only ready messages are purged");
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    within(ch.basic_reject(
        held.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    ))
    .await
    .unwrap();
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["1"]);

    let missing = unique("q-purge-missing");
    let res = within(ch.queue_purge(missing.as_str().into(), Default::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn delete_if_empty_and_if_unused() {
    let (conn, ch) = setup().await;
    let q = unique("q-del");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    publish_all(&ch, &q, &["a"]).await;
    let res = within(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        },
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"),
    )
    .await;

    let ch = open(&conn).await;
    let cch = open(&conn).await;
    let _c = consume(&cch, &q, manual_ack()).await;
    let res = within(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"),
    )
    .await;
    within(cch.close(200, "bye".into())).await.unwrap();

    let ch = open(&conn).await;
    // the consumer's unacked message went back when its channel closed
    wait_for_count(&ch, &q, 1).await;
    let n = within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 1, "delete-ok message_count");
    assert!(!queue_exists(&conn, &q).await);
}

#[tokio::test]
async fn delete_missing_queue_ok() {
    let (conn, ch) = setup().await;
    let n = within(ch.queue_delete(unique("q-never").as_str().into(), Default::default()))
        .await
        .expect("delete missing");
    assert_eq!(n, 0);
    let n = within(ch.queue_delete(
        unique("q-never").as_str().into(),
        QueueDeleteOptions {
            if_empty: true,
            if_unused: true,
            nowait: false,
        },
    ))
    .await
    .expect("delete missing with flags");
    assert_eq!(n, 0);
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn message_and_consumer_counts() {
    let (conn, ch) = setup().await;
    let q = unique("q-counts");
    declare_queue_with(&ch, &q, exclusive(), FieldTable::default()).await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    let _held = get_one(&ch, &q, false).await;
    let r = declare(&ch, &q, exclusive(), FieldTable::default())
        .await
        .unwrap();
    assert_eq!(
        (r.message_count(), r.consumer_count()),
        (2, 0),
        "unacked excluded"
    );
    let cch = open(&conn).await;
    within(cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut c1 = consume(&cch, &q, manual_ack()).await;
    let _d = c1.next().await;
    let _c2 = consume(&cch, &q, manual_ack()).await;
    let _c3 = consume(&open(&conn).await, &q, no_ack()).await;
    // c3 (no-ack, unlimited) drains the remaining ready message
    wait_for_count(&ch, &q, 0).await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 3));
}

#[tokio::test]
async fn empty_name_means_last_declared_queue() {
    let (conn, ch) = setup().await;
    let res = within(ch.basic_get("".into(), Default::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        "NOT_FOUND - no previously declared queue",
    )
    .await;

    let ch = open(&conn).await;
    let q = declare_queue_with(&ch, "", exclusive(), FieldTable::default()).await;
    publish_all(&ch, &q, &["p1", "p2"]).await;
    let m = within(ch.basic_get("".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("message");
    assert_eq!(body(&m.delivery), "p1");
    assert_eq!(m.delivery.routing_key.as_str(), q);
    let purged = within(ch.queue_purge("".into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    // bind with empty queue and empty key uses the queue name as key
    within(ch.queue_bind(
        "".into(),
        "amq.direct".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, "amq.direct", &q, b"via-default-key").await;
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["via-default-key"]);
    let n = within(ch.queue_delete("".into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(!queue_exists(&conn, &q).await);
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
