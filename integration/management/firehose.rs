//! RabbitMQ's firehose (amq.rabbitmq.trace), checked against what RabbitMQ 3.10 emits for the same publish
//! and delivery: routing keys, header values and their AMQP types. Runs against RabbitMQ too (`MGMT_URL`
//! and `AMQP_URL`). Header order, which lapin's tables do not keep, is checked by the firehose capture in CI.

use super::Mgmt;
use crate::common::*;
use lapin::options::{BasicGetOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

/// Tracing is per vhost: against a shared external broker these tests must not overlap.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn set_tracing(m: &Mgmt, on: bool) -> u16 {
    m.request(reqwest::Method::PUT, "/api/vhosts/%2F")
        .json(&serde_json::json!({ "tracing": on }))
        .send()
        .await
        .expect("PUT vhost")
        .status()
        .as_u16()
}

fn strs(v: Option<&AMQPValue>) -> Vec<String> {
    match v {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|x| match x {
                AMQPValue::LongString(s) => s.to_string(),
                other => panic!("not a longstr: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn s(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("not a longstr: {other:?}"),
    }
}

/// A fresh queue bound to amq.rabbitmq.trace with `key`.
async fn trace_queue(ch: &lapin::Channel, key: &str) -> String {
    let q = declare_queue(ch, &unique("fh-traces")).await;
    within(ch.queue_bind(
        q.as_str().into(),
        "amq.rabbitmq.trace".into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("bind to amq.rabbitmq.trace");
    q
}

/// The next trace copy on `q`, with its routing key and headers.
async fn next_trace(
    ch: &lapin::Channel,
    q: &str,
) -> (String, FieldTable, Vec<u8>, BasicProperties) {
    let m = get_wait(ch, q, true).await;
    let h = m
        .delivery
        .properties
        .headers()
        .clone()
        .expect("trace headers");
    (
        m.delivery.routing_key.to_string(),
        h,
        m.delivery.data.clone(),
        m.delivery.properties.clone(),
    )
}

#[tokio::test]
async fn publish_and_delivery_are_traced_as_rabbitmq_traces_them() {
    let _serial = SERIAL.lock().await;
    let m = Mgmt::start().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let traces = trace_queue(&ch, "#").await;
    let q = declare_queue(&ch, &unique("fh-q")).await;
    assert_eq!(set_tracing(&m, true).await, 204);
    let vhost: serde_json::Value = m
        .get("/api/vhosts/%2F")
        .send()
        .await
        .expect("GET vhost")
        .json()
        .await
        .expect("json");
    assert_eq!(vhost["tracing"], serde_json::json!(true));

    let props = BasicProperties::default()
        .with_message_id("m-1".into())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_timestamp(1_700_000_000)
        .with_headers(table(vec![
            ("CC", AMQPValue::FieldArray(vec![lstr("nowhere-cc")].into())),
            ("BCC", AMQPValue::FieldArray(vec![lstr(&q)].into())),
            ("app", long(7)),
        ]));
    publish_props(&ch, "", &q, b"traced body", props).await;
    let got = get_one(&ch, &q, false).await;
    within(ch.basic_nack(
        got.delivery.delivery_tag,
        lapin::options::BasicNackOptions {
            requeue: true,
            ..Default::default()
        },
    ))
    .await
    .expect("nack");
    let again = get_one(&ch, &q, true).await;
    assert!(again.delivery.redelivered);

    let (rk, h, body, tprops) = next_trace(&ch, &traces).await;
    assert_eq!(rk, "publish.", "the default exchange's publish key");
    assert_eq!(body, b"traced body");
    assert_eq!(
        tprops.delivery_mode(),
        &None,
        "a trace copy has only headers"
    );
    assert_eq!(s(h.inner().get("exchange_name")), "");
    assert_eq!(
        strs(h.inner().get("routing_keys")),
        vec![q.clone(), "nowhere-cc".into(), q.clone()],
        "routing key, CC, then BCC, not de-duplicated"
    );
    let mut routed = vec![q.clone(), "nowhere-cc".to_string()];
    routed.sort();
    assert_eq!(
        strs(h.inner().get("routed_queues")),
        routed,
        "for the default exchange: its keys, sorted and de-duplicated, existing or not"
    );
    assert_eq!(s(h.inner().get("vhost")), "/");
    assert_eq!(s(h.inner().get("user")), "guest");
    assert_eq!(h.inner().get("channel"), Some(&AMQPValue::LongInt(1)));
    assert!(s(h.inner().get("connection")).contains(" -> "));
    assert!(matches!(
        h.inner().get("node"),
        Some(AMQPValue::LongString(_))
    ));
    let Some(AMQPValue::FieldTable(p)) = h.inner().get("properties") else {
        panic!("properties table: {h:?}")
    };
    let p = p.inner();
    assert_eq!(p.get("delivery_mode"), Some(&AMQPValue::LongInt(2)));
    assert_eq!(p.get("priority"), Some(&AMQPValue::LongInt(3)));
    assert_eq!(p.get("timestamp"), Some(&AMQPValue::LongInt(1_700_000_000)));
    assert_eq!(s(p.get("message_id")), "m-1");
    let Some(AMQPValue::FieldTable(ph)) = p.get("headers") else {
        panic!("headers in properties: {p:?}")
    };
    assert!(ph.inner().get("BCC").is_none(), "BCC is never shown");
    assert!(ph.inner().get("CC").is_some());
    assert_eq!(ph.inner().get("app"), Some(&long(7)), "header types kept");

    for redelivered in [0, 1] {
        let (rk, h, body, _) = next_trace(&ch, &traces).await;
        assert_eq!(rk, format!("deliver.{q}"));
        assert_eq!(body, b"traced body");
        assert_eq!(
            h.inner().get("redelivered"),
            Some(&AMQPValue::LongInt(redelivered)),
            "redelivered is a signed int"
        );
        assert_eq!(s(h.inner().get("exchange_name")), "");
        assert!(h.inner().get("routed_queues").is_none());
        assert_eq!(s(h.inner().get("user")), "guest");
    }
    // Trace copies delivered from the trace queue are not traced again, so it is now empty.
    assert!(get(&ch, &traces, true).await.is_none());

    assert_eq!(set_tracing(&m, false).await, 204);
    publish(&ch, "", &q, b"untraced").await;
    get_one(&ch, &q, true).await;
    stays_at(&ch, &traces, 0).await;
}

#[tokio::test]
async fn a_transactional_publish_is_traced_when_made_even_if_rolled_back() {
    let _serial = SERIAL.lock().await;
    let m = Mgmt::start().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    let traces = trace_queue(&ch, "publish.#").await;
    let q = declare_queue(&ch, &unique("fh-tx-q")).await;
    assert_eq!(set_tracing(&m, true).await, 204);
    within(ch.tx_select()).await.expect("tx.select");
    publish(&ch, "", &q, b"rolled back").await;
    let (rk, h, _, _) = next_trace(&ch, &traces).await;
    assert_eq!(rk, "publish.");
    assert_eq!(strs(h.inner().get("routed_queues")), vec![q.clone()]);
    within(ch.tx_rollback()).await.expect("tx.rollback");
    let ch2 = open(&conn).await;
    assert!(
        within(ch2.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(set_tracing(&m, false).await, 204);
}

#[tokio::test]
async fn tracing_flag_is_validated_like_rabbitmq() {
    let m = Mgmt::start().await;
    let r = m
        .request(reqwest::Method::PUT, "/api/vhosts/%2F")
        .json(&serde_json::json!({ "tracing": "bogus" }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"error": "bad_request", "reason": ["not_boolean", "bogus"]})
    );
}
