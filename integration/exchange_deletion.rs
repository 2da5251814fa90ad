//! How exchanges go away: exchange.delete (missing exchanges, system exchanges, if-unused) and
//! auto-delete exchanges, which go with their last binding as a source.

use crate::common::try_declare_exchange as declare_x;
use crate::common::*;
use lapin::{options::*, types::FieldTable, ExchangeKind};

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
