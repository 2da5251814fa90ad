//! Message TTL, per message (the expiration property) and per queue (x-message-ttl): validation,
//! timer-driven expiry in queue order, TTL 0, dead-lettering of expired messages, and the lower of
//! the two TTLs winning. Checked against RabbitMQ 3.10.8.
//!
//! Timer tests use short TTLs (50-400 ms) and poll with deadlines.

use crate::common::*;
use lapin::options::*;
use std::time::Duration;
use tokio::time::{sleep, Instant};

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
        // Ten years is the longest; Erlang's ~p breaks a term that would pass column 80.
        ("315360000001", "{value_too_large,315360000001}"),
        (
            "99999999999999999999",
            "{value_too_large,\n                                            99999999999999999999}",
        ),
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
