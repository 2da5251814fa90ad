//! `compat = "4.3"`: what RabbitMQ 4.3 refuses or does differently, as its source and release notes
//! establish (RabbitMQ 4.x cannot run here; the texts are built as its code builds them). Each check has
//! its 3.13 counterpart in the rest of the suite.

use crate::common::raw::{longstr, shortstr, Raw, PROTOCOL_HEADER};
use crate::common::*;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::time::Duration;

fn config_4() -> warren::Config {
    warren::Config {
        compat: "4.3".into(),
        ..test_config()
    }
}

const TRANSIENT_REFUSED: &str = "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\nBy default, this feature is not permitted anymore.\nThe feature will be removed from a future major RabbitMQ version, regardless of the configuration; actual version to be determined.\nTo...";

#[tokio::test]
async fn transient_non_exclusive_queues_are_refused_with_541() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    // Durable and exclusive queues are still fine.
    declare_queue_with(&ch, "kept", durable(), FieldTable::default()).await;
    declare_queue_with(&ch, "mine", exclusive(), FieldTable::default()).await;
    let res = try_declare_queue(
        &ch,
        "passing",
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await;
    assert_eq!(TRANSIENT_REFUSED.len(), 255);
    expect_connection_close(&conn, res, 541, TRANSIENT_REFUSED).await;

    // A non-durable quorum queue meets the same refusal first (3.13: 406 invalid property).
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let res = try_declare_queue(
        &ch,
        "qq",
        QueueDeclareOptions::default(),
        table(vec![("x-queue-type", lstr("quorum"))]),
    )
    .await;
    expect_connection_close(&conn, res, 541, TRANSIENT_REFUSED).await;
}

#[tokio::test]
async fn classic_queue_arguments_4_3_refuses() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let res = try_declare_queue(
        &ch,
        "v1",
        durable(),
        table(vec![("x-queue-version", long(1))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-queue-version' for queue 'v1' in vhost '/': \"unsupported queue version '1'\"",
    )
    .await;
    let ch = open(&conn).await;
    let res = try_declare_queue(
        &ch,
        "ct",
        durable(),
        table(vec![("x-consumer-timeout", long(1000))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'ct' in vhost '/' of queue type rabbit_classic_queue",
    )
    .await;
    // x-queue-mode is accepted (and ignored), as 4.3's source does despite its release note.
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "lazy",
        durable(),
        table(vec![("x-queue-mode", lstr("lazy"))]),
    )
    .await;
    let res = try_declare_queue(
        &ch,
        "loc",
        durable(),
        table(vec![("x-queue-master-locator", lstr("min-masters"))]),
    )
    .await;
    let err = res.expect_err("refused");
    let (code, text) = amqp_error(&err);
    assert_eq!(code, 541);
    assert!(
        text.starts_with("INTERNAL_ERROR - Feature `queue_master_locator` is deprecated.\n")
            && text.ends_with("To con...")
            && text.len() == 255,
        "{text:?}"
    );
}

#[tokio::test]
async fn global_qos_is_a_per_consumer_limit() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let (qa, qb) = ("qos-a", "qos-b");
    for q in [qa, qb] {
        declare_queue_with(&ch, q, durable(), FieldTable::default()).await;
        publish_all(&ch, q, &["1", "2", "3"]).await;
    }
    within(ch.basic_qos(1, BasicQosOptions { global: true }))
        .await
        .expect("qos");
    let mut a = consume(&ch, qa, BasicConsumeOptions::default()).await;
    let mut b2 = consume(&ch, qb, BasicConsumeOptions::default()).await;
    // Under 3.13 the two consumers would share one unacked message; here each has its own limit of 1.
    a.next().await;
    b2.next().await;
    a.assert_quiet().await;
    b2.assert_quiet().await;
}

#[tokio::test]
async fn the_version_and_message_size_of_4_3() {
    let server = warren::Server::builder()
        .compat("4.3")
        .management_port(Some(0))
        .start()
        .await
        .expect("start");
    let b = TestBroker::from_url(server.amqp_url());
    let mut raw = Raw::connect(&b).await;
    raw.write(PROTOCOL_HEADER).await;
    let (_, start) = raw.method_frame().await;
    let lapin::protocol::AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::Start(
        start,
    )) = start
    else {
        panic!("connection.start expected: {start:?}")
    };
    assert_eq!(
        start.server_properties.inner().get("version"),
        Some(&lapin::types::AMQPValue::LongString("4.3.5".into()))
    );
    let conn = connect(&b).await;
    let overview: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{}/api/overview",
            server.management_url().expect("management")
        ))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("overview")
        .json()
        .await
        .expect("json");
    assert_eq!(overview["rabbitmq_version"], "4.3.5");
    let ch = open(&conn).await;
    declare_queue_with(&ch, "big", durable(), FieldTable::default()).await;
    let w = watch(&ch).await;
    let body = vec![0u8; 16 * 1024 * 1024 + 1];
    within(ch.basic_publish(
        "".into(),
        "big".into(),
        Default::default(),
        &body,
        Default::default(),
    ))
    .await
    .expect("publish");
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        406,
        "PRECONDITION_FAILED - message size 16777217 is larger than configured max size 16777216",
    );
}

#[tokio::test]
async fn quorum_queues_dead_letter_after_twenty_deliveries_by_default() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(&ch, "parked", durable(), FieldTable::default()).await;
    declare_queue_with(
        &ch,
        "retried",
        durable(),
        table(vec![
            ("x-queue-type", lstr("quorum")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr("parked")),
        ]),
    )
    .await;
    publish(&ch, "", "retried", b"poison").await;
    for _ in 0..21 {
        let m = get_wait(&ch, "retried", false).await;
        reject(&ch, m.delivery.delivery_tag, true).await;
    }
    let dead = get_wait(&ch, "parked", true).await;
    assert_eq!(body(&dead.delivery), "poison");
    assert!(get(&ch, "retried", true).await.is_none());
}

#[tokio::test]
async fn classic_queues_have_no_consumer_timeout() {
    let (server, b) = own_warren_with(warren::Config {
        clock: "virtual".into(),
        consumer_timeout: 1000,
        ..config_4()
    })
    .await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(&ch, "slow", durable(), FieldTable::default()).await;
    publish(&ch, "", "slow", b"x").await;
    let mut d = consume(&ch, "slow", BasicConsumeOptions::default()).await;
    let m = d.next().await;
    server.advance_clock(Duration::from_secs(60));
    // The sweep ran on the advance; the channel is still open and the delivery can be acked.
    ack(&ch, m.delivery_tag).await;
    assert!(ch.status().connected());
    declare_queue_with(&ch, "slow", durable(), FieldTable::default()).await;
}

#[tokio::test]
async fn tune_ok_frame_max_below_8192_is_refused() {
    let (_s, b) = own_warren_with(config_4()).await;
    let mut r = Raw::connect(&b).await;
    r.write(PROTOCOL_HEADER).await;
    r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&0u32.to_be_bytes());
    shortstr(&mut a, "PLAIN");
    longstr(&mut a, b"\0guest\0guest");
    shortstr(&mut a, "en_US");
    r.method(0, 10, 11, &a).await;
    r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&2047u16.to_be_bytes());
    a.extend_from_slice(&4096u32.to_be_bytes());
    a.extend_from_slice(&0u16.to_be_bytes());
    r.method(0, 10, 31, &a).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            530,
            "NOT_ALLOWED - negotiated frame_max = 4096 is lower than the minimum allowed value (8192)",
            10,
            30
        )
    );
}

#[tokio::test]
async fn a_nack_requeue_is_not_a_failed_delivery_on_4_3() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "nacked",
        durable(),
        table(vec![
            ("x-queue-type", lstr("quorum")),
            ("x-delivery-limit", long(2)),
        ]),
    )
    .await;
    publish(&ch, "", "nacked", b"again").await;
    for _ in 0..5 {
        let m = get_wait(&ch, "nacked", false).await;
        nack(&ch, m.delivery.delivery_tag, true).await;
    }
    // Five nacks later it is still there; rejects count, and the third one drops it (no dead-letter exchange).
    for _ in 0..3 {
        let m = get_wait(&ch, "nacked", false).await;
        reject(&ch, m.delivery.delivery_tag, true).await;
    }
    assert!(get(&ch, "nacked", true).await.is_none());
}

fn virtual_4() -> warren::Config {
    warren::Config {
        clock: "virtual".into(),
        ..config_4()
    }
}

#[tokio::test]
async fn a_timed_out_quorum_consumer_is_cancelled_and_its_messages_returned() {
    let (server, b) = own_warren_with(virtual_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "slowq",
        durable(),
        table(vec![
            ("x-queue-type", lstr("quorum")),
            ("x-consumer-timeout", long(1000)),
        ]),
    )
    .await;
    // An older unacked delivery from a classic queue (no timeout under 4.3) on the same channel does not
    // hide the quorum one's.
    declare_queue_with(&ch, "holdq", durable(), FieldTable::default()).await;
    publish(&ch, "", "holdq", b"kept").await;
    let mut held = consume(&ch, "holdq", BasicConsumeOptions::default()).await;
    let kept = held.next().await;
    publish(&ch, "", "slowq", b"held").await;
    let mut c = consume(&ch, "slowq", BasicConsumeOptions::default()).await;
    let d = c.next().await;
    assert!(!d.redelivered);
    server.advance_clock(Duration::from_secs(2));
    // lapin advertises consumer_cancel_notify: basic.cancel, and the channel stays open.
    c.cancelled().await;
    assert!(ch.status().connected());
    // The message is back, redelivered, counted as acquired but not as a failed delivery.
    let m = get_wait(&ch, "slowq", false).await;
    assert_eq!(body(&m.delivery), "held");
    assert!(m.delivery.redelivered);
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("x-acquired-count", long(1))])
    );
    // Settling the returned tag later is no error.
    ack(&ch, d.delivery_tag).await;
    ack(&ch, m.delivery.delivery_tag).await;
    ack(&ch, kept.delivery_tag).await;
    declare_queue_with(&ch, "slowq", passive(), FieldTable::default()).await;
}

#[tokio::test]
async fn a_timed_out_basic_get_closes_the_channel_with_minus_one() {
    let (server, b) = own_warren_with(virtual_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let args = table(vec![
        ("x-queue-type", lstr("quorum")),
        ("x-consumer-timeout", long(1000)),
    ]);
    declare_queue_with(&ch, "gotq", durable(), args).await;
    publish(&ch, "", "gotq", b"x").await;
    let _m = get_wait(&ch, "gotq", false).await;
    let w = watch(&ch).await;
    server.advance_clock(Duration::from_secs(2));
    let err = w.closed().await;
    assert_channel_closed(
        &err,
        406,
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: -1 ms. This timeout value can be configured, see consumers doc guide to learn more",
    );
}

#[tokio::test]
async fn a_consumer_timeout_argument_is_refused_on_classic_queues() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(&ch, "cq", durable(), FieldTable::default()).await;
    let res = within(ch.basic_consume(
        "cq".into(),
        "".into(),
        BasicConsumeOptions::default(),
        table(vec![("x-consumer-timeout", long(5000))]),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'cq' in vhost '/' of queue type rabbit_classic_queue",
    )
    .await;
}

#[tokio::test]
async fn acquired_and_delivery_counts_of_4_3() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let args = table(vec![("x-queue-type", lstr("quorum"))]);
    declare_queue_with(&ch, "counted", durable(), args).await;
    publish_props(&ch, "", "counted", b"m", with_headers(vec![("a", int(1))])).await;
    // No count header before the first return, not even on basic.get (3.x adds x-delivery-count 0).
    let m = get_wait(&ch, "counted", false).await;
    assert_eq!(hdrs(&m.delivery.properties), table(vec![("a", int(1))]));
    nack(&ch, m.delivery.delivery_tag, true).await;
    let m = get_wait(&ch, "counted", false).await;
    assert!(m.delivery.redelivered);
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![("a", int(1)), ("x-acquired-count", long(1))])
    );
    reject(&ch, m.delivery.delivery_tag, true).await;
    let m = get_wait(&ch, "counted", false).await;
    assert_eq!(
        hdrs(&m.delivery.properties),
        table(vec![
            ("a", int(1)),
            ("x-acquired-count", long(2)),
            ("x-delivery-count", long(1)),
        ])
    );
}

#[tokio::test]
async fn a_published_x_death_is_not_read_back() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue_with(&ch, "graveyard", durable(), FieldTable::default()).await;
    let args = table(vec![
        ("x-dead-letter-exchange", lstr("")),
        ("x-dead-letter-routing-key", lstr("graveyard")),
    ]);
    declare_queue_with(&ch, "work", durable(), args).await;
    // A client republishes a message that died here five times before, with first-death headers of its own.
    let old = lapin::types::FieldTable::from(std::collections::BTreeMap::from([
        ("count".into(), long(5)),
        ("reason".into(), lstr("rejected")),
        ("queue".into(), lstr("work")),
        ("exchange".into(), lstr("")),
        ("routing-keys".into(), strs(&["work"])),
    ]));
    let headers = vec![
        (
            "x-death",
            lapin::types::AMQPValue::FieldArray(
                vec![lapin::types::AMQPValue::FieldTable(old)].into(),
            ),
        ),
        ("x-first-death-queue", lstr("elsewhere")),
    ];
    publish_props(&ch, "", "work", b"again", with_headers(headers)).await;
    let m = get_wait(&ch, "work", false).await;
    reject(&ch, m.delivery.delivery_tag, false).await;
    let d = get_wait(&ch, "graveyard", true).await;
    let h = hdrs(&d.delivery.properties);
    let Some(lapin::types::AMQPValue::FieldArray(deaths)) = h.inner().get("x-death") else {
        panic!("no x-death in {h:?}");
    };
    assert_eq!(deaths.as_slice().len(), 1, "{deaths:?}");
    let lapin::types::AMQPValue::FieldTable(e) = &deaths.as_slice()[0] else {
        panic!("{deaths:?}");
    };
    assert_eq!(e.inner().get("count"), Some(&long(1)), "a fresh count");
    assert_eq!(h.inner().get("x-first-death-queue"), Some(&lstr("work")));
}

#[tokio::test]
async fn reply_to_names_cannot_be_bound_and_refused_headers_get_amqp_1_0s() {
    let (_s, b) = own_warren_with(config_4()).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let res = within(ch.queue_bind(
        "amq.rabbitmq.reply-to.abc".into(),
        "amq.direct".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        "ACCESS_REFUSED - cannot bind or unbind to a volatile (direct reply-to) queue",
    )
    .await;
    // AMQP 0-8: RabbitMQ 4.x has no 0-8 and answers with the AMQP 1.0 header.
    let mut r = Raw::connect(&b).await;
    r.write(b"AMQP\x01\x01\x08\x00").await;
    assert_eq!(
        r.read_exact(8).await.as_deref(),
        Some(&b"AMQP\x03\x01\x00\x00"[..])
    );
    assert_eq!(r.read_exact(1).await, None, "then the socket closes");
}

#[tokio::test]
async fn passive_declares_need_some_permission_and_refusals_name_it() {
    let (server, _) = own_warren_with(config_4()).await;
    add_user(&server, "u", "p", ["^none$", "^none$", "^readable$"]).await;
    let admin = connect(&TestBroker::from_url(server.amqp_url())).await;
    let ach = open(&admin).await;
    declare_queue_with(&ach, "readable", durable(), FieldTable::default()).await;
    declare_queue_with(&ach, "hidden", durable(), FieldTable::default()).await;
    let conn = connect(&TestBroker::from_url(server.url_for("u", "p", "%2f"))).await;
    let ch = open(&conn).await;
    // Read permission is enough for a passive declare.
    declare_queue_with(&ch, "readable", passive(), FieldTable::default()).await;
    // None at all is refused before the queue is even looked up, naming configure.
    for name in ["hidden", "missing"] {
        let ch = open(&conn).await;
        let res = try_declare_queue(&ch, name, passive(), FieldTable::default()).await;
        expect_channel_close(
            &conn,
            &ch,
            res,
            403,
            &format!(
                "ACCESS_REFUSED - configure access to queue '{name}' in vhost '/' refused for user 'u'"
            ),
        )
        .await;
    }
}
