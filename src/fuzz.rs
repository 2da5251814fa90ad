//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo-afl, which runs on the stable
//! toolchain). Each takes arbitrary bytes and must return without panicking, aborting, hanging or allocating
//! by a number the bytes declare; the differential ones also assert that Warren's hand-written decoders
//! agree with amq-protocol's wherever they answer. Not part of Warren's API.

use crate::broker::{Broker, User, VHost};
use crate::connection::lifecycle::{Action, Env, Machine};
use crate::error::AmqpError;
use crate::protocol::{self, RawFrame};
use crate::FastMap as HashMap;
use bytes::BytesMut;
use std::sync::Arc;

/// Cut frames out of `data` with a frame_max taken from its first bytes, as the connection reader does.
pub fn frames(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let frame_max = u32::from_be_bytes(*head);
    let mut buf = BytesMut::from(rest);
    let _ = protocol::peek_frame_len(&buf);
    while let Ok(Some(f)) = protocol::split_frame(&mut buf, frame_max) {
        let _ = protocol::peek_method(&f.payload);
        let _ = protocol::peek_header_class(&f.payload);
        let _ = protocol::peek_qos_prefetch_size(&f.payload);
        let _ = protocol::nesting::method_too_deep(&f.payload);
        let _ = protocol::nesting::header_too_deep(&f.payload);
    }
}

/// basic.publish: whenever the fast path decodes a payload, amq-protocol decodes it to the same method.
pub fn publish(data: &[u8]) {
    let Some(fast) = protocol::parse_publish(data) else {
        return;
    };
    match amq_protocol::protocol::parse_class(data) {
        Ok((
            _,
            amq_protocol::protocol::AMQPClass::Basic(
                amq_protocol::protocol::basic::AMQPMethod::Publish(p),
            ),
        )) => {
            assert_eq!(fast.exchange, p.exchange, "exchange");
            assert_eq!(fast.routing_key, p.routing_key, "routing key");
            assert_eq!(fast.mandatory, p.mandatory, "mandatory");
            assert_eq!(fast.immediate, p.immediate, "immediate");
        }
        other => panic!("fast path decoded a publish amq-protocol reads as {other:?}"),
    }
}

/// Content headers: whenever the fast path decodes one, amq-protocol decodes the same size and properties;
/// the publish path keeps exactly those headers undecoded, and reads the same values from them in place.
pub fn content_header(data: &[u8]) {
    if protocol::nesting::header_too_deep(data) {
        return;
    }
    let fast = protocol::parse_content_header(data);
    let generic = amq_protocol::frame::parsing::parse_content_header(data).ok();
    let lazy = protocol::lazy_body_size(data);
    let Some((size, props)) = fast else {
        assert_eq!(lazy, None, "kept undecoded a header the fast path refuses");
        return;
    };
    let (_, h) = generic.expect("fast path decoded a header amq-protocol refuses");
    assert_eq!(size, h.body_size, "body size");
    assert_eq!(props, h.properties, "properties");
    assert_eq!(
        lazy,
        Some(size),
        "a header the fast path decodes is kept undecoded"
    );
    use protocol::bit;
    fn short(v: &Option<amq_protocol::types::ShortString>) -> Option<&str> {
        v.as_ref().map(|s| s.as_str())
    }
    assert_eq!(
        protocol::octet_property(data, bit::DELIVERY_MODE),
        *props.delivery_mode()
    );
    assert_eq!(
        protocol::octet_property(data, bit::PRIORITY),
        *props.priority()
    );
    assert_eq!(
        protocol::short_property(data, bit::EXPIRATION),
        short(props.expiration())
    );
    assert_eq!(
        protocol::short_property(data, bit::REPLY_TO),
        short(props.reply_to())
    );
    assert_eq!(
        protocol::short_property(data, bit::USER_ID),
        short(props.user_id())
    );
    assert!(
        !protocol::has_headers(data),
        "the fast path decoded a table"
    );
}

/// A broker for the lifecycle target: one vhost "/", user guest/guest.
struct FuzzEnv {
    config: crate::Config,
    vhost: Arc<VHost>,
}

impl Env for FuzzEnv {
    fn config(&self) -> &crate::Config {
        &self.config
    }

    fn authenticate(&self, m: &str, user: &str, pass: &str) -> Result<User, String> {
        if user == "guest" && pass == "guest" {
            self.authenticate_external(user)
        } else {
            Err(format!(
                "Login was refused using authentication mechanism {m}."
            ))
        }
    }

    fn authenticate_external(&self, user: &str) -> Result<User, String> {
        Ok(User {
            name: user.into(),
            password: crate::broker::StoredPassword::None,
            tags: Vec::new(),
            limits: Default::default(),
        })
    }

    fn open_vhost(&self, _user: &User, vhost: &str) -> Result<Arc<VHost>, AmqpError> {
        match vhost {
            "/" => Ok(self.vhost.clone()),
            _ => Err(AmqpError::not_allowed(format!("vhost {vhost} not found"))),
        }
    }
}

/// The connection and channel state machines fed the frames cut from `data` (after an 8-byte protocol
/// header): handshake, channel opens and closes, methods in every phase, close in both directions.
pub fn lifecycle(data: &[u8]) {
    let env = FuzzEnv {
        config: crate::Config::default(),
        vhost: VHost::standalone("/"),
    };
    let mut m = Machine {
        external: (data.first() == Some(&b'E')).then(|| "guest".to_string()),
        ..Default::default()
    };
    let Some((header, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    if stops(&m.header(header, false)) {
        return;
    }
    let mut frame_max = protocol::FRAME_MIN_SIZE;
    let mut channels: HashMap<u16, crate::channel::lifecycle::Phase> = HashMap::default();
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(f)) = protocol::split_frame(&mut buf, frame_max) {
        let actions = match m.frame(&f, &env) {
            Some(a) => a,
            None => channel_frame(&mut m, &mut channels, f),
        };
        for a in &actions {
            if let Action::Tuned(t) = a {
                frame_max = t.frame_max.max(protocol::FRAME_MIN_SIZE);
            }
        }
        if stops(&actions) {
            return;
        }
    }
}

fn stops(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Stop))
}

/// A frame for a running connection: channel 0 methods to the connection machine, the rest through the
/// channel lifecycle gate as the dispatcher does.
fn channel_frame(
    m: &mut Machine,
    channels: &mut HashMap<u16, crate::channel::lifecycle::Phase>,
    f: RawFrame,
) -> Vec<Action> {
    use crate::channel::lifecycle::{on_method, Phase, Step};
    if f.kind != protocol::FRAME_METHOD {
        return Vec::new();
    }
    let Ok((_, method)) = amq_protocol::protocol::parse_class(&f.payload[..]) else {
        return vec![Action::Stop];
    };
    if f.channel == 0 {
        return m.running_method(method);
    }
    let (class, id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
    let phase = channels.get(&f.channel).copied().unwrap_or(Phase::Absent);
    match on_method(phase, class, id) {
        Ok(Step::Open) => {
            if channels.len() < 2047 {
                channels.insert(f.channel, Phase::Open);
            }
        }
        Ok(Step::ClientClose) | Ok(Step::Forget) => {
            channels.remove(&f.channel);
        }
        Ok(_) => {}
        Err(e) if e.is_hard() => return m.close(e),
        Err(_) => {
            channels.insert(f.channel, Phase::Closing);
        }
    }
    Vec::new()
}

/// A whole broker connection: `data` (after the protocol header) is written to a real connection of an
/// in-process broker, whose replies are read until it closes. The broker is shared across inputs and reset
/// after each, so one input's topology does not leak into the next.
pub struct ConnectionTarget {
    rt: tokio::runtime::Runtime,
    server: crate::Server,
}

impl ConnectionTarget {
    pub fn new() -> ConnectionTarget {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = rt.block_on(async {
            let config = crate::Config {
                bind: "127.0.0.1".into(),
                port: 0,
                ephemeral: true,
                heartbeat: 0,
                handshake_timeout_ms: 1000,
                ..Default::default()
            };
            crate::Server::start(config).await.expect("start broker")
        });
        ConnectionTarget { rt, server }
    }

    pub fn run(&self, data: &[u8]) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.server.local_addr();
        self.rt.block_on(async {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            let _ = s.write_all(protocol::PROTOCOL_HEADER).await;
            let _ = s.write_all(data).await;
            let _ = s.shutdown().await;
            let mut sink = vec![0u8; 64 * 1024];
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                match tokio::time::timeout_at(deadline, s.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(_)) => {}
                }
            }
        });
        reset(self.server.broker());
    }
}

impl Default for ConnectionTarget {
    fn default() -> Self {
        Self::new()
    }
}

fn reset(b: &Arc<Broker>) {
    b.reset();
}

/// Message store recovery over a msg segment whose records are `data`: recovery must truncate or skip
/// what does not check out, and every message it reports must read back.
pub fn store_recovery(data: &[u8], dir: &std::path::Path) {
    use crate::store::{MessageStore, StoreConfig};
    let _ = std::fs::remove_dir_all(dir);
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let (kind, rest) = match data.split_first() {
        Some((k, rest)) => (*k, rest),
        None => return,
    };
    let seg = if kind & 1 == 0 {
        crate::store::fuzz_segment(false, rest)
    } else {
        crate::store::fuzz_segment(true, rest)
    };
    if std::fs::write(dir.join(seg.0), seg.1).is_err() {
        return;
    }
    let mut cfg = StoreConfig::new(dir);
    cfg.sync = crate::store::SyncPolicy::Never;
    if let Ok((store, queues)) = MessageStore::open(cfg) {
        for q in &queues {
            for m in &q.messages {
                let _ = store.read(m.location);
            }
        }
        drop(store);
    }
}

/// Definitions-log replay: the lines of `data` parsed as the log's commands and applied, in order, to a
/// fresh in-memory broker through the same replay path boot uses.
pub fn definitions_replay(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cmds = crate::broker::deflog::parse_lines(text.lines().map(|l| Ok(l.to_string())), None);
    let b = Broker::new(crate::Config {
        ephemeral: true,
        ..Default::default()
    });
    b.replay_for_fuzz(cmds);
}

/// Run `f` so that a panic anywhere (including a broker task) aborts the process, which is what the fuzzer
/// watches for.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_run_on_their_seeds() {
        frames(&[0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 40, 0xce]);
        let mut p = vec![0, 60, 0, 40, 0, 0, 0, 1, b'q', 0];
        publish(&p);
        p.push(7);
        publish(&p);
        content_header(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 3, 0x10, 0x00, 2]);
        lifecycle(b"AMQP\x00\x00\x09\x01");
        definitions_replay(b"{\"AddVhost\":{\"name\":\"v\"}}\nnot json\n");
        let dir = std::env::temp_dir().join(format!("warren-fuzz-test-{}", std::process::id()));
        store_recovery(&[0, 1, 2, 3], &dir);
        store_recovery(&[1, 0, 0], &dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
