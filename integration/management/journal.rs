//! The message journal (Warren's own): `GET /api/warren/journal` explains what happened to a message —
//! unroutable and returned, expired, dead-lettered, dropped by max-length — and `wait_ms` / the Rust
//! `Server::wait_for` wait for an event instead of sleeping.

use super::Mgmt;
use crate::common::*;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use serde_json::Value;
use std::time::Duration;
use warren::journal::{Filter, Kind};

async fn journal(m: &Mgmt, query: &str) -> (u16, Value) {
    let r = m
        .get(&format!("/api/warren/journal?{query}"))
        .send()
        .await
        .expect("GET journal");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

fn events(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default().with_message_id(id.into())
}

#[tokio::test]
async fn explains_an_unroutable_and_returned_message() {
    let m = Mgmt::warren().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    confirm_select(&ch).await;
    within(ch.basic_publish(
        "amq.direct".into(),
        "nobody".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"lost",
        with_id("u1"),
    ))
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let (status, v) = journal(&m, "message_id=u1&wait_ms=5000&event=confirmed").await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = journal(&m, "message_id=u1").await;
    assert_eq!(
        events(&v),
        ["published", "unroutable", "returned", "confirmed"]
    );
    let e = &v["events"][0];
    assert_eq!(e["exchange"], "amq.direct");
    assert_eq!(e["routing_key"], "nobody");
    assert_eq!(e["user"], "guest");
    assert_eq!(e["mandatory"], true);
    assert_eq!(v["events"][2]["reply_code"], 312);
}

#[tokio::test]
async fn explains_expiry_and_dead_lettering_in_virtual_time() {
    let server = warren::Server::builder()
        .virtual_clock(true)
        .management_port(Some(0))
        .start()
        .await
        .expect("start");
    let b = TestBroker::from_url(server.amqp_url());
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "dlq").await;
    declare_queue_with(
        &ch,
        "ttl",
        Default::default(),
        table(vec![
            ("x-message-ttl", long(60_000)),
            ("x-dead-letter-exchange", lstr("")),
            ("x-dead-letter-routing-key", lstr("dlq")),
        ]),
    )
    .await;
    publish_props(&ch, "", "ttl", b"x", with_id("e1")).await;
    let want = Filter {
        message_id: Some("e1".into()),
        kind: Some(Kind::DeadLettered),
        ..Filter::default()
    };
    let early = server
        .wait_for(want.clone(), Duration::from_millis(50))
        .await;
    let why = early.expect_err("not dead-lettered before its TTL");
    assert!(
        why.contains("routed") && why.contains("to [\"ttl\"]"),
        "the failure says what did happen: {why}"
    );
    server.advance_clock(Duration::from_secs(60));
    let dead = server
        .wait_for(want, Duration::from_secs(5))
        .await
        .expect("dead-lettered");
    assert_eq!(dead.queue.as_deref(), Some("ttl"));
    let kinds: Vec<Kind> = server
        .journal(&Filter {
            message_id: Some("e1".into()),
            ..Filter::default()
        })
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            Kind::Published,
            Kind::Routed,
            Kind::Expired,
            Kind::DeadLettered
        ]
    );
    let m = Mgmt {
        base: server.management_url().expect("management"),
        amqp: b,
        server: Some(server),
    };
    let (_, v) = journal(&m, "message_id=e1&event=dead-lettered").await;
    let e = &v["events"][0];
    assert_eq!(e["reason"], "expired");
    assert_eq!(e["dead_letter_exchange"], "");
    assert_eq!(e["queues"], serde_json::json!(["dlq"]));
}

#[tokio::test]
async fn explains_a_rejected_and_a_max_length_dropped_message() {
    let m = Mgmt::warren().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "short",
        Default::default(),
        table(vec![("x-max-length", long(1))]),
    )
    .await;
    publish_props(&ch, "", "short", b"old", with_id("old")).await;
    publish_props(&ch, "", "short", b"new", with_id("new")).await;
    let (status, v) = journal(&m, "message_id=old&event=dropped&wait_ms=5000").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"][0]["reason"], "maxlen");
    assert_eq!(v["events"][0]["queue"], "short");

    let got = get_one(&ch, "short", false).await;
    reject(&ch, got.delivery.delivery_tag, false).await;
    let (status, v) = journal(&m, "message_id=new&event=rejected&wait_ms=5000").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"][0]["requeue"], false);
    let (_, v) = journal(&m, "queue=short&message_id=new").await;
    assert_eq!(events(&v), ["routed", "delivered", "rejected"]);
    assert_eq!(v["events"][1]["consumer_tag"], Value::Null, "a basic.get");
}

#[tokio::test]
async fn a_wait_that_times_out_answers_408_with_what_did_happen() {
    let m = Mgmt::warren().await;
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "kept").await;
    publish_props(&ch, "", "kept", b"x", with_id("k1")).await;
    let (status, v) = journal(&m, "message_id=k1&event=acked&wait_ms=100").await;
    assert_eq!(status, 408);
    assert_eq!(events(&v), Vec::<String>::new());
    let related: Vec<&str> = v["related"]
        .as_array()
        .expect("related")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(related, ["published", "routed"]);
    let (status, v) = journal(&m, "event=teleported").await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn switched_per_vhost_and_cleared() {
    let m = Mgmt::warren().await;
    let put = |body: Value| {
        m.request(reqwest::Method::PUT, "/api/warren/journal")
            .json(&body)
            .send()
    };
    assert_eq!(
        put(serde_json::json!({"enabled": false}))
            .await
            .expect("PUT")
            .status()
            .as_u16(),
        204
    );
    let conn = connect(&m.amqp).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "q").await;
    publish_props(&ch, "", "q", b"x", with_id("off")).await;
    get_one(&ch, "q", true).await;
    let (_, v) = journal(&m, "message_id=off").await;
    assert!(events(&v).is_empty(), "nothing recorded while off: {v}");
    assert_eq!(
        put(serde_json::json!({"enabled": true, "vhost": "/"}))
            .await
            .expect("PUT")
            .status()
            .as_u16(),
        204
    );
    publish_props(&ch, "", "q", b"x", with_id("on")).await;
    let (_, v) = journal(&m, "message_id=on&event=routed&wait_ms=5000").await;
    assert_eq!(events(&v), ["routed"]);
    let r = m
        .request(reqwest::Method::DELETE, "/api/warren/journal")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 204);
    let (_, v) = journal(&m, "message_id=on").await;
    assert!(events(&v).is_empty());
    assert_eq!(
        put(serde_json::json!({"enabled": true, "vhost": "nope"}))
            .await
            .expect("PUT")
            .status()
            .as_u16(),
        404
    );
}

async fn warrenctl(mgmt: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warrenctl"))
        .args(["--url", mgmt])
        .args(args)
        .output()
        .await
        .expect("run warrenctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn warrenctl_switches_and_reads_the_journal_and_the_firehose() {
    let server = warren::Server::builder()
        .journal(false)
        .management_port(Some(0))
        .start()
        .await
        .expect("start");
    let mgmt = server.management_url().expect("management");
    let (ok, _, err) = warrenctl(&mgmt, &["journal_on", "--all-vhosts"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = warrenctl(&mgmt, &["trace_on"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Starting tracing for vhost \"/\" ...\nTrace enabled for vhost /\n"
    );
    assert!(server.broker().vhost("/").is_some_and(|v| v.tracing()));
    let b = TestBroker::from_url(server.amqp_url());
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "watched").await;
    publish_props(&ch, "", "watched", b"x", with_id("ctl-1")).await;
    let (ok, out, err) = warrenctl(
        &mgmt,
        &[
            "-q",
            "journal",
            "--message-id",
            "ctl-1",
            "--event",
            "routed",
            "--wait",
            "5s",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(" routed ") && out.contains("queue") && out.contains("watched"),
        "{out}"
    );
    let (ok, _, err) = warrenctl(&mgmt, &["trace_off"]).await;
    assert!(ok, "{err}");
    assert!(server.broker().vhost("/").is_some_and(|v| !v.tracing()));
    let (ok, _, _) = warrenctl(
        &mgmt,
        &["journal", "--message-id", "never", "--wait", "50ms"],
    )
    .await;
    assert!(!ok, "a wait that times out fails");
}
