//! Queue expiry (x-expires): an unused queue is deleted, what counts as a use that restarts the
//! timer, and a queue with a consumer never expires. Checked against RabbitMQ 3.10.8.

use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{options::*, types::FieldTable};
use std::time::Duration;
use tokio::time::{sleep, Instant};

#[tokio::test]
async fn unused_queue_expires() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let probe = open(&conn).await;
    confirm_select(&probe).await;
    let q = unique("expires");
    let t0 = Instant::now();
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        table(vec![("x-expires", int(150))]),
    )
    .await;
    assert!(routable(&probe, &q).await, "gone too early");
    let gone = wait_gone(&probe, &q).await;
    assert!(
        gone - t0 >= Duration::from_millis(140),
        "expired after {:?}",
        gone - t0
    );
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

#[derive(Clone, Copy, Debug)]
enum Use {
    Get,
    Consume,
    PassiveDeclare,
    Declare,
}

async fn expiry_reset_by(how: Use) {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let probe = open(&conn).await;
    confirm_select(&probe).await;
    let q = unique("expires-reset");
    let args = || table(vec![("x-expires", int(400))]);
    declare_queue_with(&ch, &q, QueueDeclareOptions::default(), args()).await;
    sleep(Duration::from_millis(250)).await;
    let used = Instant::now();
    match how {
        Use::Get => {
            get(&ch, &q, true).await;
        }
        Use::Consume => {
            let c = consume(&ch, &q, no_ack()).await;
            within(ch.basic_cancel(c.tag().as_str().into(), BasicCancelOptions::default()))
                .await
                .expect("cancel");
        }
        Use::PassiveDeclare => {
            declare(&ch, &q, passive(), FieldTable::default())
                .await
                .expect("passive");
        }
        Use::Declare => {
            declare_queue_with(&ch, &q, QueueDeclareOptions::default(), args()).await;
        }
    }
    // 500 ms after the declare: would be gone without the reset
    sleep(Duration::from_millis(250)).await;
    assert!(
        routable(&probe, &q).await,
        "{how:?} did not reset the expiry timer"
    );
    let gone = wait_gone(&probe, &q).await;
    assert!(
        gone - used >= Duration::from_millis(390),
        "{how:?}: expired {:?} after the reset",
        gone - used
    );
}

#[tokio::test]
async fn queue_expiry_reset_by_get() {
    expiry_reset_by(Use::Get).await;
}

#[tokio::test]
async fn queue_expiry_reset_by_consume() {
    expiry_reset_by(Use::Consume).await;
}

#[tokio::test]
async fn queue_expiry_reset_by_passive_declare() {
    expiry_reset_by(Use::PassiveDeclare).await;
}

#[tokio::test]
async fn queue_expiry_reset_by_declare() {
    expiry_reset_by(Use::Declare).await;
}

#[tokio::test]
async fn queue_with_consumer_never_expires() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let probe = open(&conn).await;
    confirm_select(&probe).await;
    let q = unique("expires-consumed");
    declare_queue_with(
        &ch,
        &q,
        QueueDeclareOptions::default(),
        table(vec![("x-expires", int(100))]),
    )
    .await;
    let c = consume(&ch, &q, no_ack()).await;
    sleep(Duration::from_millis(400)).await;
    assert!(routable(&probe, &q).await, "queue with a consumer expired");
    let cancelled = Instant::now();
    within(ch.basic_cancel(c.tag().as_str().into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    let gone = wait_gone(&probe, &q).await;
    assert!(gone - cancelled >= Duration::from_millis(90));
}
