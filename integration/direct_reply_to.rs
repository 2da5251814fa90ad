//! Direct reply-to (amq.rabbitmq.reply-to): a request/reply round trip through the pseudo-queue
//! and its per-channel reply names, which names exist and route, and the consumer rules (no-ack,
//! one per channel, on the channel that publishes the request). Checked against RabbitMQ 3.10.8.

use crate::common::try_declare_queue as declare;
use crate::common::*;
use lapin::{options::*, types::FieldTable, BasicProperties};

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
