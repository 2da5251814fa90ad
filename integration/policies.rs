//! Policies and operator policies, loaded from RabbitMQ-format definitions at start.
//!
//! RabbitMQ sets policies with `rabbitmqctl set_policy`, which this suite cannot do over AMQP, so
//! these tests always start their own Warren (with `Server::builder().definitions(..)`) and never
//! use `AMQP_URL`. Every expectation was first checked by hand on RabbitMQ 3.10.8 with the same
//! policies set through rabbitmqctl (set_policy / set_operator_policy) and pika:
//! * message-ttl, expires, max-length, max-length-bytes: the lower of policy and queue argument;
//! * dead-letter-exchange, dead-letter-routing-key, overflow, alternate-exchange: the argument wins;
//! * only the highest-priority matching policy applies (no merging), likewise among operator
//!   policies; the operator policy is then merged with the policy and the arguments (lowest wins);
//! * apply-to restricts to queues or exchanges; patterns are unanchored regexes.

use crate::common::*;
use crate::common::{exclusive as excl, try_declare_queue as declare};
use lapin::{
    options::*,
    types::{AMQPValue, FieldTable},
    Channel, Confirmation, Connection, ExchangeKind,
};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// A Warren started with `json` as its definitions, plus a connection and a channel on "/".
async fn start(json: &str) -> (warren::Server, Connection, Channel) {
    let defs = serde_json::from_str::<warren::definitions::Definitions>(json)
        .unwrap_or_else(|e| panic!("bad definitions JSON: {e}\n{json}"));
    let server = warren::Server::builder()
        .definitions(defs)
        .start()
        .await
        .expect("start Warren with definitions");
    let b = TestBroker::from_url(server.url_for("guest", "guest", "%2f"));
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    (server, conn, ch)
}

async fn queue(ch: &Channel, name: &str, args: Vec<(&str, AMQPValue)>) -> String {
    declare_queue_with(ch, name, excl(), table(args)).await
}

/// Publish on a confirm channel; the message is in the queue when this returns.
async fn put(ch: &Channel, q: &str, body: &str) {
    let c = publish_confirm(ch, "", q, false, body.as_bytes()).await;
    assert!(is_plain_ack(&c), "publish to {q}: {c:?}");
}

/// Wait until `q` is empty, and return how long that took from `since`.
async fn emptied(ch: &Channel, q: &str, since: Instant) -> Duration {
    wait_for_count(ch, q, 0).await;
    since.elapsed()
}

// ---------------------------------------------------------------------------------------------
// message-ttl / expires / max-length / max-length-bytes: lowest of policy and argument
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_message_ttl() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"ttl","pattern":"^ttl\\.","apply-to":"queues",
            "definition":{"message-ttl":100},"priority":0}]}"#,
    )
    .await;
    confirm_select(&ch).await;
    let plain = queue(&ch, "ttl.plain", vec![]).await;
    let higher = queue(&ch, "ttl.arg-higher", vec![("x-message-ttl", int(60000))]).await;
    let other = queue(&ch, "xttl.other", vec![]).await;
    let t0 = Instant::now();
    put(&ch, &plain, "a").await;
    put(&ch, &higher, "b").await;
    put(&ch, &other, "c").await;
    let took = emptied(&ch, &plain, t0).await;
    assert!(took >= Duration::from_millis(90), "expired after {took:?}");
    emptied(&ch, &higher, t0).await;
    // the pattern is a regex: "^ttl\." does not match "xttl.other"
    stays_at(&ch, &other, 1).await;
}

#[tokio::test]
async fn policy_expires() {
    let (_server, conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"exp","pattern":"^exp\\.","apply-to":"queues",
            "definition":{"expires":200},"priority":0}]}"#,
    )
    .await;
    let probe = open(&conn).await;
    confirm_select(&probe).await;
    let t0 = Instant::now();
    declare_queue(&ch, "exp.plain").await;
    declare_queue_with(
        &ch,
        "exp.arg-higher",
        QueueDeclareOptions::default(),
        table(vec![("x-expires", int(100000))]),
    )
    .await;
    declare_queue(&ch, "other.exp").await;
    let gone = wait_gone(&probe, "exp.plain").await;
    assert!(
        gone - t0 >= Duration::from_millis(190),
        "expired after {:?}",
        gone - t0
    );
    wait_gone(&probe, "exp.arg-higher").await;
    sleep(Duration::from_millis(400) - t0.elapsed().min(Duration::from_millis(400))).await;
    assert!(routable(&probe, "other.exp").await);
    let res = within(ch.queue_declare("exp.plain".into(), passive(), FieldTable::default())).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        404,
        "NOT_FOUND - no queue 'exp.plain' in vhost '/'",
    )
    .await;
}

#[tokio::test]
async fn policy_max_length() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"ml","pattern":"^ml\\.","apply-to":"queues",
            "definition":{"max-length":2},"priority":0}]}"#,
    )
    .await;
    let plain = queue(&ch, "ml.plain", vec![]).await;
    let higher = queue(&ch, "ml.arg-higher", vec![("x-max-length", int(10))]).await;
    let lower = queue(&ch, "ml.arg-lower", vec![("x-max-length", int(1))]).await;
    for q in [&plain, &higher, &lower] {
        for m in ["m0", "m1", "m2", "m3"] {
            publish(&ch, "", q, m.as_bytes()).await;
        }
    }
    wait_for_count(&ch, &lower, 1).await;
    assert_eq!(drain(&ch, &plain).await, vec!["m2", "m3"]);
    assert_eq!(drain(&ch, &higher).await, vec!["m2", "m3"]);
    assert_eq!(drain(&ch, &lower).await, vec!["m3"]);
}

#[tokio::test]
async fn policy_max_length_bytes() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"mlb","pattern":"^mlb\\.","apply-to":"queues",
            "definition":{"max-length-bytes":6},"priority":0}]}"#,
    )
    .await;
    let plain = queue(&ch, "mlb.plain", vec![]).await;
    let higher = queue(
        &ch,
        "mlb.arg-higher",
        vec![("x-max-length-bytes", int(100))],
    )
    .await;
    let lower = queue(&ch, "mlb.arg-lower", vec![("x-max-length-bytes", int(3))]).await;
    for q in [&plain, &higher, &lower] {
        for m in ["aaa", "bbb", "ccc"] {
            publish(&ch, "", q, m.as_bytes()).await;
        }
    }
    wait_for_count(&ch, &lower, 1).await;
    assert_eq!(drain(&ch, &plain).await, vec!["bbb", "ccc"]);
    assert_eq!(drain(&ch, &higher).await, vec!["bbb", "ccc"]);
    assert_eq!(drain(&ch, &lower).await, vec!["ccc"]);
}

// ---------------------------------------------------------------------------------------------
// dead-letter-exchange / dead-letter-routing-key / overflow: the argument wins
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_dead_letter_exchange() {
    let (_server, conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"dlx","pattern":"^dlx\\.","apply-to":"queues",
            "definition":{"dead-letter-exchange":"","dead-letter-routing-key":"dlq"},"priority":0}]}"#,
    )
    .await;
    let dlq = queue(&ch, "dlq", vec![]).await;
    let dlq2 = queue(&ch, "dlq2", vec![]).await;
    let plain = queue(&ch, "dlx.plain", vec![]).await;
    let own = queue(
        &ch,
        "dlx.own-args",
        vec![
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq2)),
        ],
    )
    .await;
    let missing = queue(
        &ch,
        "dlx.missing",
        vec![("x-dead-letter-exchange", lstr("no-such-exchange"))],
    )
    .await;
    for q in [&plain, &own, &missing] {
        publish(&ch, "", q, q.as_bytes()).await;
        let m = get_wait(&ch, q, false).await;
        reject(&ch, m.delivery.delivery_tag, false).await;
    }
    wait_for_count(&ch, &dlq, 1).await;
    wait_for_count(&ch, &dlq2, 1).await;
    let d = get_one(&ch, &dlq, true).await;
    assert_eq!(body(&d.delivery), plain);
    assert_eq!(d.delivery.exchange.as_str(), "");
    assert_eq!(d.delivery.routing_key.as_str(), "dlq");
    assert_eq!(
        dl_headers(&d.delivery.properties),
        expected_dl_headers(
            vec![death(1, "rejected", &plain, "", &[&plain], None)],
            ("rejected", &plain, ""),
            vec![],
        )
    );
    let d = get_one(&ch, &dlq2, true).await;
    assert_eq!(body(&d.delivery), own);
    assert_eq!(d.delivery.routing_key.as_str(), "dlq2");
    // the argument's nonexistent exchange won: dropped
    stays_at(&ch, &dlq, 0).await;
    assert_eq!(queue_counts(&ch, &missing).await.0, 0);

    // a routing key argument still needs a DLX argument, whatever the policy says
    let ch2 = open(&conn).await;
    let res = declare(
        &ch2,
        "dlx.rk-only",
        excl(),
        table(vec![("x-dead-letter-routing-key", lstr("dlq2"))]),
    )
    .await;
    expect_channel_close(
        &conn,
        &ch2,
        res,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'dlx.rk-only' in vhost '/': routing_key_but_no_dlx_defined",
    )
    .await;
}

#[tokio::test]
async fn policy_limits_combine_with_argument_dead_lettering() {
    // lowest limits, but the queue's own overflow / DLX / routing key
    let (_server, conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"ov","pattern":"^ov\\.","apply-to":"queues",
            "definition":{"max-length":1,"overflow":"reject-publish","dead-letter-exchange":"nowhere",
                          "dead-letter-routing-key":"dlq","message-ttl":60000,"expires":60000},
            "priority":0}]}"#,
    )
    .await;
    let dlq2 = queue(&ch, "dlq2", vec![]).await;
    let mut dl = consume(&ch, &dlq2, no_ack()).await;
    let probe = open(&conn).await;
    confirm_select(&probe).await;
    let q = "ov.args";
    declare_queue_with(
        &ch,
        q,
        QueueDeclareOptions::default(),
        table(vec![
            ("x-max-length", int(3)),
            ("x-overflow", lstr("drop-head")),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr(&dlq2)),
            ("x-message-ttl", int(150)),
            ("x-expires", int(600)),
        ]),
    )
    .await;
    let t0 = Instant::now();
    publish(&ch, "", q, b"1").await;
    publish(&ch, "", q, b"2").await;
    // max-length 1 (policy) with drop-head (argument) into dlq2 (argument)
    let d = dl.next().await;
    assert_eq!(body(&d), "1");
    assert_eq!(d.routing_key.as_str(), dlq2);
    assert_eq!(
        dl_headers(&d.properties),
        expected_dl_headers(
            vec![death(1, "maxlen", q, "", &[q], None)],
            ("maxlen", q, ""),
            vec![],
        )
    );
    // message-ttl 150 (argument)
    let d = dl.next().await;
    assert_eq!(body(&d), "2");
    assert_eq!(
        dl_headers(&d.properties),
        expected_dl_headers(
            vec![death(1, "expired", q, "", &[q], None)],
            ("expired", q, ""),
            vec![],
        )
    );
    // expires 600 (argument)
    let gone = wait_gone(&probe, q).await;
    assert!(gone - t0 >= Duration::from_millis(590));
}

#[tokio::test]
async fn policy_overflow_unless_argument_overrides() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"ov","pattern":"^ov\\.","apply-to":"queues",
            "definition":{"max-length":1,"overflow":"reject-publish"},"priority":0}]}"#,
    )
    .await;
    let plain = queue(&ch, "ov.plain", vec![]).await;
    let dh = queue(&ch, "ov.drop-head", vec![("x-overflow", lstr("drop-head"))]).await;
    confirm_select(&ch).await;
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &plain, false, b"1").await
    ));
    let c = publish_confirm(&ch, "", &plain, false, b"2").await;
    assert!(matches!(c, Confirmation::Nack(None)), "{c:?}");
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &dh, false, b"1").await
    ));
    assert!(is_plain_ack(
        &publish_confirm(&ch, "", &dh, false, b"2").await
    ));
    assert_eq!(drain(&ch, &plain).await, vec!["1"]);
    assert_eq!(drain(&ch, &dh).await, vec!["2"]);
}

// ---------------------------------------------------------------------------------------------
// Which policy applies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn only_the_highest_priority_policy_applies() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[
            {"vhost":"/","name":"lo","pattern":"^prio\\.","apply-to":"queues","definition":{"message-ttl":100},"priority":1},
            {"vhost":"/","name":"hi","pattern":"^prio\\.","apply-to":"queues","definition":{"max-length":1},"priority":5},
            {"vhost":"/","name":"lo2","pattern":"^prio\\.","apply-to":"queues","definition":{"max-length":5,"message-ttl":50},"priority":0}
        ]}"#,
    )
    .await;
    let q = queue(&ch, "prio.q", vec![]).await;
    for m in ["a", "b"] {
        publish(&ch, "", &q, m.as_bytes()).await;
    }
    wait_for_count(&ch, &q, 1).await;
    // the lower-priority policies' message-ttl is not merged in
    stays_at(&ch, &q, 1).await;
    assert_eq!(drain(&ch, &q).await, vec!["b"]);
}

#[tokio::test]
async fn apply_to_and_patterns() {
    let (_server, _conn, ch) = start(
        r#"{"vhosts":[{"name":"other"}],
            "policies":[
            {"vhost":"/","name":"exonly","pattern":"^exonly\\.","apply-to":"exchanges","definition":{"message-ttl":100},"priority":0},
            {"vhost":"/","name":"unanchored","pattern":"unanchored","apply-to":"all","definition":{"message-ttl":100},"priority":0},
            {"vhost":"other","name":"elsewhere","pattern":".*","apply-to":"queues","definition":{"max-length":0},"priority":0}
        ]}"#,
    )
    .await;
    confirm_select(&ch).await;
    let exonly = queue(&ch, "exonly.q", vec![]).await;
    let unanchored = queue(&ch, "x-unanchored-y", vec![]).await;
    let plain = queue(&ch, "plain", vec![]).await;
    let t0 = Instant::now();
    put(&ch, &exonly, "kept").await;
    put(&ch, &unanchored, "expires").await;
    put(&ch, &plain, "kept").await;
    emptied(&ch, &unanchored, t0).await;
    // an exchanges-only policy and another vhost's policy do not touch these queues
    stays_at(&ch, &exonly, 1).await;
    assert_eq!(queue_counts(&ch, &plain).await.0, 1);
}

#[tokio::test]
async fn policy_applies_to_queues_from_the_definitions() {
    let (_server, _conn, ch) = start(
        r#"{"queues":[{"name":"ttl.defined","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}],
            "policies":[{"vhost":"/","name":"ttl","pattern":"^ttl\\.","apply-to":"queues",
                         "definition":{"message-ttl":100},"priority":0}]}"#,
    )
    .await;
    confirm_select(&ch).await;
    let t0 = Instant::now();
    put(&ch, "ttl.defined", "m").await;
    let took = emptied(&ch, "ttl.defined", t0).await;
    assert!(took >= Duration::from_millis(90), "expired after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Operator policies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn operator_policy_merges_with_policy_and_arguments() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[{"vhost":"/","name":"user","pattern":"^op\\.","apply-to":"queues",
              "definition":{"max-length":5,"message-ttl":100,"dead-letter-exchange":"","dead-letter-routing-key":"dlq"},
              "priority":0}],
            "operator_policies":[{"vhost":"/","name":"ops","pattern":"^op\\.","apply-to":"queues",
              "definition":{"max-length":2,"message-ttl":60000},"priority":0}]}"#,
    )
    .await;
    let dlq = queue(&ch, "dlq", vec![]).await;
    let mut dl = consume(&ch, &dlq, no_ack()).await;
    // max-length: operator 2 < policy 5; message-ttl: policy 100 < operator 60000
    let a = queue(&ch, "op.a", vec![]).await;
    for m in ["m0", "m1", "m2", "m3"] {
        publish(&ch, "", &a, m.as_bytes()).await;
    }
    let ds = dl.next_n(4).await;
    let got: Vec<(String, AMQPValue)> = ds
        .iter()
        .map(|d| {
            (
                body(d),
                d.properties.headers().as_ref().unwrap().inner()["x-first-death-reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("m0".to_string(), lstr("maxlen")),
            ("m1".to_string(), lstr("maxlen")),
            ("m2".to_string(), lstr("expired")),
            ("m3".to_string(), lstr("expired")),
        ]
    );
    // an argument lower than both wins
    let b = queue(&ch, "op.b", vec![("x-max-length", int(1))]).await;
    for m in ["n0", "n1", "n2"] {
        publish(&ch, "", &b, m.as_bytes()).await;
    }
    let ds = dl.next_n(3).await;
    assert_eq!(bodies(&ds), vec!["n0", "n1", "n2"]);
    let reasons: Vec<AMQPValue> = ds
        .iter()
        .map(|d| d.properties.headers().as_ref().unwrap().inner()["x-first-death-reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![lstr("maxlen"), lstr("maxlen"), lstr("expired")]
    );
}

#[tokio::test]
async fn operator_policy_alone_and_its_priority() {
    let (_server, _conn, ch) = start(
        r#"{"operator_policies":[
            {"vhost":"/","name":"only","pattern":"^opo\\.","apply-to":"queues","definition":{"message-ttl":100,"max-length":3},"priority":0},
            {"vhost":"/","name":"hi","pattern":"^opp\\.","apply-to":"queues","definition":{"max-length":2},"priority":9},
            {"vhost":"/","name":"lo","pattern":"^opp\\.","apply-to":"queues","definition":{"message-ttl":100},"priority":1}
        ]}"#,
    )
    .await;
    let a = queue(&ch, "opo.a", vec![]).await;
    let b = queue(
        &ch,
        "opo.b",
        vec![("x-message-ttl", int(60000)), ("x-max-length", int(10))],
    )
    .await;
    let p = queue(&ch, "opp.a", vec![]).await;
    for q in [&a, &b, &p] {
        for i in 0..5 {
            publish(&ch, "", q, format!("m{i}").as_bytes()).await;
        }
    }
    // max-length 3 then message-ttl 100 for both opo queues
    wait_for_count(&ch, &a, 0).await;
    wait_for_count(&ch, &b, 0).await;
    // only the higher-priority operator policy applies to opp.a
    wait_for_count(&ch, &p, 2).await;
    stays_at(&ch, &p, 2).await;
    assert_eq!(drain(&ch, &p).await, vec!["m3", "m4"]);
}

// ---------------------------------------------------------------------------------------------
// alternate-exchange
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn alternate_exchange_from_policy() {
    let (_server, _conn, ch) = start(
        r#"{"policies":[
            {"vhost":"/","name":"ae","pattern":"^ae\\.","apply-to":"exchanges","definition":{"alternate-exchange":"ae-target"},"priority":0},
            {"vhost":"/","name":"aeq","pattern":"^aeq\\.","apply-to":"queues","definition":{"alternate-exchange":"ae-target"},"priority":0}
        ]}"#,
    )
    .await;
    declare_exchange(&ch, "ae-target", ExchangeKind::Fanout).await;
    let target = queue(&ch, "ae-target-q", vec![]).await;
    bind(&ch, &target, "ae-target", "").await;
    declare_exchange(&ch, "ae.x", ExchangeKind::Direct).await;
    declare_exchange(&ch, "aeq.x", ExchangeKind::Direct).await;
    within(ch.exchange_declare(
        "ae.own".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(vec![("alternate-exchange", lstr("no-such-exchange"))]),
    ))
    .await
    .expect("exchange.declare ae.own");
    confirm_select(&ch).await;
    // routed through the policy's alternate exchange: no basic.return
    let c = publish_confirm(&ch, "ae.x", "nokey", true, b"via-ae").await;
    assert!(is_plain_ack(&c), "{c:?}");
    // apply-to queues: not applied to an exchange
    let c = publish_confirm(&ch, "aeq.x", "nokey", true, b"x").await;
    assert!(matches!(c, Confirmation::Ack(Some(_))), "{c:?}");
    // the exchange's own alternate-exchange argument wins (and does not exist)
    let c = publish_confirm(&ch, "ae.own", "nokey", true, b"x").await;
    assert!(matches!(c, Confirmation::Ack(Some(_))), "{c:?}");
    wait_for_count(&ch, &target, 1).await;
    let m = get_one(&ch, &target, true).await;
    assert_eq!(body(&m.delivery), "via-ae");
    assert_eq!(m.delivery.exchange.as_str(), "ae.x");
    assert_eq!(m.delivery.routing_key.as_str(), "nokey");
    stays_at(&ch, &target, 0).await;
}
