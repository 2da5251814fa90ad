//! Limits as RabbitMQ has them: the node's connection_max, vhost limits (max-connections, max-queues), user
//! limits (max-connections, max-channels) and the negotiated channel_max, each refused with RabbitMQ's reply
//! code and text (checked on RabbitMQ 3.10). These tests start their own Warren so limits do not leak.

use crate::common::*;
use warren::broker::{Actor, Command};

async fn warren_with(connection_max: usize) -> (warren::Server, TestBroker) {
    own_warren_with(warren::Config {
        connection_max,
        ..test_config()
    })
    .await
}

async fn run(server: &warren::Server, cmd: Command) {
    server
        .broker()
        .run(cmd, &Actor::internal())
        .await
        .expect("command");
}

async fn vhost_limit(server: &warren::Server, name: &str, value: i64) {
    let (vhost, name) = ("/".to_string(), name.to_string());
    run(server, Command::SetVhostLimit { vhost, name, value }).await;
}

async fn user_limit(server: &warren::Server, name: &str, value: i64) {
    let (user, name) = ("guest".to_string(), name.to_string());
    run(server, Command::SetUserLimit { user, name, value }).await;
}

/// The connection attempt fails with connection.close `code`/`text` sent in reply to connection.open.
async fn refused(b: &TestBroker, code: u16, text: &str) {
    let err = match try_connect_with(b, |_| {}).await {
        Ok(_) => panic!("connection was accepted; expected {code} {text}"),
        Err(e) => e,
    };
    assert_connection_closed(&err, code, text);
}

#[tokio::test]
async fn the_node_connection_limit_refuses_connection_open() {
    let (_server, b) = warren_with(2).await;
    let c1 = connect(&b).await;
    let _c2 = connect(&b).await;
    refused(
        &b,
        530,
        "NOT_ALLOWED - connection refused: node connection limit (2) is reached",
    )
    .await;
    // A slot frees when a connection closes.
    c1.close(200, "bye".into()).await.expect("close");
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = try_connect_with(&b, |_| {}).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "no connection accepted after one closed");
}

#[tokio::test]
async fn the_vhost_connection_limit_refuses_connection_open() {
    let (server, b) = warren_with(0).await;
    vhost_limit(&server, "max-connections", 1).await;
    let _c1 = connect(&b).await;
    refused(
        &b,
        530,
        "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached",
    )
    .await;
    vhost_limit(&server, "max-connections", 0).await;
    refused(
        &b,
        530,
        "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (0) is reached",
    )
    .await;
    run(
        &server,
        Command::ClearVhostLimit {
            vhost: "/".into(),
            name: "max-connections".into(),
        },
    )
    .await;
    let _c2 = connect(&b).await;
}

#[tokio::test]
async fn the_user_connection_limit_refuses_connection_open() {
    let (server, b) = warren_with(0).await;
    user_limit(&server, "max-connections", 1).await;
    let _c1 = connect(&b).await;
    refused(
        &b,
        530,
        "NOT_ALLOWED - connection refused for user 'guest': user connection limit (1) is reached",
    )
    .await;
}

#[tokio::test]
async fn the_user_channel_limit_closes_the_connection_on_channel_open() {
    let (server, b) = warren_with(0).await;
    user_limit(&server, "max-channels", 2).await;
    // Counted across the user's connections.
    let other = connect(&b).await;
    let _keep = open(&other).await;
    let conn = connect(&b).await;
    let _ch = open(&conn).await;
    let err = within(conn.create_channel())
        .await
        .expect_err("third channel of the user");
    assert_connection_closed(
        &err,
        530,
        "NOT_ALLOWED - number of channels opened for user 'guest' has reached the maximum allowed user limit of (2)",
    );
    assert!(other.status().connected());
}

#[tokio::test]
async fn the_vhost_queue_limit_refuses_new_queues_but_not_redeclares() {
    let (server, b) = warren_with(0).await;
    vhost_limit(&server, "max-queues", 1).await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "only-one").await;
    declare_queue(&ch, "only-one").await;
    let res = try_declare_queue(&ch, "second", Default::default(), Default::default()).await;
    expect_channel_close(
        &conn,
        &ch,
        res,
        406,
        "PRECONDITION_FAILED - cannot declare queue 'second': queue limit in vhost '/' (1) is reached",
    )
    .await;
}
