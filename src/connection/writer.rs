//! The writer task: it swaps the connection's outbound buffer ([`crate::channel::link::Outbound`]) out and
//! writes it with a single syscall (`writev` when large bodies are attached by reference), paces heartbeats
//! when idle, and wakes the queues that paused on a congested connection once it has drained. It only holds
//! the buffer's lock for the swap, never across an `.await`.

use super::transport::WriteSide;
use crate::channel::link::Outbound;
use crate::protocol::{self, OutBuf};
use bytes::{Buf, Bytes};
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A buffer grown past this is released after a write rather than kept.
const KEEP_CAPACITY: usize = KEPT_TOTAL / 2;
/// A buffer this small is always kept (a thousand connections keep 4 MiB of them at most, two each). A
/// consumer acking every tenth delivery at prefetch 100 is sent ten at a time, ~1.2 KB; at 4 KiB, a
/// thousand of them drained a backlog 2 MiB higher.
const KEEP_SMALL: usize = 2 << 10;
/// Grown buffers all writers together keep between writes. A busy connection keeps its grown buffer and
/// does not regrow it for every write, but a thousand consumers each keeping a burst's worth of deliveries
/// (two buffers of ~100 KiB each at prefetch 1,000) held a couple of hundred megabytes. Regrowing one
/// costs an allocation per write, which a thousand connections each writing a few kilobytes barely see.
const KEPT_TOTAL: usize = 2 << 20;
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// One writer's share of what writers keep: the capacity of the buffer it last kept (the one it swaps into
/// the connection's outbound side is about as large, so what is held is at most twice the total).
struct Kept {
    share: usize,
    pool: &'static AtomicUsize,
    limit: usize,
}

impl Kept {
    fn new() -> Kept {
        Kept {
            share: 0,
            pool: &KEPT,
            limit: KEPT_TOTAL,
        }
    }

    /// After a write: keep `spare` (cleared) if it is small or the pool has room for it, else let it go.
    fn keep(&mut self, spare: &mut OutBuf) {
        spare.clear();
        let cap = spare.capacity();
        let mine = self.share;
        if cap > KEEP_SMALL
            && cap <= KEEP_CAPACITY
            && self
                .pool
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                    let t = t - mine + cap;
                    (t <= self.limit).then_some(t)
                })
                .is_ok()
        {
            self.share = cap;
            return;
        }
        if cap > KEEP_SMALL {
            *spare = OutBuf::default();
        }
        self.pool.fetch_sub(mine, Ordering::Relaxed);
        self.share = 0;
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.share, Ordering::Relaxed);
    }
}

/// Write every segment in order with as few `writev` calls as the socket allows.
async fn write_segments(sock: &mut WriteSide, mut segs: Vec<Bytes>) -> std::io::Result<()> {
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

/// The writer task: drains the outbound buffer to the socket, sends heartbeats when idle.
pub async fn run_writer(mut sock: WriteSide, out: Arc<Outbound>) {
    let mut spare = OutBuf::default();
    let mut kept = Kept::new();
    let mut last_write = tokio::time::Instant::now();
    loop {
        if out.take(&mut spare) {
            out.sent.send_oct.bump(spare.total_len() as u64);
            out.sent.send_cnt.bump(1);
            let mut written = if spare.has_attached() {
                // Boxed: its iovec array would otherwise sit in every idle connection's writer task.
                Box::pin(write_segments(&mut sock, spare.take_segments())).await
            } else {
                sock.write_all(&spare).await
            };
            if written.is_ok() && matches!(sock, WriteSide::Tls(_)) {
                // rustls may hold the tail of the last record until flushed.
                written = sock.flush().await;
            }
            if let Err(e) = written {
                tracing::debug!(error = %e, "write failed");
                break;
            }
            last_write = tokio::time::Instant::now();
            kept.keep(&mut spare);
            if !out.congested() {
                out.wake_waiters();
            }
            continue;
        }
        if out.is_closing() {
            break;
        }
        let hb = out.heartbeat();
        if hb == 0 {
            out.wait().await;
        } else {
            let interval = Duration::from_millis(hb as u64 * 500);
            let deadline = last_write + interval;
            if tokio::time::timeout_at(deadline, out.wait()).await.is_err() {
                out.send(|b| protocol::write_heartbeat(b));
            }
        }
    }
    let _ = sock.shutdown().await;
    out.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grown(n: usize) -> OutBuf {
        let mut b = OutBuf::default();
        b.extend_from_slice(&vec![1u8; n]);
        b
    }

    #[test]
    fn writers_keep_grown_buffers_only_while_the_pool_has_room() {
        static POOL: AtomicUsize = AtomicUsize::new(0);
        let kept = |limit| Kept {
            share: 0,
            pool: &POOL,
            limit,
        };
        let (mut a, mut b) = (kept(150 << 10), kept(150 << 10));
        let mut buf_a = grown(100 << 10);
        a.keep(&mut buf_a);
        assert!(buf_a.is_empty() && buf_a.capacity() >= 100 << 10);
        let share_a = buf_a.capacity();
        assert_eq!(POOL.load(Ordering::Relaxed), share_a);
        // No room for a second one: it is let go, and the pool is unchanged.
        let mut buf_b = grown(100 << 10);
        b.keep(&mut buf_b);
        assert_eq!(buf_b.capacity(), 0);
        assert_eq!(POOL.load(Ordering::Relaxed), share_a);
        // A small buffer is always kept, outside the pool; keeping it returns the writer's old share.
        let mut small = grown(100);
        a.keep(&mut small);
        assert!(small.capacity() > 0);
        assert_eq!(POOL.load(Ordering::Relaxed), 0);
        b.keep(&mut grown(100 << 10));
        assert!(POOL.load(Ordering::Relaxed) >= 100 << 10);
        drop(b);
        assert_eq!(POOL.load(Ordering::Relaxed), 0);
        drop(a);
    }
}
