//! Resource permissions (configure / write / read regexes) and topic permissions on every operation, with
//! RabbitMQ's 403 texts and order of checks (observed on RabbitMQ 3.10.8, notes/rmq-permissions.md).

use crate::common::*;
use warren::broker::{Actor, Command};

async fn warren_with_user(
    configure: &str,
    write: &str,
    read: &str,
) -> (warren::Server, TestBroker) {
    let (server, _) = own_warren_with(test_config()).await;
    add_user(&server, "u", "p", [configure, write, read]).await;
    // Topology the user may not create.
    let admin = connect(&TestBroker::from_url(server.amqp_url())).await;
    let ch = open(&admin).await;
    declare_queue(&ch, "q1").await;
    declare_exchange(&ch, "t", lapin::ExchangeKind::Topic).await;
    let b = TestBroker::from_url(server.url_for("u", "p", "%2f"));
    (server, b)
}

fn refused(kind: &str, name: &str) -> String {
    format!("ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user 'u'")
}

#[tokio::test]
async fn declares_and_deletes_need_configure() {
    let (_s, b) = warren_with_user("^mine", ".*", ".*").await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let kind = lapin::ExchangeKind::Direct;
    let res = try_declare_exchange(&ch, "x1", kind, Default::default(), Default::default()).await;
    expect_channel_close(&conn, &ch, res, 403, &refused("exchange", "x1")).await;
    let ch = open(&conn).await;
    let res = try_declare_queue(&ch, "qnew", Default::default(), Default::default()).await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "qnew")).await;
    // Passive declares need nothing.
    let ch = open(&conn).await;
    declare_queue_with(&ch, "q1", passive(), Default::default()).await;
    // Allowed names work, and so does deleting them.
    declare_queue(&ch, "mine.q").await;
    within(ch.queue_delete("mine.q".into(), Default::default()))
        .await
        .expect("delete own queue");
    let res = within(ch.queue_delete("q1".into(), Default::default())).await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "q1")).await;
}

#[tokio::test]
async fn publishing_needs_write_on_the_exchange_and_the_default_exchange_is_amq_default() {
    let (_s, b) = warren_with_user(".*", "^amq\\.direct$", ".*").await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let w = watch(&ch).await;
    publish(&ch, "amq.direct", "k", b"ok").await;
    publish(&ch, "", "q1", b"no").await;
    assert_channel_closed(&w.closed().await, 403, &refused("exchange", "amq.default"));
    // 403 comes before 404 for a missing exchange.
    let ch = open(&conn).await;
    let w = watch(&ch).await;
    publish(&ch, "nope", "k", b"no").await;
    assert_channel_closed(&w.closed().await, 403, &refused("exchange", "nope"));
}

#[tokio::test]
async fn get_consume_and_purge_need_read() {
    let (_s, b) = warren_with_user(".*", ".*", "^amq\\.gen").await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let res = within(ch.basic_get("q1".into(), Default::default())).await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "q1")).await;
    let ch = open(&conn).await;
    let res = within(ch.basic_consume(
        "q1".into(),
        "".into(),
        Default::default(),
        Default::default(),
    ))
    .await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "q1")).await;
    let ch = open(&conn).await;
    let res = within(ch.queue_purge("q1".into(), Default::default())).await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "q1")).await;
}

#[tokio::test]
async fn bindings_need_write_on_the_destination_and_read_on_the_source() {
    let (_s, b) = warren_with_user(".*", "^mine", "^mine").await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "mine.q").await;
    let res = within(ch.queue_bind(
        "q1".into(),
        "amq.direct".into(),
        "k".into(),
        Default::default(),
        Default::default(),
    ))
    .await;
    expect_channel_close(&conn, &ch, res, 403, &refused("queue", "q1")).await;
    let ch = open(&conn).await;
    let res = within(ch.queue_bind(
        "mine.q".into(),
        "amq.direct".into(),
        "k".into(),
        Default::default(),
        Default::default(),
    ))
    .await;
    expect_channel_close(&conn, &ch, res, 403, &refused("exchange", "amq.direct")).await;
}

#[tokio::test]
async fn topic_permissions_check_routing_and_binding_keys_on_topic_exchanges() {
    let (server, b) = warren_with_user(".*", ".*", ".*").await;
    server
        .broker()
        .run(
            Command::SetTopicPermissions {
                user: "u".into(),
                vhost: "/".into(),
                exchange: "t".into(),
                write: "^allowed\\.".into(),
                read: "^readable\\.".into(),
            },
            &Actor::internal(),
        )
        .await
        .expect("topic permissions");
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "mine").await;
    bind(&ch, "mine", "t", "readable.#").await;
    let res = within(ch.queue_bind(
        "mine".into(),
        "t".into(),
        "denied.#".into(),
        Default::default(),
        Default::default(),
    ))
    .await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        403,
        "ACCESS_REFUSED - access to topic 'denied.#' in exchange 't' in vhost '/' refused for user 'u'",
    )
    .await;
    let ch = open(&conn).await;
    let w = watch(&ch).await;
    publish(&ch, "t", "allowed.x", b"ok").await;
    publish(&ch, "t", "denied.x", b"no").await;
    assert_channel_closed(
        &w.closed().await,
        403,
        "ACCESS_REFUSED - access to topic 'denied.x' in exchange 't' in vhost '/' refused for user 'u'",
    );
}
