//! Basic content headers (class 60) read and written without amq-protocol's general codec where it pays: a
//! shape check and the delivery mode read in place (for messages read back from the store, whose properties
//! are decoded only if asked for), a decoder for headers without a table, the raw headers table, and the
//! encoder for properties the broker built or changed. Cross-checked against amq-protocol in `super::tests`.

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use bytes::Bytes;

/// Whether `p` looks like a basic content header (a stored one is checked by its record's checksum; this
/// only refuses what was never one).
pub fn content_header_plausible(p: &[u8]) -> bool {
    p.len() >= 14 && p[..2] == [0, 60]
}

/// Whether content header `p` has the shape its flags promise: every property within bounds, short strings
/// UTF-8, the headers table's length inside the header (its fields are not checked). Checked without
/// allocating, for a message read back whose properties are decoded only if asked for.
pub fn content_header_valid(p: &[u8]) -> bool {
    if !content_header_plausible(p) {
        return false;
    }
    // Bits 1 and 0 name no property here: whatever the publish path accepted stays accepted.
    let flags = u16::from_be_bytes([p[12], p[13]]);
    let mut i = 14usize;
    for bit in (2..16).rev() {
        if flags & (1 << bit) == 0 {
            continue;
        }
        let len = match bit {
            // headers: a long length, then the table
            13 => match p.get(i..i + 4) {
                Some(b) => 4 + u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                None => return false,
            },
            12 | 11 => 1,
            6 => 8,
            _ => {
                let Some(&n) = p.get(i) else { return false };
                let Some(s) = p.get(i + 1..i + 1 + n as usize) else {
                    return false;
                };
                if std::str::from_utf8(s).is_err() {
                    return false;
                }
                1 + n as usize
            }
        };
        match i.checked_add(len) {
            Some(end) if end <= p.len() => i = end,
            _ => return false,
        }
    }
    true
}

/// The delivery-mode property of content header `p`, read without decoding the rest.
pub fn delivery_mode_of(p: &[u8]) -> Option<u8> {
    if !content_header_plausible(p) {
        return None;
    }
    let flags = u16::from_be_bytes([p[12], p[13]]);
    let mut i = 14usize;
    for bit in [0x8000u16, 0x4000] {
        if flags & bit != 0 {
            i = i.checked_add(1 + *p.get(i)? as usize)?;
        }
    }
    if flags & 0x2000 != 0 {
        let n = u32::from_be_bytes(p.get(i..i + 4)?.try_into().ok()?) as usize;
        i = i.checked_add(4)?.checked_add(n)?;
    }
    if flags & 0x1000 == 0 {
        return None;
    }
    p.get(i).copied()
}

/// Decode a basic content header (class 60) by hand when its properties hold no header table: one arrives
/// with every message and amq-protocol's generic parser costs more than the rest of the header's handling.
/// Returns the body size and the properties; `None` (a header table, flag bits beyond the 14 properties, a
/// truncated field, invalid UTF-8) falls back to amq-protocol, which decodes it or produces the error.
pub fn parse_content_header(p: &[u8]) -> Option<(u64, amq_protocol::protocol::BasicProperties)> {
    use amq_protocol::types::ShortString;
    if p.len() < 14 || p[..2] != [0, 60] {
        return None;
    }
    let body_size = u64::from_be_bytes(p[4..12].try_into().ok()?);
    let flags = u16::from_be_bytes([p[12], p[13]]);
    let mut props = amq_protocol::protocol::BasicProperties::default();
    if flags & 0x2003 != 0 {
        return None;
    }
    let mut i = 14;
    let short = |i: &mut usize| -> Option<ShortString> {
        let n = *p.get(*i)? as usize;
        let s = p.get(*i + 1..*i + 1 + n)?;
        *i += 1 + n;
        Some(std::str::from_utf8(s).ok()?.into())
    };
    let octet = |i: &mut usize| -> Option<u8> {
        let v = *p.get(*i)?;
        *i += 1;
        Some(v)
    };
    if flags & 0x8000 != 0 {
        props = props.with_content_type(short(&mut i)?);
    }
    if flags & 0x4000 != 0 {
        props = props.with_content_encoding(short(&mut i)?);
    }
    if flags & 0x1000 != 0 {
        props = props.with_delivery_mode(octet(&mut i)?);
    }
    if flags & 0x0800 != 0 {
        props = props.with_priority(octet(&mut i)?);
    }
    if flags & 0x0400 != 0 {
        props = props.with_correlation_id(short(&mut i)?);
    }
    if flags & 0x0200 != 0 {
        props = props.with_reply_to(short(&mut i)?);
    }
    if flags & 0x0100 != 0 {
        props = props.with_expiration(short(&mut i)?);
    }
    if flags & 0x0080 != 0 {
        props = props.with_message_id(short(&mut i)?);
    }
    if flags & 0x0040 != 0 {
        let t = p.get(i..i + 8)?;
        i += 8;
        props = props.with_timestamp(u64::from_be_bytes(t.try_into().ok()?));
    }
    if flags & 0x0020 != 0 {
        props = props.with_type(short(&mut i)?);
    }
    if flags & 0x0010 != 0 {
        props = props.with_user_id(short(&mut i)?);
    }
    if flags & 0x0008 != 0 {
        props = props.with_app_id(short(&mut i)?);
    }
    if flags & 0x0004 != 0 {
        props = props.with_cluster_id(short(&mut i)?);
    }
    Some((body_size, props))
}

/// Body size and properties of a basic content header: the hand-written path when it applies, else
/// amq-protocol's parser. `None` when neither can decode it.
pub fn decode_content_header(p: &[u8]) -> Option<(u64, amq_protocol::protocol::BasicProperties)> {
    parse_content_header(p).or_else(|| {
        amq_protocol::frame::parsing::parse_content_header(p)
            .ok()
            .map(|(_, h)| (h.body_size, h.properties))
    })
}

/// The entries of the headers table in a basic content-header payload, as the publisher encoded them
/// (in their order), or None when it has no headers or the payload is malformed.
pub fn raw_headers(payload: &[u8]) -> Option<&[u8]> {
    const FLAGS_AT: usize = 12;
    let flags = u16::from_be_bytes(payload.get(FLAGS_AT..FLAGS_AT + 2)?.try_into().ok()?);
    if flags & 0x2000 == 0 {
        return None;
    }
    let mut at = FLAGS_AT + 2;
    for bit in [0x8000u16, 0x4000] {
        if flags & bit != 0 {
            at += 1 + usize::from(*payload.get(at)?);
        }
    }
    let len = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    payload.get(at + 4..(at + 4).checked_add(len)?)
}

/// Encode a content header payload (class 60) for properties the broker built or changed.
pub fn encode_content_header(
    body_size: u64,
    props: &amq_protocol::protocol::BasicProperties,
) -> Bytes {
    let frame = AMQPFrame::Header(
        0,
        amq_protocol::frame::AMQPContentHeader {
            class_id: 60,
            body_size,
            properties: props.clone(),
        },
    );
    let ctx = WriteContext::from(Vec::with_capacity(64));
    let result = gen_frame(&frame)(ctx);
    match result {
        Ok(ctx) => {
            let v = ctx.into_inner().0;
            Bytes::copy_from_slice(&v[7..v.len() - 1])
        }
        Err(e) => {
            tracing::error!(error = %e, "failed to encode content header");
            Bytes::new()
        }
    }
}
