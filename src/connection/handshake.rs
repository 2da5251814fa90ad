//! The opening of a connection: protocol header check, connection.start with RabbitMQ's server properties,
//! PLAIN and AMQPLAIN authentication, tune/tune-ok negotiation and connection.open with its vhost check.

use super::{Connection, Flow, State};
use crate::error::AmqpError;
use crate::protocol::{self, RawFrame};
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::AMQPValue;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// AMQP 0-9-1, and the "1 1 0 9" form some old clients send for it.
pub fn header_ok(h: &[u8]) -> bool {
    h == protocol::PROTOCOL_HEADER || h == b"AMQP\x01\x01\x00\x09"
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
fn server_properties() -> Vec<(&'static str, Prop)> {
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
        ("version", Prop::Str(RABBITMQ_VERSION)),
    ]
}

/// The RabbitMQ release whose behaviour Warren follows, reported as the server version.
pub const RABBITMQ_VERSION: &str = "3.13.7";

/// The connection.start frame.
pub fn write_start(buf: &mut bytes::BytesMut) {
    let mut p = Vec::with_capacity(512);
    p.extend_from_slice(&[0, 10, 0, 10, 0, 9]);
    put_table(&mut p, &server_properties());
    for s in ["PLAIN AMQPLAIN", "en_US"] {
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

impl Connection {
    pub(super) fn handshake_frame(&mut self, f: RawFrame) -> Flow {
        if f.kind == protocol::FRAME_HEARTBEAT {
            return Flow::Continue;
        }
        if f.kind != protocol::FRAME_METHOD || f.channel != 0 {
            tracing::info!(
                kind = f.kind,
                channel = f.channel,
                "unexpected frame during handshake"
            );
            if self.state == State::AwaitOpen {
                // Once tuned, RabbitMQ can and does say why.
                self.state = State::Running;
                self.close_connection(AmqpError::unexpected_frame(format!(
                    "type {}, all octets = {}",
                    f.kind,
                    protocol::erlang_binary(&f.payload)
                )));
                return Flow::Continue;
            }
            return Flow::Stop;
        }
        let Ok((_, m)) = amq_protocol::protocol::parse_class(&f.payload[..]) else {
            tracing::info!("undecodable method during handshake");
            return Flow::Stop;
        };
        match (self.state, m) {
            (State::AwaitStartOk, AMQPClass::Connection(connection::AMQPMethod::StartOk(s))) => {
                self.start_ok(s)
            }
            (State::AwaitTuneOk, AMQPClass::Connection(connection::AMQPMethod::TuneOk(t))) => {
                self.tune_ok(t)
            }
            (State::AwaitOpen, AMQPClass::Connection(connection::AMQPMethod::Open(o))) => {
                self.open(o)
            }
            (_, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                Flow::Stop
            }
            (state, m) => {
                tracing::info!(
                    ?state,
                    class = m.get_amqp_class_id(),
                    method = m.get_amqp_method_id(),
                    "unexpected method during handshake"
                );
                Flow::Stop
            }
        }
    }

    fn start_ok(&mut self, s: connection::StartOk) -> Flow {
        let caps = crate::protocol::fields::get(&s.client_properties, "capabilities");
        let cap = |name: &str| match caps {
            Some(AMQPValue::FieldTable(t)) => crate::protocol::fields::get(t, name)
                .and_then(crate::protocol::fields::as_bool)
                .unwrap_or(false),
            _ => false,
        };
        self.auth_failure_close = cap("authentication_failure_close");
        self.blocked_capable = cap("connection.blocked");
        self.shared
            .cancel_notify
            .store(cap("consumer_cancel_notify"), Ordering::Relaxed);
        let mechanism = s.mechanism.as_str();
        if mechanism != "PLAIN" && mechanism != "AMQPLAIN" {
            tracing::info!(mechanism, "unsupported authentication mechanism");
            return Flow::Stop;
        }
        let Some((user, pass)) = parse_credentials(mechanism, s.response.as_bytes()) else {
            tracing::info!(mechanism, "malformed authentication response");
            return Flow::Stop;
        };
        let refused = |this: &mut Connection, why: String| {
            tracing::warn!(user = %user, reason = %why, "login refused");
            if this.auth_failure_close {
                let e = AmqpError::access_refused(why);
                this.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                        reply_code: e.code.code(),
                        reply_text: e.reply_text().as_str().into(),
                        class_id: 0,
                        method_id: 0,
                    })),
                );
            }
            Flow::Stop
        };
        let Some(account) = self.broker.authenticate(&user, &pass) else {
            return refused(
                self,
                format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                ),
            );
        };
        if self.broker.config.loopback_users.iter().any(|u| u == &user)
            && !self.shared.peer.ip().is_loopback()
        {
            return refused(
                self,
                format!("user '{user}' can only connect via localhost"),
            );
        }
        self.user_name = Some(Arc::from(account.name.as_str()));
        self.user = Some(account);
        let cfg = &self.broker.config;
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: cfg.channel_max,
                frame_max: cfg.frame_max,
                heartbeat: cfg.heartbeat,
            })),
        );
        self.state = State::AwaitTuneOk;
        Flow::Continue
    }

    fn tune_ok(&mut self, t: connection::TuneOk) -> Flow {
        let cfg = self.broker.config.clone();
        // RabbitMQ's wording, and the class/method of connection.tune, as its source intends.
        let fail = |field: &str, value: u32, higher: bool, limit: u32| {
            let no_limit = if value == 0 && field == "channel_max" {
                " (no limit)"
            } else {
                ""
            };
            AmqpError::not_allowed(format!(
                "negotiated {field} = {value}{no_limit} is {} than the {} allowed value ({limit})",
                if higher { "higher" } else { "lower" },
                if higher { "maximum" } else { "minimum" },
            ))
            .on(10, 30)
        };
        let err = if t.frame_max != 0 && t.frame_max < protocol::FRAME_MIN_SIZE {
            Some(fail(
                "frame_max",
                t.frame_max,
                false,
                protocol::FRAME_MIN_SIZE,
            ))
        } else if t.frame_max == 0 || t.frame_max > cfg.frame_max {
            Some(fail("frame_max", t.frame_max, true, cfg.frame_max))
        } else if t.channel_max == 0 || t.channel_max > cfg.channel_max {
            Some(fail(
                "channel_max",
                t.channel_max as u32,
                true,
                cfg.channel_max as u32,
            ))
        } else {
            None
        };
        if let Some(e) = err {
            // There is no channel yet, so the connection state goes straight to closing.
            self.state = State::Running;
            self.close_connection(e);
            return Flow::Continue;
        }
        self.channel_max = t.channel_max;
        self.heartbeat = t.heartbeat;
        self.shared.frame_max.store(t.frame_max, Ordering::Relaxed);
        self.shared.outbound.set_heartbeat(t.heartbeat);
        self.state = State::AwaitOpen;
        Flow::Continue
    }

    fn open(&mut self, o: connection::Open) -> Flow {
        let name = o.virtual_host.as_str();
        let user = self.user.clone();
        let Some(vhost) = self.broker.vhost(name) else {
            self.state = State::Running;
            self.close_connection(
                AmqpError::not_allowed(format!("vhost {name} not found")).on(10, 40),
            );
            return Flow::Continue;
        };
        if let Some(u) = &user {
            if !u.vhosts.iter().any(|v| v == name) {
                self.state = State::Running;
                self.close_connection(
                    AmqpError::not_allowed(format!(
                        "access to vhost '{name}' refused for user '{}'",
                        u.name
                    ))
                    .on(10, 40),
                );
                return Flow::Continue;
            }
        }
        self.vhost = Some(vhost);
        let _ = self.shared.vhost.set(name.to_string());
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        );
        self.state = State::Running;
        tracing::info!(
            user = user.as_ref().map(|u| u.name.as_str()).unwrap_or(""),
            vhost = name,
            "connection open"
        );
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        write_start(&mut b);
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
