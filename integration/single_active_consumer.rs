//! Single active consumer (x-single-active-consumer): one consumer gets the messages, the next one
//! takes over when it goes away, and the argument must be a boolean. Checked against RabbitMQ 3.10.8.

use crate::common::*;
use crate::common::{exclusive as excl, try_declare_queue as declare};
use lapin::{options::*, types::AMQPValue};

#[tokio::test]
async fn single_active_consumer() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(
        &ch,
        "sac",
        vec![("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let ch1 = open(&conn).await;
    let ch2 = open(&conn).await;
    within(ch1.basic_qos(1, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut c1 = consume_tagged(&ch1, &q, "first", manual_ack()).await;
    let mut c2 = consume_tagged(&ch2, &q, "second", no_ack()).await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 2));
    publish(&ch, "", &q, b"m0").await;
    publish(&ch, "", &q, b"m1").await;
    let d0 = c1.next().await;
    assert_eq!(body(&d0), "m0");
    // c1 is at its prefetch limit, yet c2 gets nothing
    c2.assert_quiet().await;
    assert_eq!(queue_counts(&ch, &q).await, (1, 2));
    // basic.get is allowed on a classic SAC queue
    let g = get_one(&ch, &q, true).await;
    assert_eq!(body(&g.delivery), "m1");
    assert_eq!(g.message_count, 0);
    // cancelling the active consumer hands over to the next one. (RabbitMQ 3.10 does not hand
    // over messages that are already waiting at that moment until the queue's next event, so
    // the queue is kept empty here.)
    within(ch1.basic_cancel("first".into(), BasicCancelOptions::default()))
        .await
        .unwrap();
    assert_eq!(queue_counts(&ch, &q).await, (0, 1));
    publish(&ch, "", &q, b"m2").await;
    assert_eq!(body(&c2.next().await), "m2");
    // m0 is still unacked on ch1; closing ch1 requeues it to the new active consumer
    within(ch1.close(200, "bye".into())).await.unwrap();
    let d = c2.next().await;
    assert_eq!(body(&d), "m0");
    assert!(d.redelivered);
    c2.assert_quiet().await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 1));
}

#[tokio::test]
async fn single_active_consumer_must_be_boolean() {
    let (conn, ch) = setup().await;
    let q = unique("sac-bad");
    let res = declare(
        &ch,
        &q,
        excl(),
        table(vec![("x-single-active-consumer", lstr("true"))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,longstr}}"),
    )
    .await;
    let ch = open(&conn).await;
    let res = declare(
        &ch,
        &q,
        excl(),
        table(vec![("x-single-active-consumer", int(1))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,signedint}}"),
    )
    .await;
}
