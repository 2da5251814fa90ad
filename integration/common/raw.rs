//! Minimal raw AMQP 0-9-1 client: frames in, frames out, methods decoded with amq-protocol.
//!
//! For what lapin cannot do: read connection.start, pick channel numbers, send methods lapin never sends.

use super::{host_port, TestBroker, WAIT};
use lapin::protocol::{parse_class, AMQPClass};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

pub struct Raw {
    pub sock: TcpStream,
}

#[derive(Debug)]
pub enum Frame {
    Method(u16, AMQPClass),
    Heartbeat(u16),
    Other(
        #[allow(dead_code)] u8,
        #[allow(dead_code)] u16,
        #[allow(dead_code)] Vec<u8>,
    ),
}

pub fn shortstr(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

pub fn longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

impl Raw {
    pub async fn connect(b: &TestBroker) -> Raw {
        let (host, port) = host_port(b);
        let sock = tokio::time::timeout(WAIT, TcpStream::connect((host.as_str(), port)))
            .await
            .expect("tcp connect timeout")
            .expect("tcp connect");
        Raw { sock }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.expect("socket write");
    }

    /// Write `bytes` unless the peer stops taking them for `stall`: false when the write stalled.
    pub async fn write_or_stall(&mut self, bytes: &[u8], stall: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(stall, self.sock.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// A method frame's bytes (see [`Raw::method`]), for tests that batch their writes.
    pub fn method_bytes(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
        let mut frame = vec![1u8];
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&((4 + args.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&class.to_be_bytes());
        frame.extend_from_slice(&method.to_be_bytes());
        frame.extend_from_slice(args);
        frame.push(0xCE);
        frame
    }

    /// A content header (no properties) and one body frame, as bytes.
    pub fn content_bytes(channel: u16, class: u16, body: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&class.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        h.extend_from_slice(&(body.len() as u64).to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        let mut out = Vec::new();
        for (ty, payload) in [(2u8, h.as_slice()), (3u8, body)] {
            out.push(ty);
            out.extend_from_slice(&channel.to_be_bytes());
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            out.extend_from_slice(payload);
            out.push(0xCE);
        }
        out
    }

    /// Send a method frame: class, method, already-encoded arguments.
    pub async fn method(&mut self, channel: u16, class: u16, method: u16, args: &[u8]) {
        self.write(&Raw::method_bytes(channel, class, method, args))
            .await;
    }

    /// Read exactly `n` bytes; `None` on EOF/reset.
    pub async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        match tokio::time::timeout(WAIT, self.sock.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            Ok(Err(_)) => None,
            Err(_) => panic!("raw read timed out"),
        }
    }

    /// (type, channel, payload) of the next frame; `None` on EOF/reset.
    pub async fn raw_frame(&mut self) -> Option<(u8, u16, Vec<u8>)> {
        let head = self.read_exact(7).await?;
        let ty = head[0];
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = self.read_exact(size + 1).await?;
        assert_eq!(payload.pop(), Some(0xCE), "frame-end octet");
        Some((ty, channel, payload))
    }

    pub async fn frame(&mut self) -> Option<Frame> {
        let (ty, channel, payload) = self.raw_frame().await?;
        Some(match ty {
            1 => {
                let (_, class) = parse_class(&payload[..])
                    .unwrap_or_else(|e| panic!("unparsable method frame: {e:?}"));
                Frame::Method(channel, class)
            }
            8 => Frame::Heartbeat(channel),
            _ => Frame::Other(ty, channel, payload),
        })
    }

    /// Next method frame, skipping heartbeats.
    pub async fn method_frame(&mut self) -> (u16, AMQPClass) {
        loop {
            match self.frame().await {
                Some(Frame::Method(ch, m)) => return (ch, m),
                Some(Frame::Heartbeat(_)) => continue,
                other => panic!("expected a method frame, got {other:?}"),
            }
        }
    }

    /// Full handshake as guest/guest on vhost "/" with the given tune-ok values and no
    /// client properties.
    pub async fn handshake(
        b: &TestBroker,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    ) -> Raw {
        Raw::handshake_with(b, channel_max, frame_max, heartbeat, &[]).await
    }

    /// Full handshake announcing the given client capabilities (all true).
    pub async fn handshake_with(
        b: &TestBroker,
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
        capabilities: &[&str],
    ) -> Raw {
        let mut r = Raw::connect(b).await;
        r.write(PROTOCOL_HEADER).await;
        let (_, start) = r.method_frame().await;
        assert!(matches!(
            start,
            AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::Start(_))
        ));
        // start-ok: client-properties, mechanism, response, locale
        let mut a = Vec::new();
        if capabilities.is_empty() {
            a.extend_from_slice(&0u32.to_be_bytes());
        } else {
            let mut caps = Vec::new();
            for c in capabilities {
                shortstr(&mut caps, c);
                caps.extend_from_slice(&[b't', 1]);
            }
            let mut props = Vec::new();
            shortstr(&mut props, "capabilities");
            props.push(b'F');
            longstr(&mut props, &caps);
            longstr(&mut a, &props);
        }
        shortstr(&mut a, "PLAIN");
        longstr(&mut a, b"\0guest\0guest");
        shortstr(&mut a, "en_US");
        r.method(0, 10, 11, &a).await;
        let (_, tune) = r.method_frame().await;
        assert!(
            matches!(
                tune,
                AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::Tune(_))
            ),
            "{tune:?}"
        );
        let mut a = Vec::new();
        a.extend_from_slice(&channel_max.to_be_bytes());
        a.extend_from_slice(&frame_max.to_be_bytes());
        a.extend_from_slice(&heartbeat.to_be_bytes());
        r.method(0, 10, 31, &a).await;
        let mut a = Vec::new();
        shortstr(&mut a, "/");
        shortstr(&mut a, "");
        a.push(0);
        r.method(0, 10, 40, &a).await;
        let (_, open_ok) = r.method_frame().await;
        assert!(
            matches!(
                open_ok,
                AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::OpenOk(_))
            ),
            "{open_ok:?}"
        );
        r
    }

    /// Content header (no properties) + one body frame.
    pub async fn content(&mut self, channel: u16, class: u16, body: &[u8]) {
        self.write(&Raw::content_bytes(channel, class, body)).await;
    }

    pub async fn channel_open(&mut self, channel: u16) {
        let mut a = Vec::new();
        shortstr(&mut a, "");
        self.method(channel, 20, 10, &a).await;
    }

    /// Expect connection.close; returns (code, text, class, method).
    pub async fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
        match self.method_frame().await {
            (0, AMQPClass::Connection(lapin::protocol::connection::AMQPMethod::Close(c))) => (
                c.reply_code,
                c.reply_text.as_str().to_string(),
                c.class_id,
                c.method_id,
            ),
            other => panic!("expected connection.close, got {other:?}"),
        }
    }

    pub async fn send_close_ok(&mut self) {
        self.method(0, 10, 51, &[]).await;
    }
}
