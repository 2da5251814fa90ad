//! Dead-lettering: rejected and nacked messages, the x-death and x-first-death-* headers, kept and
//! replaced routing keys, a missing dead-letter exchange, and dead-letter cycles.
//! Checked against RabbitMQ 3.10.8.

use crate::common::exclusive as excl;
use crate::common::*;
use lapin::{types::AMQPValue, BasicProperties, ExchangeKind};

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
