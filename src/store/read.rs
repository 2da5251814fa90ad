//! Reading back: a record by its location (from the file, or from the write buffer while it is in flight),
//! runs of nearby records with one `pread`, and a block of an index file. Every payload is checked against
//! its record's checksum.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::format::{self, SegKind, HEADER_LEN, RECORD_HEADER_LEN};
use super::{index, IndexBlock, Location, RecoveredMessage, Shared, StoreError};

/// How long a `read` of a record that is being written waits for the write before giving up.
const READ_WAIT: Duration = Duration::from_secs(30);
/// `read_async` reads records this close together with one `pread`, through the bytes between them.
const READ_GAP: u64 = 16 << 10;
/// The most one such read spans.
const READ_RUN: u64 = 256 << 10;

impl Shared {
    pub(super) fn read(&self, loc: Location) -> Result<Bytes, StoreError> {
        let end = loc
            .offset
            .checked_add(u64::from(loc.len))
            .ok_or(StoreError::NotFound(loc))?;
        let waited = Instant::now();
        let mut st = self.lock();
        loop {
            let Some(seg) = st.msg.segs.get(&loc.segment) else {
                return Err(StoreError::NotFound(loc));
            };
            if loc.offset < HEADER_LEN || (loc.len as usize) < RECORD_HEADER_LEN || end > seg.len {
                return Err(StoreError::NotFound(loc));
            }
            if end <= seg.written {
                if let Some(file) = seg.file.clone() {
                    drop(st);
                    return self.read_at(&file, loc);
                }
            }
            let pending = st
                .msg
                .chunks
                .iter()
                .find(|c| c.seg == loc.segment && c.start <= loc.offset && end <= c.end());
            if let Some(c) = pending {
                let from = (loc.offset - c.start) as usize;
                let buf = c.bytes[from..from + loc.len as usize].to_vec();
                drop(st);
                return decode_read(loc, Bytes::from(buf));
            }
            // The sync thread is writing it right now.
            if st.shutdown || waited.elapsed() > READ_WAIT {
                return Err(StoreError::NotFound(loc));
            }
            st = self
                .written
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn read_at(&self, file: &File, loc: Location) -> Result<Bytes, StoreError> {
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| StoreError::io("read", &self.path(SegKind::Msg, loc.segment), e))?;
        decode_read(loc, Bytes::from(buf))
    }

    pub(super) fn read_block(
        &self,
        queue: &str,
        b: &IndexBlock,
    ) -> Result<Vec<RecoveredMessage>, StoreError> {
        let file = self
            .lock()
            .msg
            .segs
            .get(&b.segment)
            .and_then(|s| s.file.clone())
            .ok_or(StoreError::Invalid("the block's segment is gone"))?;
        let entries = index::read_entries(&self.cfg.dir, &file, b, queue)?;
        let st = self.lock();
        Ok(entries
            .into_iter()
            .map(|e| RecoveredMessage {
                msg_id: e.msg_id,
                location: Location {
                    segment: b.segment,
                    offset: u64::from(e.offset),
                    len: e.len,
                    slot: e.slot,
                },
                delivered: false,
                head: e.head,
            })
            .filter(|m| st.is_live(queue, m.location))
            .collect())
    }

    /// Reads records in order, with one `pread` per run of records that lie close together in one
    /// segment (a backlog's messages mostly do): a queue draining from disk costs a syscall and an
    /// allocation per run, not per message.
    pub(super) fn read_many(&self, locs: &[Location]) -> Vec<Result<Bytes, StoreError>> {
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while i < locs.len() {
            let first = locs[i];
            let Some(mut end) = first.offset.checked_add(u64::from(first.len)) else {
                out.push(Err(StoreError::NotFound(first)));
                i += 1;
                continue;
            };
            let mut used = u64::from(first.len);
            let mut j = i + 1;
            while let Some(l) = locs.get(j) {
                let Some(next_end) = l.offset.checked_add(u64::from(l.len)) else {
                    break;
                };
                if l.segment != first.segment
                    || l.offset < end
                    || l.offset - end > READ_GAP
                    || next_end - first.offset > READ_RUN
                    || (l.len as usize) < RECORD_HEADER_LEN
                {
                    break;
                }
                end = next_end;
                used += u64::from(l.len);
                j += 1;
            }
            let run = &locs[i..j];
            i = j;
            let file = (run.len() > 1 && (first.len as usize) >= RECORD_HEADER_LEN)
                .then(|| {
                    let st = self.lock();
                    st.msg
                        .segs
                        .get(&first.segment)
                        .filter(|s| first.offset >= HEADER_LEN && end <= s.written)
                        .and_then(|s| s.file.clone())
                })
                .flatten();
            let Some(file) = file else {
                // Not written yet, gone, or alone: one at a time.
                out.extend(run.iter().map(|l| self.read(*l)));
                continue;
            };
            let mut buf = vec![0u8; (end - first.offset) as usize];
            // Payloads share a dense run's buffer; from a sparse one (other queues' records between) they
            // are copied out, so that a kept message does not pin the bytes it skipped.
            let dense = used * 4 >= (end - first.offset) * 3;
            match file.read_exact_at(&mut buf, first.offset) {
                Ok(()) => {
                    let buf = Bytes::from(buf);
                    out.extend(run.iter().map(|l| {
                        let from = (l.offset - first.offset) as usize;
                        let rec = buf.slice(from..from + l.len as usize);
                        decode_read(
                            *l,
                            if dense {
                                rec
                            } else {
                                Bytes::copy_from_slice(&rec)
                            },
                        )
                    }));
                }
                Err(e) => {
                    let err = StoreError::io("read", &self.path(SegKind::Msg, first.segment), e);
                    out.extend(run.iter().map(|_| Err(err.clone())));
                }
            }
        }
        out
    }
}

/// Checks a publish record read back and returns its payload (sharing the read buffer).
fn decode_read(loc: Location, buf: Bytes) -> Result<Bytes, StoreError> {
    let corrupt = |reason| StoreError::Corrupt {
        segment: loc.segment,
        offset: loc.offset,
        reason,
    };
    let (len, crc, ty) = format::parse_record_header(&buf);
    if len as usize != buf.len() - RECORD_HEADER_LEN {
        return Err(corrupt("record length does not match the location"));
    }
    if ty != format::PUBLISH {
        return Err(corrupt("not a publish record"));
    }
    let body = &buf[RECORD_HEADER_LEN..];
    if format::record_crc(ty, body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let start = RECORD_HEADER_LEN
        + format::PublishBody::decode(body)
            .ok_or_else(|| corrupt("undecodable publish record"))?
            .payload_start;
    Ok(buf.slice(start..))
}
