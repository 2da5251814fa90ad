//! Warren as a RabbitMQ substitute in test suites: the embedding API (builder, reset, vhost isolation), the
//! binary's start conventions (`--port 0` line, startup log line, RABBITMQ_DEFAULT_* variables, definitions
//! file). These are Warren's own features, so they run against Warren only.

use crate::common::*;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn url_of(server: &warren::Server, user: &str, pass: &str, vhost: &str) -> TestBroker {
    TestBroker::from_url(server.url_for(user, pass, vhost))
}

#[tokio::test]
async fn builder_creates_vhosts_and_users() {
    let server = warren::Server::builder()
        .vhost("tests")
        .user("app", "secret")
        .start()
        .await
        .expect("start");
    assert!(server
        .amqp_url()
        .starts_with("amqp://guest:guest@127.0.0.1:"));
    assert!(server.amqp_url().ends_with("/%2f"));
    let conn = connect(&url_of(&server, "app", "secret", "tests")).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "in-tests").await;
    assert!(queue_exists(&conn, "in-tests").await);
    // guest may use the new vhost too, and the queue is not visible in "/"
    let other = connect(&url_of(&server, "guest", "guest", "%2f")).await;
    assert!(!queue_exists(&other, "in-tests").await);
    let wrong = try_connect_with(&url_of(&server, "app", "nope", "tests"), |_| {}).await;
    assert!(wrong.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_the_server_closes_connections() {
    let server = warren::Server::builder().start().await.expect("start");
    let conn = connect(&url_of(&server, "guest", "guest", "%2f")).await;
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !conn.status().connected(),
        "connection still open after the server was dropped"
    );
}

#[tokio::test]
async fn reset_vhost_empties_it_and_closes_its_connections() {
    let server = warren::Server::builder()
        .vhost("scratch")
        .start()
        .await
        .expect("start");
    let b = url_of(&server, "guest", "guest", "scratch");
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    let q = declare_queue(&ch, "kept-until-reset").await;
    publish(&ch, "", &q, b"x").await;
    let root = connect(&url_of(&server, "guest", "guest", "%2f")).await;
    assert!(server.broker().reset_vhost("scratch"));
    let err = within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"y",
        BasicProperties::default(),
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.status().connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !conn.status().connected(),
        "connection on the reset vhost is still open ({err:?})"
    );
    assert!(
        root.status().connected(),
        "a connection on another vhost was closed"
    );
    let again = connect(&b).await;
    let ch = open(&again).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let r = within(ch.queue_declare(q.as_str().into(), passive, FieldTable::default())).await;
    let err = r.expect_err("queue survived the reset");
    assert_channel_closed(
        &err,
        404,
        "NOT_FOUND - no queue 'kept-until-reset' in vhost 'scratch'",
    );
}

#[tokio::test]
async fn delete_vhost_closes_connections_with_rabbitmq_reason() {
    let server = warren::Server::builder()
        .vhost("doomed")
        .start()
        .await
        .expect("start");
    let b = url_of(&server, "guest", "guest", "doomed");
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    assert!(server.broker().delete_vhost("doomed"));
    let r = within(ch.queue_declare(
        "after".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await;
    let err = r.expect_err("declare on a deleted vhost");
    assert_connection_closed(&err, 320, "CONNECTION_FORCED - vhost 'doomed' is deleted");
    let again = try_connect_with(&b, |_| {}).await;
    let err = again.expect_err("connect to a deleted vhost");
    assert_connection_closed(&err, 530, "NOT_ALLOWED - vhost doomed not found");
}

#[tokio::test]
async fn reset_returns_to_start_state_with_startup_definitions() {
    let defs: warren::definitions::Definitions = serde_json::from_str(
        r#"{"queues": [{"name": "from-defs", "vhost": "/", "durable": true}]}"#,
    )
    .expect("definitions");
    let server = warren::Server::builder()
        .definitions(defs)
        .start()
        .await
        .expect("start");
    let b = url_of(&server, "guest", "guest", "%2f");
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "made-by-test").await;
    server.broker().add_vhost("extra");
    server.broker().reset();
    let conn = connect(&b).await;
    assert!(
        queue_exists(&conn, "from-defs").await,
        "startup definitions not re-applied"
    );
    assert!(
        !queue_exists(&conn, "made-by-test").await,
        "test queue survived reset"
    );
    assert!(
        server.broker().vhost("extra").is_none(),
        "vhost made after start survived reset"
    );
}

/// The warren binary, started with `args`; returns the child and the port it printed.
fn spawn_binary(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.args(["--port", "0", "--bind", "127.0.0.1", "--ephemeral"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn warren");
    let stdout = child.stdout.take().expect("stdout");
    let rx = stderr_lines(&mut child);
    let port = listening_port(stdout).unwrap_or_else(|e| panic!("{e}"));
    (child, port, rx)
}

/// The child's stderr, line by line, read on a thread of its own.
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_log(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn binary_prints_port_and_startup_line_and_honours_rabbitmq_env() {
    let (mut child, port, logs) = spawn_binary(
        &[],
        &[
            ("RABBITMQ_DEFAULT_USER", "alice"),
            ("RABBITMQ_DEFAULT_PASS", "pw"),
            ("RABBITMQ_DEFAULT_VHOST", "v1"),
        ],
    );
    assert!(
        wait_for_log(&logs, "Server startup complete"),
        "no 'Server startup complete' log line"
    );
    let b = TestBroker::from_url(format!("amqp://alice:pw@127.0.0.1:{port}/v1"));
    let conn = connect(&b).await;
    assert!(conn.status().connected());
    let guest = try_connect_with(
        &TestBroker::from_url(format!("amqp://guest:guest@127.0.0.1:{port}/v1")),
        |_| {},
    )
    .await;
    assert!(
        guest.is_err(),
        "guest should not exist when RABBITMQ_DEFAULT_USER is set"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn binary_loads_definitions_file() {
    let dir = std::env::temp_dir().join(format!("warren-defs-{}", unique("d")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("defs.json");
    std::fs::write(
        &file,
        r##"{
          "vhosts": [{"name": "/"}, {"name": "app"}],
          "users": [{"name": "svc", "password": "pw", "tags": ["administrator"]}],
          "permissions": [{"user": "svc", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}],
          "exchanges": [{"name": "events", "vhost": "app", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
          "queues": [{"name": "audit", "vhost": "app", "durable": true, "auto_delete": false, "arguments": {"x-max-length": 10}}],
          "bindings": [{"source": "events", "vhost": "app", "destination": "audit", "destination_type": "queue", "routing_key": "#", "arguments": {}}]
        }"##,
    )
    .expect("write defs");
    let (mut child, port, _logs) =
        spawn_binary(&["--definitions", file.to_str().expect("utf8 path")], &[]);
    let b = TestBroker::from_url(format!("amqp://svc:pw@127.0.0.1:{port}/app"));
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    publish(&ch, "events", "any.key", b"routed").await;
    let got = get(&ch, "audit", true)
        .await
        .expect("message routed by the defined binding");
    assert_eq!(got.delivery.data, b"routed");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_survives_a_harness_that_closed_its_stdout() {
    // Every write to this stdout fails with EPIPE, as when a harness read the first LISTENING line and
    // dropped the pipe before the management lines were written.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--ephemeral"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn warren");
    let rx = stderr_lines(&mut child);
    assert!(
        wait_for_log(&rx, "Server startup complete"),
        "the broker did not finish starting with a closed stdout"
    );
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the broker exited"
    );
    let _ = child.kill();
    let _ = child.wait();
}
