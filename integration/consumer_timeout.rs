//! The consumer timeout: a delivery left unacknowledged longer than the timeout closes its channel with
//! RabbitMQ's 406, and the delivery goes back to its queue. The timeout comes from the broker's
//! `consumer_timeout`, a queue's `x-consumer-timeout` argument or its `consumer-timeout` policy key (the
//! latter two as RabbitMQ 3.12+ and 4.x have them). These tests start their own Warren with short timeouts.

use crate::common::*;
use lapin::options::BasicQosOptions;

async fn warren_with(consumer_timeout: u64) -> (warren::Server, TestBroker) {
    own_warren_with(warren::Config {
        consumer_timeout,
        ..test_config()
    })
    .await
}

fn timed_out(channel: u16, ms: u64) -> String {
    format!(
        "PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. Timeout value used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
    )
}

#[tokio::test]
async fn an_unacked_delivery_past_the_broker_timeout_closes_its_channel_and_is_requeued() {
    let (_server, b) = warren_with(300).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("ct")).await;
    publish(&ch, "", &q, b"late").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    let d = c.next().await;
    assert!(!d.redelivered);
    let err = c.error().await;
    assert_channel_closed(&err, 406, &timed_out(1, 300));
    assert_conn_usable(&conn).await;
    // back in the queue, marked redelivered
    let ch2 = open(&conn).await;
    let m = get_wait(&ch2, &q, true).await;
    assert_eq!(m.delivery.data, b"late");
    assert!(m.delivery.redelivered);
}

#[tokio::test]
async fn deliveries_acked_in_time_keep_the_channel_open() {
    let (_server, b) = warren_with(400).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("ct-ok")).await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    // Twelve deliveries, each acked at once, spread over more than twice the timeout: the check re-arms for
    // the oldest outstanding delivery and never closes the channel.
    for i in 0..12 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
        let d = c.next().await;
        ack(&ch, d.delivery_tag).await;
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }
    assert!(
        ch.status().connected(),
        "channel closed though every delivery was acked"
    );
    c.assert_quiet().await;
}

#[tokio::test]
async fn the_queue_argument_and_the_policy_override_the_broker_timeout() {
    // The broker's own timeout is long; the queue's argument (and another queue's policy) are short.
    let policy = warren::config::PolicyDef {
        vhost: "/".into(),
        name: "short-ack".into(),
        pattern: "^ct-policy-".into(),
        apply_to: warren::config::ApplyTo::Queues,
        priority: 0,
        definition: serde_json::json!({"consumer-timeout": 200})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let (_server, b) = own_warren_with(warren::Config {
        consumer_timeout: 600_000,
        policies: vec![policy],
        ..test_config()
    })
    .await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = unique("ct-arg");
    declare_queue_with(
        &ch,
        &q,
        Default::default(),
        table(vec![("x-consumer-timeout", long(250))]),
    )
    .await;
    publish(&ch, "", &q, b"a").await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    c.next().await;
    assert_channel_closed(&c.error().await, 406, &timed_out(1, 250));

    let pq = "ct-policy-q";
    let ch = open(&conn).await;
    declare_queue(&ch, pq).await;
    publish(&ch, "", pq, b"p").await;
    let mut c = consume(&ch, pq, manual_ack()).await;
    c.next().await;
    let ch_id = ch.id();
    assert_channel_closed(&c.error().await, 406, &timed_out(ch_id, 200));
}

#[tokio::test]
async fn a_basic_get_left_unacked_times_out_too() {
    let (_server, b) = warren_with(250).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let w = watch(&ch).await;
    let q = declare_queue(&ch, &unique("ct-get")).await;
    publish(&ch, "", &q, b"g").await;
    get_wait(&ch, &q, false).await;
    assert_channel_closed(&w.closed().await, 406, &timed_out(1, 250));
}

#[tokio::test]
async fn prefetch_limited_consumers_get_the_requeued_message_after_a_timeout() {
    let (_server, b) = warren_with(300).await;
    let conn = connect(&b).await;
    let slow = open(&conn).await;
    let q = declare_queue(&slow, &unique("ct-prefetch")).await;
    within(slow.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    publish(&slow, "", &q, b"x").await;
    let mut c = consume(&slow, &q, manual_ack()).await;
    c.next().await;
    // A second consumer on another channel waits behind the first; the timeout hands it the message.
    let fast = open(&conn).await;
    let mut c2 = consume(&fast, &q, manual_ack()).await;
    let _ = c.error().await;
    let d = c2.next().await;
    assert!(d.redelivered);
    ack(&fast, d.delivery_tag).await;
}
