//! The outbound side of a connection: one buffer that every task encodes frames into (method replies from the
//! connection task, deliveries from whichever task dispatched a queue), and one writer task that swaps it out
//! and writes it with a single syscall (`writev` when large bodies are attached by reference). Nothing holds a lock across an `.await`; the writer only holds the lock
//! for the swap. When the buffer runs past a high-water mark, queues stop dispatching to this connection and
//! register as waiters; the writer wakes them once it has drained.

use crate::protocol::{self, OutBuf};
use crate::queue::Queue;
use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Past this many buffered bytes, dispatch to this connection pauses.
const HIGH_WATER: usize = 1 << 20;
/// A buffer grown past this is released after a write rather than kept.
const KEEP_CAPACITY: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Outbound {
    buf: Mutex<OutBuf>,
    buffered: AtomicUsize,
    notify: Notify,
    waiters: Mutex<Vec<Weak<Queue>>>,
    /// Set once the connection is finished: the writer flushes what is buffered, then shuts the socket.
    closing: AtomicBool,
    /// Set when the writer has stopped; later frames are dropped instead of piling up.
    dead: AtomicBool,
    /// Negotiated heartbeat in seconds (0 = off), read by the writer to pace heartbeats.
    heartbeat: AtomicU16,
    /// Bytes and writes to the socket (bumped by the writer task only).
    pub sent: SendStats,
}

crate::counters! {
    /// What the writer sent.
    pub struct SendStats {
        send_oct,
        send_cnt,
    }
}

impl Outbound {
    pub fn new() -> Outbound {
        Outbound {
            // Small to start: idle connections are common; a busy one grows its buffers on demand.
            buf: Mutex::new(OutBuf::default()),
            ..Default::default()
        }
    }

    /// Encode frames into the outbound buffer and wake the writer.
    #[inline]
    pub fn send(&self, f: impl FnOnce(&mut OutBuf)) {
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut b = self.buf.lock();
            f(&mut b);
            self.buffered.store(b.total_len(), Ordering::SeqCst);
        }
        self.notify.notify_one();
    }

    pub fn congested(&self) -> bool {
        self.buffered.load(Ordering::SeqCst) > HIGH_WATER
    }

    /// Ask to be dispatched again once this connection drains.
    pub fn add_waiter(&self, q: &Arc<Queue>) {
        let mut w = self.waiters.lock();
        if !w.iter().any(|x| x.as_ptr() == Arc::as_ptr(q)) {
            w.push(Arc::downgrade(q));
        }
    }

    pub fn set_heartbeat(&self, secs: u16) {
        self.heartbeat.store(secs, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Flush what is buffered, then close the socket.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn take(&self, spare: &mut OutBuf) -> bool {
        let mut b = self.buf.lock();
        if b.is_empty() {
            return false;
        }
        std::mem::swap(&mut *b, spare);
        self.buffered.store(0, Ordering::SeqCst);
        true
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for q in waiters.iter().filter_map(Weak::upgrade) {
            q.dispatch();
        }
    }
}

/// Write every segment in order with as few `writev` calls as the socket allows.
async fn write_segments(sock: &mut OwnedWriteHalf, mut segs: Vec<Bytes>) -> std::io::Result<()> {
    // Linux accepts up to 1024 iovecs per call; a smaller batch keeps the slice array on the stack.
    const BATCH: usize = 64;
    let mut first = 0;
    while first < segs.len() {
        let slices: smallvec::SmallVec<[IoSlice<'_>; BATCH]> = segs[first..]
            .iter()
            .take(BATCH)
            .map(|s| IoSlice::new(s))
            .collect();
        let mut n = sock.write_vectored(&slices).await?;
        drop(slices);
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && first < segs.len() {
            let len = segs[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                segs[first].advance(n);
                n = 0;
            }
        }
        while first < segs.len() && segs[first].is_empty() {
            first += 1;
        }
    }
    Ok(())
}

impl Outbound {
    /// Bytes waiting to be written (RabbitMQ's send_pend).
    pub fn pending_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}

/// The writer task: drains the outbound buffer to the socket, sends heartbeats when idle.
pub async fn run_writer(mut sock: OwnedWriteHalf, out: Arc<Outbound>) {
    let mut spare = OutBuf::default();
    let mut last_write = tokio::time::Instant::now();
    loop {
        if out.take(&mut spare) {
            out.sent.send_oct.bump(spare.total_len() as u64);
            out.sent.send_cnt.bump(1);
            let written = if spare.has_attached() {
                // Boxed: its iovec array would otherwise sit in every idle connection's writer task.
                Box::pin(write_segments(&mut sock, spare.take_segments())).await
            } else {
                sock.write_all(&spare).await
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, "write failed");
                break;
            }
            last_write = tokio::time::Instant::now();
            spare.clear();
            if spare.capacity() > KEEP_CAPACITY {
                spare = OutBuf::default();
            }
            if !out.congested() {
                out.wake_waiters();
            }
            continue;
        }
        if out.is_closing() {
            break;
        }
        let hb = out.heartbeat.load(Ordering::Relaxed);
        if hb == 0 {
            out.notify.notified().await;
        } else {
            let interval = Duration::from_millis(hb as u64 * 500);
            let deadline = last_write + interval;
            if tokio::time::timeout_at(deadline, out.notify.notified())
                .await
                .is_err()
            {
                out.send(|b| protocol::write_heartbeat(b));
            }
        }
    }
    let _ = sock.shutdown().await;
    out.dead.store(true, Ordering::Relaxed);
    out.closing.store(true, Ordering::SeqCst);
    let mut b = out.buf.lock();
    b.clear();
    out.buffered.store(0, Ordering::SeqCst);
}
