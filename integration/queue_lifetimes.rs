//! How long a queue lives: exclusive queues (locked to their connection, gone with it) and
//! auto-delete queues (gone with their last consumer, kept while they never had one).

use crate::common::queue_delete as delete;
use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{options::*, types::FieldTable};

fn locked(q: &str) -> String {
    format!("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.")
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
