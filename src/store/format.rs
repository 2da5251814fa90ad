//! The on-disk format: segment file names and headers, checksummed records, and a sequential scanner that
//! stops at the first torn or corrupt record. Pure encoding plus positioned reads; no store state.
//!
//! All integers are little-endian.
//!
//! ```text
//! file name   msg-0000000007.seg | ack-0000000003.seg     (kind, segment id as 10 decimal digits)
//! header      16 bytes: magic "WRNSTORE" | u16 version (1) | u8 kind (1 msg, 2 ack) | u8 0 | u32 segment id
//! record      u32 len | u32 crc | u8 type | body[len]     crc = CRC-32 (IEEE) of type byte + body
//!
//! PUBLISH   1  (msg log)  u16 n | n × (u16 qlen | queue utf-8 | u64 msg_id) | payload (rest of body)
//! ACK       2  (ack log)  u16 qlen | queue | k × (u32 segment | u32 offset)    publishes of `queue` acked
//! DELIVERED 3  (ack log)  u16 qlen | queue | k × (u32 segment | u32 offset)    publishes of `queue` delivered
//! DROP      4  (ack log)  u32 segment | u32 offset | queue (rest of body)       every publish of `queue`
//!                                                                              before that position is gone
//! ```
//!
//! A publish is identified by the position (segment, offset) of its record, so ack-log records are
//! independent of their order relative to the message log.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(crate) const MAGIC: [u8; 8] = *b"WRNSTORE";
pub(crate) const VERSION: u16 = 1;
/// Bytes before the first record of a segment.
pub(crate) const HEADER_LEN: u64 = 16;
/// `u32 len | u32 crc | u8 type`.
pub(crate) const RECORD_HEADER_LEN: usize = 9;

pub(crate) const PUBLISH: u8 = 1;
pub(crate) const ACK: u8 = 2;
pub(crate) const DELIVERED: u8 = 3;
pub(crate) const DROP: u8 = 4;

/// Size of the scanner's reads during recovery.
const READ_CHUNK: usize = 1 << 20;

/// Which log a segment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SegKind {
    /// Publish records (message bodies).
    Msg,
    /// Ack, delivered and drop records.
    Ack,
}

impl SegKind {
    fn code(self) -> u8 {
        match self {
            SegKind::Msg => 1,
            SegKind::Ack => 2,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            SegKind::Msg => "msg",
            SegKind::Ack => "ack",
        }
    }
}

/// The position of a publish record: its segment and the offset of its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    pub seg: u32,
    pub off: u32,
}

pub(crate) fn segment_file_name(kind: SegKind, id: u32) -> String {
    format!("{}-{:010}.seg", kind.prefix(), id)
}

pub(crate) fn parse_segment_file_name(name: &str) -> Option<(SegKind, u32)> {
    let stem = name.strip_suffix(".seg")?;
    let (kind, digits) = if let Some(d) = stem.strip_prefix("msg-") {
        (SegKind::Msg, d)
    } else {
        (SegKind::Ack, stem.strip_prefix("ack-")?)
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|id| (kind, id))
}

pub(crate) fn encode_header(kind: SegKind, id: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&VERSION.to_le_bytes());
    h[10] = kind.code();
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// Checks a segment header against the kind and id its file name promises.
pub(crate) fn check_header(h: &[u8], kind: SegKind, id: u32) -> Result<(), &'static str> {
    if h.len() < HEADER_LEN as usize {
        return Err("segment shorter than its header");
    }
    if h[..8] != MAGIC {
        return Err("bad magic");
    }
    if u16::from_le_bytes([h[8], h[9]]) != VERSION {
        return Err("unsupported format version");
    }
    if h[10] != kind.code() || u32::from_le_bytes([h[12], h[13], h[14], h[15]]) != id {
        return Err("header does not match the file name");
    }
    Ok(())
}

pub(crate) fn record_crc(ty: u8, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(body);
    h.finalize()
}

/// Length of a publish body before the payload.
pub(crate) fn publish_prefix_len(targets: &[(&str, u64)]) -> usize {
    2 + targets.iter().map(|(q, _)| 2 + q.len() + 8).sum::<usize>()
}

/// Checksum of a publish record, computed before taking the store lock (it does not depend on position).
/// Callers have checked that `targets` fits a u16 count and each queue name a u16 length.
pub(crate) fn publish_crc(targets: &[(&str, u64)], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[PUBLISH]);
    h.update(&(targets.len() as u16).to_le_bytes());
    for (q, id) in targets {
        h.update(&(q.len() as u16).to_le_bytes());
        h.update(q.as_bytes());
        h.update(&id.to_le_bytes());
    }
    h.update(payload);
    h.finalize()
}

/// Appends a whole publish record; `body_len` is `publish_prefix_len + payload.len()` and fits a u32.
pub(crate) fn write_publish(
    out: &mut Vec<u8>,
    targets: &[(&str, u64)],
    payload: &[u8],
    crc: u32,
    body_len: u32,
) {
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(PUBLISH);
    out.extend_from_slice(&(targets.len() as u16).to_le_bytes());
    for (q, id) in targets {
        out.extend_from_slice(&(q.len() as u16).to_le_bytes());
        out.extend_from_slice(q.as_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(payload);
}

/// Fills in length, type and checksum of a record whose header was reserved at `rec[..9]` and whose body
/// is `rec[9..]`.
pub(crate) fn seal_record(rec: &mut [u8], ty: u8) {
    let body_len = (rec.len() - RECORD_HEADER_LEN) as u32;
    rec[8] = ty;
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&rec[8..]);
        h.finalize()
    };
    rec[..4].copy_from_slice(&body_len.to_le_bytes());
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Parses `u32 len | u32 crc | u8 type`.
pub(crate) fn parse_record_header(h: &[u8]) -> (u32, u32, u8) {
    (
        u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        h[8],
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// A decoded publish body: its (queue, msg_id) entries and where the payload starts.
pub(crate) struct PublishBody<'a> {
    entries: &'a [u8],
    count: u16,
    /// Offset of the payload within the body.
    pub payload_start: usize,
}

impl<'a> PublishBody<'a> {
    /// Validates the whole entry list (bounds and UTF-8), so iteration cannot fail afterwards.
    pub(crate) fn decode(body: &'a [u8]) -> Option<Self> {
        let count = u16_at(body, 0)?;
        if count == 0 {
            return None;
        }
        let mut at = 2;
        for _ in 0..count {
            let qlen = u16_at(body, at)? as usize;
            std::str::from_utf8(body.get(at + 2..at + 2 + qlen)?).ok()?;
            at += 2 + qlen + 8;
            if at > body.len() {
                return None;
            }
        }
        Some(PublishBody {
            entries: &body[2..at],
            count,
            payload_start: at,
        })
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'a str, u64)> + '_ {
        let mut at = 0usize;
        let b = self.entries;
        (0..self.count).map_while(move |_| {
            let qlen = u16_at(b, at)? as usize;
            let q = std::str::from_utf8(b.get(at + 2..at + 2 + qlen)?).ok()?;
            let id = u64_at(b, at + 2 + qlen)?;
            at += 2 + qlen + 8;
            Some((q, id))
        })
    }
}

/// Decodes an ACK or DELIVERED body: the queue and its positions.
pub(crate) fn decode_positions(body: &[u8]) -> Option<(&str, impl Iterator<Item = Pos> + '_)> {
    let qlen = u16_at(body, 0)? as usize;
    let q = std::str::from_utf8(body.get(2..2 + qlen)?).ok()?;
    let rest = &body[2 + qlen..];
    if !rest.len().is_multiple_of(8) {
        return None;
    }
    let it = rest.chunks_exact(8).map(|c| Pos {
        seg: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        off: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
    });
    Some((q, it))
}

/// Decodes a DROP body: the mark and the queue.
pub(crate) fn decode_drop(body: &[u8]) -> Option<(Pos, &str)> {
    let seg = u32_at(body, 0)?;
    let off = u32_at(body, 4)?;
    let q = std::str::from_utf8(body.get(8..)?).ok()?;
    Some((Pos { seg, off }, q))
}

/// Appends a DROP record.
pub(crate) fn write_drop(out: &mut Vec<u8>, mark: Pos, queue: &str) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.extend_from_slice(&mark.seg.to_le_bytes());
    out.extend_from_slice(&mark.off.to_le_bytes());
    out.extend_from_slice(queue.as_bytes());
    seal_record(&mut out[start..], DROP);
}

pub(crate) use crate::varint::{get_varint, put_varint};

/// One step of a segment scan.
pub(crate) enum Scan<'a> {
    /// A record whose checksum holds.
    Record { offset: u64, ty: u8, body: &'a [u8] },
    /// Clean end of the segment.
    End,
    /// The segment is torn or corrupt from `offset` on.
    Bad { offset: u64, reason: &'static str },
}

/// Reads a segment front to back in large positioned reads, checking every record's checksum.
pub(crate) struct Scanner<'f> {
    file: &'f File,
    file_len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_off: u64,
    /// File offset of the next record.
    pos: u64,
}

impl<'f> Scanner<'f> {
    pub(crate) fn new(file: &'f File, file_len: u64) -> Self {
        Scanner {
            file,
            file_len,
            buf: Vec::new(),
            buf_off: HEADER_LEN,
            pos: HEADER_LEN,
        }
    }

    /// A scan from `from` (a record boundary) instead of the first record.
    pub(crate) fn starting_at(file: &'f File, file_len: u64, from: u64) -> Self {
        Scanner {
            buf_off: from,
            pos: from,
            ..Scanner::new(file, file_len)
        }
    }

    /// Makes `buf` hold the file bytes `[pos, pos + need)`; the caller has checked they exist.
    fn fill(&mut self, need: usize) -> io::Result<usize> {
        let start = (self.pos - self.buf_off) as usize;
        if start + need <= self.buf.len() {
            return Ok(start);
        }
        self.buf.drain(..start);
        self.buf_off = self.pos;
        let have = self.buf.len();
        let left = (self.file_len - self.pos) as usize;
        let want = need.max(READ_CHUNK).min(left);
        self.buf.resize(want, 0);
        self.file
            .read_exact_at(&mut self.buf[have..want], self.pos + have as u64)?;
        Ok(0)
    }

    pub(crate) fn next(&mut self) -> io::Result<Scan<'_>> {
        let offset = self.pos;
        if offset >= self.file_len {
            return Ok(Scan::End);
        }
        let left = self.file_len - offset;
        if left < RECORD_HEADER_LEN as u64 {
            return Ok(Scan::Bad {
                offset,
                reason: "truncated record header",
            });
        }
        let s = self.fill(RECORD_HEADER_LEN)?;
        let (len, crc, ty) = parse_record_header(&self.buf[s..s + RECORD_HEADER_LEN]);
        let total = RECORD_HEADER_LEN as u64 + u64::from(len);
        if total > left {
            return Ok(Scan::Bad {
                offset,
                reason: "record runs past the end of the segment",
            });
        }
        let s = self.fill(total as usize)?;
        let body = s + RECORD_HEADER_LEN..s + total as usize;
        if record_crc(ty, &self.buf[body.clone()]) != crc {
            return Ok(Scan::Bad {
                offset,
                reason: "checksum mismatch",
            });
        }
        if !(PUBLISH..=DROP).contains(&ty) {
            return Ok(Scan::Bad {
                offset,
                reason: "unknown record type",
            });
        }
        self.pos += total;
        Ok(Scan::Record {
            offset,
            ty,
            body: &self.buf[body],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = segment_file_name(SegKind::Msg, 42);
        assert_eq!(n, "msg-0000000042.seg");
        assert_eq!(parse_segment_file_name(&n), Some((SegKind::Msg, 42)));
        assert_eq!(
            parse_segment_file_name("ack-4294967295.seg"),
            Some((SegKind::Ack, u32::MAX))
        );
        assert_eq!(parse_segment_file_name("ack-4294967296.seg"), None);
        assert_eq!(parse_segment_file_name("msg-12.seg"), None);
        assert_eq!(parse_segment_file_name("msg-0000000001.seg.tmp"), None);
    }

    #[test]
    fn header_checks() {
        let h = encode_header(SegKind::Ack, 7);
        assert!(check_header(&h, SegKind::Ack, 7).is_ok());
        assert!(check_header(&h, SegKind::Msg, 7).is_err());
        assert!(check_header(&h, SegKind::Ack, 8).is_err());
        assert!(check_header(&h[..10], SegKind::Ack, 7).is_err());
        let mut bad = h;
        bad[0] ^= 1;
        assert!(check_header(&bad, SegKind::Ack, 7).is_err());
    }

    #[test]
    fn publish_record_round_trip() {
        let targets = [("v/a", 1u64), ("v/bb", u64::MAX)];
        let payload = b"hello";
        let body_len = (publish_prefix_len(&targets) + payload.len()) as u32;
        let mut out = Vec::new();
        write_publish(
            &mut out,
            &targets,
            payload,
            publish_crc(&targets, payload),
            body_len,
        );
        let (len, crc, ty) = parse_record_header(&out);
        assert_eq!(len as usize, out.len() - RECORD_HEADER_LEN);
        assert_eq!(ty, PUBLISH);
        let body = &out[RECORD_HEADER_LEN..];
        assert_eq!(record_crc(ty, body), crc);
        let p = PublishBody::decode(body).unwrap();
        assert_eq!(p.entries().collect::<Vec<_>>(), targets.to_vec());
        assert_eq!(&body[p.payload_start..], payload);
        // A truncated entry list does not decode.
        assert!(PublishBody::decode(&body[..10]).is_none());
    }

    #[test]
    fn ack_and_drop_bodies() {
        let mut rec = vec![0u8; RECORD_HEADER_LEN];
        rec.extend_from_slice(&3u16.to_le_bytes());
        rec.extend_from_slice(b"v/q");
        for (s, o) in [(1u32, 16u32), (2, 99)] {
            rec.extend_from_slice(&s.to_le_bytes());
            rec.extend_from_slice(&o.to_le_bytes());
        }
        seal_record(&mut rec, ACK);
        let (len, crc, ty) = parse_record_header(&rec);
        assert_eq!((len as usize, ty), (rec.len() - RECORD_HEADER_LEN, ACK));
        assert_eq!(record_crc(ty, &rec[RECORD_HEADER_LEN..]), crc);
        let (q, it) = decode_positions(&rec[RECORD_HEADER_LEN..]).unwrap();
        assert_eq!(q, "v/q");
        assert_eq!(
            it.collect::<Vec<_>>(),
            vec![Pos { seg: 1, off: 16 }, Pos { seg: 2, off: 99 }]
        );
        assert!(decode_positions(&rec[RECORD_HEADER_LEN..rec.len() - 1]).is_none());

        let mut d = Vec::new();
        write_drop(&mut d, Pos { seg: 5, off: 7 }, "v/x");
        let (_, crc, ty) = parse_record_header(&d);
        assert_eq!(ty, DROP);
        assert_eq!(record_crc(ty, &d[RECORD_HEADER_LEN..]), crc);
        assert_eq!(
            decode_drop(&d[RECORD_HEADER_LEN..]),
            Some((Pos { seg: 5, off: 7 }, "v/x"))
        );
    }
}
