//! A minimal AMQP 0-9-1 client on tokio: the URL, the handshake (PLAIN), and the request/reply methods used to
//! set up a workload (channel, qos, confirms, declares, binds, consume, delete, close). The data path does not go
//! through here: it takes the socket and read buffer with [`Conn::into_parts`] and drives them itself.

use crate::wire::{self, FrameRef, SplitError};
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{Buf, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything that stops a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "broker closed connection {conn}: {code} {text} (class {class_id}, method {method_id})"
    )]
    ConnectionClosed {
        conn: String,
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    #[error("broker closed channel {channel} of connection {conn}: {code} {text} (class {class_id}, method {method_id})")]
    ChannelClosed {
        conn: String,
        channel: u16,
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    #[error("connection {conn}: {what}")]
    Protocol { conn: String, what: String },
    #[error("{0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An I/O error on a named connection.
pub fn io_error(label: &str, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("connection {label} {what}"),
        source: e,
    }
}

/// A parsed `amqp://user:pass@host:port/vhost` URL.
#[derive(Debug, Clone)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::Usage(format!("bad percent escape in URL part {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Usage(format!("URL part {s:?} is not UTF-8")))
}

impl Url {
    /// Parse an AMQP URL. A missing or empty vhost means `/` (as most clients read it); `%2f` is `/` too.
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| Error::Usage(format!("bad AMQP URL {s:?}: {why}"));
        let rest = s
            .strip_prefix("amqp://")
            .ok_or_else(|| bad("only amqp:// is supported"))?;
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(u) => match u.find(':') {
                Some(i) => (percent_decode(&u[..i])?, percent_decode(&u[i + 1..])?),
                None => (percent_decode(u)?, "guest".to_string()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let end = h.find(']').ok_or_else(|| bad("unclosed ["))?;
            let port = h[end + 1..].strip_prefix(':');
            (h[..end].to_string(), port)
        } else {
            match hostport.rfind(':') {
                Some(i) => (hostport[..i].to_string(), Some(&hostport[i + 1..])),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 5672,
        };
        let host = if host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            percent_decode(&host)?
        };
        let vhost = match percent_decode(path)? {
            v if v.is_empty() => "/".to_string(),
            v => v,
        };
        Ok(Url {
            host,
            port,
            user,
            pass,
            vhost,
        })
    }
}

/// Largest frame this tool asks for; the broker may offer less.
const CLIENT_FRAME_MAX: u32 = 131072;
const READ_CHUNK: usize = 256 * 1024;

/// What a setup-path read produced.
#[derive(Debug)]
pub enum Incoming {
    Method(u16, AMQPClass),
    /// A content header or body frame (a delivery during setup or close); ignored by setup code.
    Content,
}

/// One AMQP connection during setup: the socket, the read buffer and negotiated limits.
pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub frame_max: u32,
    pub label: String,
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

impl Conn {
    /// Connect and complete the handshake (PLAIN, heartbeats off, frame_max up to 128 KiB).
    pub async fn open(url: &Url, label: &str) -> Result<Conn> {
        let addr = format!("{}:{}", url.host, url.port);
        let stream = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((url.host.as_str(), url.port)),
        )
        .await
        .map_err(|_| Error::Io {
            context: format!("connecting to {addr}"),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|e| Error::Io {
            context: format!("connecting to {addr}"),
            source: e,
        })?;
        let _ = stream.set_nodelay(true);
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            frame_max: CLIENT_FRAME_MAX,
            label: label.to_string(),
        };
        tokio::time::timeout(Duration::from_secs(15), c.handshake(url))
            .await
            .map_err(|_| c.protocol("handshake timed out after 15 s"))??;
        Ok(c)
    }

    fn protocol(&self, what: impl Into<String>) -> Error {
        Error::Protocol {
            conn: self.label.clone(),
            what: what.into(),
        }
    }

    fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::Io {
            context: format!("connection {} {what}", self.label),
            source: e,
        }
    }

    async fn handshake(&mut self, url: &Url) -> Result<()> {
        self.write(wire::PROTOCOL_HEADER).await?;
        match self.recv_method().await? {
            (0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => {
                let mechs = String::from_utf8_lossy(s.mechanisms.as_bytes()).to_string();
                if !mechs.split_whitespace().any(|m| m == "PLAIN") {
                    return Err(
                        self.protocol(format!("broker does not offer PLAIN (offers {mechs})"))
                    );
                }
            }
            (_, m) => return Err(self.protocol(format!("expected connection.start, got {m:?}"))),
        }
        let mut caps = FieldTable::default();
        for c in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            // Ask for connection.close (403) instead of a bare socket close on a bad password.
            "authentication_failure_close",
        ] {
            caps.insert(c.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), text("warren-perf"));
        props.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
        props.insert("platform".into(), text("Rust/tokio"));
        props.insert("connection_name".into(), text(&self.label));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!("\0{}\0{}", url.user, url.pass);
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from(response.as_str()),
                locale: "en_US".into(),
            })),
        )
        .await?;
        let tune = match self.recv_method().await {
            Ok((0, AMQPClass::Connection(connection::AMQPMethod::Tune(t)))) => t,
            Ok((_, m)) => return Err(self.protocol(format!("expected connection.tune, got {m:?}"))),
            // RabbitMQ closes the socket without connection.close on a bad password by default.
            Err(Error::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Err(self.protocol(format!(
                    "broker closed the socket after start-ok: wrong user/password for {:?}?",
                    url.user
                )))
            }
            Err(e) => return Err(e),
        };
        self.frame_max = match tune.frame_max {
            0 => CLIENT_FRAME_MAX,
            n => n.min(CLIENT_FRAME_MAX),
        };
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: self.frame_max,
                heartbeat: 0,
            })),
        )
        .await?;
        self.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: url.vhost.as_str().into(),
            })),
        )
        .await?;
        Ok(())
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self.stream.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io("write", e)),
        }
    }

    /// Send one method frame.
    pub async fn send(&mut self, channel: u16, method: AMQPClass) -> Result<()> {
        let mut buf = Vec::with_capacity(128);
        wire::put_method(&mut buf, channel, method);
        self.write(&buf).await
    }

    /// Read until one whole frame is buffered and decode it (setup path: allocation is fine here).
    pub async fn recv(&mut self) -> Result<Incoming> {
        loop {
            let parsed = match wire::split(&self.rbuf, self.frame_max) {
                Ok(Some((f, n))) => Some((classify(&f), n)),
                Ok(None) => None,
                Err(SplitError::ProtocolHeader(h)) => {
                    return Err(self.protocol(format!(
                        "broker does not speak AMQP 0-9-1 (answered with protocol header {h:?})"
                    )))
                }
                Err(e) => return Err(self.protocol(e.to_string())),
            };
            if let Some((frame, n)) = parsed {
                self.rbuf.advance(n);
                match frame {
                    Classified::Heartbeat => continue,
                    Classified::Content => return Ok(Incoming::Content),
                    Classified::Method(ch, payload) => {
                        let m = match amq_protocol::protocol::parse_class(&payload[..]) {
                            Ok((_, m)) => m,
                            Err(e) => {
                                return Err(self.protocol(format!("unparsable method frame: {e}")))
                            }
                        };
                        return Ok(Incoming::Method(ch, m));
                    }
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(self.io("read", std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(self.io("read", e)),
            }
        }
    }

    /// Next method frame, skipping content frames. A close from the broker is answered and returned as an error.
    pub async fn recv_method(&mut self) -> Result<(u16, AMQPClass)> {
        loop {
            match self.recv().await? {
                Incoming::Content => continue,
                Incoming::Method(ch, m) => {
                    self.check_close(ch, &m).await?;
                    return Ok((ch, m));
                }
            }
        }
    }

    /// Turn a connection.close or channel.close from the broker into an error, after replying close-ok.
    pub async fn check_close(&mut self, ch: u16, m: &AMQPClass) -> Result<()> {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                let _ = self
                    .send(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    )
                    .await;
                Err(Error::ConnectionClosed {
                    conn: self.label.clone(),
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                })
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                let _ = self
                    .send(
                        ch,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                Err(Error::ChannelClosed {
                    conn: self.label.clone(),
                    channel: ch,
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                })
            }
            _ => Ok(()),
        }
    }

    /// Send a synchronous method and wait for its reply on the same channel.
    pub async fn call(&mut self, channel: u16, method: AMQPClass) -> Result<AMQPClass> {
        self.send(channel, method).await?;
        loop {
            let (ch, m) = self.recv_method().await?;
            if ch == channel {
                return Ok(m);
            }
        }
    }

    pub async fn channel_open(&mut self, ch: u16) -> Result<()> {
        self.call(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await
        .map(drop)
    }

    pub async fn qos(&mut self, ch: u16, prefetch: u16) -> Result<()> {
        self.call(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: prefetch,
                global: false,
            })),
        )
        .await
        .map(drop)
    }

    pub async fn confirm_select(&mut self, ch: u16) -> Result<()> {
        self.call(
            ch,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )
        .await
        .map(drop)
    }

    pub async fn exchange_declare(
        &mut self,
        ch: u16,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> Result<()> {
        self.call(
            ch,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: name.into(),
                kind: kind.into(),
                passive: false,
                durable,
                auto_delete: false,
                internal: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await
        .map(drop)
    }

    /// The queue.declare method (also used pipelined by the queue-count mode).
    pub fn queue_declare_method(name: &str, durable: bool, passive: bool) -> AMQPClass {
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            passive,
            durable,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        }))
    }

    /// Declare (or, with `passive`, look up) a queue; returns its message count.
    pub async fn queue_declare(
        &mut self,
        ch: u16,
        name: &str,
        durable: bool,
        passive: bool,
    ) -> Result<u32> {
        match self
            .call(ch, Self::queue_declare_method(name, durable, passive))
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => Ok(ok.message_count),
            m => Err(self.protocol(format!("expected queue.declare-ok, got {m:?}"))),
        }
    }

    pub async fn queue_bind(
        &mut self,
        ch: u16,
        queue_name: &str,
        exchange_name: &str,
        key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        self.call(
            ch,
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: queue_name.into(),
                exchange: exchange_name.into(),
                routing_key: key.into(),
                nowait: false,
                arguments,
            })),
        )
        .await
        .map(drop)
    }

    pub fn queue_delete_method(name: &str) -> AMQPClass {
        AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: name.into(),
            if_unused: false,
            if_empty: false,
            nowait: false,
        }))
    }

    pub async fn queue_delete(&mut self, ch: u16, name: &str) -> Result<()> {
        self.call(ch, Self::queue_delete_method(name))
            .await
            .map(drop)
    }

    /// Start a consumer; returns its tag.
    pub async fn consume(&mut self, ch: u16, queue_name: &str, no_ack: bool) -> Result<String> {
        match self
            .call(
                ch,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: queue_name.into(),
                    consumer_tag: "".into(),
                    no_local: false,
                    no_ack,
                    exclusive: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            )
            .await?
        {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)) => Ok(ok.consumer_tag.to_string()),
            m => Err(self.protocol(format!("expected basic.consume-ok, got {m:?}"))),
        }
    }

    /// Close the connection politely and wait (briefly) for close-ok; deliveries still arriving are dropped.
    pub async fn close(mut self) -> Result<()> {
        self.send(0, close_method()).await?;
        let wait = async {
            loop {
                match self.recv().await {
                    Ok(Incoming::Method(
                        _,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                    )) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), wait).await {
            Ok(r) => r,
            Err(_) => Err(self.protocol("no connection.close-ok within 5 s")),
        }
    }

    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.rbuf)
    }
}

/// connection.close with reply 200, as a client closing normally sends it.
pub fn close_method() -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: 200,
        reply_text: "warren-perf done".into(),
        class_id: 0,
        method_id: 0,
    }))
}

enum Classified {
    Heartbeat,
    Content,
    Method(u16, bytes::Bytes),
}

fn classify(f: &FrameRef<'_>) -> Classified {
    match f.kind {
        wire::FRAME_METHOD => {
            Classified::Method(f.channel, bytes::Bytes::copy_from_slice(f.payload))
        }
        wire::FRAME_HEARTBEAT => Classified::Heartbeat,
        _ => Classified::Content,
    }
}

/// Decode a connection.close or channel.close seen on the data path into the matching error.
pub fn close_error(conn: &str, f: &FrameRef<'_>) -> Option<Error> {
    match amq_protocol::protocol::parse_class(f.payload).ok()?.1 {
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Some(Error::ConnectionClosed {
            conn: conn.to_string(),
            code: c.reply_code,
            text: c.reply_text.to_string(),
            class_id: c.class_id,
            method_id: c.method_id,
        }),
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Some(Error::ChannelClosed {
            conn: conn.to_string(),
            channel: f.channel,
            code: c.reply_code,
            text: c.reply_text.to_string(),
            class_id: c.class_id,
            method_id: c.method_id,
        }),
        AMQPClass::Basic(basic::AMQPMethod::Cancel(c)) => Some(Error::Protocol {
            conn: conn.to_string(),
            what: format!(
                "broker cancelled consumer {} (queue deleted?)",
                c.consumer_tag
            ),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("127.0.0.1", 5672, "/")
        );
        let u = Url::parse("amqp://a%40b:p%3Aw@host/").unwrap();
        assert_eq!(
            (u.user.as_str(), u.pass.as_str(), u.port, u.vhost.as_str()),
            ("a@b", "p:w", 5672, "/")
        );
        let u = Url::parse("amqp://[::1]:5699/vh?heartbeat=5").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("::1", 5699, "vh")
        );
        assert!(Url::parse("http://x").is_err());
    }
}
