//! RabbitMQ queue features: per-message and per-queue TTL, queue expiry, length limits and overflow,
//! dead-lettering (x-death), quorum queues (validation, delivery limit, requeue order), priority queues,
//! consumer priorities, single active consumer and direct reply-to. Checked against RabbitMQ 3.10.8.
//!
//! Timer tests use short TTLs (50-400 ms) and poll with deadlines. Queues that must outlive the
//! connection (quorum queues, which cannot be exclusive) are deleted at the end of their test.

use crate::common::*;
use crate::common::{exclusive as excl, try_declare_queue as declare};
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Confirmation, Connection, ExchangeKind,
};
use std::time::Duration;
use tokio::time::{sleep, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A durable quorum queue with a unique name; the test deletes it at the end.
async fn quorum(ch: &Channel, prefix: &str, mut args: Vec<(&str, AMQPValue)>) -> String {
    args.push(("x-queue-type", lstr("quorum")));
    declare_queue_with(ch, &unique(prefix), durable(), table(args)).await
}

async fn delete_queue(conn: &Connection, q: &str) {
    let ch = open(conn).await;
    within(ch.queue_delete(q.into(), QueueDeleteOptions::default()))
        .await
        .unwrap_or_else(|e| panic!("queue.delete {q}: {e:?}"));
    let _ = ch.close(200, "bye".into()).await;
}

// ---------------------------------------------------------------------------------------------
// Per-message TTL (expiration property)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expiration_must_be_a_non_negative_integer() {
    let b = broker().await;
    let conn = connect(&b).await;
    for (value, reason) in [
        ("abc", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("10s", "{leftover_string,\"s\"}"),
        ("", "no_integer"),
        ("1.5", "{leftover_string,\".5\"}"),
    ] {
        let ch = open(&conn).await;
        let w = watch(&ch).await;
        within(ch.basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions::default(),
            b"x",
            exp(value),
        ))
        .await
        .expect("publish");
        let err = w.closed().await;
        assert_channel_closed(
            &err,
            406,
            &format!("PRECONDITION_FAILED - invalid expiration '{value}': {reason}"),
        );
    }
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn expiration_zero_and_plus_sign_are_accepted() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "exp-ok", vec![]).await;
    publish_props(&ch, "", &q, b"plus", exp("+60000")).await;
    let m = get_wait(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "plus");
    assert_eq!(
        m.delivery
            .properties
            .expiration()
            .as_ref()
            .map(|s| s.as_str()),
        Some("+60000")
    );
    // '0' is valid: with nobody waiting the message is dropped at once
    publish_props(&ch, "", &q, b"zero", exp("0")).await;
    stays_at(&ch, &q, 0).await;
}

#[tokio::test]
async fn per_message_ttl_expires_while_nobody_consumes() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "pm-ttl", vec![]).await;
    publish_props(&ch, "", &q, b"short", exp("150")).await;
    publish(&ch, "", &q, b"kept").await;
    wait_for_count(&ch, &q, 2).await;
    // no get, no consumer: the broker's timer removes it
    wait_for_count(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["kept"]);
}

#[tokio::test]
async fn per_message_ttl_expiry_is_timer_driven_and_dead_letters() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "pm-ttl-dlq", vec![]).await;
    let mut dl = consume(&ch, &dlq, no_ack()).await;
    let q = xq(
        &ch,
        "pm-ttl-src",
        vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    let t0 = Instant::now();
    publish_props(&ch, "", &q, b"m", exp("100")).await;
    // nothing touches the source queue: the dead-lettered copy arrives by itself
    let d = dl.next().await;
    assert!(t0.elapsed() >= Duration::from_millis(90), "expired early");
    assert_eq!(body(&d), "m");
    assert_eq!(d.properties.expiration(), &None, "expiration not removed");
    assert_eq!(
        dl_headers(&d.properties),
        expected_dl_headers(
            vec![death(1, "expired", &q, "", &[&q], Some("100"))],
            ("expired", &q, ""),
            vec![],
        )
    );
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn expired_message_behind_long_ttl_head_waits_for_the_head() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "head-dlq", vec![]).await;
    let q = xq(
        &ch,
        "head-src",
        vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_props(&ch, "", &q, b"long", exp("60000")).await;
    publish_props(&ch, "", &q, b"short", exp("50")).await;
    wait_for_count(&ch, &q, 2).await;
    sleep(Duration::from_millis(250)).await;
    // 'short' has expired but is not at the head: still counted, not dead-lettered
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    assert_eq!(queue_counts(&ch, &dlq).await.0, 0);
    let m = get_one(&ch, &q, true).await;
    assert_eq!(body(&m.delivery), "long");
    // now it is at the head and goes
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    assert!(get(&ch, &q, true).await.is_none());
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), "short");
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "expired", &q, "", &[&q], Some("50"))],
            ("expired", &q, ""),
            vec![],
        )
    );
}

#[tokio::test]
async fn expiration_is_kept_on_delivered_messages() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "exp-kept", vec![]).await;
    publish_props(&ch, "", &q, b"g", exp("60000")).await;
    let m = get_wait(&ch, &q, true).await;
    assert_eq!(
        m.delivery
            .properties
            .expiration()
            .as_ref()
            .map(|s| s.as_str()),
        Some("60000")
    );
    let mut c = consume(&ch, &q, no_ack()).await;
    publish_props(&ch, "", &q, b"c", exp("60000")).await;
    let d = c.next().await;
    assert_eq!(
        d.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("60000")
    );
}

#[tokio::test]
async fn expiration_zero_delivers_to_a_waiting_consumer() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "exp0", vec![]).await;
    let mut c = consume(&ch, &q, no_ack()).await;
    publish_props(&ch, "", &q, b"now", exp("0")).await;
    let d = c.next().await;
    assert_eq!(body(&d), "now");
}

// ---------------------------------------------------------------------------------------------
// Per-queue TTL (x-message-ttl)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn queue_ttl_expires_messages_in_order() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "qttl-dlq", vec![]).await;
    let mut dl = consume(&ch, &dlq, no_ack()).await;
    let q = xq(
        &ch,
        "qttl",
        vec![
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_all(&ch, &q, &["a", "b", "c"]).await;
    let ds = dl.next_n(3).await;
    assert_eq!(bodies(&ds), vec!["a", "b", "c"]);
    for d in &ds {
        // no original-expiration: the message had no expiration of its own
        assert_eq!(
            dl_headers(&d.properties),
            expected_dl_headers(
                vec![death(1, "expired", &q, "", &[&q], None)],
                ("expired", &q, ""),
                vec![],
            )
        );
    }
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn queue_ttl_zero_delivers_to_a_waiting_consumer() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "qttl0-c", vec![("x-message-ttl", int(0))]).await;
    let mut c = consume(&ch, &q, no_ack()).await;
    publish(&ch, "", &q, b"m").await;
    assert_eq!(body(&c.next().await), "m");
}

#[tokio::test]
async fn queue_ttl_zero_drops_without_consumer() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "qttl0", vec![("x-message-ttl", int(0))]).await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m").await
    ));
    stays_at(&ch, &q, 0).await;
    assert!(get(&ch, &q, true).await.is_none());
}

#[tokio::test]
async fn queue_ttl_zero_dead_letters_without_consumer() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "qttl0-dlq", vec![]).await;
    let q = xq(
        &ch,
        "qttl0-dlx",
        vec![
            ("x-message-ttl", int(0)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish(&ch, "", &q, b"m").await;
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "expired", &q, "", &[&q], None)],
            ("expired", &q, ""),
            vec![],
        )
    );
}

#[tokio::test]
async fn lower_of_queue_and_message_ttl_wins() {
    let (_conn, ch) = setup().await;
    // queue TTL lower than the message's
    let dlq = xq(&ch, "ttlmin-dlq", vec![]).await;
    let mut dl = consume(&ch, &dlq, no_ack()).await;
    let q1 = xq(
        &ch,
        "ttlmin-q",
        vec![
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    // message TTL lower than the queue's
    let q2 = xq(
        &ch,
        "ttlmin-m",
        vec![
            ("x-message-ttl", int(60000)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_props(&ch, "", &q1, b"queue-ttl", exp("60000")).await;
    publish_props(&ch, "", &q2, b"msg-ttl", exp("100")).await;
    let mut got = dl.next_n(2).await;
    got.sort_by_key(body);
    assert_eq!(bodies(&got), vec!["msg-ttl", "queue-ttl"]);
    assert_eq!(
        dl_headers(&got[0].properties),
        expected_dl_headers(
            vec![death(1, "expired", &q2, "", &[&q2], Some("100"))],
            ("expired", &q2, ""),
            vec![],
        )
    );
    assert_eq!(
        dl_headers(&got[1].properties),
        expected_dl_headers(
            vec![death(1, "expired", &q1, "", &[&q1], Some("60000"))],
            ("expired", &q1, ""),
            vec![],
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Queue expiry (x-expires)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Length limits and overflow
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn max_length_drop_head_dead_letters_oldest() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxlen-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxlen",
        vec![
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    for m in ["m1", "m2", "m3", "m4"] {
        publish(&ch, "", &q, m.as_bytes()).await;
    }
    wait_for_count(&ch, &dlq, 2).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    assert_eq!(drain(&ch, &q).await, vec!["m3", "m4"]);
    for expected in ["m1", "m2"] {
        let d = get_one(&ch, &dlq, true).await;
        assert_eq!(body(&d.delivery), expected);
        assert_eq!(d.delivery.exchange.as_str(), "");
        assert_eq!(d.delivery.routing_key.as_str(), dlq);
        assert_eq!(
            dl_headers(&d.delivery.properties),
            expected_dl_headers(
                vec![death(1, "maxlen", &q, "", &[&q], None)],
                ("maxlen", &q, ""),
                vec![],
            )
        );
    }
}

#[tokio::test]
async fn max_length_bytes_drop_head() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxbytes-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxbytes",
        vec![
            ("x-max-length-bytes", int(10)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    // bodies count, not properties
    for m in ["aaaa", "bbbb", "cccc"] {
        publish_props(
            &ch,
            "",
            &q,
            m.as_bytes(),
            with_headers(vec![("pad", lstr(&"p".repeat(100)))]),
        )
        .await;
    }
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 2);
    // a message larger than the limit pushes everything out, itself included
    publish(&ch, "", &q, b"eleven-byte").await;
    wait_for_count(&ch, &dlq, 4).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    assert_eq!(
        drain(&ch, &dlq).await,
        vec!["aaaa", "bbbb", "cccc", "eleven-byte"]
    );
}

#[tokio::test]
async fn max_length_zero_drops_every_message() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "maxlen0-dlq", vec![]).await;
    let q = xq(
        &ch,
        "maxlen0",
        vec![
            ("x-max-length", int(0)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m").await
    ));
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "maxlen", &q, "", &[&q], None)],
            ("maxlen", &q, ""),
            vec![],
        )
    );
}

#[tokio::test]
async fn max_length_zero_reject_publish_nacks() {
    let (_conn, ch) = setup().await;
    let q = xq(
        &ch,
        "maxlen0-rp",
        vec![
            ("x-max-length", int(0)),
            ("x-overflow", lstr("reject-publish")),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_nack(&publish_confirm(&ch, "", &q, false, b"m").await));
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn reject_publish_nacks_overflow_without_dead_lettering() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "rp-dlq", vec![]).await;
    let q = xq(
        &ch,
        "rp",
        vec![
            ("x-max-length", int(2)),
            ("x-overflow", lstr("reject-publish")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m1").await
    ));
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m2").await
    ));
    let c = publish_confirm(&ch, "", &q, false, b"m3").await;
    assert!(matches!(c, Confirmation::Nack(None)), "{c:?}");
    // room again after one is taken
    assert_eq!(body(&get_one(&ch, &q, true).await.delivery), "m1");
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m4").await
    ));
    assert_eq!(drain(&ch, &q).await, vec!["m2", "m4"]);
    stays_at(&ch, &dlq, 0).await;
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "rpdlx-dlq", vec![]).await;
    let q = xq(
        &ch,
        "rpdlx",
        vec![
            ("x-max-length", int(1)),
            ("x-overflow", lstr("reject-publish-dlx")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m1").await
    ));
    assert!(is_nack(&publish_confirm(&ch, "", &q, false, b"m2").await));
    wait_for_count(&ch, &dlq, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["m1"]);
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), "m2");
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "maxlen", &q, "", &[&q], None)],
            ("maxlen", &q, ""),
            vec![],
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Dead-lettering
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reject_and_nack_without_requeue_dead_letter_as_rejected() {
    let (_conn, ch) = setup().await;
    let dlq = xq(&ch, "rej-dlq", vec![]).await;
    let q = xq(
        &ch,
        "rej",
        vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_all(&ch, &q, &["rejected", "nacked"]).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    reject(&ch, m1.delivery.delivery_tag, false).await;
    nack(&ch, m2.delivery.delivery_tag, false).await;
    wait_for_count(&ch, &dlq, 2).await;
    for expected in ["rejected", "nacked"] {
        let d = get_one(&ch, &dlq, true).await;
        assert_eq!(body(&d.delivery), expected);
        assert!(!d.delivery.redelivered);
        assert_eq!(
            dl_headers(&d.delivery.properties),
            expected_dl_headers(
                vec![death(1, "rejected", &q, "", &[&q], None)],
                ("rejected", &q, ""),
                vec![],
            )
        );
    }
    assert_eq!(queue_counts(&ch, &q).await.0, 0);
}

#[tokio::test]
async fn dead_lettered_message_keeps_routing_keys_and_headers() {
    let (_conn, ch) = setup().await;
    let x = unique("dl-src-x");
    let dlx = unique("dl-dlx");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    declare_exchange(&ch, &dlx, ExchangeKind::Direct).await;
    let q = xq(&ch, "dl-src", vec![("x-dead-letter-exchange", lstr(&dlx))]).await;
    bind(&ch, &q, &x, "k").await;
    // without x-dead-letter-routing-key the message is re-routed with all its keys (rk + CC)
    let by_key = xq(&ch, "dl-by-key", vec![]).await;
    let by_cc = xq(&ch, "dl-by-cc", vec![]).await;
    bind(&ch, &by_key, &dlx, "k").await;
    bind(&ch, &by_cc, &dlx, "c2").await;
    let props = BasicProperties::default()
        .with_expiration("60000".into())
        .with_priority(3)
        .with_correlation_id("corr".into())
        .with_headers(table(vec![("CC", strs(&["c1", "c2"])), ("h", lstr("v"))]));
    publish_props(&ch, &x, "k", b"payload", props).await;
    let m = get_wait(&ch, &q, false).await;
    reject(&ch, m.delivery.delivery_tag, false).await;
    wait_for_count(&ch, &by_key, 1).await;
    wait_for_count(&ch, &by_cc, 1).await;
    let expected = expected_dl_headers(
        vec![death(
            1,
            "rejected",
            &q,
            &x,
            &["k", "c1", "c2"],
            Some("60000"),
        )],
        ("rejected", &q, &x),
        vec![("CC", strs(&["c1", "c2"])), ("h", lstr("v"))],
    );
    for dq in [&by_key, &by_cc] {
        let d = get_one(&ch, dq, true).await;
        assert_eq!(body(&d.delivery), "payload");
        assert_eq!(d.delivery.exchange.as_str(), dlx);
        assert_eq!(d.delivery.routing_key.as_str(), "k");
        assert!(!d.delivery.redelivered);
        let p = &d.delivery.properties;
        assert_eq!(p.expiration(), &None, "expiration must be removed");
        assert_eq!(*p.priority(), Some(3));
        assert_eq!(
            p.correlation_id().as_ref().map(|s| s.as_str()),
            Some("corr")
        );
        assert_eq!(dl_headers(p), expected);
    }
    let _ = ch
        .exchange_delete(x.as_str().into(), Default::default())
        .await;
    let _ = ch
        .exchange_delete(dlx.as_str().into(), Default::default())
        .await;
}

#[tokio::test]
async fn dead_letter_routing_key_replaces_key_and_drops_cc() {
    let (_conn, ch) = setup().await;
    let dlx = unique("dlrk-x");
    declare_exchange(&ch, &dlx, ExchangeKind::Direct).await;
    let q = xq(
        &ch,
        "dlrk-src",
        vec![
            ("x-dead-letter-exchange", lstr(&dlx)),
            ("x-dead-letter-routing-key", lstr("dlk")),
        ],
    )
    .await;
    let target = xq(&ch, "dlrk-target", vec![]).await;
    let by_cc = xq(&ch, "dlrk-cc", vec![]).await;
    bind(&ch, &target, &dlx, "dlk").await;
    bind(&ch, &by_cc, &dlx, "c1").await;
    publish_props(&ch, "", &q, b"m", with_headers(vec![("CC", strs(&["c1"]))])).await;
    let m = get_wait(&ch, &q, false).await;
    nack(&ch, m.delivery.delivery_tag, false).await;
    wait_for_count(&ch, &target, 1).await;
    let d = get_one(&ch, &target, true).await;
    assert_eq!(d.delivery.exchange.as_str(), dlx);
    assert_eq!(d.delivery.routing_key.as_str(), "dlk");
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "rejected", &q, "", &[&q, "c1"], None)],
            ("rejected", &q, ""),
            vec![],
        )
    );
    stays_at(&ch, &by_cc, 0).await;
    let _ = ch
        .exchange_delete(dlx.as_str().into(), Default::default())
        .await;
}

#[tokio::test]
async fn dead_letter_to_missing_exchange_drops_silently() {
    let (conn, ch) = setup().await;
    let q = xq(
        &ch,
        "dl-missing",
        vec![("x-dead-letter-exchange", lstr(&unique("no-such-x")))],
    )
    .await;
    publish(&ch, "", &q, b"m").await;
    let m = get_wait(&ch, &q, false).await;
    reject(&ch, m.delivery.delivery_tag, false).await;
    stays_at(&ch, &q, 0).await;
    assert!(ch.status().connected());
    assert_conn_usable(&conn).await;
}

#[tokio::test]
async fn x_death_count_increments_and_moves_to_front() {
    let (_conn, ch) = setup().await;
    let x = unique("xd-x");
    declare_exchange(&ch, &x, ExchangeKind::Direct).await;
    let a = unique("xd-a");
    let b = unique("xd-b");
    declare_queue_with(
        &ch,
        &a,
        excl(),
        table(vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&b)),
        ]),
    )
    .await;
    declare_queue_with(
        &ch,
        &b,
        excl(),
        table(vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&a)),
        ]),
    )
    .await;
    bind(&ch, &a, &x, "ka").await;
    publish(&ch, &x, "ka", b"ping").await;
    let mut m = get_wait(&ch, &a, false).await;
    assert_eq!(m.delivery.properties.headers(), &None);
    let xa = |n| death(n, "rejected", &a, &x, &["ka"], None);
    let xb = |n| death(n, "rejected", &b, "", &[&b], None);
    // rejected in a -> b -> a -> b -> a; an entry whose (queue, reason) recurs is counted up and
    // moved to the front, keeping its exchange and routing keys from the first time
    let rounds: Vec<(&String, Vec<AMQPValue>)> = vec![
        (&b, vec![xa(1)]),
        (&a, vec![xb(1), xa(1)]),
        (&b, vec![xa(2), xb(1)]),
        (&a, vec![xb(2), xa(2)]),
    ];
    for (to, deaths) in rounds {
        reject(&ch, m.delivery.delivery_tag, false).await;
        m = get_wait(&ch, to, false).await;
        assert_eq!(body(&m.delivery), "ping");
        assert_eq!(m.delivery.exchange.as_str(), "");
        assert_eq!(m.delivery.routing_key.as_str(), to.as_str());
        assert_eq!(
            dl_headers(&m.delivery.properties),
            expected_dl_headers(deaths, ("rejected", &a, &x), vec![]),
            "arriving in {to}"
        );
    }
    ack(&ch, m.delivery.delivery_tag).await;
    let _ = ch
        .exchange_delete(x.as_str().into(), Default::default())
        .await;
}

#[tokio::test]
async fn dead_letter_cycle_with_a_rejection_is_not_dropped() {
    let (_conn, ch) = setup().await;
    let a = unique("cyc-rej-a");
    let b = unique("cyc-rej-b");
    declare_queue_with(
        &ch,
        &a,
        excl(),
        table(vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&b)),
        ]),
    )
    .await;
    declare_queue_with(
        &ch,
        &b,
        excl(),
        table(vec![
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&a)),
        ]),
    )
    .await;
    publish(&ch, "", &a, b"m").await;
    let m = get_wait(&ch, &a, false).await;
    reject(&ch, m.delivery.delivery_tag, false).await;
    // b expires it back into a: a cycle, but one with a rejection in it
    let m = get_wait(&ch, &a, true).await;
    assert_eq!(body(&m.delivery), "m");
    assert_eq!(
        dl_headers(&m.delivery.properties),
        expected_dl_headers(
            vec![
                death(1, "expired", &b, "", &[&b], None),
                death(1, "rejected", &a, "", &[&a], None),
            ],
            ("rejected", &a, ""),
            vec![],
        )
    );
}

#[tokio::test]
async fn dead_letter_cycle_without_rejection_is_dropped() {
    let (_conn, ch) = setup().await;
    // a queue that dead-letters expired messages back to itself
    let q = unique("cyc-self");
    declare_queue_with(
        &ch,
        &q,
        excl(),
        table(vec![
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&q)),
        ]),
    )
    .await;
    confirm_select(&ch).await;
    // acked = enqueued; it then expires, is dead-lettered to itself and dropped as a cycle
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &q, false, b"m").await
    ));
    wait_for_count(&ch, &q, 0).await;
    stays_at(&ch, &q, 0).await;
    assert!(get(&ch, &q, true).await.is_none());
}

#[tokio::test]
async fn dead_letter_cycle_drops_only_the_cycling_destination() {
    let (_conn, ch) = setup().await;
    let fx = unique("cyc-fanout");
    declare_exchange(&ch, &fx, ExchangeKind::Fanout).await;
    let q = xq(
        &ch,
        "cyc-src",
        vec![
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", lstr(&fx)),
        ],
    )
    .await;
    let monitor = xq(&ch, "cyc-monitor", vec![]).await;
    bind(&ch, &q, &fx, "").await;
    bind(&ch, &monitor, &fx, "").await;
    let mut mon = consume(&ch, &monitor, no_ack()).await;
    publish(&ch, "", &q, b"m").await;
    let d = mon.next().await;
    assert_eq!(d.exchange.as_str(), fx);
    assert_eq!(d.routing_key.as_str(), q);
    assert_eq!(
        dl_headers(&d.properties),
        expected_dl_headers(
            vec![death(1, "expired", &q, "", &[&q], None)],
            ("expired", &q, ""),
            vec![],
        )
    );
    // the copy for q itself was dropped as a cycle
    stays_at(&ch, &q, 0).await;
    mon.assert_quiet().await;
    let _ = ch
        .exchange_delete(fx.as_str().into(), Default::default())
        .await;
}

// ---------------------------------------------------------------------------------------------
// Quorum queues
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn quorum_declare_validation() {
    let b = broker().await;
    let conn = connect(&b).await;
    let q = unique("qq-invalid");
    let qq = || table(vec![("x-queue-type", lstr("quorum"))]);
    let cases: Vec<(QueueDeclareOptions, String, String)> = vec![
        (
            QueueDeclareOptions::default(),
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'"),
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            q.clone(),
            format!("PRECONDITION_FAILED - invalid property 'auto-delete' for queue '{q}' in vhost '/'"),
        ),
        (
            durable(),
            String::new(),
            "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue"
                .to_string(),
        ),
    ];
    for (opts, name, text) in cases {
        let ch = open(&conn).await;
        let res = declare(&ch, &name, opts, qq()).await;
        expect_channel_close(&conn, &ch, res, 406, &text).await;
    }
    assert!(!queue_exists(&conn, &q).await);
}

#[tokio::test]
async fn quorum_rejects_max_priority() {
    let (conn, ch) = setup().await;
    let q = unique("qq-prio");
    let res = declare(
        &ch,
        &q,
        durable(),
        table(vec![
            ("x-queue-type", lstr("quorum")),
            ("x-max-priority", int(5)),
        ]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/' of queue type rabbit_quorum_queue"),
    )
    .await;
}

#[tokio::test]
async fn classic_queue_rejects_delivery_limit() {
    let (conn, ch) = setup().await;
    let q = unique("classic-dlimit");
    let res = declare(&ch, &q, excl(), table(vec![("x-delivery-limit", int(3))])).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{q}' in vhost '/' of queue type rabbit_classic_queue"),
    )
    .await;
}

#[tokio::test]
async fn quorum_delivery_count_header_with_basic_get() {
    let (conn, ch) = setup().await;
    let dlq = xq(&ch, "qq-dl-dlq", vec![]).await;
    let q = quorum(
        &ch,
        "qq-dlimit-get",
        vec![
            ("x-delivery-limit", int(2)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq)),
        ],
    )
    .await;
    publish_props(&ch, "", &q, b"m", with_headers(vec![("a", int(1))])).await;
    // delivered limit+1 times: x-delivery-count 0, 1, 2 (basic.get shows 0 on the first delivery)
    for (i, how) in ["nack", "reject", "nack"].iter().enumerate() {
        let m = get_wait(&ch, &q, false).await;
        assert_eq!(body(&m.delivery), "m");
        assert_eq!(m.delivery.redelivered, i > 0, "delivery {i}");
        assert_eq!(
            hdrs(&m.delivery.properties),
            table(vec![("a", int(1)), ("x-delivery-count", long(i as i64))]),
            "delivery {i}"
        );
        match *how {
            "nack" => nack(&ch, m.delivery.delivery_tag, true).await,
            _ => reject(&ch, m.delivery.delivery_tag, true).await,
        }
    }
    // the third return exceeds the limit: dead-lettered, x-delivery-count removed
    let d = get_wait(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), "m");
    assert_eq!(d.delivery.exchange.as_str(), "");
    assert_eq!(d.delivery.routing_key.as_str(), dlq);
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "delivery_limit", &q, "", &[&q], None)],
            ("delivery_limit", &q, ""),
            vec![("a", int(1))],
        )
    );
    assert!(get(&ch, &q, true).await.is_none());
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_delivery_count_header_with_consumer() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-dlimit-consume", vec![("x-delivery-limit", int(1))]).await;
    let mut c = consume(&ch, &q, manual_ack()).await;
    publish_props(&ch, "", &q, b"m", with_headers(vec![("a", int(1))])).await;
    // the first delivery to a consumer carries no x-delivery-count
    let d = c.next().await;
    assert!(!d.redelivered);
    assert_eq!(hdrs(&d.properties), table(vec![("a", int(1))]));
    nack(&ch, d.delivery_tag, true).await;
    let d = c.next().await;
    assert!(d.redelivered);
    assert_eq!(
        hdrs(&d.properties),
        table(vec![("a", int(1)), ("x-delivery-count", long(1))])
    );
    // limit 1 reached: no DLX, so the message is dropped
    nack(&ch, d.delivery_tag, true).await;
    c.assert_quiet().await;
    assert_eq!(queue_counts(&ch, &q).await, (0, 1));
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_without_delivery_limit_still_counts_deliveries() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-nolimit", vec![]).await;
    publish(&ch, "", &q, b"m").await;
    for i in 0..4i64 {
        let m = get_wait(&ch, &q, false).await;
        assert_eq!(
            hdrs(&m.delivery.properties),
            table(vec![("x-delivery-count", long(i))])
        );
        reject(&ch, m.delivery.delivery_tag, true).await;
    }
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_channel_close_counts_as_delivery_attempt() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-close", vec![("x-delivery-limit", int(5))]).await;
    publish(&ch, "", &q, b"m").await;
    let ch2 = open(&conn).await;
    let m = get_wait(&ch2, &q, false).await;
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("x-delivery-count", long(0))])
    );
    within(ch2.close(200, "bye".into())).await.expect("close");
    let m = get_wait(&ch, &q, true).await;
    assert!(m.delivery.redelivered);
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("x-delivery-count", long(1))])
    );
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn quorum_requeue_goes_to_the_back() {
    let (conn, ch) = setup().await;
    let q = quorum(&ch, "qq-order", vec![]).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("q{i}").as_bytes()).await;
    }
    wait_for_count(&ch, &q, 5).await;
    let m0 = get_one(&ch, &q, false).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    nack(&ch, m2.delivery.delivery_tag, true).await;
    nack(&ch, m0.delivery.delivery_tag, true).await;
    ack(&ch, m1.delivery.delivery_tag).await;
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("q3".to_string(), false),
            ("q4".to_string(), false),
            ("q2".to_string(), true),
            ("q0".to_string(), true),
        ]
    );
    delete_queue(&conn, &q).await;
}

#[tokio::test]
async fn classic_requeue_goes_back_to_original_position() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "classic-order", vec![]).await;
    publish_all(&ch, &q, &["c0", "c1", "c2", "c3", "c4"]).await;
    let m0 = get_one(&ch, &q, false).await;
    let m1 = get_one(&ch, &q, false).await;
    let m2 = get_one(&ch, &q, false).await;
    nack(&ch, m2.delivery.delivery_tag, true).await;
    nack(&ch, m0.delivery.delivery_tag, true).await;
    ack(&ch, m1.delivery.delivery_tag).await;
    wait_for_count(&ch, &q, 4).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("c0".to_string(), true),
            ("c2".to_string(), true),
            ("c3".to_string(), false),
            ("c4".to_string(), false),
        ]
    );
}

#[tokio::test]
async fn quorum_global_qos_consume_is_540() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = quorum(&ch, "qq-gqos", vec![]).await;
    within(ch.basic_qos(10, BasicQosOptions { global: true }))
        .await
        .expect("qos");
    let res = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        540,
        &format!("NOT_IMPLEMENTED - queue '{q}' in vhost '/' does not support global qos"),
    )
    .await;
    let conn2 = connect(&b).await;
    delete_queue(&conn2, &q).await;
}

#[tokio::test]
async fn quorum_delete_if_unused_is_540() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = quorum(&ch, "qq-ifunused", vec![]).await;
    let res = within(ch.queue_delete(
        q.as_str().into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await;
    expect_connection_close(
        &conn,
        res,
        540,
        &format!("NOT_IMPLEMENTED - cannot delete queue '{q}' in vhost '/'. queue.delete operations with if-unused flag set are not supported by quorum queues"),
    )
    .await;
    let conn2 = connect(&b).await;
    assert!(queue_exists(&conn2, &q).await);
    delete_queue(&conn2, &q).await;
}

// ---------------------------------------------------------------------------------------------
// Priority queues
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn priority_queue_orders_by_priority_then_fifo() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "prio", vec![("x-max-priority", int(5))]).await;
    let msgs: [(&str, Option<u8>); 8] = [
        ("a", None),
        ("b", Some(3)),
        ("c", Some(9)),
        ("d", Some(5)),
        ("e", Some(0)),
        ("f", Some(3)),
        ("g", Some(1)),
        ("h", Some(255)),
    ];
    for (m, p) in msgs {
        let props = match p {
            Some(p) => prio(p),
            None => BasicProperties::default(),
        };
        publish_props(&ch, "", &q, m.as_bytes(), props).await;
    }
    wait_for_count(&ch, &q, 8).await;
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &q, true).await {
        got.push((body(&m.delivery), *m.delivery.properties.priority()));
    }
    // above max counts as max, but the property is delivered unchanged
    assert_eq!(
        got,
        vec![
            ("c".to_string(), Some(9)),
            ("d".to_string(), Some(5)),
            ("h".to_string(), Some(255)),
            ("b".to_string(), Some(3)),
            ("f".to_string(), Some(3)),
            ("g".to_string(), Some(1)),
            ("a".to_string(), None),
            ("e".to_string(), Some(0)),
        ]
    );
}

#[tokio::test]
async fn priority_is_ignored_without_max_priority() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "noprio", vec![]).await;
    for (m, p) in [("a", 1u8), ("b", 9), ("c", 5)] {
        publish_props(&ch, "", &q, m.as_bytes(), prio(p)).await;
    }
    wait_for_count(&ch, &q, 3).await;
    assert_eq!(drain(&ch, &q).await, vec!["a", "b", "c"]);
}

#[tokio::test]
async fn priority_queue_delivers_to_consumer_by_priority() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "prio-consume", vec![("x-max-priority", int(10))]).await;
    for (m, p) in [("low", 1u8), ("high", 8), ("mid", 4)] {
        publish_props(&ch, "", &q, m.as_bytes(), prio(p)).await;
    }
    wait_for_count(&ch, &q, 3).await;
    let mut c = consume(&ch, &q, no_ack()).await;
    assert_eq!(bodies(&c.next_n(3).await), vec!["high", "mid", "low"]);
}

#[tokio::test]
async fn max_priority_above_255_is_rejected() {
    let (conn, ch) = setup().await;
    let q = unique("prio256");
    let res = declare(&ch, &q, excl(), table(vec![("x-max-priority", int(256))])).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        &format!("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{q}' in vhost '/': {{max_value_exceeded,256}}"),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Consumer priorities
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn higher_priority_consumer_gets_messages_while_it_has_capacity() {
    let b = broker().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = xq(&ch, "cprio", vec![]).await;
    let low_ch = open(&conn).await;
    let high_ch = open(&conn).await;
    within(low_ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .unwrap();
    within(high_ch.basic_qos(2, BasicQosOptions::default()))
        .await
        .unwrap();
    // registered first, but lower priority
    let low = within(low_ch.basic_consume(
        q.as_str().into(),
        "low".into(),
        manual_ack(),
        table(vec![("x-priority", int(1))]),
    ))
    .await
    .unwrap();
    let mut low = deliveries(low);
    let high = within(high_ch.basic_consume(
        q.as_str().into(),
        "high".into(),
        manual_ack(),
        table(vec![("x-priority", int(10))]),
    ))
    .await
    .unwrap();
    let mut high = deliveries(high);
    for i in 0..5 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let h = high.next_n(2).await;
    assert_eq!(bodies(&h), vec!["m0", "m1"]);
    assert_eq!(bodies(&low.next_n(3).await), vec!["m2", "m3", "m4"]);
    high.assert_quiet().await;
    for d in &h {
        ack(&high_ch, d.delivery_tag).await;
    }
    publish(&ch, "", &q, b"m5").await;
    assert_eq!(body(&high.next().await), "m5");
    low.assert_quiet().await;
}

#[tokio::test]
async fn higher_priority_auto_ack_consumer_gets_everything() {
    let (_conn, ch) = setup().await;
    let q = xq(&ch, "cprio-auto", vec![]).await;
    let low = within(ch.basic_consume(
        q.as_str().into(),
        "low".into(),
        no_ack(),
        table(vec![("x-priority", int(-5))]),
    ))
    .await
    .unwrap();
    let mut low = deliveries(low);
    // no x-priority = 0 > -5
    let mut normal = consume_tagged(&ch, &q, "normal", no_ack()).await;
    for i in 0..4 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    assert_eq!(
        bodies(&normal.next_n(4).await),
        vec!["m0", "m1", "m2", "m3"]
    );
    low.assert_quiet().await;
}

// ---------------------------------------------------------------------------------------------
// Single active consumer
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Direct reply-to
// ---------------------------------------------------------------------------------------------

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn is_b64(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
}

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let b = broker().await;
    let requester = connect(&b).await;
    let responder = connect(&b).await;
    let rch = open(&requester).await;
    let sch = open(&responder).await;
    let rq = xq(&sch, "rpc", vec![]).await;
    let mut replies = consume(&rch, REPLY_TO, no_ack()).await;
    for corr in ["c1", "c2"] {
        publish_props(
            &rch,
            "",
            &rq,
            corr.as_bytes(),
            BasicProperties::default()
                .with_reply_to(REPLY_TO.into())
                .with_correlation_id(corr.into()),
        )
        .await;
    }
    let req1 = get_wait(&sch, &rq, true).await;
    let req2 = get_wait(&sch, &rq, true).await;
    let name = req1
        .delivery
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .as_str()
        .to_string();
    // amq.rabbitmq.reply-to.<base64 of the channel's pid>.<base64 of a 16-byte key>
    let rest = name
        .strip_prefix("amq.rabbitmq.reply-to.")
        .unwrap_or_else(|| panic!("reply_to not rewritten: {name}"));
    let parts: Vec<&str> = rest.split('.').collect();
    assert_eq!(parts.len(), 2, "{name}");
    assert!(is_b64(parts[0]) && is_b64(parts[1]), "{name}");
    assert_eq!(parts[1].len(), 24, "{name}");
    assert!(parts[1].ends_with("=="), "{name}");
    // same channel, same reply name
    assert_eq!(
        req2.delivery
            .properties
            .reply_to()
            .as_ref()
            .map(|s| s.as_str()),
        Some(name.as_str())
    );
    // the responder sees the reply "queue": no messages, one consumer
    let ok = declare(&sch, &name, passive(), FieldTable::default())
        .await
        .expect("passive declare of the reply name");
    assert_eq!(ok.name().as_str(), name);
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
    publish_props(
        &sch,
        "",
        &name,
        b"answer",
        BasicProperties::default().with_correlation_id("c1".into()),
    )
    .await;
    let d = replies.next().await;
    assert_eq!(body(&d), "answer");
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), name);
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("c1")
    );
    // a name with the wrong key does not exist and is unroutable
    let wrong = format!(
        "amq.rabbitmq.reply-to.{}.AAAAAAAAAAAAAAAAAAAAAA==",
        parts[0]
    );
    let probe = open(&responder).await;
    confirm_select(&probe).await;
    assert!(!routable(&probe, &wrong).await);
    let ch3 = open(&responder).await;
    let res = declare(&ch3, &wrong, passive(), FieldTable::default()).await;
    expect_channel_close(
        &responder,
        &ch3,
        res,
        404,
        &format!("NOT_FOUND - no queue '{wrong}' in vhost '/'"),
    )
    .await;
    // once the requester's channel is closed its reply name is gone
    within(rch.close(200, "bye".into())).await.expect("close");
    assert!(!routable(&probe, &name).await);
    let ch4 = open(&responder).await;
    let res = declare(&ch4, &name, passive(), FieldTable::default()).await;
    expect_channel_close(
        &responder,
        &ch4,
        res,
        404,
        &format!("NOT_FOUND - no queue '{name}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn direct_reply_to_publish_to_bad_names_is_unroutable() {
    let (_conn, ch) = setup().await;
    confirm_select(&ch).await;
    assert!(!routable(&ch, "amq.rabbitmq.reply-to.bogus").await);
    assert!(!routable(&ch, REPLY_TO).await);
}

#[tokio::test]
async fn direct_reply_to_bare_name_passive_declare() {
    let (_conn, ch) = setup().await;
    let ok = declare(&ch, REPLY_TO, passive(), FieldTable::default())
        .await
        .expect("passive declare of amq.rabbitmq.reply-to");
    assert_eq!(ok.name().as_str(), REPLY_TO);
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));
}

#[tokio::test]
async fn direct_reply_to_invalid_name_passive_is_404() {
    let (conn, ch) = setup().await;
    let name = "amq.rabbitmq.reply-to.bogus";
    let res = declare(&ch, name, passive(), FieldTable::default()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        &format!("NOT_FOUND - no queue '{name}' in vhost '/'"),
    )
    .await;
}

#[tokio::test]
async fn direct_reply_to_consumer_must_be_no_ack() {
    let (conn, ch) = setup().await;
    let res = within(ch.basic_consume(
        REPLY_TO.into(),
        "".into(),
        manual_ack(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    )
    .await;
}

#[tokio::test]
async fn direct_reply_to_second_consumer_is_406() {
    let (conn, ch) = setup().await;
    let _first = consume(&ch, REPLY_TO, no_ack()).await;
    let res =
        within(ch.basic_consume(REPLY_TO.into(), "".into(), no_ack(), FieldTable::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - reply consumer already set",
    )
    .await;
}

#[tokio::test]
async fn direct_reply_to_publish_needs_consumer_on_same_channel() {
    let b = broker().await;
    let conn = connect(&b).await;
    let other = open(&conn).await;
    let _elsewhere = consume(&other, REPLY_TO, no_ack()).await;
    let ch = open(&conn).await;
    let q = xq(&ch, "rpc-nocons", vec![]).await;
    let w = watch(&ch).await;
    within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"req",
        BasicProperties::default().with_reply_to(REPLY_TO.into()),
    ))
    .await
    .expect("publish");
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        406,
        "PRECONDITION_FAILED - fast reply consumer does not exist",
    );
    assert_conn_usable(&conn).await;
}
