//! Frame-level encoding and decoding for the load tool. Setup methods are encoded by amq-protocol; the frames
//! sent once per message (basic.publish + content header + body, basic.ack) are pre-encoded or written by hand,
//! and incoming frames are cut from the read buffer in place, without allocating.

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Type, channel, size and end octet around every frame payload.
pub const FRAME_OVERHEAD: usize = 8;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Class and method ids of the methods the data path looks at without a full parse.
pub const BASIC_DELIVER: (u16, u16) = (60, 60);
pub const BASIC_ACK: (u16, u16) = (60, 80);
pub const BASIC_NACK: (u16, u16) = (60, 120);
pub const BASIC_RETURN: (u16, u16) = (60, 50);
pub const CONNECTION_BLOCKED: (u16, u16) = (10, 60);
pub const CONNECTION_UNBLOCKED: (u16, u16) = (10, 61);

/// A frame borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// Class and method id of a method frame.
    #[inline]
    pub fn method_id(&self) -> Option<(u16, u16)> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        let p = self.payload;
        Some((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    }
}

/// Why the byte stream could not be cut into frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// The peer answered the protocol header with its own (unsupported protocol version).
    ProtocolHeader(Vec<u8>),
    BadEnd(u8),
    TooLarge(u32),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::ProtocolHeader(h) => {
                write!(f, "server rejected the protocol version and offered {h:?}")
            }
            SplitError::BadEnd(b) => write!(f, "frame end octet was {b:#04x}, not 0xCE"),
            SplitError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds frame_max"),
        }
    }
}

/// Cut the frame at the front of `buf`: `Ok(None)` when more bytes are needed, else the frame and its length
/// on the wire.
#[inline]
pub fn split(buf: &[u8], max_payload: u32) -> Result<Option<(FrameRef<'_>, usize)>, SplitError> {
    if buf.len() < 7 {
        if buf.len() >= 4 && &buf[..4] == b"AMQP" {
            return Err(SplitError::ProtocolHeader(buf.to_vec()));
        }
        return Ok(None);
    }
    if &buf[..4] == b"AMQP" {
        return Err(SplitError::ProtocolHeader(buf[..buf.len().min(8)].to_vec()));
    }
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if size > max_payload {
        return Err(SplitError::TooLarge(size));
    }
    let total = size as usize + FRAME_OVERHEAD;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(SplitError::BadEnd(buf[total - 1]));
    }
    Ok(Some((
        FrameRef {
            kind: buf[0],
            channel: u16::from_be_bytes([buf[1], buf[2]]),
            payload: &buf[7..total - 1],
        },
        total,
    )))
}

/// Wire length of the frame starting at `buf` if its header is complete (to size the read buffer).
#[inline]
pub fn pending_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 7)
        .then(|| u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize + FRAME_OVERHEAD)
}

/// Append a frame encoded by amq-protocol.
pub fn put_frame(buf: &mut Vec<u8>, frame: &AMQPFrame) {
    let ctx = WriteContext::from(Vec::with_capacity(128));
    match gen_frame(frame)(ctx) {
        Ok(ctx) => buf.extend_from_slice(&ctx.into_inner().0),
        // Encoding into a Vec fails only on values this tool built (an over-long short string), a bug.
        Err(e) => panic!("cannot encode {frame:?}: {e}"),
    }
}

/// Append a method frame encoded by amq-protocol.
pub fn put_method(buf: &mut Vec<u8>, channel: u16, method: AMQPClass) {
    put_frame(buf, &AMQPFrame::Method(channel, method));
}

/// basic.ack (60.80), by hand: it is sent once per K deliveries.
#[inline]
pub fn put_ack(buf: &mut Vec<u8>, channel: u16, delivery_tag: u64, multiple: bool) {
    buf.push(FRAME_METHOD);
    buf.extend_from_slice(&channel.to_be_bytes());
    buf.extend_from_slice(&13u32.to_be_bytes());
    buf.extend_from_slice(&60u16.to_be_bytes());
    buf.extend_from_slice(&80u16.to_be_bytes());
    buf.extend_from_slice(&delivery_tag.to_be_bytes());
    buf.push(multiple as u8);
    buf.push(FRAME_END);
}

/// The delivery tag of a basic.deliver payload (class, method, consumer-tag, delivery-tag, ...).
#[inline]
pub fn deliver_tag(payload: &[u8]) -> Option<u64> {
    let tag_len = *payload.get(4)? as usize;
    let at = 5 + tag_len;
    let b = payload.get(at..at + 8)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// Delivery tag and `multiple` bit of a basic.ack or basic.nack payload (same layout up to the bits).
#[inline]
pub fn ack_fields(payload: &[u8]) -> Option<(u64, bool)> {
    let b = payload.get(4..13)?;
    Some((u64::from_be_bytes(b[..8].try_into().ok()?), b[8] & 1 == 1))
}

/// Body size of a content header payload (class, weight, body-size, ...).
#[inline]
pub fn header_body_size(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?))
}

/// What the publisher sends per message, encoded once: basic.publish, the content header and the body frames.
/// Only the first eight body bytes change between messages (a send timestamp, when the body has room for it),
/// so the encoding is split around them: `head` ends with the timestamp slot and `tail` is shared by every
/// message (large bodies are written from it with vectored writes, never copied).
#[derive(Clone)]
pub struct PublishTemplate {
    pub head: Vec<u8>,
    /// Offset of the 8-byte timestamp slot in `head`, when the body is at least 8 bytes.
    pub ts_at: Option<usize>,
    pub tail: Bytes,
}

/// Message shape shared by all of a publisher's templates.
pub struct MessageSpec<'a> {
    pub channel: u16,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub size: usize,
    pub persistent: bool,
    /// Headers for a headers exchange: one string header.
    pub header: Option<(&'a str, &'a str)>,
    pub frame_max: u32,
}

impl PublishTemplate {
    pub fn new(spec: &MessageSpec<'_>) -> PublishTemplate {
        let mut buf = Vec::with_capacity(spec.size + 256);
        put_method(
            &mut buf,
            spec.channel,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: spec.exchange.into(),
                routing_key: spec.routing_key.into(),
                mandatory: false,
                immediate: false,
            })),
        );
        let mut props = BasicProperties::default();
        if spec.persistent {
            props = props.with_delivery_mode(2);
        }
        if let Some((k, v)) = spec.header {
            let mut t = FieldTable::default();
            t.insert(k.into(), AMQPValue::LongString(v.into()));
            props = props.with_headers(t);
        }
        put_frame(
            &mut buf,
            &AMQPFrame::Header(
                spec.channel,
                AMQPContentHeader {
                    class_id: 60,
                    body_size: spec.size as u64,
                    properties: props,
                },
            ),
        );
        let max_body = (spec.frame_max as usize)
            .saturating_sub(FRAME_OVERHEAD)
            .max(1);
        let mut ts_at = None;
        let mut left = spec.size;
        while left > 0 {
            let n = left.min(max_body);
            buf.push(FRAME_BODY);
            buf.extend_from_slice(&spec.channel.to_be_bytes());
            buf.extend_from_slice(&(n as u32).to_be_bytes());
            if ts_at.is_none() && spec.size >= 8 {
                ts_at = Some(buf.len());
            }
            buf.resize(buf.len() + n, b'x');
            buf.push(FRAME_END);
            left -= n;
        }
        let split = ts_at.map_or(buf.len(), |at| at + 8);
        let tail = Bytes::copy_from_slice(&buf[split..]);
        buf.truncate(split);
        PublishTemplate {
            head: buf,
            ts_at,
            tail,
        }
    }

    /// Bytes on the wire per message.
    pub fn wire_len(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

const READ_CHUNK: usize = 256 * 1024;

/// Make room for the next read: the whole pending frame, and at least a good chunk.
#[inline]
pub fn reserve_for_next(rbuf: &mut BytesMut) {
    let need = pending_len(rbuf)
        .unwrap_or(0)
        .max(rbuf.len() + READ_CHUNK / 4);
    if rbuf.capacity() < need {
        rbuf.reserve(need.max(READ_CHUNK) - rbuf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::parse_frame;

    fn parse_all(mut b: &[u8]) -> Vec<AMQPFrame> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let (rest, f) = parse_frame(b).expect("frame");
            out.push(f);
            b = rest;
        }
        out
    }

    #[test]
    fn template_is_a_valid_publish() {
        for size in [0usize, 5, 16, 1024, 300_000] {
            let t = PublishTemplate::new(&MessageSpec {
                channel: 1,
                exchange: "ex",
                routing_key: "rk",
                size,
                persistent: true,
                header: Some(("q", "v")),
                frame_max: 131072,
            });
            let mut all = t.head.clone();
            all.extend_from_slice(&t.tail);
            assert_eq!(all.len(), t.wire_len());
            let frames = parse_all(&all);
            let body: usize = frames
                .iter()
                .map(|f| match f {
                    AMQPFrame::Body(_, b) => b.len(),
                    _ => 0,
                })
                .sum();
            assert_eq!(body, size);
            assert!(
                matches!(&frames[0], AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(p))) if p.routing_key.as_str() == "rk")
            );
            match &frames[1] {
                AMQPFrame::Header(1, h) => {
                    assert_eq!(h.body_size, size as u64);
                    assert_eq!(h.properties.delivery_mode(), &Some(2));
                }
                f => panic!("{f:?}"),
            }
            assert_eq!(t.ts_at.is_some(), size >= 8);
        }
    }

    #[test]
    fn ack_matches_amq_protocol() {
        let mut mine = Vec::new();
        put_ack(&mut mine, 7, 123456789, true);
        let mut theirs = Vec::new();
        put_method(
            &mut theirs,
            7,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 123456789,
                multiple: true,
            })),
        );
        assert_eq!(mine, theirs);
        let (f, n) = split(&mine, 1 << 20).unwrap().unwrap();
        assert_eq!(n, mine.len());
        assert_eq!(f.method_id(), Some(BASIC_ACK));
        assert_eq!(ack_fields(f.payload), Some((123456789, true)));
    }

    #[test]
    fn deliver_fields() {
        let mut b = Vec::new();
        put_method(
            &mut b,
            1,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "ctag-1".into(),
                delivery_tag: 42,
                redelivered: false,
                exchange: "e".into(),
                routing_key: "r".into(),
            })),
        );
        let (f, _) = split(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(f.method_id(), Some(BASIC_DELIVER));
        assert_eq!(deliver_tag(f.payload), Some(42));
        assert!(split(&b[..b.len() - 1], 1 << 20).unwrap().is_none());
    }
}
