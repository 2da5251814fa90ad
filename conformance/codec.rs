//! A deliberately tiny, hand-written AMQP 0-9-1 frame codec.
//!
//! It shares no code with Warren's codec (or amq-protocol) on purpose: the
//! conformance suite is an independent check of the bytes on the wire.

use std::fmt;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// The AMQP 0-9-1 protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// A field-table value (RabbitMQ's type letters, not the 0-9-1 spec's).
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal(u8, u32),
    LongStr(Vec<u8>),
    Array(Vec<Field>),
    Timestamp(u64),
    Table(Table),
    Void,
    Bytes(Vec<u8>),
}

pub type Table = Vec<(String, Field)>;

/// One method argument. Consecutive bits are packed by `Arg::Bits`.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Octet(u8),
    Short(u16),
    Long(u32),
    LongLong(u64),
    ShortStr(String),
    LongStr(Vec<u8>),
    /// A run of bit arguments, packed little-end-first into ceil(n/8) octets.
    Bits(Vec<bool>),
    Table(Table),
    Timestamp(u64),
}

/// Argument types, used to decode the methods a server sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum T {
    Octet,
    Short,
    Long,
    LongLong,
    ShortStr,
    LongStr,
    Bit,
    Table,
    Timestamp,
}

// ---------------------------------------------------------------- encoding

pub fn put_shortstr(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() <= 255, "shortstr too long");
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

pub fn put_longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

pub fn put_field(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Bool(b) => {
            out.push(b't');
            out.push(*b as u8);
        }
        Field::I8(v) => {
            out.push(b'b');
            out.push(*v as u8);
        }
        Field::U8(v) => {
            out.push(b'B');
            out.push(*v);
        }
        Field::I16(v) => {
            out.push(b's');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::U16(v) => {
            out.push(b'u');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::I32(v) => {
            out.push(b'I');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::U32(v) => {
            out.push(b'i');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::I64(v) => {
            out.push(b'l');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::F32(v) => {
            out.push(b'f');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::F64(v) => {
            out.push(b'd');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::Decimal(scale, v) => {
            out.push(b'D');
            out.push(*scale);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::LongStr(s) => {
            out.push(b'S');
            put_longstr(out, s);
        }
        Field::Array(items) => {
            out.push(b'A');
            let mut body = Vec::new();
            for i in items {
                put_field(&mut body, i);
            }
            put_longstr(out, &body);
        }
        Field::Timestamp(v) => {
            out.push(b'T');
            out.extend_from_slice(&v.to_be_bytes());
        }
        Field::Table(t) => {
            out.push(b'F');
            put_table(out, t);
        }
        Field::Void => out.push(b'V'),
        Field::Bytes(b) => {
            out.push(b'x');
            put_longstr(out, b);
        }
    }
}

/// The entries of a table without the 4-byte length prefix (AMQPLAIN's response format).
pub fn table_body(t: &Table) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in t {
        put_shortstr(&mut body, k.as_bytes());
        put_field(&mut body, v);
    }
    body
}

pub fn put_table(out: &mut Vec<u8>, t: &Table) {
    put_longstr(out, &table_body(t));
}

pub fn encode_args(args: &[Arg]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in args {
        match a {
            Arg::Octet(v) => out.push(*v),
            Arg::Short(v) => out.extend_from_slice(&v.to_be_bytes()),
            Arg::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            Arg::LongLong(v) | Arg::Timestamp(v) => out.extend_from_slice(&v.to_be_bytes()),
            Arg::ShortStr(s) => put_shortstr(&mut out, s.as_bytes()),
            Arg::LongStr(s) => put_longstr(&mut out, s),
            Arg::Bits(bits) => {
                for chunk in bits.chunks(8) {
                    let mut octet = 0u8;
                    for (i, b) in chunk.iter().enumerate() {
                        if *b {
                            octet |= 1 << i;
                        }
                    }
                    out.push(octet);
                }
            }
            Arg::Table(t) => put_table(&mut out, t),
        }
    }
    out
}

/// A frame to send. `Raw` lets a case lie about anything (type, size, end octet).
#[derive(Clone, Debug)]
pub enum Frame {
    Method {
        channel: u16,
        class: u16,
        method: u16,
        args: Vec<Arg>,
    },
    /// Content header; `props` are raw property bytes following the flags.
    Header {
        channel: u16,
        class: u16,
        body_size: u64,
        flags: u16,
        props: Vec<u8>,
    },
    Body {
        channel: u16,
        payload: Vec<u8>,
    },
    Heartbeat {
        channel: u16,
    },
    Raw {
        typ: u8,
        channel: u16,
        payload: Vec<u8>,
        size: Option<u32>,
        end: u8,
    },
}

fn frame_bytes(typ: u8, channel: u16, payload: &[u8], size: u32, end: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(typ);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(payload);
    out.push(end);
    out
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Method {
                channel,
                class,
                method,
                args,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&class.to_be_bytes());
                p.extend_from_slice(&method.to_be_bytes());
                p.extend_from_slice(&encode_args(args));
                frame_bytes(FRAME_METHOD, *channel, &p, p.len() as u32, FRAME_END)
            }
            Frame::Header {
                channel,
                class,
                body_size,
                flags,
                props,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&class.to_be_bytes());
                p.extend_from_slice(&0u16.to_be_bytes()); // weight
                p.extend_from_slice(&body_size.to_be_bytes());
                p.extend_from_slice(&flags.to_be_bytes());
                p.extend_from_slice(props);
                frame_bytes(FRAME_HEADER, *channel, &p, p.len() as u32, FRAME_END)
            }
            Frame::Body { channel, payload } => frame_bytes(
                FRAME_BODY,
                *channel,
                payload,
                payload.len() as u32,
                FRAME_END,
            ),
            Frame::Heartbeat { channel } => {
                frame_bytes(FRAME_HEARTBEAT, *channel, &[], 0, FRAME_END)
            }
            Frame::Raw {
                typ,
                channel,
                payload,
                size,
                end,
            } => frame_bytes(
                *typ,
                *channel,
                payload,
                size.unwrap_or(payload.len() as u32),
                *end,
            ),
        }
    }
}

// ---------------------------------------------------------------- decoding

/// A frame as read off the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct RawFrame {
    pub typ: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum DecodeError {
    Incomplete,
    BadFrameEnd(u8),
}

/// Try to split one frame off the front of `buf`.
pub fn decode_frame(buf: &[u8]) -> Result<(RawFrame, usize), DecodeError> {
    if buf.len() < 7 {
        return Err(DecodeError::Incomplete);
    }
    let typ = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if buf.len() < 7 + size + 1 {
        return Err(DecodeError::Incomplete);
    }
    let end = buf[7 + size];
    if end != FRAME_END {
        return Err(DecodeError::BadFrameEnd(end));
    }
    Ok((
        RawFrame {
            typ,
            channel,
            payload: buf[7..7 + size].to_vec(),
        },
        8 + size,
    ))
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.pos + n > self.b.len() {
            return Err(format!(
                "truncated: need {} bytes at offset {}, have {}",
                n,
                self.pos,
                self.b.len()
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn shortstr(&mut self) -> Result<String, String> {
        let n = self.u8()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn longstr(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn field(&mut self) -> Result<Field, String> {
        let t = self.u8()?;
        Ok(match t {
            b't' => Field::Bool(self.u8()? != 0),
            b'b' => Field::I8(self.u8()? as i8),
            b'B' => Field::U8(self.u8()?),
            b's' => Field::I16(self.u16()? as i16),
            b'u' => Field::U16(self.u16()?),
            b'I' => Field::I32(self.u32()? as i32),
            b'i' => Field::U32(self.u32()?),
            b'l' => Field::I64(self.u64()? as i64),
            b'f' => Field::F32(f32::from_bits(self.u32()?)),
            b'd' => Field::F64(f64::from_bits(self.u64()?)),
            b'D' => {
                let scale = self.u8()?;
                Field::Decimal(scale, self.u32()?)
            }
            b'S' => Field::LongStr(self.longstr()?),
            b'A' => {
                let body = self.longstr()?;
                let mut r = Reader { b: &body, pos: 0 };
                let mut items = Vec::new();
                while r.pos < body.len() {
                    items.push(r.field()?);
                }
                Field::Array(items)
            }
            b'T' => Field::Timestamp(self.u64()?),
            b'F' => Field::Table(self.table()?),
            b'V' => Field::Void,
            b'x' => Field::Bytes(self.longstr()?),
            other => return Err(format!("unknown field type {:?}", other as char)),
        })
    }
    fn table(&mut self) -> Result<Table, String> {
        let body = self.longstr()?;
        let mut r = Reader { b: &body, pos: 0 };
        let mut t = Vec::new();
        while r.pos < body.len() {
            let k = r.shortstr()?;
            let v = r.field()?;
            t.push((k, v));
        }
        Ok(t)
    }
}

/// Argument signatures of the methods a server may send (plus a few more).
pub fn signature(class: u16, method: u16) -> Option<&'static [T]> {
    use T::*;
    Some(match (class, method) {
        (10, 10) => &[Octet, Octet, Table, LongStr, LongStr], // connection.start
        (10, 20) => &[LongStr],                               // connection.secure
        (10, 30) => &[Short, Long, Short],                    // connection.tune
        (10, 41) => &[ShortStr],                              // connection.open-ok
        (10, 50) => &[Short, ShortStr, Short, Short],         // connection.close
        (10, 51) => &[],                                      // connection.close-ok
        (10, 60) => &[ShortStr],                              // connection.blocked
        (10, 61) => &[],
        (10, 71) => &[],
        (20, 11) => &[LongStr],                       // channel.open-ok
        (20, 20) => &[Bit],                           // channel.flow
        (20, 21) => &[Bit],                           // channel.flow-ok
        (20, 40) => &[Short, ShortStr, Short, Short], // channel.close
        (20, 41) => &[],
        (30, 11) => &[Short], // access.request-ok
        (40, 11) | (40, 21) | (40, 31) | (40, 51) => &[],
        (50, 11) => &[ShortStr, Long, Long], // queue.declare-ok
        (50, 21) | (50, 51) => &[],
        (50, 31) | (50, 41) => &[Long],
        (60, 11) => &[],
        (60, 21) | (60, 31) => &[ShortStr],
        (60, 30) => &[ShortStr, Bit],
        (60, 50) => &[Short, ShortStr, ShortStr, ShortStr],
        (60, 60) => &[ShortStr, LongLong, Bit, ShortStr, ShortStr],
        (60, 71) => &[LongLong, Bit, ShortStr, ShortStr, Long],
        (60, 72) => &[ShortStr],
        (60, 80) => &[LongLong, Bit],
        (60, 111) => &[],
        (60, 120) => &[LongLong, Bit, Bit],
        (85, 11) | (90, 11) | (90, 21) | (90, 31) => &[],
        _ => return None,
    })
}

pub fn decode_args(sig: &[T], b: &[u8]) -> Result<Vec<Arg>, String> {
    let mut r = Reader { b, pos: 0 };
    let mut out = Vec::new();
    let mut i = 0;
    while i < sig.len() {
        match sig[i] {
            T::Octet => out.push(Arg::Octet(r.u8()?)),
            T::Short => out.push(Arg::Short(r.u16()?)),
            T::Long => out.push(Arg::Long(r.u32()?)),
            T::LongLong => out.push(Arg::LongLong(r.u64()?)),
            T::Timestamp => out.push(Arg::Timestamp(r.u64()?)),
            T::ShortStr => out.push(Arg::ShortStr(r.shortstr()?)),
            T::LongStr => out.push(Arg::LongStr(r.longstr()?)),
            T::Table => out.push(Arg::Table(r.table()?)),
            T::Bit => {
                let mut n = 0;
                while i + n < sig.len() && sig[i + n] == T::Bit {
                    n += 1;
                }
                let mut bits = Vec::new();
                for chunk in 0..n.div_ceil(8) {
                    let octet = r.u8()?;
                    for j in 0..(n - chunk * 8).min(8) {
                        bits.push(octet & (1 << j) != 0);
                    }
                }
                out.push(Arg::Bits(bits));
                i += n;
                continue;
            }
        }
        i += 1;
    }
    if r.pos != b.len() {
        return Err(format!(
            "{} trailing bytes after arguments",
            b.len() - r.pos
        ));
    }
    Ok(out)
}

/// A decoded method frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub channel: u16,
    pub class: u16,
    pub method: u16,
    /// `None` when the signature is unknown to this codec.
    pub args: Option<Vec<Arg>>,
}

pub fn decode_method(f: &RawFrame) -> Result<Method, String> {
    if f.typ != FRAME_METHOD {
        return Err(format!("not a method frame: {}", describe(f)));
    }
    if f.payload.len() < 4 {
        return Err(format!("method frame payload too short: {:?}", f.payload));
    }
    let class = u16::from_be_bytes([f.payload[0], f.payload[1]]);
    let method = u16::from_be_bytes([f.payload[2], f.payload[3]]);
    let args = match signature(class, method) {
        Some(sig) => Some(
            decode_args(sig, &f.payload[4..])
                .map_err(|e| format!("{}.{}: {}", class, method, e))?,
        ),
        None => None,
    };
    Ok(Method {
        channel: f.channel,
        class,
        method,
        args,
    })
}

/// The (code, text, class, method) of a connection.close / channel.close.
pub fn close_fields(m: &Method) -> Option<(u16, String, u16, u16)> {
    match m.args.as_deref() {
        Some([Arg::Short(code), Arg::ShortStr(text), Arg::Short(c), Arg::Short(mm)]) => {
            Some((*code, text.clone(), *c, *mm))
        }
        _ => None,
    }
}

pub fn method_name(class: u16, method: u16) -> String {
    let n = match (class, method) {
        (10, 10) => "connection.start",
        (10, 11) => "connection.start-ok",
        (10, 20) => "connection.secure",
        (10, 21) => "connection.secure-ok",
        (10, 30) => "connection.tune",
        (10, 31) => "connection.tune-ok",
        (10, 40) => "connection.open",
        (10, 41) => "connection.open-ok",
        (10, 50) => "connection.close",
        (10, 51) => "connection.close-ok",
        (10, 60) => "connection.blocked",
        (10, 61) => "connection.unblocked",
        (20, 10) => "channel.open",
        (20, 11) => "channel.open-ok",
        (20, 20) => "channel.flow",
        (20, 21) => "channel.flow-ok",
        (20, 40) => "channel.close",
        (20, 41) => "channel.close-ok",
        (30, 10) => "access.request",
        (30, 11) => "access.request-ok",
        (40, 10) => "exchange.declare",
        (40, 11) => "exchange.declare-ok",
        (50, 10) => "queue.declare",
        (50, 11) => "queue.declare-ok",
        (60, 10) => "basic.qos",
        (60, 11) => "basic.qos-ok",
        (60, 20) => "basic.consume",
        (60, 21) => "basic.consume-ok",
        (60, 40) => "basic.publish",
        (60, 70) => "basic.get",
        (60, 71) => "basic.get-ok",
        (60, 72) => "basic.get-empty",
        (60, 80) => "basic.ack",
        (60, 110) => "basic.recover",
        (60, 111) => "basic.recover-ok",
        _ => "",
    };
    if n.is_empty() {
        format!("method {}.{}", class, method)
    } else {
        format!("{} ({}.{})", n, class, method)
    }
}

/// A one-line human description of a received frame, for failure messages.
pub fn describe(f: &RawFrame) -> String {
    match f.typ {
        FRAME_METHOD => match decode_method(f) {
            Ok(m) => {
                if let Some((code, text, c, mm)) = close_fields(&m) {
                    format!(
                        "ch{} {} code={} text={:?} class={} method={}",
                        m.channel,
                        method_name(m.class, m.method),
                        code,
                        text,
                        c,
                        mm
                    )
                } else {
                    format!(
                        "ch{} {} args={:?}",
                        m.channel,
                        method_name(m.class, m.method),
                        m.args
                    )
                }
            }
            Err(e) => format!(
                "ch{} undecodable method frame ({}) payload={:?}",
                f.channel, e, f.payload
            ),
        },
        FRAME_HEADER => format!("ch{} content header payload={:?}", f.channel, f.payload),
        FRAME_BODY => format!("ch{} body {} bytes", f.channel, f.payload.len()),
        FRAME_HEARTBEAT => format!("ch{} heartbeat", f.channel),
        t => format!("ch{} frame type {} payload={:?}", f.channel, t, f.payload),
    }
}

impl fmt::Display for RawFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self))
    }
}
