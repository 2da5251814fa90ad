//! Settling deliveries: basic.ack / nack / reject (single, multiple, tag errors), basic.recover,
//! and requeueing on nack, reject and channel close (order and redelivered flag).

use crate::common::excl_queue as excl;
use crate::common::*;
use lapin::{options::*, types::FieldTable};

#[tokio::test]
async fn ack_multiple() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ackm").await;
    publish_all(&ch, &q, &["1", "2", "3", "4"]).await;
    let cch = open(&conn).await;
    for _ in 0..4 {
        get_one(&cch, &q, false).await;
    }
    within(cch.basic_ack(2, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(cch.close(200, "requeue the rest".into()))
        .await
        .unwrap();
    wait_for_count(&ch, &q, 2).await;
    assert_eq!(drain(&ch, &q).await, vec!["3", "4"]);
}

#[tokio::test]
async fn ack_zero_multiple_acks_everything() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ack0").await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    let cch = open(&conn).await;
    for _ in 0..3 {
        get_one(&cch, &q, false).await;
    }
    within(cch.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(cch.close(200, "bye".into())).await.unwrap();
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn nack_multiple_requeue() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "nackm").await;
    publish_all(&ch, &q, &["1", "2", "3"]).await;
    for _ in 0..3 {
        get_one(&ch, &q, false).await;
    }
    within(ch.basic_nack(
        3,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    wait_for_count(&ch, &q, 3).await;
    for want in ["1", "2", "3"] {
        let m = get_one(&ch, &q, true).await;
        assert_eq!(body(&m.delivery), want);
        assert!(m.delivery.redelivered);
    }
}

#[tokio::test]
async fn reject_and_nack_without_requeue_drop() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "drop").await;
    publish_all(&ch, &q, &["1", "2"]).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    within(ch.basic_reject(
        m1.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    ))
    .await
    .unwrap();
    within(ch.basic_nack(
        m2.delivery.delivery_tag,
        BasicNackOptions {
            multiple: false,
            requeue: false,
        },
    ))
    .await
    .unwrap();
    // both tags are settled: acking 0-multiple afterwards has nothing to do and no error
    within(ch.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    assert_eq!(queue_counts(&ch, &q).await, (0, 0));
    assert!(ch.status().connected());
}

#[tokio::test]
async fn requeue_restores_original_order_with_redelivered() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "order").await;
    publish_all(&ch, &q, &["m0", "m1", "m2", "m3", "m4", "m5"]).await;
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(get_one(&ch, &q, false).await.delivery.delivery_tag);
    }
    within(ch.basic_nack(
        tags[3],
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    within(ch.basic_nack(
        tags[1],
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    ))
    .await
    .unwrap();
    within(ch.basic_reject(tags[4], BasicRejectOptions { requeue: true }))
        .await
        .unwrap();
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("m1".into(), true),
            ("m3".into(), true),
            ("m4".into(), true),
            ("m5".into(), false)
        ]
    );
}

#[tokio::test]
async fn ack_unknown_tag_is_406() {
    let (conn, ch) = setup().await;
    let w = watch(&ch).await;
    within(ch.basic_ack(99, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 99",
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn double_ack_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "dbl").await;
    publish_all(&ch, &q, &["x"]).await;
    let m = get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    within(ch.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            m.delivery.delivery_tag
        ),
    );
    assert_conn_usable(&conn).await;
    // the first ack counted: the message is gone
    let ch = open(&conn).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn ack_zero_single_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "ack0s").await;
    publish_all(&ch, &q, &["x"]).await;
    get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(0, BasicAckOptions { multiple: false }))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 0",
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn ack_multiple_beyond_last_is_406_and_acks_nothing() {
    let (conn, ch) = setup().await;
    let q = unique("q-beyond");
    let owner = open(&conn).await;
    declare_queue_with(
        &owner,
        &q,
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    publish_all(&owner, &q, &["1", "2"]).await;
    get_one(&ch, &q, false).await;
    get_one(&ch, &q, false).await;
    let w = watch(&ch).await;
    within(ch.basic_ack(7, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        "PRECONDITION_FAILED - unknown delivery tag 7",
    );
    // nothing was acked: both come back when the channel dies
    wait_for_count(&owner, &q, 2).await;
}

#[tokio::test]
async fn ack_on_other_channel_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "other-ch").await;
    publish_all(&ch, &q, &["x"]).await;
    let m = get_one(&ch, &q, false).await;
    let ch2 = open(&conn).await;
    let w = watch(&ch2).await;
    within(ch2.basic_ack(m.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &w.closed().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            m.delivery.delivery_tag
        ),
    );
    assert!(ch.status().connected());
}

#[tokio::test]
async fn ack_of_auto_ack_delivery_is_406() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "autoack").await;
    let mut c = consume(&ch, &q, no_ack()).await;
    publish(&ch, "", &q, b"x").await;
    let d = c.next().await;
    within(ch.basic_ack(d.delivery_tag, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_channel_closed(
        &c.error().await,
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            d.delivery_tag
        ),
    );
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn recover_requeue_redelivers() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "recover").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"r1").await;
    publish(&ch, "", &q, b"r2").await;
    let first = c.next_n(2).await;
    assert_eq!(bodies(&first), vec!["r1", "r2"]);
    assert!(first.iter().all(|d| !d.redelivered));
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .unwrap();
    let again = c.next_n(2).await;
    assert_eq!(bodies(&again), vec!["r1", "r2"]);
    assert!(again.iter().all(|d| d.redelivered));
    assert_eq!(
        again.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
        vec![3, 4],
        "redeliveries get new tags"
    );
    within(ch.basic_ack(4, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    c.assert_quiet().await;
}

#[tokio::test]
async fn recover_without_requeue_is_540() {
    let (conn, ch) = setup().await;
    let res = within(ch.basic_recover(BasicRecoverOptions { requeue: false })).await;
    expect_connection_close(&conn, res, 540, "NOT_IMPLEMENTED - requeue=false").await;
}

#[tokio::test]
async fn unacked_requeued_on_channel_close() {
    let (conn, ch) = setup().await;
    let q = excl(&ch, "requeue-close").await;
    publish_all(&ch, &q, &["u1", "u2", "u3"]).await;
    let cch = open(&conn).await;
    let mut c = consume(&cch, &q, manual_ack()).await;
    let ds = c.next_n(3).await;
    within(ds[0].acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
    within(cch.close(200, "bye".into())).await.unwrap();
    wait_for_count(&ch, &q, 2).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "u2");
    assert!(m.delivery.redelivered);
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "u3");
}

#[tokio::test]
async fn nack_requeue_redelivers_to_consumer() {
    let (_conn, ch) = setup().await;
    let q = excl(&ch, "nack-cons").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish(&ch, "", &q, b"again").await;
    let d = c.next().await;
    assert!(!d.redelivered);
    within(d.acker.nack(BasicNackOptions {
        multiple: false,
        requeue: true,
    }))
    .await
    .unwrap();
    let d2 = c.next().await;
    assert_eq!(body(&d2), "again");
    assert!(d2.redelivered);
    assert!(d2.delivery_tag > d.delivery_tag);
    within(d2.acker.ack(BasicAckOptions::default()))
        .await
        .unwrap();
}
