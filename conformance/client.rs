//! A raw AMQP socket plus the standard handshake, for the conformance cases.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{
    self, Arg, DecodeError, Field, Frame, Method, RawFrame, FRAME_HEARTBEAT, PROTOCOL_HEADER,
};
use crate::methods as m;
use crate::target::target;

/// How long to wait for a reply the server should send "at once".
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// connection.tune / tune-ok values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tune {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// How the client answers connection.tune. `None` = echo the server's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TuneOk {
    pub channel_max: Option<u16>,
    pub frame_max: Option<u32>,
    pub heartbeat: Option<u16>,
}

impl TuneOk {
    pub const ECHO: TuneOk = TuneOk {
        channel_max: None,
        frame_max: None,
        heartbeat: None,
    };

    pub fn resolve(&self, server: Tune) -> Tune {
        Tune {
            channel_max: self.channel_max.unwrap_or(server.channel_max),
            frame_max: self.frame_max.unwrap_or(server.frame_max),
            heartbeat: self.heartbeat.unwrap_or(server.heartbeat),
        }
    }
}

/// Something read off the socket.
#[derive(Debug)]
pub enum Event {
    Frame(RawFrame),
    /// Orderly EOF.
    Eof,
    /// Connection reset (or another read error).
    Reset(String),
    Timeout,
    /// Bytes that do not form a valid frame (bad frame-end octet).
    Garbage(Vec<u8>),
}

impl Event {
    pub fn describe(&self) -> String {
        match self {
            Event::Frame(f) => codec::describe(f),
            Event::Eof => "TCP EOF".into(),
            Event::Reset(e) => format!("TCP error ({e})"),
            Event::Timeout => "nothing (timeout)".into(),
            Event::Garbage(b) => format!("garbage bytes {b:?}"),
        }
    }
    pub fn is_close(&self) -> bool {
        matches!(self, Event::Eof | Event::Reset(_))
    }
}

pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// What the server offered in connection.tune (if the handshake got that far).
    pub server_tune: Option<Tune>,
    /// What the client answered in tune-ok.
    pub negotiated: Option<Tune>,
}

impl Conn {
    pub async fn connect() -> Result<Conn, String> {
        let addr = target().await;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            server_tune: None,
            negotiated: None,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("flush: {e}"))
    }

    pub async fn send(&mut self, f: &Frame) -> Result<(), String> {
        self.write(&f.encode()).await
    }

    /// Write one byte per TCP write (Nagle is off), pausing `gap` between bytes.
    pub async fn trickle(&mut self, bytes: &[u8], gap: Duration) -> Result<(), String> {
        for b in bytes {
            self.write(std::slice::from_ref(b)).await?;
            tokio::time::sleep(gap).await;
        }
        Ok(())
    }

    pub async fn shutdown_write(&mut self) -> Result<(), String> {
        self.stream
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e}"))
    }

    /// Read more bytes into the buffer; `Ok(false)` on EOF.
    async fn fill(&mut self, deadline: Instant) -> Result<bool, Event> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.buf.reserve(65536);
        match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(Event::Timeout),
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(Event::Reset(match e.kind() {
                ErrorKind::ConnectionReset => "connection reset".into(),
                _ => e.to_string(),
            })),
        }
    }

    /// Next frame (heartbeats included), or how the stream ended.
    pub async fn next_event(&mut self, deadline: Instant) -> Event {
        loop {
            match codec::decode_frame(&self.buf) {
                Ok((f, n)) => {
                    self.buf.drain(..n);
                    return Event::Frame(f);
                }
                Err(DecodeError::BadFrameEnd(_)) => {
                    return Event::Garbage(std::mem::take(&mut self.buf))
                }
                Err(DecodeError::Incomplete) => {}
            }
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) if self.buf.is_empty() => return Event::Eof,
                Ok(false) => return Event::Garbage(std::mem::take(&mut self.buf)),
                Err(ev) => {
                    if !self.buf.is_empty() && !matches!(ev, Event::Timeout) {
                        return Event::Garbage(std::mem::take(&mut self.buf));
                    }
                    return ev;
                }
            }
        }
    }

    /// Next event, skipping heartbeat frames on channel 0.
    pub async fn next_skip_heartbeats(&mut self, deadline: Instant) -> Event {
        loop {
            match self.next_event(deadline).await {
                Event::Frame(f) if f.typ == FRAME_HEARTBEAT && f.channel == 0 => continue,
                ev => return ev,
            }
        }
    }

    /// All raw bytes until the server closes (or the deadline passes).
    pub async fn read_until_close(&mut self, deadline: Instant) -> (Vec<u8>, Event) {
        loop {
            match self.fill(deadline).await {
                Ok(true) => {}
                Ok(false) => return (std::mem::take(&mut self.buf), Event::Eof),
                Err(ev) => return (std::mem::take(&mut self.buf), ev),
            }
        }
    }

    /// The next non-heartbeat frame must be this method on this channel.
    pub async fn expect_method(
        &mut self,
        channel: u16,
        class: u16,
        method: u16,
    ) -> Result<Method, String> {
        let ev = self
            .next_skip_heartbeats(Instant::now() + REPLY_TIMEOUT)
            .await;
        let want = codec::method_name(class, method);
        match &ev {
            Event::Frame(f) if f.typ == codec::FRAME_METHOD => {
                let got = codec::decode_method(f)?;
                if got.channel == channel && got.class == class && got.method == method {
                    Ok(got)
                } else {
                    Err(format!(
                        "expected ch{channel} {want}, got {}",
                        ev.describe()
                    ))
                }
            }
            _ => Err(format!(
                "expected ch{channel} {want}, got {}",
                ev.describe()
            )),
        }
    }

    // ------------------------------------------------------------ handshake stages

    /// Send the protocol header and read connection.start.
    pub async fn to_start() -> Result<(Conn, Method), String> {
        let mut c = Conn::connect().await?;
        c.write(PROTOCOL_HEADER).await?;
        let start = c.expect_method(0, 10, 10).await?;
        Ok((c, start))
    }

    /// ... then start-ok (PLAIN guest/guest) and read connection.tune.
    pub async fn to_tune() -> Result<Conn, String> {
        let (mut c, _) = Conn::to_start().await?;
        c.send(&m::start_ok_guest()).await?;
        c.read_tune().await?;
        Ok(c)
    }

    pub async fn read_tune(&mut self) -> Result<Tune, String> {
        let tune = self.expect_method(0, 10, 30).await?;
        let t = match tune.args.as_deref() {
            Some([Arg::Short(ch), Arg::Long(fm), Arg::Short(hb)]) => Tune {
                channel_max: *ch,
                frame_max: *fm,
                heartbeat: *hb,
            },
            other => return Err(format!("bad connection.tune args {other:?}")),
        };
        self.server_tune = Some(t);
        Ok(t)
    }

    /// ... then tune-ok (echo unless overridden).
    pub async fn to_tune_ok(tune_ok: TuneOk) -> Result<Conn, String> {
        let mut c = Conn::to_tune().await?;
        let t = tune_ok.resolve(c.server_tune.unwrap());
        c.send(&m::tune_ok(t.channel_max, t.frame_max, t.heartbeat))
            .await?;
        c.negotiated = Some(t);
        Ok(c)
    }

    /// The standard handshake: PLAIN guest/guest, tune-ok, connection.open "/".
    pub async fn open(tune_ok: TuneOk) -> Result<Conn, String> {
        let mut c = Conn::to_tune_ok(tune_ok).await?;
        c.send(&m::connection_open("/")).await?;
        c.expect_method(0, 10, 41).await?;
        Ok(c)
    }

    /// The standard handshake, returning the socket and the negotiated tune values
    /// (what the client sent in tune-ok).
    pub async fn handshake(tune_ok: TuneOk) -> Result<(Conn, Tune), String> {
        let c = Conn::open(tune_ok).await?;
        let t = c.negotiated.expect("negotiated after open");
        Ok((c, t))
    }

    pub async fn open_channel(&mut self, ch: u16) -> Result<(), String> {
        self.send(&m::channel_open(ch)).await?;
        self.expect_method(ch, 20, 11).await.map(|_| ())
    }
}

/// Look up a key in a field table.
pub fn table_get<'a>(t: &'a [(String, Field)], key: &str) -> Option<&'a Field> {
    t.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
