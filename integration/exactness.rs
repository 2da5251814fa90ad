//! Places where Warren used to differ from RabbitMQ 3.10.8, each checked on both brokers (run with
//! `AMQP_URL=amqp://guest:guest@127.0.0.1:5691/` against RabbitMQ): an uncommitted transaction's acks on a
//! closing channel, single-active-consumer handover order, per-consumer qos after a global one, get-ok's
//! count after expiry, requeues over a length limit, argument and expiration texts, exclusive consumers on
//! single-active-consumer queues.

use crate::common::*;
use lapin::options::*;
use lapin::types::AMQPValue;

fn redelivered_bodies(ms: &[lapin::message::BasicGetMessage]) -> Vec<String> {
    ms.iter()
        .map(|m| {
            let star = if m.delivery.redelivered { "*" } else { "" };
            format!("{}{star}", body(&m.delivery))
        })
        .collect()
}

async fn get_all(ch: &lapin::Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, q, true).await {
        out.push(m);
    }
    redelivered_bodies(&out)
}

#[tokio::test]
async fn an_uncommitted_ack_is_forgotten_when_the_channel_closes() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = excl_queue(&ch, "tx-close").await;
    publish_all(&ch, &q, &["m0", "m1", "m2"]).await;
    let tx = open(&conn).await;
    within(tx.tx_select()).await.expect("tx.select");
    let _m0 = get_one(&tx, &q, false).await;
    let m1 = get_one(&tx, &q, false).await;
    ack(&tx, m1.delivery.delivery_tag).await;
    within(tx.close(200, "bye".into())).await.expect("close");
    assert_eq!(get_all(&ch, &q).await, ["m0*", "m1*", "m2"]);
}

#[tokio::test]
async fn an_uncommitted_reject_is_forgotten_when_the_connection_closes() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, &unique("tx-conn-close")).await;
    publish_all(&ch, &q, &["m0", "m1"]).await;
    let other = connect(&b).await;
    let tx = open(&other).await;
    within(tx.tx_select()).await.expect("tx.select");
    let m0 = get_one(&tx, &q, false).await;
    reject(&tx, m0.delivery.delivery_tag, false).await;
    within(other.close(200, "bye".into())).await.expect("close");
    assert_eq!(get_all(&ch, &q).await, ["m0*", "m1"]);
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_single_active_consumers_requeued_messages_go_first_to_the_next() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(
        &ch,
        "sac-order",
        vec![("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let cha = open(&conn).await;
    within(cha.basic_qos(2, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut a = consume(&cha, &q, manual_ack()).await;
    let chb = open(&conn).await;
    let mut bb = consume(&chb, &q, manual_ack()).await;
    for m in ["m0", "m1", "m2", "m3"] {
        publish(&ch, "", &q, m.as_bytes()).await;
    }
    a.next_n(2).await;
    wait_for_count(&ch, &q, 2).await;
    within(cha.close(200, "bye".into())).await.expect("close");
    let got = bb.next_n(4).await;
    let seen: Vec<String> = got
        .iter()
        .map(|d| format!("{}{}", body(d), if d.redelivered { "*" } else { "" }))
        .collect();
    assert_eq!(seen, ["m0*", "m1*", "m2", "m3"]);
}

#[tokio::test]
async fn a_per_consumer_qos_lifts_an_earlier_global_one() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = excl_queue(&ch, "qos-lift").await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    publish_all(&ch, &q, &refs).await;
    let c = open(&conn).await;
    within(c.basic_qos(1, BasicQosOptions { global: true }))
        .await
        .expect("qos global");
    within(c.basic_qos(5, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut d = consume(&c, &q, manual_ack()).await;
    d.next_n(5).await;
    d.assert_quiet().await;
}

#[tokio::test]
async fn get_ok_counts_after_dropping_what_expired_behind_the_head() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = excl_queue(&ch, "get-expiry").await;
    publish(&ch, "", &q, b"h").await;
    publish_props(&ch, "", &q, b"e1", exp("1")).await;
    publish_props(&ch, "", &q, b"e2", exp("1")).await;
    publish(&ch, "", &q, b"t").await;
    // Let the two one-millisecond TTLs pass (they are behind a live head, so nothing drops them yet).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "h");
    assert_eq!(m.message_count, 1, "e1 and e2 are gone before the count");
}

#[tokio::test]
async fn a_requeue_over_max_length_drops_from_the_head_at_once() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let dlq = excl_queue(&ch, "maxlen-dlq").await;
    let q = xq(
        &ch,
        "maxlen-requeue",
        vec![
            ("x-max-length", long(1)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish(&ch, "", &q, b"a").await;
    let a = get_one(&ch, &q, false).await;
    publish(&ch, "", &q, b"b").await;
    reject(&ch, a.delivery.delivery_tag, true).await;
    let dead = get_wait(&ch, &dlq, true).await;
    assert_eq!(body(&dead.delivery), "a");
    assert_eq!(get_all(&ch, &q).await, ["b"]);
}

/// Queue arguments as (name, value) pairs.
type Args<'a> = Vec<(&'a str, AMQPValue)>;

#[tokio::test]
async fn argument_types_are_refused_with_rabbitmqs_texts() {
    let b = broker().await;
    let conn = connect(&b).await;
    let expected_int = "\"expected integer, got longstr\"";
    let cases: Vec<(Args, &str, &str)> = vec![
        (
            vec![
                ("x-dead-letter-exchange", lstr("dlx")),
                ("x-dead-letter-routing-key", int(5)),
            ],
            "x-dead-letter-routing-key",
            "{unacceptable_type,signedint}",
        ),
        (
            vec![("x-overflow", int(1))],
            "x-overflow",
            "{unacceptable_type,signedint}",
        ),
        (
            vec![("x-queue-version", lstr("2"))],
            "x-queue-version",
            expected_int,
        ),
        // Of two bad arguments, RabbitMQ names the one it checks first.
        (
            vec![("x-max-length", lstr("a")), ("x-message-ttl", lstr("b"))],
            "x-message-ttl",
            expected_int,
        ),
    ];
    for (args, key, why) in cases {
        let ch = open(&conn).await;
        let q = unique("argtype");
        let res = try_declare_queue(&ch, &q, exclusive(), table(args)).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg '{key}' for queue '{q}' in vhost '/': {why}"
        );
        expect_channel_close(&conn, &ch, res, 406, &text).await;
    }
}

#[tokio::test]
async fn an_exclusive_consumer_is_refused_on_a_single_active_consumer_queue() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(
        &ch,
        "sac-excl",
        vec![("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let c = open(&conn).await;
    let res = within(c.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        Default::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &c,
        res,
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    )
    .await;
}

#[tokio::test]
async fn an_inequivalent_redeclare_shows_both_values_bare() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(&ch, "equiv", vec![("x-max-length", int(10))]).await;
    let res = try_declare_queue(
        &ch,
        &q,
        exclusive(),
        table(vec![("x-max-length", lstr("10"))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '10' but current is '10'"
        ),
    )
    .await;
}

#[tokio::test]
async fn consumer_arguments_are_checked_like_rabbitmq() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = excl_queue(&ch, "consume-args").await;
    let cases = [
        (
            "x-cancel-on-ha-failover",
            lstr("yes"),
            format!("invalid arg 'x-cancel-on-ha-failover' for queue '{q}' in vhost '/': {{unacceptable_type,longstr}}"),
        ),
        (
            "x-stream-offset",
            lstr("first"),
            format!("invalid arg 'x-stream-offset' for queue '{q}' in vhost '/' of queue type rabbit_classic_queue"),
        ),
    ];
    for (key, value, text) in cases {
        let c = open(&conn).await;
        let res = within(c.basic_consume(
            q.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(vec![(key, value)]),
        ))
        .await;
        expect_channel_close(
            &conn,
            &c,
            res,
            406,
            &format!("PRECONDITION_FAILED - {text}"),
        )
        .await;
    }
}
