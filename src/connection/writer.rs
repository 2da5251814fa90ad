//! The writer task: it swaps the connection's outbound buffer ([`crate::channel::link::Outbound`]) out and
//! writes it with a single syscall (`writev` when large bodies are attached by reference), paces heartbeats
//! when idle, and wakes the queues that paused on a congested connection once it has drained. It only holds
//! the buffer's lock for the swap, never across an `.await`.

use super::transport::WriteSide;
use crate::channel::link::Outbound;
use crate::protocol::{self, OutBuf};
use bytes::{Buf, Bytes};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A buffer grown past this is released after a write rather than kept.
const KEEP_CAPACITY: usize = 4 << 20;

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
