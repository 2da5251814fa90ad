//! The connection lifecycle as a state machine without I/O: protocol header, start/start-ok (PLAIN and
//! AMQPLAIN), tune/tune-ok, open, running, and close in either direction. Each phase carries what it has
//! learnt; each input (the header, a frame on channel 0, a broker-side close) returns the [`Action`]s for the
//! connection task to carry out. Authentication and vhost lookup come through [`Env`], so the machine is
//! unit-tested with a fake. Channel traffic in the running phase is the connection's own business.

use super::handshake::{self, parse_credentials};
use crate::broker::{User, VHost};
use crate::error::AmqpError;
use crate::protocol::{self, fields, RawFrame};
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::AMQPValue;
use std::sync::Arc;

/// What the peer negotiated in tune-ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// The client capabilities the broker acts on (from start-ok's client properties).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub auth_failure_close: bool,
    pub blocked: bool,
    pub cancel_notify: bool,
}

/// Where a connection is.
#[derive(Debug, Default)]
pub enum Phase {
    #[default]
    AwaitHeader,
    AwaitStartOk,
    AwaitTuneOk {
        user: User,
    },
    AwaitOpen {
        user: User,
        tune: Tune,
    },
    /// Open: channel traffic flows.
    Running,
    /// The broker sent connection.close and waits for close-ok.
    Closing,
    /// The client closed and got close-ok; input is ignored until it closes the socket.
    Closed,
    Done,
}

/// What the connection task must do.
#[derive(Debug)]
pub enum Action {
    /// Write these bytes as they are (the protocol header, for a client speaking another version).
    Raw(&'static [u8]),
    /// Write connection.start.
    Start,
    /// Send a method on channel 0.
    Send(AMQPClass),
    /// Apply the negotiated limits.
    Tuned(Tune),
    /// connection.open succeeded: the connection is running as `user` in `vhost`.
    Opened { user: User, vhost: Arc<VHost> },
    /// Close from the broker side with this error: send connection.close, release everything, wait for
    /// close-ok.
    Close(AmqpError),
    /// The client closed: release everything (close-ok is sent by a `Send` before this).
    Release,
    /// Stop reading; flush and close the socket.
    Stop,
    /// Ignore input and close the socket after this long (or when the client closes it, or on close-ok):
    /// RabbitMQ's pause after a refused login, which slows password guessing.
    Linger(std::time::Duration),
}

/// How long a refused login is held before its socket closes (RabbitMQ: 3 s, with or without a close).
pub const AUTH_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_secs(3);

/// What the machine asks of the broker.
pub trait Env {
    fn config(&self) -> &crate::Config;
    /// Check credentials; `Err` has RabbitMQ's refusal text.
    fn authenticate(&self, mechanism: &str, user: &str, pass: &str) -> Result<User, String>;
    /// Log in as the user a verified client certificate names (the EXTERNAL mechanism).
    fn authenticate_external(&self, user: &str) -> Result<User, String>;
    /// The vhost a user may open, or the 530 that refuses it.
    fn open_vhost(&self, user: &User, vhost: &str) -> Result<Arc<VHost>, AmqpError>;
}

#[derive(Debug, Default)]
pub struct Machine {
    pub phase: Phase,
    pub caps: Caps,
    /// What the client said about itself in start-ok, and how it authenticated.
    pub client_properties: amq_protocol::types::FieldTable,
    pub mechanism: String,
    /// The user a verified TLS client certificate names: EXTERNAL is offered and logs in as them.
    pub external: Option<String>,
}

fn close_ok() -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))
}

impl Machine {
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitHeader
                | Phase::AwaitStartOk
                | Phase::AwaitTuneOk { .. }
                | Phase::AwaitOpen { .. }
        )
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// Whether the connection is closing or closed (input other than close/close-ok is ignored).
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Closed | Phase::Done)
    }

    /// The 8-byte protocol header (`compat4`: answered as RabbitMQ 4.x answers a header it refuses).
    pub fn header(&mut self, h: &[u8], compat4: bool) -> Vec<Action> {
        if !handshake::header_ok(h) {
            tracing::info!(header = ?h, "bad protocol header");
            self.phase = Phase::Done;
            return vec![
                Action::Raw(handshake::header_refusal(h, compat4)),
                Action::Stop,
            ];
        }
        self.phase = Phase::AwaitStartOk;
        vec![Action::Start]
    }

    /// Close from the broker side (an error, a forced close). Ignored once closing.
    pub fn close(&mut self, e: AmqpError) -> Vec<Action> {
        if self.is_closing() {
            return Vec::new();
        }
        self.phase = Phase::Closing;
        vec![Action::Close(e)]
    }

    /// A frame on channel 0, or any frame before the connection runs. `None` when the frame is channel
    /// traffic for the running connection to handle.
    pub fn frame(&mut self, f: &RawFrame, env: &dyn Env) -> Option<Vec<Action>> {
        match self.phase {
            Phase::AwaitHeader => Some(vec![Action::Stop]),
            Phase::AwaitStartOk | Phase::AwaitTuneOk { .. } | Phase::AwaitOpen { .. } => {
                Some(self.handshake_frame(f, env))
            }
            Phase::Running => None,
            Phase::Closing => Some(self.closing_frame(f)),
            Phase::Closed => Some(Vec::new()),
            Phase::Done => Some(vec![Action::Stop]),
        }
    }

    /// A connection-class method on channel 0 while running.
    pub fn running_method(&mut self, m: AMQPClass) -> Vec<Action> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "client closed connection");
                // Like RabbitMQ, leave closing the socket to the client (within a grace period): closing it
                // first can turn a client's racing second close into a reset.
                self.phase = Phase::Closed;
                vec![Action::Release, Action::Send(close_ok())]
            }
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                vec![Action::Send(AMQPClass::Connection(
                    connection::AMQPMethod::UpdateSecretOk(connection::UpdateSecretOk {}),
                ))]
            }
            // connection.blocked / unblocked are the server's to send: 504, as RabbitMQ answers.
            _ => self.close(
                AmqpError::channel_error("unexpected method in connection state running")
                    .on(class_id, method_id),
            ),
        }
    }

    fn closing_frame(&mut self, f: &RawFrame) -> Vec<Action> {
        // Only close / close-ok matter now.
        if f.kind != protocol::FRAME_METHOD || f.channel != 0 {
            return Vec::new();
        }
        match amq_protocol::protocol::parse_class(&f.payload[..]) {
            Ok((_, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))) => {
                self.phase = Phase::Done;
                vec![Action::Stop]
            }
            Ok((_, AMQPClass::Connection(connection::AMQPMethod::Close(_)))) => {
                self.phase = Phase::Done;
                vec![Action::Send(close_ok()), Action::Stop]
            }
            _ => Vec::new(),
        }
    }

    fn handshake_frame(&mut self, f: &RawFrame, env: &dyn Env) -> Vec<Action> {
        if f.kind == protocol::FRAME_HEARTBEAT {
            return Vec::new();
        }
        if f.kind != protocol::FRAME_METHOD || f.channel != 0 {
            tracing::info!(
                kind = f.kind,
                channel = f.channel,
                "unexpected frame during handshake"
            );
            if matches!(self.phase, Phase::AwaitOpen { .. }) {
                // Once tuned, RabbitMQ can and does say why.
                return self.close(AmqpError::unexpected_frame(format!(
                    "type {}, all octets = {}",
                    f.kind,
                    protocol::erlang_binary(&f.payload)
                )));
            }
            self.phase = Phase::Done;
            return vec![Action::Stop];
        }
        let Ok((_, m)) = amq_protocol::protocol::parse_class(&f.payload[..]) else {
            tracing::info!("undecodable method during handshake");
            self.phase = Phase::Done;
            return vec![Action::Stop];
        };
        match (std::mem::take(&mut self.phase), m) {
            (Phase::AwaitStartOk, AMQPClass::Connection(connection::AMQPMethod::StartOk(s))) => {
                self.start_ok(s, env)
            }
            (
                Phase::AwaitTuneOk { user },
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)),
            ) => self.tune_ok(user, t, env),
            (
                Phase::AwaitOpen { user, tune },
                AMQPClass::Connection(connection::AMQPMethod::Open(o)),
            ) => self.open(user, tune, o, env),
            (_, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                self.phase = Phase::Done;
                vec![Action::Send(close_ok()), Action::Stop]
            }
            (phase, m) => {
                tracing::info!(
                    phase = ?std::mem::discriminant(&phase),
                    class = m.get_amqp_class_id(),
                    method = m.get_amqp_method_id(),
                    "unexpected method during handshake"
                );
                self.phase = Phase::Done;
                vec![Action::Stop]
            }
        }
    }

    fn start_ok(&mut self, s: connection::StartOk, env: &dyn Env) -> Vec<Action> {
        let caps = fields::get(&s.client_properties, "capabilities");
        let cap = |name: &str| match caps {
            Some(AMQPValue::FieldTable(t)) => fields::get(t, name)
                .and_then(fields::as_bool)
                .unwrap_or(false),
            _ => false,
        };
        self.caps = Caps {
            auth_failure_close: cap("authentication_failure_close"),
            blocked: cap("connection.blocked"),
            cancel_notify: cap("consumer_cancel_notify"),
        };
        self.phase = Phase::Done;
        self.client_properties = s.client_properties.clone();
        self.mechanism = s.mechanism.to_string();
        let mechanism = s.mechanism.as_str();
        let login = match (mechanism, &self.external) {
            ("EXTERNAL", Some(name)) => env
                .authenticate_external(name)
                .map_err(|e| (name.clone(), e)),
            ("PLAIN" | "AMQPLAIN", _) => {
                let Some((user, pass)) = parse_credentials(mechanism, s.response.as_bytes()) else {
                    tracing::info!(mechanism, "malformed authentication response");
                    return vec![Action::Stop];
                };
                env.authenticate(mechanism, &user, &pass)
                    .map_err(|e| (user, e))
            }
            _ => {
                tracing::info!(mechanism, "unsupported authentication mechanism");
                return vec![Action::Stop];
            }
        };
        let account = match login {
            Ok(a) => a,
            Err((user, why)) => {
                tracing::warn!(user = %user, mechanism, reason = %why, "login refused");
                if !self.caps.auth_failure_close {
                    self.phase = Phase::Closed;
                    return vec![Action::Linger(AUTH_FAILURE_DELAY)];
                }
                let e = AmqpError::access_refused(why);
                self.phase = Phase::Closing;
                return vec![
                    Action::Send(AMQPClass::Connection(connection::AMQPMethod::Close(
                        connection::Close {
                            reply_code: e.code.code(),
                            reply_text: e.reply_text().as_str().into(),
                            class_id: 0,
                            method_id: 0,
                        },
                    ))),
                    Action::Linger(AUTH_FAILURE_DELAY),
                ];
            }
        };
        let cfg = env.config();
        self.phase = Phase::AwaitTuneOk { user: account };
        vec![Action::Send(AMQPClass::Connection(
            connection::AMQPMethod::Tune(connection::Tune {
                channel_max: cfg.channel_max,
                frame_max: cfg.frame_max,
                heartbeat: cfg.heartbeat,
            }),
        ))]
    }

    fn tune_ok(&mut self, user: User, t: connection::TuneOk, env: &dyn Env) -> Vec<Action> {
        let cfg = env.config();
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
        let frame_min = cfg.compat().frame_min();
        let err = if t.frame_max != 0 && t.frame_max < frame_min {
            Some(fail("frame_max", t.frame_max, false, frame_min))
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
            return self.close(e);
        }
        let tune = Tune {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: t.heartbeat,
        };
        self.phase = Phase::AwaitOpen { user, tune };
        vec![Action::Tuned(tune)]
    }

    fn open(&mut self, user: User, _tune: Tune, o: connection::Open, env: &dyn Env) -> Vec<Action> {
        match env.open_vhost(&user, o.virtual_host.as_str()) {
            Ok(vhost) => {
                self.phase = Phase::Running;
                vec![
                    Action::Send(AMQPClass::Connection(connection::AMQPMethod::OpenOk(
                        connection::OpenOk {},
                    ))),
                    Action::Opened { user, vhost },
                ]
            }
            Err(e) => self.close(e.on(10, 40)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StoredPassword;
    use amq_protocol::types::FieldTable;

    struct Fake {
        config: crate::Config,
        vhost: Arc<VHost>,
    }

    impl Env for Fake {
        fn config(&self) -> &crate::Config {
            &self.config
        }
        fn authenticate(&self, m: &str, user: &str, pass: &str) -> Result<User, String> {
            if user == "guest" && pass == "guest" {
                Ok(User {
                    name: user.into(),
                    password: StoredPassword::None,
                    tags: vec![],
                    limits: Default::default(),
                })
            } else {
                Err(format!(
                    "Login was refused using authentication mechanism {m}."
                ))
            }
        }
        fn authenticate_external(&self, user: &str) -> Result<User, String> {
            self.authenticate("EXTERNAL", user, "guest")
        }

        fn open_vhost(&self, user: &User, vhost: &str) -> Result<Arc<VHost>, AmqpError> {
            if vhost == "/" {
                Ok(self.vhost.clone())
            } else {
                Err(AmqpError::not_allowed(format!(
                    "access to vhost '{vhost}' refused for user '{}'",
                    user.name
                )))
            }
        }
    }

    fn fake() -> Fake {
        Fake {
            config: crate::Config::default(),
            vhost: VHost::standalone("/"),
        }
    }

    fn frame(m: AMQPClass) -> RawFrame {
        let mut b = bytes::BytesMut::new();
        protocol::write_method(&mut b, 0, m);
        protocol::split_frame(&mut b, 1 << 20).unwrap().unwrap()
    }

    fn start_ok(user: &str, pass: &str, caps: &[&str]) -> RawFrame {
        let mut c = FieldTable::default();
        for k in caps {
            c.insert((*k).into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), AMQPValue::FieldTable(c));
        frame(AMQPClass::Connection(connection::AMQPMethod::StartOk(
            connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: format!("\0{user}\0{pass}").into(),
                locale: "en_US".into(),
            },
        )))
    }

    fn tune_ok(channel_max: u16, frame_max: u32) -> RawFrame {
        frame(AMQPClass::Connection(connection::AMQPMethod::TuneOk(
            connection::TuneOk {
                channel_max,
                frame_max,
                heartbeat: 10,
            },
        )))
    }

    fn open(vhost: &str) -> RawFrame {
        frame(AMQPClass::Connection(connection::AMQPMethod::Open(
            connection::Open {
                virtual_host: vhost.into(),
            },
        )))
    }

    #[test]
    fn a_full_handshake() {
        let env = fake();
        let mut m = Machine::default();
        assert!(matches!(
            m.header(protocol::PROTOCOL_HEADER, false)[..],
            [Action::Start]
        ));
        let a = m
            .frame(&start_ok("guest", "guest", &["connection.blocked"]), &env)
            .unwrap();
        assert!(matches!(
            &a[..],
            [Action::Send(AMQPClass::Connection(
                connection::AMQPMethod::Tune(_)
            ))]
        ));
        assert!(m.caps.blocked && !m.caps.cancel_notify);
        let a = m.frame(&tune_ok(100, 65536), &env).unwrap();
        assert!(matches!(
            &a[..],
            [Action::Tuned(Tune {
                channel_max: 100,
                frame_max: 65536,
                heartbeat: 10
            })]
        ));
        let a = m.frame(&open("/"), &env).unwrap();
        assert!(matches!(&a[..], [Action::Send(_), Action::Opened { .. }]));
        assert!(m.is_running());
        assert!(
            m.frame(&open("/"), &env).is_none(),
            "running: channel traffic"
        );
    }

    #[test]
    fn refusals_follow_the_client_capabilities() {
        let env = fake();
        let mut m = Machine::default();
        m.header(protocol::PROTOCOL_HEADER, false);
        let a = m.frame(&start_ok("guest", "bad", &[]), &env).unwrap();
        assert!(
            matches!(&a[..], [Action::Linger(AUTH_FAILURE_DELAY)]),
            "no capability: no frame, the socket closes 3 s later"
        );
        assert!(m.is_closing());

        let mut m = Machine::default();
        m.header(protocol::PROTOCOL_HEADER, false);
        let a = m
            .frame(
                &start_ok("guest", "bad", &["authentication_failure_close"]),
                &env,
            )
            .unwrap();
        match &a[..] {
            [Action::Send(AMQPClass::Connection(connection::AMQPMethod::Close(c))), Action::Linger(AUTH_FAILURE_DELAY)] =>
            {
                assert_eq!(c.reply_code, 403);
                assert!(c
                    .reply_text
                    .as_str()
                    .starts_with("ACCESS_REFUSED - Login was refused"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_tune_and_vhost_close_with_rabbitmq_errors() {
        let env = fake();
        let mut m = Machine::default();
        m.header(protocol::PROTOCOL_HEADER, false);
        m.frame(&start_ok("guest", "guest", &[]), &env);
        let a = m.frame(&tune_ok(0, 65536), &env).unwrap();
        match &a[..] {
            [Action::Close(e)] => {
                assert_eq!(e.code.code(), 530);
                assert_eq!(
                    e.text,
                    "negotiated channel_max = 0 (no limit) is higher than the maximum allowed value (2047)"
                );
                assert_eq!((e.class_id, e.method_id), (10, 30));
            }
            other => panic!("{other:?}"),
        }
        assert!(m.is_closing());

        let mut m = Machine::default();
        m.header(protocol::PROTOCOL_HEADER, false);
        m.frame(&start_ok("guest", "guest", &[]), &env);
        m.frame(&tune_ok(10, 8192), &env);
        let a = m.frame(&open("other"), &env).unwrap();
        assert!(
            matches!(&a[..], [Action::Close(e)] if e.code.code() == 530 && e.class_id == 10 && e.method_id == 40)
        );
    }

    #[test]
    fn closing_waits_for_close_ok() {
        let env = fake();
        let mut m = Machine {
            phase: Phase::Running,
            ..Default::default()
        };
        assert_eq!(m.close(AmqpError::frame_error("x")).len(), 1);
        assert!(m.close(AmqpError::frame_error("again")).is_empty());
        assert!(
            m.frame(&open("/"), &env).unwrap().is_empty(),
            "ignored while closing"
        );
        let a = m.frame(&frame(close_ok()), &env).unwrap();
        assert!(matches!(&a[..], [Action::Stop]));
    }

    #[test]
    fn a_wrong_protocol_header_is_answered_with_ours() {
        let mut m = Machine::default();
        let a = m.header(b"AMQP\x00\x00\x09\x02", false);
        assert!(
            matches!(&a[..], [Action::Raw(h), Action::Stop] if *h == protocol::PROTOCOL_HEADER)
        );
        // RabbitMQ 4.x answers anything but a 0-9 header with AMQP 1.0's.
        let mut m = Machine::default();
        let a = m.header(b"AMQP\x01\x01\x08\x00", true);
        assert!(matches!(&a[..], [Action::Raw(h), Action::Stop] if *h == b"AMQP\x03\x01\x00\x00"));
        let mut m = Machine::default();
        let a = m.header(b"AMQP\x00\x00\x09\x02", true);
        assert!(
            matches!(&a[..], [Action::Raw(h), Action::Stop] if *h == protocol::PROTOCOL_HEADER)
        );
    }
}
