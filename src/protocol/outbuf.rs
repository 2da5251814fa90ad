//! The buffer a connection's frames are encoded into before the writer sends them: bytes encoded in place,
//! plus large message bodies attached by reference, so a 64 KiB body reaches the socket through `writev`
//! straight from the allocation the publisher's frame was read into, never copied by the broker.

use bytes::{Bytes, BytesMut};
use std::ops::{Deref, DerefMut};

/// Bodies at least this large are attached rather than copied; below it a copy is cheaper than an extra
/// `iovec` and the bookkeeping.
pub const ATTACH_MIN: usize = 4096;

/// Encoded frames in order: `segs` first, then `cur`. Derefs to `cur`, so frame writers append to it
/// directly.
#[derive(Debug, Default)]
pub struct OutBuf {
    cur: BytesMut,
    segs: Vec<Bytes>,
    segs_len: usize,
}

impl Deref for OutBuf {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.cur
    }
}

impl DerefMut for OutBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.cur
    }
}

impl OutBuf {
    /// Append `b` without copying it.
    pub fn attach(&mut self, b: Bytes) {
        if !self.cur.is_empty() {
            let head = self.cur.split().freeze();
            self.segs_len += head.len();
            self.segs.push(head);
        }
        self.segs_len += b.len();
        self.segs.push(b);
    }

    /// Every byte buffered, attached ones included.
    pub fn total_len(&self) -> usize {
        self.segs_len + self.cur.len()
    }

    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }

    /// Whether anything is attached (the writer then needs a vectored write).
    pub fn has_attached(&self) -> bool {
        !self.segs.is_empty()
    }

    /// Everything buffered as one list of segments, leaving the buffer empty (its spare capacity kept).
    pub fn take_segments(&mut self) -> Vec<Bytes> {
        let mut segs = std::mem::take(&mut self.segs);
        if !self.cur.is_empty() {
            segs.push(self.cur.split().freeze());
        }
        self.segs_len = 0;
        segs
    }

    /// The buffered bytes flattened (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.total_len());
        for s in &self.segs {
            v.extend_from_slice(s);
        }
        v.extend_from_slice(&self.cur);
        v
    }
}
