//! Hostile input: frames built to exhaust the broker rather than to use it. Each must get a protocol answer
//! and leave the broker serving everyone else. Warren-only where Warren deliberately differs from RabbitMQ
//! (RabbitMQ's Erlang parser has no nesting limit; its process heaps simply grow), so these tests start their
//! own Warren.

use crate::common::raw::{self, Raw};
use crate::common::*;
use warren::protocol::nesting::nested_table_bytes;

async fn own_warren() -> (warren::Server, TestBroker) {
    own_warren_with(test_config()).await
}

/// A raw client with channel 1 open.
async fn raw_on_channel_1(b: &TestBroker) -> Raw {
    let mut r = Raw::handshake(b, 2047, 131_072, 0).await;
    r.channel_open(1).await;
    let _ = r.method_frame().await;
    r
}

#[tokio::test]
async fn deeply_nested_arguments_close_the_connection_not_the_broker() {
    let (_server, b) = own_warren().await;
    let mut r = raw_on_channel_1(&b).await;
    // queue.declare with 15,000 levels of nesting in its arguments (~90 KiB, within frame_max)
    let mut a = vec![0, 0];
    raw::shortstr(&mut a, "deep");
    a.push(0);
    a.extend_from_slice(&nested_table_bytes(15_000));
    r.method(1, 50, 10, &a).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            502,
            "SYNTAX_ERROR - field table nested more than 128 levels deep",
            50,
            10
        )
    );
    // everyone else is still served
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "after-deep").await;
}

#[tokio::test]
async fn deeply_nested_message_headers_close_the_connection_not_the_broker() {
    let (_server, b) = own_warren().await;
    let mut r = raw_on_channel_1(&b).await;
    let mut a = vec![0, 0];
    raw::shortstr(&mut a, "");
    raw::shortstr(&mut a, "nowhere");
    a.push(0);
    r.method(1, 60, 40, &a).await;
    // content header: class 60, weight 0, body size 1, flags = headers only, then the headers table
    let mut h = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0x00];
    h.extend_from_slice(&nested_table_bytes(15_000));
    let mut frame = vec![2u8, 0, 1];
    frame.extend_from_slice(&(h.len() as u32).to_be_bytes());
    frame.extend_from_slice(&h);
    frame.push(0xCE);
    r.write(&frame).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            502,
            "SYNTAX_ERROR - message headers nested more than 128 levels deep",
            60,
            40
        )
    );
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "after-deep-headers").await;
}

#[tokio::test]
async fn nesting_within_the_limit_is_accepted() {
    let (_server, b) = own_warren().await;
    let mut r = raw_on_channel_1(&b).await;
    let mut a = vec![0, 0];
    raw::shortstr(&mut a, "nested-ok");
    a.push(0);
    a.extend_from_slice(&nested_table_bytes(100));
    r.method(1, 50, 10, &a).await;
    let (channel, reply) = r.method_frame().await;
    assert_eq!(channel, 1);
    assert!(
        matches!(
            reply,
            lapin::protocol::AMQPClass::Queue(lapin::protocol::queue::AMQPMethod::DeclareOk(_))
        ),
        "{reply:?}"
    );
}

/// The most bytes any connection of this broker has waiting to be written.
fn pending_for(server: &warren::Server) -> usize {
    server
        .broker()
        .connections()
        .iter()
        .filter_map(|s| s.as_any().downcast_ref::<warren::connection::ConnShared>())
        .map(|c| c.outbound.pending_bytes())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_never_reads_is_held_back_by_tcp() {
    let (server, b) = own_warren().await;
    let mut r = raw_on_channel_1(&b).await;
    // Mandatory publishes that nothing routes: each comes back as a basic.return of the same size, which
    // this client never reads.
    let body = vec![b'x'; 64 * 1024];
    let mut a = vec![0, 0];
    raw::shortstr(&mut a, "");
    raw::shortstr(&mut a, "nowhere");
    a.push(0b01); // mandatory
    let mut batch = Raw::method_bytes(1, 60, 40, &a);
    batch.extend_from_slice(&Raw::content_bytes(1, 60, &body));
    let limit = 512 << 20;
    let mut written = 0usize;
    while written < limit {
        if !r
            .write_or_stall(&batch, std::time::Duration::from_secs(2))
            .await
        {
            break;
        }
        written += batch.len();
    }
    assert!(
        written < limit,
        "the broker kept reading {written} bytes from a client that never reads"
    );
    let pending = pending_for(&server);
    assert!(
        pending < 4 << 20,
        "{pending} bytes buffered for a client that never reads"
    );
    // Others are unaffected.
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_queue(&ch, "after-stall").await;
}

/// basic.publish args with a byte after the flags: the hand-written fast path declines it and the generic
/// decoder (which ignores trailing bytes) takes it. Such a publish used to escape the resource-alarm block.
fn generic_path_publish(queue: &str) -> Vec<u8> {
    let mut a = vec![0, 0];
    raw::shortstr(&mut a, "");
    raw::shortstr(&mut a, queue);
    a.push(0);
    a.push(0); // trailing byte
    a
}

#[tokio::test]
async fn a_publish_on_the_generic_decode_path_is_blocked_by_an_alarm_too() {
    let (server, b) = own_warren().await;
    let args = generic_path_publish("alarmed");
    let mut frame = vec![0, 60, 0, 40];
    frame.extend_from_slice(&args);
    assert!(warren::protocol::parse_publish(&frame).is_none());
    assert!(amq_protocol::protocol::parse_class(&frame[..]).is_ok());

    let mut r = raw_on_channel_1(&b).await;
    let mut declare = vec![0, 0];
    raw::shortstr(&mut declare, "alarmed");
    declare.extend_from_slice(&[0, 0, 0, 0, 0]);
    r.method(1, 50, 10, &declare).await;
    let _declare_ok = r.method_frame().await;

    let alarms = server.broker().alarms.clone();
    alarms.set_memory_limit(1);
    // The publish that meets the alarm is taken, then the connection stops being read: the passive
    // declare behind it gets no answer while the alarm lasts (and, without the capability, no
    // connection.blocked either).
    let mut out = raw::Raw::method_bytes(1, 60, 40, &args);
    out.extend(raw::Raw::content_bytes(1, 60, b"x"));
    let mut passive = vec![0, 0];
    raw::shortstr(&mut passive, "alarmed");
    passive.extend_from_slice(&[1, 0, 0, 0, 0]);
    out.extend(raw::Raw::method_bytes(1, 50, 10, &passive));
    r.write(&out).await;
    assert!(
        tokio::time::timeout(QUIET, r.raw_frame()).await.is_err(),
        "a blocked publisher was answered during the alarm"
    );
    alarms.set_memory_limit(u64::MAX);
    let (_, ok) = r.method_frame().await;
    match ok {
        lapin::protocol::AMQPClass::Queue(lapin::protocol::queue::AMQPMethod::DeclareOk(d)) => {
            assert_eq!(d.message_count, 1)
        }
        other => panic!("expected declare-ok after the alarm, got {other:?}"),
    }
}

/// Names the broker will write into short strings (a dead-lettered message's exchange and routing key) are
/// refused at declare time when they could not fit, instead of being cut (possibly mid-character) later.
/// RabbitMQ 3.10 accepts them and then fails the delivery with 541 INTERNAL_ERROR.
#[tokio::test]
async fn over_long_dead_letter_names_are_refused_at_declare() {
    let (_server, b) = own_warren().await;
    let conn = connect(&b).await;
    for (key, value) in [
        ("x-dead-letter-routing-key", "é".repeat(150)),
        ("x-dead-letter-exchange", "x".repeat(256)),
    ] {
        let ch = open(&conn).await;
        let mut args = vec![(key, lstr(&value))];
        if key == "x-dead-letter-routing-key" {
            args.push(("x-dead-letter-exchange", lstr("dlx")));
        }
        let res = try_declare_queue(&ch, "long-dl", Default::default(), table(args)).await;
        expect_channel_close(
            &conn,
            &ch,
            res,
            406,
            &format!(
                "PRECONDITION_FAILED - invalid arg '{key}' for queue 'long-dl' in vhost '/': {{value_too_long,{}}}",
                value.len()
            ),
        )
        .await;
    }
    // 255 bytes fit.
    let ch = open(&conn).await;
    declare_queue_with(
        &ch,
        "long-dl",
        Default::default(),
        table(vec![
            ("x-dead-letter-exchange", lstr("dlx")),
            ("x-dead-letter-routing-key", lstr(&"k".repeat(255))),
        ]),
    )
    .await;
}

/// A refused login without the authentication_failure_close capability gets no frame at all, and its
/// socket is closed three seconds later (RabbitMQ's pause, which slows password guessing).
#[tokio::test]
async fn a_refused_login_without_the_capability_is_held_three_seconds_then_closed() {
    let (_server, b) = own_warren().await;
    let mut r = Raw::connect(&b).await;
    r.write(b"AMQP\x00\x00\x09\x01").await;
    let _start = r.method_frame().await;
    let mut a = Vec::new();
    a.extend_from_slice(&0u32.to_be_bytes());
    raw::shortstr(&mut a, "PLAIN");
    raw::longstr(&mut a, b"\0guest\0wrong");
    raw::shortstr(&mut a, "en_US");
    let t0 = std::time::Instant::now();
    r.method(0, 10, 11, &a).await;
    assert!(
        r.raw_frame().await.is_none(),
        "a frame was sent after a refused login"
    );
    let held = t0.elapsed();
    assert!(
        held >= std::time::Duration::from_millis(2900),
        "closed after {held:?}, RabbitMQ holds a refused login for 3 s"
    );
}

/// A content header alone, promising `size` body bytes that never come.
fn promising_header(channel: u16, size: u64) -> Vec<u8> {
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    let mut out = vec![2u8];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.push(0xCE);
    out
}

/// Publishes that promise 100 MiB bodies on a thousand channels (20 connections × 50), and send a few
/// bytes of each: the broker's memory follows what arrived, not what was promised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promised_bodies_do_not_allocate_what_they_promise() {
    let w = Child::spawn("promised", "");
    let before = w.rss_kib();
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut r = Raw::handshake(&w.broker, 2047, 131_072, 0).await;
        let mut out = Vec::new();
        for ch in 1..=50u16 {
            let mut open = Vec::new();
            raw::shortstr(&mut open, "");
            out.extend(Raw::method_bytes(ch, 20, 10, &open));
            let mut publish = vec![0, 0];
            raw::shortstr(&mut publish, "");
            raw::shortstr(&mut publish, "nowhere");
            publish.push(0);
            out.extend(Raw::method_bytes(ch, 60, 40, &publish));
            out.extend(promising_header(ch, 100 << 20));
            // a first body frame of 1 KiB
            let mut body = vec![3u8];
            body.extend_from_slice(&ch.to_be_bytes());
            body.extend_from_slice(&1024u32.to_be_bytes());
            body.extend(std::iter::repeat_n(b'b', 1024));
            body.push(0xCE);
            out.extend(body);
        }
        r.write(&out).await;
        // channel.open-ok for every channel: everything above has been read and handled.
        for _ in 0..50 {
            r.method_frame().await;
        }
        conns.push(r);
    }
    let grown_mib = w.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "RSS grew {grown_mib} MiB for 1,000 promised 100 MiB bodies (1 KiB of each sent)"
    );
    // The broker still serves everyone else.
    let conn = connect(&w.broker).await;
    assert_conn_usable(&conn).await;
}

/// A topic binding made to backtrack (255 bytes of `#.*` against a 255-byte key that almost matches)
/// routes at once: matching is polynomial, so the publish is confirmed and the broker stays responsive.
#[tokio::test]
async fn pathological_topic_bindings_route_without_pinning_the_broker() {
    let (_server, b) = own_warren().await;
    let conn = connect(&b).await;
    let ch = open(&conn).await;
    declare_exchange(&ch, "evil", lapin::ExchangeKind::Topic).await;
    let q = declare_queue(&ch, "evil-q").await;
    let patterns = [
        "#.".repeat(127) + "#",
        "#.*.".repeat(63) + "#",
        "*.#.".repeat(63) + "z",
        "#.a.".repeat(63) + "#",
    ];
    for p in &patterns {
        assert!(p.len() <= 255);
        within(ch.queue_bind(
            q.as_str().into(),
            "evil".into(),
            p.as_str().into(),
            Default::default(),
            Default::default(),
        ))
        .await
        .expect("bind");
    }
    confirm_select(&ch).await;
    // 255 bytes of "a." ending in a word no pattern ends with: every pattern must explore the key fully.
    let key = "a.".repeat(126) + "bbb";
    assert_eq!(key.len(), 255);
    for _ in 0..10 {
        publish_confirmed(&ch, "evil", &key, b"x").await;
    }
    // Some patterns match it ("#.#..." matches everything): the messages arrived.
    wait_for_count(&ch, &q, 10).await;
    assert_conn_usable(&conn).await;
}
