//! One consumer connection: frames are cut out of the read buffer in place, deliveries counted, latency taken
//! from the timestamp in the first eight body bytes, and acks (every K deliveries) written once per read.

use crate::amqp::{self, io_error, Conn, Error, Result};
use crate::stats::{self, ConCounters};
use crate::wire;
use bytes::Buf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A read at least this big means the consumer is streaming, not waiting for single messages.
const BULK_READ: usize = 32 * 1024;

#[derive(Clone, Copy)]
pub struct ConPlan {
    pub autoack: bool,
    pub multiple_ack: u64,
    pub timestamps: bool,
}

enum Expect {
    Method,
    Header { tag: u64 },
    Body { tag: u64, size: u64, left: u64 },
}

/// One consumer connection: read, count, ack, until stopped.
pub async fn consume(
    conn: Conn,
    plan: ConPlan,
    c: Arc<ConCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let label = conn.label.clone();
    let frame_max = conn.frame_max;
    let (mut stream, mut rbuf) = conn.into_parts();
    let proto = |what: String| Error::Protocol {
        conn: label.clone(),
        what,
    };
    let mut expect = Expect::Method;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut lat: Vec<u64> = Vec::with_capacity(4096);
    let mut unacked = 0u64;
    let (mut consumed, mut bytes) = (0u64, 0u64);
    // Deliveries that arrived with consume-ok are already buffered: with a small prefetch they may be all the
    // broker sends until they are acked, so they are handled before the first read.
    let mut buffered = !rbuf.is_empty();
    loop {
        wire::reserve_for_next(&mut rbuf);
        let n = if std::mem::take(&mut buffered) {
            rbuf.len()
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                r = stream.read_buf(&mut rbuf) => r.map_err(|e| io_error(&label, "read", e))?,
            }
        };
        if n == 0 {
            return Err(io_error(
                &label,
                "read",
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let now = stats::now_ns();
        let mut pos = 0;
        loop {
            let (f, n) = match wire::split(&rbuf[pos..], frame_max) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => return Err(proto(e.to_string())),
            };
            pos += n;
            let done = match (&mut expect, f.kind) {
                (Expect::Method, wire::FRAME_METHOD) => {
                    if f.method_id() == Some(wire::BASIC_DELIVER) {
                        let tag = wire::deliver_tag(f.payload)
                            .ok_or_else(|| proto("short basic.deliver".into()))?;
                        expect = Expect::Header { tag };
                    } else if let Some(e) = amqp::close_error(&label, &f) {
                        return Err(e);
                    }
                    None
                }
                (Expect::Header { tag }, wire::FRAME_HEADER) => {
                    let size = wire::header_body_size(f.payload)
                        .ok_or_else(|| proto("short content header".into()))?;
                    if size == 0 {
                        Some((*tag, 0))
                    } else {
                        expect = Expect::Body {
                            tag: *tag,
                            size,
                            left: size,
                        };
                        None
                    }
                }
                (Expect::Body { tag, size, left }, wire::FRAME_BODY) => {
                    if plan.timestamps && left == size && f.payload.len() >= 8 {
                        let ts = u64::from_be_bytes(f.payload[..8].try_into().unwrap_or([0; 8]));
                        if ts > 0 && ts <= now {
                            lat.push(now - ts);
                        }
                    }
                    *left = left.saturating_sub(f.payload.len() as u64);
                    (*left == 0).then_some((*tag, *size))
                }
                (_, wire::FRAME_HEARTBEAT) => {
                    out.extend_from_slice(&[
                        wire::FRAME_HEARTBEAT,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        wire::FRAME_END,
                    ]);
                    None
                }
                (_, kind) => {
                    if let Some(e) = amqp::close_error(&label, &f) {
                        return Err(e);
                    }
                    return Err(proto(format!("unexpected frame type {kind} in a delivery")));
                }
            };
            if let Some((tag, size)) = done {
                expect = Expect::Method;
                consumed += 1;
                bytes += size;
                if !plan.autoack {
                    unacked += 1;
                    if unacked >= plan.multiple_ack {
                        wire::put_ack(&mut out, 1, tag, plan.multiple_ack > 1);
                        unacked = 0;
                    }
                }
            }
        }
        rbuf.advance(pos);
        c.consumed.store(consumed, Ordering::Relaxed);
        c.bytes.store(bytes, Ordering::Relaxed);
        if !lat.is_empty() {
            if let Ok(mut l) = c.latency.lock() {
                for &v in &lat {
                    l.total.record(v);
                    l.interval.record(v);
                }
            }
            lat.clear();
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| io_error(&label, "write", e))?;
            out.clear();
        }
        // As in the publisher: after a big read (more is likely waiting), let other tasks and the I/O driver run.
        if n >= BULK_READ {
            tokio::task::yield_now().await;
        }
    }
    // Close politely; deliveries still in flight are read and dropped until close-ok.
    let conn = Conn {
        stream,
        rbuf,
        frame_max,
        label,
    };
    let _ = conn.close().await;
    Ok(())
}
