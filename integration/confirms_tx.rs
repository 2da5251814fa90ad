//! Publisher confirms and transactions.

use crate::common::excl_queue as excl;
use crate::common::*;
use lapin::{options::*, types::AMQPValue, BasicProperties, Confirmation};

#[tokio::test]
async fn confirms_ack_routable_publishes() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "conf").await;
    confirm_select(&ch).await;
    assert!(ch.status().confirm());
    let mut pending = Vec::new();
    for i in 0..20 {
        pending.push(
            within(ch.basic_publish(
                "".into(),
                q.as_str().into(),
                Default::default(),
                format!("{i}").as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap(),
        );
    }
    for pc in pending {
        assert_eq!(within(pc).await.unwrap(), Confirmation::Ack(None));
    }
    assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
    assert_eq!(queue_counts(&ch, &q).await.0, 20);
}

#[tokio::test]
async fn confirm_select_twice_ok() {
    let (_conn, ch) = setup().await;
    confirm_select(&ch).await;
    confirm_select(&ch).await;
    let q = excl(&ch, "conf2").await;
    assert!(publish_confirm(&ch, "", &q, false, b"x").await.is_ack());
}

#[tokio::test]
async fn unroutable_is_acked() {
    let (_conn, ch) = setup().await;
    confirm_select(&ch).await;
    let c = publish_confirm(&ch, "amq.direct", &unique("nobody"), false, b"void").await;
    assert_eq!(c, Confirmation::Ack(None));
}

#[tokio::test]
async fn mandatory_unroutable_returns_then_acks() {
    let (_conn, ch) = setup().await;
    confirm_select(&ch).await;
    let rk = unique("nobody");
    let c = publish_confirm(&ch, "amq.direct", &rk, true, b"bounce").await;
    // lapin attaches a basic.return to the ack that follows it: Ack(Some(..)) proves the order
    // return -> ack (an ack first would yield Ack(None)).
    assert!(
        c.is_ack(),
        "unroutable mandatory message must be acked, got {c:?}"
    );
    let ret = c.take_message().expect("basic.return must precede the ack");
    assert_eq!((ret.reply_code, ret.reply_text.as_str()), (312, "NO_ROUTE"));
    assert_eq!(ret.delivery.exchange.as_str(), "amq.direct");
    assert_eq!(ret.delivery.routing_key.as_str(), rk);
    assert_eq!(ret.delivery.data, b"bounce");
    // the next, routable, publish carries no return
    let q = excl(&ch, "after-return").await;
    assert_eq!(
        publish_confirm(&ch, "", &q, true, b"ok").await,
        Confirmation::Ack(None)
    );
}

#[tokio::test]
async fn overflow_reject_publish_is_nacked() {
    let (_conn, ch) = setup().await;
    let q = declare_queue_with(
        &ch,
        &unique("full"),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        table(vec![
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", lstr("reject-publish")),
        ]),
    )
    .await;
    confirm_select(&ch).await;
    assert!(publish_confirm(&ch, "", &q, false, b"fits").await.is_ack());
    assert!(publish_confirm(&ch, "", &q, false, b"overflows")
        .await
        .is_nack());
    assert_eq!(drain(&ch, &q).await, vec!["fits"]);
}

#[tokio::test]
async fn publish_to_missing_exchange_in_confirm_mode_closes_channel() {
    let (conn, ch) = setup().await;
    confirm_select(&ch).await;
    let x = unique("x-missing");
    let pc = within(ch.basic_publish(
        x.as_str().into(),
        "k".into(),
        Default::default(),
        b"x",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    let err = within(pc)
        .await
        .expect_err("the pending confirm fails with the channel close");
    assert_channel_closed(
        &err,
        404,
        &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"),
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn tx_commit_publishes() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "tx-pub").await;
    let obs = open(&conn).await;
    within(ch.tx_select()).await.unwrap();
    for b in ["t1", "t2", "t3"] {
        publish(&ch, "", &q, b.as_bytes()).await;
    }
    assert_eq!(
        queue_counts(&obs, &q).await.0,
        0,
        "uncommitted publishes are invisible"
    );
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(
        queue_counts(&obs, &q).await.0,
        3,
        "visible right after commit-ok"
    );
    assert_eq!(drain(&obs, &q).await, vec!["t1", "t2", "t3"]);
    // the channel stays transactional: the next batch needs its own commit
    publish(&ch, "", &q, b"t4").await;
    assert_eq!(queue_counts(&obs, &q).await.0, 0);
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(queue_counts(&obs, &q).await.0, 1);
}

#[tokio::test]
async fn tx_rollback_discards_publishes() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "tx-rb").await;
    let obs = open(&conn).await;
    within(ch.tx_select()).await.unwrap();
    publish(&ch, "", &q, b"gone").await;
    within(ch.tx_rollback()).await.unwrap();
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(queue_counts(&obs, &q).await.0, 0);
    publish(&ch, "", &q, b"kept").await;
    within(ch.tx_commit()).await.unwrap();
    assert_eq!(drain(&obs, &q).await, vec!["kept"]);
}

#[tokio::test]
async fn tx_acks_applied_at_commit() {
    let (conn, setup_ch) = setup().await;
    let q = excl(&setup_ch, "tx-ack").await;
    publish_all(&setup_ch, &q, &["a1", "a2"]).await;
    let ch = open(&conn).await;
    within(ch.tx_select()).await.unwrap();
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    within(ch.basic_ack(m1.delivery.delivery_tag, Default::default()))
        .await
        .unwrap();
    within(ch.basic_reject(
        m2.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    ))
    .await
    .unwrap();
    // nothing applied yet: the reject has not requeued m2
    assert_eq!(queue_counts(&setup_ch, &q).await.0, 0);
    within(ch.tx_commit()).await.unwrap();
    wait_for_count(&setup_ch, &q, 1).await;
    within(ch.close(200, "bye".into())).await.unwrap();
    // m1 acked for good, m2 requeued once
    let m = get_one(&setup_ch, &q, true).await;
    assert_eq!(body(&m.delivery), "a2");
    assert!(m.delivery.redelivered);
    assert!(get(&setup_ch, &q, true).await.is_none());
}

#[tokio::test]
async fn tx_rollback_leaves_acked_messages_unacked() {
    let (conn, setup_ch) = setup().await;
    let q = excl(&setup_ch, "tx-ack-rb").await;
    publish_all(&setup_ch, &q, &["r1", "r2"]).await;
    let ch = open(&conn).await;
    within(ch.tx_select()).await.unwrap();
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    within(ch.basic_ack(m1.delivery.delivery_tag, Default::default()))
        .await
        .unwrap();
    within(ch.basic_ack(m2.delivery.delivery_tag, Default::default()))
        .await
        .unwrap();
    within(ch.tx_rollback()).await.unwrap();
    assert_eq!(
        queue_counts(&setup_ch, &q).await.0,
        0,
        "rolled-back acks do not requeue"
    );
    // m1 is still unacked on the channel and can be acked again
    within(ch.basic_ack(m1.delivery.delivery_tag, Default::default()))
        .await
        .unwrap();
    within(ch.tx_commit()).await.unwrap();
    assert!(ch.status().connected());
    within(ch.close(200, "bye".into())).await.unwrap();
    wait_for_count(&setup_ch, &q, 1).await;
    let m = get_one(&setup_ch, &q, true).await;
    assert_eq!(body(&m.delivery), "r2");
    assert!(m.delivery.redelivered);
}

#[tokio::test]
async fn tx_mandatory_return_sent_at_commit() {
    let (_conn, ch) = setup().await;
    within(ch.tx_select()).await.unwrap();
    let rk = unique("tx-nobody");
    within(ch.basic_publish(
        "amq.direct".into(),
        rk.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            immediate: false,
        },
        b"late",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(QUIET).await;
    assert!(
        ch.wait_for_confirms().await.unwrap().is_empty(),
        "no basic.return before commit"
    );
    within(ch.tx_commit()).await.unwrap();
    let r = returned(&ch, 1).await;
    assert_eq!(
        (r[0].reply_code, r[0].reply_text.as_str()),
        (312, "NO_ROUTE")
    );
    assert_eq!(r[0].delivery.routing_key.as_str(), rk);
    assert_eq!(r[0].delivery.data, b"late");
}

#[tokio::test]
async fn tx_select_twice_ok() {
    let (_conn, ch) = setup().await;
    within(ch.tx_select()).await.unwrap();
    within(ch.tx_select()).await.expect("second tx.select");
    within(ch.tx_commit())
        .await
        .expect("commit of an empty transaction");
    within(ch.tx_rollback())
        .await
        .expect("rollback of an empty transaction");
}

#[tokio::test]
async fn commit_without_select_is_406() {
    let (conn, ch) = setup().await;
    let res = within(ch.tx_commit()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    )
    .await;
}

#[tokio::test]
async fn rollback_without_select_is_406() {
    let (conn, ch) = setup().await;
    let res = within(ch.tx_rollback()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    )
    .await;
}

#[tokio::test]
async fn tx_to_confirm_is_406() {
    let (conn, ch) = setup().await;
    within(ch.tx_select()).await.unwrap();
    let res = within(ch.confirm_select(ConfirmSelectOptions::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )
    .await;
}

#[tokio::test]
async fn confirm_to_tx_is_406() {
    let (conn, ch) = setup().await;
    confirm_select(&ch).await;
    let res = within(ch.tx_select()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )
    .await;
}

/// A commit that fails part-way (the exchange of a buffered publish went before the commit; Warren routes
/// transactional publishes at commit) settles nothing after the failure point: the acks and rejects that
/// follow it go back to the channel and are requeued when the error closes it. Warren-only: RabbitMQ routes
/// at publish time, so the same sequence commits there.
#[tokio::test]
async fn a_commit_failing_part_way_requeues_what_it_did_not_reach() {
    if std::env::var("AMQP_URL").is_ok() {
        return;
    }
    let (conn, setup_ch) = setup().await;
    let q = excl(&setup_ch, "tx-partial").await;
    let x = unique("tx-gone");
    declare_exchange(&setup_ch, &x, lapin::ExchangeKind::Fanout).await;
    publish_all(&setup_ch, &q, &["b1", "b2"]).await;
    let ch = open(&conn).await;
    within(ch.tx_select()).await.unwrap();
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    within(ch.basic_ack(m1.delivery.delivery_tag, Default::default()))
        .await
        .unwrap();
    publish(&ch, &x, "", b"lost with its exchange").await;
    within(ch.basic_reject(
        m2.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    ))
    .await
    .unwrap();
    within(setup_ch.exchange_delete(x.as_str().into(), Default::default()))
        .await
        .expect("delete exchange");
    let err = within(ch.tx_commit()).await.expect_err("commit must fail");
    assert_eq!(amqp_error(&err).0, 404);
    // b1's ack came before the failure point and stands; b2's reject came after it and was not applied:
    // b2 is back in the queue rather than discarded.
    wait_for_count(&setup_ch, &q, 1).await;
    let m = get_one(&setup_ch, &q, true).await;
    assert_eq!(body(&m.delivery), "b2");
    assert!(m.delivery.redelivered);
}
