//! Basic content headers (class 60) read and written without amq-protocol's general codec where it pays: a
//! shape check and the few properties the broker reads on every message, read in place (for messages whose
//! properties are decoded only if asked for: read back from the store, or published without a headers
//! table), a decoder for headers without a table, the raw headers table, and the encoder for properties the
//! broker built or changed. Cross-checked against amq-protocol in `super::tests`.

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use bytes::Bytes;

/// Whether `p` looks like a basic content header (a stored one is checked by its record's checksum; this
/// only refuses what was never one).
pub fn content_header_plausible(p: &[u8]) -> bool {
    p.len() >= 14 && p[..2] == [0, 60]
}

/// The properties content header `p` holds per its flags, in order, as (flag bit, the property's bytes
/// with any length prefix); `None` in place of one that runs past the header, after which it stops. Bits 1
/// and 0 name no property and are passed over: whatever the publish path accepted stays accepted.
struct Properties<'a> {
    p: &'a [u8],
    flags: u16,
    bit: u32,
    at: usize,
}

impl<'a> Properties<'a> {
    fn of(p: &'a [u8]) -> Option<Self> {
        let flags = u16::from_be_bytes(p.get(12..14)?.try_into().ok()?);
        Some(Properties {
            p,
            flags,
            bit: 16,
            at: 14,
        })
    }

    /// The length of property `bit` at `self.at`.
    fn span(&self, bit: u32) -> Option<usize> {
        let p = self.p;
        let i = self.at;
        Some(match bit {
            // headers: a long length, then the table
            13 => 4 + u32::from_be_bytes(p.get(i..i + 4)?.try_into().ok()?) as usize,
            // delivery mode, priority
            12 | 11 => 1,
            // timestamp
            6 => 8,
            // short strings
            _ => 1 + *p.get(i)? as usize,
        })
    }
}

impl<'a> Iterator for Properties<'a> {
    type Item = Option<(u32, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.bit > 2 {
            self.bit -= 1;
            let bit = self.bit;
            if self.flags & (1 << bit) == 0 {
                continue;
            }
            let bytes = self
                .span(bit)
                .and_then(|n| self.at.checked_add(n))
                .and_then(|end| self.p.get(self.at..end));
            let Some(bytes) = bytes else {
                self.bit = 0;
                return Some(None);
            };
            self.at += bytes.len();
            return Some(Some((bit, bytes)));
        }
        None
    }
}

/// Whether content header `p` has the shape its flags promise: every property within bounds, short strings
/// UTF-8, the headers table's length inside the header (its fields are not checked). Checked without
/// allocating, for a message read back whose properties are decoded only if asked for.
pub fn content_header_valid(p: &[u8]) -> bool {
    content_header_plausible(p)
        && Properties::of(p).is_some_and(|mut props| {
            props.all(|prop| match prop {
                None => false,
                Some((13 | 12 | 11 | 6, _)) => true,
                Some((_, short)) => std::str::from_utf8(&short[1..]).is_ok(),
            })
        })
}

/// The body size of content header `p` when it can go on with its properties undecoded: it has no headers
/// table (whose fields are checked only by decoding it) and is otherwise what `parse_content_header` would
/// accept. The properties are then read in place until something needs them all (see `Props::lazy`).
pub fn lazy_body_size(p: &[u8]) -> Option<u64> {
    let flags = u16::from_be_bytes(p.get(12..14)?.try_into().ok()?);
    if flags & 0x2003 != 0 || !content_header_valid(p) {
        return None;
    }
    Some(u64::from_be_bytes(p[4..12].try_into().ok()?))
}

/// Property bits, as `Properties` and `property` number them.
pub mod bit {
    pub const HEADERS: u32 = 13;
    pub const DELIVERY_MODE: u32 = 12;
    pub const PRIORITY: u32 = 11;
    pub const REPLY_TO: u32 = 9;
    pub const EXPIRATION: u32 = 8;
    pub const USER_ID: u32 = 4;
}

/// Whether content header `p` carries a headers table.
pub fn has_headers(p: &[u8]) -> bool {
    Properties::of(p).is_some_and(|props| props.flags & (1 << bit::HEADERS) != 0)
}

/// Octet property `bit` (delivery mode, priority) of content header `p`.
pub fn octet_property(p: &[u8], bit: u32) -> Option<u8> {
    if !content_header_plausible(p) {
        return None;
    }
    property(p, bit).map(|b| b[0])
}

/// Short-string property `bit` of content header `p`; `None` when absent or not UTF-8.
pub fn short_property(p: &[u8], bit: u32) -> Option<&str> {
    if !content_header_plausible(p) {
        return None;
    }
    property(p, bit).and_then(|b| std::str::from_utf8(&b[1..]).ok())
}

/// Property `bit` of content header `p` (with any length prefix), if present and within bounds.
fn property(p: &[u8], bit: u32) -> Option<&[u8]> {
    let props = Properties::of(p)?;
    // Absent, as most are: no walk.
    if props.flags & (1 << bit) == 0 {
        return None;
    }
    props
        .map_while(|prop| prop)
        .find(|&(b, _)| b <= bit)
        .and_then(|(b, bytes)| (b == bit).then_some(bytes))
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
    property(payload, bit::HEADERS).map(|table| &table[4..])
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
