//! Pure protocol code, no I/O: splitting a byte stream into frames, encoding the frames the broker sends, and
//! helpers for field tables. amq-protocol is the codec of record for methods and properties; the hottest frames
//! (basic.deliver, get-ok, return, ack, content) are written by hand here because they are written once per
//! message, and a unit test cross-checks each against amq-protocol's own encoding.

/// The RabbitMQ release whose behaviour Warren follows, reported as the server version (connection.start,
/// the management API, definitions exports).
pub const RABBITMQ_VERSION: &str = "3.13.7";
/// The version reported with `compat = "4.3"`.
pub const RABBITMQ_VERSION_4: &str = "4.3.5";
/// The node name Warren reports (management API, firehose `node` header).
pub const NODE_NAME: &str = "warren@localhost";

pub mod fields;
mod header;
pub mod nesting;
pub mod outbuf;

pub use header::{
    bit, content_header_plausible, content_header_valid, decode_content_header,
    encode_content_header, has_headers, lazy_body_size, octet_property, parse_content_header,
    raw_headers, short_property,
};
pub use outbuf::OutBuf;

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::AMQPClass;
use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Frame header (type, channel, size) plus the end octet.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may negotiate.
pub const FRAME_MIN_SIZE: u32 = 4096;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One frame cut from the input stream; the payload shares the read buffer's allocation.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Why the input stream could not be split into frames. Both are connection errors (501).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameSplitError {
    TooLarge { kind: u8, size: u32, limit: u32 },
    BadEnd { kind: u8, payload: Bytes, end: u8 },
}

impl FrameSplitError {
    /// RabbitMQ's explanation text for the 501 FRAME_ERROR close.
    pub fn explanation(&self) -> String {
        match self {
            FrameSplitError::TooLarge { kind, size, limit } => {
                format!("type {kind}, all octets = <<>>: {{frame_too_large,{size},{limit}}}")
            }
            FrameSplitError::BadEnd { kind, payload, end } => format!(
                "type {kind}, all octets = {}: {{invalid_frame_end_marker,{end}}}",
                erlang_binary(payload)
            ),
        }
    }
}

/// Cut one complete frame from the front of `buf`. `Ok(None)` means more bytes are needed; an incomplete frame
/// is never an error. Like RabbitMQ, a payload may be as large as the negotiated `frame_max` itself (its
/// error text names frame_max minus the frame overhead as the limit).
pub fn split_frame(
    buf: &mut BytesMut,
    frame_max: u32,
) -> Result<Option<RawFrame>, FrameSplitError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if size > frame_max {
        return Err(FrameSplitError::TooLarge {
            kind,
            size,
            limit: frame_max.saturating_sub(FRAME_OVERHEAD as u32),
        });
    }
    let total = size as usize + FRAME_OVERHEAD;
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    let end = frame[total - 1];
    frame.advance(7);
    frame.truncate(size as usize);
    let payload = frame.freeze();
    if end != FRAME_END {
        return Err(FrameSplitError::BadEnd { kind, payload, end });
    }
    Ok(Some(RawFrame {
        kind,
        channel,
        payload,
    }))
}

/// The class and method ids at the start of a method frame's payload (0 where the payload is too short).
pub fn peek_method(payload: &[u8]) -> (u16, u16) {
    let at = |i: usize| {
        payload
            .get(i..i + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    (at(0), at(2))
}

/// basic.qos's prefetch_size, which amq-protocol's decoder drops (RabbitMQ refuses a non-zero one).
pub fn peek_qos_prefetch_size(payload: &[u8]) -> Option<u32> {
    if payload.len() >= 8 && payload[..4] == [0, 60, 0, 10] {
        Some(u32::from_be_bytes([
            payload[4], payload[5], payload[6], payload[7],
        ]))
    } else {
        None
    }
}

/// The class id a content header frame names (its first two bytes).
pub fn peek_header_class(payload: &[u8]) -> u16 {
    peek_method(payload).0
}

/// The whole size (header, payload and end octet) of the frame starting `buf`, once its header is in.
pub fn peek_frame_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 7)
        .then(|| u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize + FRAME_OVERHEAD)
}

/// Format bytes the way Erlang prints a binary, as RabbitMQ does in frame error texts.
pub fn erlang_binary(b: &[u8]) -> String {
    if !b.is_empty() && b.iter().all(|&c| (32..127).contains(&c)) {
        let mut s = String::from("<<\"");
        for &c in b {
            if c == b'"' || c == b'\\' {
                s.push('\\');
            }
            s.push(c as char);
        }
        s.push_str("\">>");
        s
    } else {
        let parts: Vec<String> = b.iter().map(|c| c.to_string()).collect();
        format!("<<{}>>", parts.join(","))
    }
}

/// Decode basic.publish (60.40) by hand: it arrives once per message and amq-protocol's generic parser
/// allocates for its flag bits. `None` (not a publish, or malformed) falls back to amq-protocol, which then
/// produces the proper error.
pub fn parse_publish(p: &[u8]) -> Option<amq_protocol::protocol::basic::Publish> {
    if p.len() < 8 || p[..4] != [0, 60, 0, 40] {
        return None;
    }
    let mut i = 6; // class, method, deprecated ticket
    let short = |i: &mut usize| -> Option<String> {
        let n = *p.get(*i)? as usize;
        let s = p.get(*i + 1..*i + 1 + n)?;
        *i += 1 + n;
        String::from_utf8(s.to_vec()).ok()
    };
    let exchange = short(&mut i)?;
    let routing_key = short(&mut i)?;
    let bits = *p.get(i)?;
    if i + 1 != p.len() {
        return None;
    }
    Some(amq_protocol::protocol::basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    })
}

/// Append a method frame encoded by amq-protocol.
pub fn write_method(buf: &mut BytesMut, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    let ctx = WriteContext::from(Vec::with_capacity(128));
    let result = gen_frame(&frame)(ctx);
    match result {
        Ok(ctx) => buf.extend_from_slice(&ctx.into_inner().0),
        // Generation into a Vec only fails on values our own code produced (e.g. an over-long short string),
        // which is a bug; dropping the frame beats taking the process down.
        Err(e) => tracing::error!(channel, error = %e, "failed to encode method frame"),
    }
}

pub fn write_heartbeat(buf: &mut BytesMut) {
    buf.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[inline]
fn put_short_str(buf: &mut BytesMut, s: &str) {
    // Names the broker writes are checked where they enter (declares, policies); should a longer one get
    // through, cut it at a character boundary rather than emit invalid UTF-8.
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    buf.put_u8(n as u8);
    buf.put_slice(&s.as_bytes()[..n]);
}

/// Reserve a frame header and return the offset where its size must be patched.
#[inline]
fn begin_frame(buf: &mut BytesMut, kind: u8, channel: u16) -> usize {
    buf.put_u8(kind);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    at
}

#[inline]
fn end_frame(buf: &mut BytesMut, size_at: usize) {
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

/// basic.deliver (60.60).
pub fn write_deliver(
    buf: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(60);
    put_short_str(buf, consumer_tag);
    buf.put_u64(delivery_tag);
    buf.put_u8(redelivered as u8);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    end_frame(buf, at);
}

/// basic.get-ok (60.71).
pub fn write_get_ok(
    buf: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    message_count: u32,
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(71);
    buf.put_u64(delivery_tag);
    buf.put_u8(redelivered as u8);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    buf.put_u32(message_count);
    end_frame(buf, at);
}

/// basic.return (60.50).
pub fn write_return(
    buf: &mut BytesMut,
    channel: u16,
    code: u16,
    text: &str,
    exchange: &str,
    routing_key: &str,
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(50);
    buf.put_u16(code);
    put_short_str(buf, text);
    put_short_str(buf, exchange);
    put_short_str(buf, routing_key);
    end_frame(buf, at);
}

/// basic.ack (60.80) or basic.nack (60.120) from the broker to a publisher in confirm mode.
pub fn write_confirm(
    buf: &mut BytesMut,
    channel: u16,
    ack: bool,
    delivery_tag: u64,
    multiple: bool,
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(if ack { 80 } else { 120 });
    buf.put_u64(delivery_tag);
    // nack carries a second bit (requeue) which is always false from the broker.
    buf.put_u8(multiple as u8);
    end_frame(buf, at);
}

/// The content header (kept raw from the publisher) and the body split by frame_max. A large body is
/// attached by reference, not copied (see [`OutBuf`]).
pub fn write_content(buf: &mut OutBuf, channel: u16, header: &[u8], body: &Bytes, frame_max: u32) {
    let max_chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    let attach = body.len() >= outbuf::ATTACH_MIN;
    let copied = if attach { 0 } else { body.len() };
    buf.reserve(header.len() + copied + FRAME_OVERHEAD * (2 + body.len() / max_chunk));
    buf.put_u8(FRAME_HEADER);
    buf.put_u16(channel);
    buf.put_u32(header.len() as u32);
    buf.put_slice(header);
    buf.put_u8(FRAME_END);
    let mut at = 0;
    while at < body.len() {
        let end = (at + max_chunk).min(body.len());
        buf.put_u8(FRAME_BODY);
        buf.put_u16(channel);
        buf.put_u32((end - at) as u32);
        if attach {
            buf.attach(body.slice(at..end));
        } else {
            buf.put_slice(&body[at..end]);
        }
        buf.put_u8(FRAME_END);
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::basic;

    fn amq(frame: AMQPFrame) -> Vec<u8> {
        let ctx = WriteContext::from(Vec::new());
        gen_frame(&frame)(ctx).unwrap().into_inner().0
    }

    #[test]
    fn publish_fast_path_matches_amq_protocol() {
        for (x, k, mandatory, immediate) in [
            ("", "q", false, false),
            ("amq.topic", "a.b.c", true, false),
            ("ex", "", false, true),
            ("é", "ü", true, true),
        ] {
            let m = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: x.into(),
                routing_key: k.into(),
                mandatory,
                immediate,
            }));
            let frame = amq(AMQPFrame::Method(1, m.clone()));
            let payload = &frame[7..frame.len() - 1];
            let fast = parse_publish(payload).expect("fast path");
            assert_eq!(AMQPClass::Basic(basic::AMQPMethod::Publish(fast)), m);
            assert_eq!(amq_protocol::protocol::parse_class(payload).unwrap().1, m);
            // Truncated or padded payloads are left to amq-protocol.
            assert!(parse_publish(&payload[..payload.len() - 1]).is_none());
            let mut longer = payload.to_vec();
            longer.push(0);
            assert!(parse_publish(&longer).is_none());
        }
    }

    #[test]
    fn content_header_fast_path_matches_amq_protocol() {
        use amq_protocol::frame::AMQPContentHeader;
        use amq_protocol::protocol::BasicProperties;
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = |rng: &mut rand::rngs::StdRng| -> amq_protocol::types::ShortString {
            let n = rng.gen_range(0..20);
            (0..n)
                .map(|_| ['a', 'é', '.', '0', ' '][rng.gen_range(0..5)])
                .collect::<String>()
                .into()
        };
        for case in 0..2000 {
            let mut p = BasicProperties::default();
            let bits: u16 = rng.gen();
            let on = |b: u16| bits & (1 << b) != 0;
            if on(0) {
                p = p.with_content_type(s(&mut rng));
            }
            if on(1) {
                p = p.with_content_encoding(s(&mut rng));
            }
            if on(2) {
                p = p.with_delivery_mode(rng.gen());
            }
            if on(3) {
                p = p.with_priority(rng.gen());
            }
            if on(4) {
                p = p.with_correlation_id(s(&mut rng));
            }
            if on(5) {
                p = p.with_reply_to(s(&mut rng));
            }
            if on(6) {
                p = p.with_expiration(s(&mut rng));
            }
            if on(7) {
                p = p.with_message_id(s(&mut rng));
            }
            if on(8) {
                p = p.with_timestamp(rng.gen());
            }
            if on(9) {
                p = p.with_type(s(&mut rng));
            }
            if on(10) {
                p = p.with_user_id(s(&mut rng));
            }
            if on(11) {
                p = p.with_app_id(s(&mut rng));
            }
            if on(12) {
                p = p.with_cluster_id(s(&mut rng));
            }
            let with_table = case % 10 == 0;
            if with_table {
                let mut t = amq_protocol::types::FieldTable::default();
                t.insert("k".into(), amq_protocol::types::AMQPValue::LongLongInt(1));
                p = p.with_headers(t);
            }
            let body_size = rng.gen::<u32>() as u64;
            let frame = amq(AMQPFrame::Header(
                1,
                AMQPContentHeader {
                    class_id: 60,
                    body_size,
                    properties: p.clone(),
                },
            ));
            let payload = &frame[7..frame.len() - 1];
            let (_, theirs) = amq_protocol::frame::parsing::parse_content_header(payload).unwrap();
            assert_eq!(theirs.properties, p);
            assert_eq!(
                octet_property(payload, bit::DELIVERY_MODE),
                *p.delivery_mode(),
                "case {case}: delivery mode of {p:?}"
            );
            assert!(content_header_valid(payload), "case {case}: {p:?}");
            // What the publish path reads in place says what the decoded properties say.
            fn short(v: &Option<amq_protocol::types::ShortString>) -> Option<&str> {
                v.as_ref().map(|s| s.as_str())
            }
            assert_eq!(
                octet_property(payload, bit::PRIORITY),
                *p.priority(),
                "case {case}"
            );
            assert_eq!(
                short_property(payload, bit::EXPIRATION),
                short(p.expiration())
            );
            assert_eq!(short_property(payload, bit::REPLY_TO), short(p.reply_to()));
            assert_eq!(short_property(payload, bit::USER_ID), short(p.user_id()));
            assert_eq!(has_headers(payload), with_table, "case {case}");
            assert_eq!(
                lazy_body_size(payload),
                (!with_table).then_some(body_size),
                "case {case}: {p:?}"
            );
            // The raw table is there exactly when the properties hold headers, and ends the header's
            // table (whose four length bytes come before it).
            match (raw_headers(payload), p.headers()) {
                (Some(t), Some(h)) => {
                    let at = t.as_ptr() as usize - payload.as_ptr() as usize;
                    let (rest, table) = amq_protocol::types::parsing::parse_field_table(
                        &payload[at - 4..at + t.len()],
                    )
                    .unwrap();
                    assert!(rest.is_empty(), "case {case}");
                    assert_eq!(&table, h, "case {case}");
                }
                (None, None) => {}
                (t, h) => panic!("case {case}: raw headers {t:?} for {h:?}"),
            }
            for cut in 0..payload.len() {
                // Every property has at least one byte, so any cut leaves one out of bounds.
                assert!(
                    !content_header_valid(&payload[..cut]),
                    "case {case}: cut {cut}"
                );
            }
            for cut in 0..payload.len() {
                // Truncated, it reads the mode only if the mode itself is in what is left.
                if let Some(m) = octet_property(&payload[..cut], bit::DELIVERY_MODE) {
                    assert_eq!(Some(m), *p.delivery_mode());
                }
                // and takes no body size from a header it would not decode.
                assert_eq!(
                    lazy_body_size(&payload[..cut]),
                    None,
                    "case {case}: cut {cut}"
                );
            }
            match parse_content_header(payload) {
                Some((size, ours)) => {
                    assert!(!with_table);
                    assert_eq!((size, ours), (body_size, p));
                    // Any truncation is refused, never misread.
                    for cut in 0..payload.len() {
                        if let Some((_, short)) = parse_content_header(&payload[..cut]) {
                            panic!("case {case}: truncated to {cut} decoded as {short:?}");
                        }
                    }
                }
                None => assert!(with_table, "case {case}: fast path refused {p:?}"),
            }
        }
    }

    #[test]
    fn deliver_matches_amq_protocol() {
        let mut b = BytesMut::new();
        write_deliver(&mut b, 3, "ctag", 42, true, "ex", "rk");
        let expected = amq(AMQPFrame::Method(
            3,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "ctag".into(),
                delivery_tag: 42,
                redelivered: true,
                exchange: "ex".into(),
                routing_key: "rk".into(),
            })),
        ));
        assert_eq!(&b[..], &expected[..]);
    }

    #[test]
    fn get_ok_return_ack_nack_match_amq_protocol() {
        let mut b = BytesMut::new();
        write_get_ok(&mut b, 1, 7, false, "", "q", 9);
        let e = amq(AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: 7,
                redelivered: false,
                exchange: "".into(),
                routing_key: "q".into(),
                message_count: 9,
            })),
        ));
        assert_eq!(&b[..], &e[..]);

        let mut b = BytesMut::new();
        write_return(&mut b, 2, 312, "NO_ROUTE", "x", "k");
        let e = amq(AMQPFrame::Method(
            2,
            AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "x".into(),
                routing_key: "k".into(),
            })),
        ));
        assert_eq!(&b[..], &e[..]);

        let mut b = BytesMut::new();
        write_confirm(&mut b, 1, true, 5, true);
        let e = amq(AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 5,
                multiple: true,
            })),
        ));
        assert_eq!(&b[..], &e[..]);

        let mut b = BytesMut::new();
        write_confirm(&mut b, 1, false, 6, false);
        let e = amq(AMQPFrame::Method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: 6,
                multiple: false,
                requeue: false,
            })),
        ));
        assert_eq!(&b[..], &e[..]);
    }

    #[test]
    fn content_matches_amq_protocol() {
        let props = amq_protocol::protocol::BasicProperties::default().with_delivery_mode(2);
        let header = encode_content_header(5, &props);
        let mut b = OutBuf::default();
        write_content(&mut b, 1, &header, &Bytes::from_static(b"hello"), 4096);
        let mut e = amq(AMQPFrame::Header(
            1,
            amq_protocol::frame::AMQPContentHeader {
                class_id: 60,
                body_size: 5,
                properties: props,
            },
        ));
        e.extend(amq(AMQPFrame::Body(1, b"hello".to_vec())));
        assert_eq!(b.to_vec(), e);
        assert!(!b.has_attached());
    }

    #[test]
    fn body_split_by_frame_max() {
        let mut out = OutBuf::default();
        let body = Bytes::from(vec![7u8; 10_000]);
        write_content(
            &mut out,
            1,
            &[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0x27, 0x10, 0, 0],
            &body,
            4096,
        );
        // A body this large is attached (one segment per frame), not copied.
        assert!(out.has_attached());
        assert_eq!(out.total_len(), 22 + 10_000 + 3 * 8);
        let mut b = BytesMut::from(&out.to_vec()[..]);
        let mut n = 0;
        let mut total = 0;
        let _header = split_frame(&mut b, 4096).unwrap().unwrap();
        while let Some(f) = split_frame(&mut b, 4096).unwrap() {
            assert_eq!(f.kind, FRAME_BODY);
            assert!(f.payload.len() <= 4088);
            total += f.payload.len();
            n += 1;
        }
        assert_eq!(total, 10_000);
        assert_eq!(n, 3);
    }

    #[test]
    fn split_handles_partial_and_errors() {
        let mut b = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 4, 0, 10][..]);
        assert!(split_frame(&mut b, 100).unwrap().is_none());
        b.extend_from_slice(&[0, 51, FRAME_END]);
        let f = split_frame(&mut b, 100).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.channel, &f.payload[..]),
            (1, 1, &[0u8, 10, 0, 51][..])
        );
        let mut b = BytesMut::from(&[1u8, 0, 0, 0, 0, 0, 4, 0, 10, 0, 51, 0][..]);
        let err = split_frame(&mut b, 100).unwrap_err();
        assert_eq!(
            err.explanation(),
            "type 1, all octets = <<0,10,0,51>>: {invalid_frame_end_marker,0}"
        );
        let mut b = BytesMut::from(&[1u8, 0, 0, 0, 0, 0x27, 0x14][..]);
        let err = split_frame(&mut b, 4096).unwrap_err();
        assert_eq!(
            err.explanation(),
            "type 1, all octets = <<>>: {frame_too_large,10004,4088}"
        );
        assert_eq!(erlang_binary(b"abc"), "<<\"abc\">>");
    }
}
