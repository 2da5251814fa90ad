//! One publisher connection: a writer loop sending pre-encoded messages in batches (one `write`, or one `writev`
//! for large bodies, per batch), limited by the confirm window and the rate, and a reader task on the same socket
//! counting confirms, returns and connection.blocked.

use crate::amqp::{self, io_error, Conn, Error, Result};
use crate::stats::{self, PubCounters};
use crate::wire::{self, PublishTemplate};
use crate::workload::Fatal;
use bytes::{Buf, BytesMut};
use std::collections::BTreeSet;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

pub struct PubPlan {
    /// One per target queue, used in rotation.
    pub templates: Vec<PublishTemplate>,
    pub confirm_window: u64,
    pub rate: f64,
    pub count: Option<u64>,
}

/// Write `n` chunks: `small[ranges[i]]` each followed by the shared `tail`, with as few writev calls as possible.
async fn write_chunks(
    wr: &mut OwnedWriteHalf,
    small: &[u8],
    ranges: &[(usize, usize)],
    tail: &[u8],
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(ranges.len() * 2);
    for &(a, b) in ranges {
        slices.push(IoSlice::new(&small[a..b]));
        if !tail.is_empty() {
            slices.push(IoSlice::new(tail));
        }
    }
    let mut s: &mut [IoSlice<'_>] = &mut slices;
    while !s.is_empty() {
        let n = wr.write_vectored(s).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut s, n);
    }
    Ok(())
}

/// Largest batch written at once, in bytes.
const BATCH_BYTES: usize = 128 * 1024;
const LARGE_BATCH_BYTES: usize = 1024 * 1024;
/// Bodies whose constant part is at least this long are written from the shared template with writev.
const VECTORED_FROM: usize = 16 * 1024;

/// One publisher connection: the writer loop, plus a reader task counting confirms.
pub async fn publish(
    conn: Conn,
    plan: PubPlan,
    c: Arc<PubCounters>,
    mut go: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    fatal: Fatal,
) -> Result<()> {
    let label = conn.label.clone();
    let frame_max = conn.frame_max;
    let (stream, rbuf) = conn.into_parts();
    let (rd, mut wr) = stream.into_split();
    let reader = {
        let (c, label) = (c.clone(), label.clone());
        tokio::spawn(async move {
            let r = publisher_reader(rd, rbuf, frame_max, &c, &label).await;
            c.reader_done.store(true, Ordering::Release);
            c.notify.notify_one();
            if let Err(e) = r {
                let _ = fatal.send(e);
            }
        })
    };
    if go.wait_for(|g| *g).await.is_err() {
        reader.abort();
        return Ok(());
    }

    let t0 = &plan.templates[0];
    let large = t0.tail.len() >= VECTORED_FROM;
    let batch_cap = if large {
        (LARGE_BATCH_BYTES / t0.wire_len()).clamp(1, 256)
    } else {
        (BATCH_BYTES / t0.wire_len()).clamp(1, 4096)
    } as u64;
    let tail = t0.tail.clone();
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH_BYTES + t0.wire_len());
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut seq = 0u64;
    let mut next = 0usize;
    let start = Instant::now();
    let start_tokio = tokio::time::Instant::now();
    let window = plan.confirm_window;
    // False once a write was cut short: the stream then ends mid-frame and cannot be closed politely.
    let mut clean = true;

    'run: loop {
        if *stop.borrow() {
            break;
        }
        let mut n = batch_cap;
        if let Some(limit) = plan.count {
            if seq >= limit {
                break;
            }
            n = n.min(limit - seq);
        }
        if window > 0 {
            loop {
                let outstanding = seq - c.confirmed.load(Ordering::Acquire);
                if outstanding < window {
                    n = n.min(window - outstanding);
                    break;
                }
                if c.reader_done.load(Ordering::Acquire) {
                    break 'run;
                }
                tokio::select! {
                    _ = c.notify.notified() => {}
                    _ = stop.changed() => break 'run,
                }
            }
        }
        if plan.rate > 0.0 {
            let due_at = start_tokio + Duration::from_secs_f64(seq as f64 / plan.rate);
            if due_at > tokio::time::Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due_at) => {}
                    _ = stop.changed() => break 'run,
                }
                continue;
            }
            let due = (start.elapsed().as_secs_f64() * plan.rate) as u64 + 1;
            n = n.min(due.saturating_sub(seq).max(1));
        }

        buf.clear();
        ranges.clear();
        let ts = stats::now_ns().to_be_bytes();
        for _ in 0..n {
            let t = &plan.templates[next];
            next += 1;
            if next == plan.templates.len() {
                next = 0;
            }
            let at = buf.len();
            buf.extend_from_slice(&t.head);
            if let Some(o) = t.ts_at {
                buf[at + o..at + o + 8].copy_from_slice(&ts);
            }
            if large {
                ranges.push((at, buf.len()));
            } else {
                buf.extend_from_slice(&t.tail);
            }
        }
        let written = if large {
            tokio::select! {
                r = write_chunks(&mut wr, &buf, &ranges, &tail) => r,
                _ = stop.changed() => { clean = false; break 'run }
            }
        } else {
            tokio::select! {
                r = wr.write_all(&buf) => r,
                _ = stop.changed() => { clean = false; break 'run }
            }
        };
        written.map_err(|e| io_error(&label, "write", e))?;
        seq += n;
        c.published.store(seq, Ordering::Relaxed);
        // Unthrottled, yield once per batch: a socket that always accepts would otherwise keep this task on its
        // worker for a whole coop budget (128 writes), and tokio polls the I/O driver only between tasks, so
        // the consumers' reads would wait behind it. (A rate-limited publisher sleeps anyway.)
        if plan.rate == 0.0 {
            tokio::task::yield_now().await;
        }
    }

    // A publisher that reached its count waits for its last confirms, so "done" means "all confirmed".
    if window > 0 && clean && !*stop.borrow() {
        while c.confirmed.load(Ordering::Acquire) < seq && !c.reader_done.load(Ordering::Acquire) {
            tokio::select! {
                _ = c.notify.notified() => {}
                _ = stop.changed() => break,
            }
        }
    }
    if !clean {
        reader.abort();
        return Ok(());
    }
    let mut close = Vec::new();
    wire::put_method(&mut close, 0, amqp::close_method());
    let closing = async {
        wr.write_all(&close).await.ok()?;
        reader.await.ok()
    };
    // The reader ends at close-ok; a broker that never answers is not worth failing the run for.
    let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
    Ok(())
}

/// Read confirms (basic.ack/nack), returns and flow control for one publisher until connection.close-ok.
async fn publisher_reader(
    mut rd: OwnedReadHalf,
    mut rbuf: BytesMut,
    frame_max: u32,
    c: &PubCounters,
    label: &str,
) -> Result<()> {
    // Every tag <= upto is confirmed; `singles` holds confirmed tags above it (out-of-order single acks).
    let mut upto = 0u64;
    let mut singles: BTreeSet<u64> = BTreeSet::new();
    let proto = |what: String| Error::Protocol {
        conn: label.to_string(),
        what,
    };
    loop {
        let mut pos = 0;
        let mut changed = false;
        loop {
            let (f, n) = match wire::split(&rbuf[pos..], frame_max) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => return Err(proto(e.to_string())),
            };
            pos += n;
            match f.method_id() {
                Some(id @ (wire::BASIC_ACK | wire::BASIC_NACK)) => {
                    let (tag, multiple) = wire::ack_fields(f.payload)
                        .ok_or_else(|| proto("short basic.ack".into()))?;
                    let before = upto + singles.len() as u64;
                    if multiple {
                        if tag > upto {
                            upto = tag;
                            singles = singles.split_off(&(upto + 1));
                        }
                    } else if tag == upto + 1 {
                        upto = tag;
                    } else if tag > upto {
                        singles.insert(tag);
                    }
                    while singles.remove(&(upto + 1)) {
                        upto += 1;
                    }
                    let after = upto + singles.len() as u64;
                    if id == wire::BASIC_NACK {
                        c.nacked.fetch_add(after - before, Ordering::Relaxed);
                    }
                    c.confirmed.store(after, Ordering::Release);
                    changed = true;
                }
                Some(wire::BASIC_RETURN) => {
                    c.returned.fetch_add(1, Ordering::Relaxed);
                }
                Some(wire::CONNECTION_BLOCKED) => c.blocked.store(true, Ordering::Relaxed),
                Some(wire::CONNECTION_UNBLOCKED) => c.blocked.store(false, Ordering::Relaxed),
                Some((10, 51)) => return Ok(()),
                Some(_) => {
                    if let Some(e) = amqp::close_error(label, &f) {
                        return Err(e);
                    }
                }
                None => {}
            }
        }
        rbuf.advance(pos);
        if changed {
            c.notify.notify_one();
        }
        wire::reserve_for_next(&mut rbuf);
        match rd.read_buf(&mut rbuf).await {
            Ok(0) => {
                return Err(io_error(
                    label,
                    "read",
                    std::io::ErrorKind::UnexpectedEof.into(),
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(io_error(label, "read", e)),
        }
    }
}
