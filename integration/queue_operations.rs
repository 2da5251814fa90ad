//! Operations on an existing queue: queue.bind / unbind, purge, delete (if-empty, if-unused, missing),
//! message and consumer counts, and the empty name that stands for the channel's last declared queue.

use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{options::*, types::FieldTable, ExchangeKind};

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
