//! The wire side of opening a connection: the protocol header check, connection.start with RabbitMQ's server
//! properties, and decoding PLAIN and AMQPLAIN credentials. The handshake's states are in `lifecycle`.

use crate::protocol;

/// AMQP 0-9-1, and the "1 1 0 9" form some old clients send for it.
pub fn header_ok(h: &[u8]) -> bool {
    h == protocol::PROTOCOL_HEADER || h == b"AMQP\x01\x01\x00\x09"
}

/// The header a refused client is answered with: AMQP 0-9-1's, except that RabbitMQ 4.x (which has no 0-8)
/// answers with AMQP 1.0's header unless the client asked for some 0-9 or later version of 0-x. Warren speaks
/// no AMQP 1.0, so a client that offers 1.0 with SASL gets the 0-9-1 header under either profile.
pub fn header_refusal(h: &[u8], compat4: bool) -> &'static [u8] {
    const AMQP_1_0: &[u8] = b"AMQP\x03\x01\x00\x00";
    let zero_nine_or_later = h.len() == 8 && h[..6] == *b"AMQP\x00\x00" && h[6] >= 9;
    let sasl_1_0 = h == AMQP_1_0;
    if compat4 && !zero_nine_or_later && !sasl_1_0 {
        AMQP_1_0
    } else {
        protocol::PROTOCOL_HEADER
    }
}

/// A field value as the server properties use them.
enum Prop {
    Str(&'static str),
    Table(Vec<(&'static str, Prop)>),
    Bool(bool),
}

fn put_table(out: &mut Vec<u8>, entries: &[(&str, Prop)]) {
    let mut body = Vec::new();
    for (k, v) in entries {
        body.push(k.len() as u8);
        body.extend_from_slice(k.as_bytes());
        match v {
            Prop::Str(s) => {
                body.push(b'S');
                body.extend_from_slice(&(s.len() as u32).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
            Prop::Bool(b) => {
                body.push(b't');
                body.push(*b as u8);
            }
            Prop::Table(t) => {
                body.push(b'F');
                put_table(&mut body, t);
            }
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
}

/// RabbitMQ's server properties, byte for byte in its order: top-level keys sorted, capabilities in
/// RabbitMQ's own order (a field-table map would sort them, hence the hand encoding). Clients such as kombu
/// and Spring read product and version to pick semantics, so Warren reports the RabbitMQ release whose
/// behaviour it implements and names itself in `information` and `platform`.
fn server_properties(version: &'static str) -> Vec<(&'static str, Prop)> {
    let caps = [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ];
    vec![
        (
            "capabilities",
            Prop::Table(caps.iter().map(|c| (*c, Prop::Bool(true))).collect()),
        ),
        ("cluster_name", Prop::Str("warren@localhost")),
        ("copyright", Prop::Str("Copyright (c) the Warren authors")),
        (
            "information",
            Prop::Str(concat!(
                "Warren ",
                env!("CARGO_PKG_VERSION"),
                ", an AMQP 0-9-1 broker compatible with RabbitMQ"
            )),
        ),
        (
            "platform",
            Prop::Str(concat!("Rust (Warren ", env!("CARGO_PKG_VERSION"), ")")),
        ),
        ("product", Prop::Str("RabbitMQ")),
        ("version", Prop::Str(version)),
    ]
}

pub use crate::protocol::RABBITMQ_VERSION;

/// The connection.start frame; EXTERNAL is offered only to a client with a verified certificate.
pub fn write_start(buf: &mut bytes::BytesMut, external: bool, version: &'static str) {
    let mut p = Vec::with_capacity(512);
    p.extend_from_slice(&[0, 10, 0, 10, 0, 9]);
    put_table(&mut p, &server_properties(version));
    let mechanisms = if external {
        "PLAIN AMQPLAIN EXTERNAL"
    } else {
        "PLAIN AMQPLAIN"
    };
    for s in [mechanisms, "en_US"] {
        p.extend_from_slice(&(s.len() as u32).to_be_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    buf.extend_from_slice(&[protocol::FRAME_METHOD, 0, 0]);
    buf.extend_from_slice(&(p.len() as u32).to_be_bytes());
    buf.extend_from_slice(&p);
    buf.extend_from_slice(&[protocol::FRAME_END]);
}

/// Whether a class/method pair exists in AMQP 0-9-1 (to tell bad arguments from an unknown method).
pub fn known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method)
}

/// Decode a PLAIN or AMQPLAIN response into (user, password).
pub fn parse_credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut framed = Vec::with_capacity(response.len() + 4);
            framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
            framed.extend_from_slice(response);
            let (_, t) = amq_protocol::types::parsing::parse_field_table(&framed[..]).ok()?;
            let get = |k: &str| {
                crate::protocol::fields::get(&t, k).and_then(crate::protocol::fields::as_str)
            };
            Some((get("LOGIN")?.into_owned(), get("PASSWORD")?.into_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{connection, AMQPClass};

    #[test]
    fn plain_and_amqplain() {
        assert_eq!(
            parse_credentials("PLAIN", b"\0guest\0guest"),
            Some(("guest".into(), "guest".into()))
        );
        assert_eq!(parse_credentials("PLAIN", b"guest"), None);
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "u"), ("PASSWORD", "p")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            parse_credentials("AMQPLAIN", &t),
            Some(("u".into(), "p".into()))
        );
    }

    #[test]
    fn start_frame_decodes_with_amq_protocol() {
        let mut b = bytes::BytesMut::new();
        write_start(&mut b, false, RABBITMQ_VERSION);
        let f = protocol::split_frame(&mut b, 4096).unwrap().unwrap();
        let (_, m) = amq_protocol::protocol::parse_class(&f.payload[..]).unwrap();
        let AMQPClass::Connection(connection::AMQPMethod::Start(s)) = m else {
            panic!()
        };
        assert_eq!(s.mechanisms.to_string(), "PLAIN AMQPLAIN");
        assert_eq!(s.server_properties.inner().len(), 7);
    }

    #[test]
    fn headers() {
        assert!(header_ok(b"AMQP\x00\x00\x09\x01"));
        assert!(!header_ok(b"AMQP\x00\x00\x09\x02"));
        assert!(!header_ok(b"GET / HT"));
    }
}
