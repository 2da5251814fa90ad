//! Constructors for the frames the cases send. Plain data: each returns a `Frame`.

use crate::codec::{table_body, Arg, Field, Frame, Table};

pub fn method(channel: u16, class: u16, method: u16, args: Vec<Arg>) -> Frame {
    Frame::Method {
        channel,
        class,
        method,
        args,
    }
}

fn s(v: &str) -> Arg {
    Arg::ShortStr(v.to_string())
}

fn bits(v: &[bool]) -> Arg {
    Arg::Bits(v.to_vec())
}

pub fn ls(v: &str) -> Field {
    Field::LongStr(v.as_bytes().to_vec())
}

// ------------------------------------------------------------ connection (class 10)

/// Client properties; `capabilities` as given (the default client sends the usual set).
pub fn client_properties(capabilities: Table) -> Table {
    vec![
        ("product".into(), ls("warren-conformance")),
        ("platform".into(), ls("rust")),
        ("capabilities".into(), Field::Table(capabilities)),
    ]
}

/// What a modern client (e.g. the Java client) advertises.
pub fn default_capabilities() -> Table {
    vec![
        ("publisher_confirms".into(), Field::Bool(true)),
        ("exchange_exchange_bindings".into(), Field::Bool(true)),
        ("basic.nack".into(), Field::Bool(true)),
        ("consumer_cancel_notify".into(), Field::Bool(true)),
        ("connection.blocked".into(), Field::Bool(true)),
        ("authentication_failure_close".into(), Field::Bool(true)),
    ]
}

pub fn plain_response(user: &str, pass: &str) -> Vec<u8> {
    let mut r = vec![0u8];
    r.extend_from_slice(user.as_bytes());
    r.push(0);
    r.extend_from_slice(pass.as_bytes());
    r
}

/// AMQPLAIN: a field table *without* its length prefix, keys LOGIN and PASSWORD.
pub fn amqplain_response(user: &str, pass: &str) -> Vec<u8> {
    table_body(&vec![
        ("LOGIN".into(), ls(user)),
        ("PASSWORD".into(), ls(pass)),
    ])
}

pub fn start_ok(capabilities: Table, mechanism: &str, response: Vec<u8>) -> Frame {
    method(
        0,
        10,
        11,
        vec![
            Arg::Table(client_properties(capabilities)),
            s(mechanism),
            Arg::LongStr(response),
            s("en_US"),
        ],
    )
}

/// start-ok PLAIN guest/guest with the default capabilities.
pub fn start_ok_guest() -> Frame {
    start_ok(
        default_capabilities(),
        "PLAIN",
        plain_response("guest", "guest"),
    )
}

pub fn tune_ok(channel_max: u16, frame_max: u32, heartbeat: u16) -> Frame {
    method(
        0,
        10,
        31,
        vec![
            Arg::Short(channel_max),
            Arg::Long(frame_max),
            Arg::Short(heartbeat),
        ],
    )
}

pub fn connection_open(vhost: &str) -> Frame {
    method(0, 10, 40, vec![s(vhost), s(""), bits(&[false])])
}

pub fn connection_close(code: u16, text: &str, class: u16, meth: u16) -> Frame {
    method(
        0,
        10,
        50,
        vec![
            Arg::Short(code),
            s(text),
            Arg::Short(class),
            Arg::Short(meth),
        ],
    )
}

pub fn connection_close_ok() -> Frame {
    method(0, 10, 51, vec![])
}

// ------------------------------------------------------------ channel (class 20)

pub fn channel_open(ch: u16) -> Frame {
    method(ch, 20, 10, vec![s("")])
}

pub fn channel_flow(ch: u16, active: bool) -> Frame {
    method(ch, 20, 20, vec![bits(&[active])])
}

pub fn channel_close(ch: u16) -> Frame {
    method(
        ch,
        20,
        40,
        vec![Arg::Short(200), s("bye"), Arg::Short(0), Arg::Short(0)],
    )
}

pub fn channel_close_ok(ch: u16) -> Frame {
    method(ch, 20, 41, vec![])
}

// ------------------------------------------------------------ access (class 30)

pub fn access_request(ch: u16) -> Frame {
    // realm, exclusive, passive, active, write, read
    method(
        ch,
        30,
        10,
        vec![s("/data"), bits(&[false, true, true, true, true])],
    )
}

// ------------------------------------------------------------ exchange (class 40)

pub fn exchange_declare(ch: u16, name: &str, typ: &str, passive: bool, durable: bool) -> Frame {
    // ticket, exchange, type, passive, durable, auto-delete, internal, no-wait, arguments
    method(
        ch,
        40,
        10,
        vec![
            Arg::Short(0),
            s(name),
            s(typ),
            bits(&[passive, durable, false, false, false]),
            Arg::Table(vec![]),
        ],
    )
}

// ------------------------------------------------------------ queue (class 50)

pub fn queue_declare(
    ch: u16,
    name: &str,
    passive: bool,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
) -> Frame {
    // ticket, queue, passive, durable, exclusive, auto-delete, no-wait, arguments
    method(
        ch,
        50,
        10,
        vec![
            Arg::Short(0),
            s(name),
            bits(&[passive, durable, exclusive, auto_delete, false]),
            Arg::Table(vec![]),
        ],
    )
}

/// A server-only method (queue.declare-ok) sent by the client.
pub fn queue_declare_ok(ch: u16) -> Frame {
    method(ch, 50, 11, vec![s("q"), Arg::Long(0), Arg::Long(0)])
}

// ------------------------------------------------------------ basic (class 60)

pub fn basic_qos(ch: u16, prefetch_size: u32, prefetch_count: u16, global: bool) -> Frame {
    method(
        ch,
        60,
        10,
        vec![
            Arg::Long(prefetch_size),
            Arg::Short(prefetch_count),
            bits(&[global]),
        ],
    )
}

pub fn basic_consume(ch: u16, queue: &str, tag: &str, no_ack: bool) -> Frame {
    // ticket, queue, consumer-tag, no-local, no-ack, exclusive, no-wait, arguments
    method(
        ch,
        60,
        20,
        vec![
            Arg::Short(0),
            s(queue),
            s(tag),
            bits(&[false, no_ack, false, false]),
            Arg::Table(vec![]),
        ],
    )
}

pub fn basic_publish(
    ch: u16,
    exchange: &str,
    routing_key: &str,
    mandatory: bool,
    immediate: bool,
) -> Frame {
    method(
        ch,
        60,
        40,
        vec![
            Arg::Short(0),
            s(exchange),
            s(routing_key),
            bits(&[mandatory, immediate]),
        ],
    )
}

/// Content header for class 60 with no properties.
pub fn header(ch: u16, body_size: u64) -> Frame {
    Frame::Header {
        channel: ch,
        class: 60,
        body_size,
        flags: 0,
        props: vec![],
    }
}

pub fn body(ch: u16, payload: &[u8]) -> Frame {
    Frame::Body {
        channel: ch,
        payload: payload.to_vec(),
    }
}

pub fn basic_get(ch: u16, queue: &str, no_ack: bool) -> Frame {
    method(ch, 60, 70, vec![Arg::Short(0), s(queue), bits(&[no_ack])])
}

pub fn basic_ack(ch: u16, tag: u64, multiple: bool) -> Frame {
    method(ch, 60, 80, vec![Arg::LongLong(tag), bits(&[multiple])])
}

pub fn basic_recover(ch: u16, requeue: bool) -> Frame {
    method(ch, 60, 110, vec![bits(&[requeue])])
}

// ------------------------------------------------------------ non-method frames

pub fn heartbeat(ch: u16) -> Frame {
    Frame::Heartbeat { channel: ch }
}

pub fn raw(typ: u8, channel: u16, payload: &[u8], size: Option<u32>, end: u8) -> Frame {
    Frame::Raw {
        typ,
        channel,
        payload: payload.to_vec(),
        size,
        end,
    }
}
