//! The connection task's loop: read the socket into a growing buffer, cut and handle every complete frame
//! (waiting, when a topology reply must wait for durability, before the next one), flush confirms, stop
//! reading while a resource alarm blocks a publisher or while the client does not read what it is sent,
//! and enforce the handshake, heartbeat and close
//! timeouts. Socket timing stays on tokio's real clock.

use super::dispatch::Flow;
use super::transport::ReadSide;
use super::Connection;
use crate::broker::alarm;
use crate::error::{AmqpError, ReplyCode};
use crate::protocol::{self, split_frame};
use amq_protocol::protocol::{connection, AMQPClass};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Read buffer growth for ordinary traffic, and for connections whose frames are large.
const READ_CHUNK: usize = 64 * 1024;
const READ_CHUNK_BIG: usize = 1024 * 1024;
/// The handshake's reads: a client's start-ok is a few hundred bytes.
const READ_CHUNK_HANDSHAKE: usize = 1024;

/// A read at least this large suggests the peer has more queued: yield before the next one.
const YIELD_AFTER_BYTES: usize = 4096;

/// Make room for the next read, in chunks sized to the traffic: a frame that straddles two reads is copied
/// when the buffer grows, so connections carrying large frames read (and copy) in larger chunks. `small` (the
/// handshake) grows only by what the pending frame needs, so a connection that then sits idle holds a small
/// buffer rather than a mostly untouched 64 KiB one whose first page still counts towards RSS.
fn reserve_read(buf: &mut BytesMut, small: bool) {
    let pending = protocol::peek_frame_len(buf).unwrap_or(0);
    let need = pending.saturating_sub(buf.len());
    let (min_free, chunk) = if small {
        (256, READ_CHUNK_HANDSHAKE)
    } else if pending > READ_CHUNK / 4 {
        (4096, READ_CHUNK_BIG)
    } else {
        (4096, READ_CHUNK)
    };
    if buf.capacity() - buf.len() < need.max(min_free) {
        buf.reserve(need.max(chunk));
    }
}

impl Connection {
    pub(super) async fn run(&mut self, mut rd: ReadSide) {
        let handshake_deadline =
            Instant::now() + Duration::from_millis(self.broker.config.handshake_timeout_ms);
        // Small until traffic shows up: most connections sit idle after the handshake.
        let mut buf = BytesMut::with_capacity(READ_CHUNK_HANDSHAKE);
        let mut grown = false;
        let mut last_read = 0usize;
        // Frame handling stopped at a publish's content header because of an alarm.
        let mut held = false;
        while buf.len() < 8 {
            match tokio::time::timeout_at(handshake_deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::info!("handshake timeout before protocol header");
                    return;
                }
            }
        }
        let header = buf.split_to(8);
        let actions = self
            .machine
            .header(&header, self.broker.config.compat().is_4());
        if let Flow::Stop = self.act(actions) {
            return;
        }
        loop {
            // The publishes of this read reach the store's sync thread together (see `DeferWakes`).
            let mut defer = self.broker.store().map(|s| s.defer_wakes());
            // Frames already buffered (a client may pipeline the whole handshake in one write) go first.
            loop {
                let frame = match split_frame(&mut buf, self.shared.frame_max()) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        buf.clear();
                        if !self.machine.is_running() {
                            return;
                        }
                        if let Flow::Stop =
                            self.close_connection(AmqpError::frame_error(e.explanation()))
                        {
                            return;
                        }
                        break;
                    }
                };
                let content_header = frame.kind == protocol::FRAME_HEADER;
                if let Flow::Stop = self.handle_frame(frame) {
                    self.flush_confirms();
                    return;
                }
                while let Some(p) = self.pending.take() {
                    // Nothing may wait on the store's wake-ups across an await.
                    defer = None;
                    if !self.wait_pending(p).await {
                        return;
                    }
                }
                // As RabbitMQ does, a publisher meets a resource alarm at its content header: what follows
                // (the body, later frames) waits in the buffer until the alarm clears.
                if content_header && self.published && self.broker.alarms.active() != 0 {
                    held = true;
                    break;
                }
            }
            self.flush_confirms();
            drop(defer);
            if std::mem::take(&mut self.published)
                && self.machine.is_running()
                && self.broker.alarms.active() != 0
                && !Box::pin(self.wait_out_alarm()).await
            {
                return;
            }
            // Frames left in the buffer at a content header go before any new read (the alarm may have
            // cleared before we looked again).
            if std::mem::take(&mut held) {
                continue;
            }
            if self.shared.outbound.congested()
                && self.machine.is_running()
                && !Box::pin(self.wait_drained()).await
            {
                return;
            }
            // Let other connections run between large batches: a publisher whose socket always has data
            // would otherwise keep its worker until tokio's read budget runs out, starving the consumers (and
            // the acks) that drain the queues it fills. A small batch means the socket is drained; yielding
            // then would only delay the next frame (it showed in the latency tail at 10k msg/s).
            if std::mem::take(&mut last_read) >= YIELD_AFTER_BYTES {
                tokio::task::yield_now().await;
            }
            let deadline = if self.machine.is_handshaking() {
                Some(handshake_deadline)
            } else if self.machine.is_closing() {
                self.closing_deadline
            } else if self.heartbeat > 0 {
                // RabbitMQ gives up on a silent client after three heartbeat intervals.
                Some(Instant::now() + Duration::from_secs(self.heartbeat as u64 * 3))
            } else {
                None
            };
            let read = async {
                let read = async {
                    if !grown {
                        // Until the connection carries a stream of traffic, read on the small handshake
                        // buffer, so an idle connection never holds a large one (its first page would count
                        // towards RSS). Readiness can be left over from the last read, hence the try loop.
                        // A read that fills the buffer means more is waiting: switch to full chunks.
                        return rd.read_small(&mut buf, |b| reserve_read(b, true)).await;
                    }
                    reserve_read(&mut buf, false);
                    rd.read_buf(&mut buf).await.map(|n| (n, true))
                };
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, read).await.ok(),
                    None => Some(read.await),
                }
            };
            tokio::select! {
                r = read => match r {
                    Some(Ok((0, _))) | Some(Err(_)) => return,
                    Some(Ok((n, busy))) => {
                        grown |= busy;
                        last_read = n;
                        self.shared.recv.recv_oct.bump(n as u64);
                        self.shared.recv.recv_cnt.bump(1);
                    }
                    None => {
                        if self.machine.is_handshaking() {
                            tracing::info!("handshake timeout");
                        } else if self.machine.is_closing() {
                            tracing::debug!("no close-ok, or no socket close, in time");
                        } else {
                            tracing::info!(heartbeat = self.heartbeat, "missed heartbeats from client, closing");
                        }
                        return;
                    }
                },
                _ = self.shared.killed() => {
                    if let Flow::Stop = self.forced_close() {
                        return;
                    }
                }
            }
        }
    }

    /// Carry out what other tasks asked for: channel closes (consumer timeouts), then a connection close with
    /// 320 CONNECTION_FORCED and the reason given.
    fn forced_close(&mut self) -> Flow {
        for (ch, e) in self.shared.take_channel_errors() {
            if let Some(ch) = ch.upgrade() {
                self.close_channel_from_broker(&ch, e);
            }
        }
        match self.shared.take_kill_reason() {
            Some(reason) => {
                self.close_connection(AmqpError::new(ReplyCode::ConnectionForced, reason))
            }
            None => Flow::Continue,
        }
    }

    /// Wait for a command's change to be durable before its reply goes out (other input waits too, so
    /// replies keep their order). Returns false when the connection must stop.
    async fn wait_pending(&mut self, mut p: crate::channel::Pending) -> bool {
        use crate::channel::Wait;
        // Confirms of publishes before this command may be ready.
        self.flush_confirms();
        let wait = std::mem::replace(&mut p.wait, Wait::Durable(crate::broker::Ticket::Done));
        let wait = async {
            match wait {
                Wait::Durable(t) => t.wait().await,
                // A dropped sender (the queue went) just means: look again.
                Wait::Loaded(rx) => {
                    let _ = rx.await;
                    Ok(())
                }
            }
        };
        tokio::pin!(wait);
        loop {
            tokio::select! {
                outcome = &mut wait => {
                    self.finish_pending(p, outcome);
                    return true;
                }
                _ = self.shared.killed() => {
                    // A channel closed by a timer leaves the reply to wait; a closed connection drops it.
                    if let Some(go_on) = self.killed_while_waiting() {
                        return go_on;
                    }
                }
            }
        }
    }

    /// The client is not reading what it is sent (deliveries, get-oks, returns, confirms): stop reading from
    /// it until the writer has drained its buffer, so that TCP holds the client back and one client that
    /// never reads cannot grow the broker's memory. Returns false when the connection was killed meanwhile.
    async fn wait_drained(&mut self) -> bool {
        tracing::debug!(
            pending = self.shared.outbound.pending_bytes(),
            "client not reading; pausing reads"
        );
        loop {
            tokio::select! {
                _ = self.shared.outbound.drained() => return true,
                _ = self.shared.killed() => {
                    if let Some(go_on) = self.killed_while_waiting() {
                        return go_on;
                    }
                }
            }
        }
    }

    /// Another task asked for a close while the connection waited (for the writer, an alarm, a durable
    /// reply). `Some(false)`: stop now; `Some(true)`: the connection is closing, stop waiting; `None`: only
    /// channels were closed, keep waiting.
    fn killed_while_waiting(&mut self) -> Option<bool> {
        match self.forced_close() {
            Flow::Stop => Some(false),
            Flow::Continue if self.machine.is_closing() => Some(true),
            Flow::Continue => None,
        }
    }

    /// A resource alarm is on and this connection publishes: stop reading its socket until the alarm clears,
    /// as RabbitMQ does, with connection.blocked / unblocked for clients that asked. Returns false when the
    /// connection was killed meanwhile.
    async fn wait_out_alarm(&mut self) -> bool {
        let mut alarms = self.broker.alarms.subscribe();
        let bits = *alarms.borrow_and_update();
        if bits == 0 {
            return true;
        }
        tracing::info!(
            reason = alarm::reason(bits),
            "publisher blocked by a resource alarm"
        );
        let capable = self.machine.caps.blocked;
        if capable {
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                    reason: alarm::reason(bits).into(),
                })),
            );
        }
        loop {
            tokio::select! {
                changed = alarms.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                    if *alarms.borrow_and_update() == 0 {
                        break;
                    }
                }
                _ = self.shared.killed() => {
                    if let Some(go_on) = self.killed_while_waiting() {
                        return go_on;
                    }
                }
            }
        }
        tracing::info!("publisher unblocked");
        if capable {
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {})),
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header announcing a `size`-byte payload on channel 0.
    fn header(size: u32) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[1, 0, 0]);
        b.extend_from_slice(&size.to_be_bytes());
        b
    }

    #[test]
    fn handshake_reads_grow_only_to_the_pending_frame() {
        // A client whose start-ok (e.g. large client properties) is bigger than the handshake chunk.
        let mut buf = header(5000);
        reserve_read(&mut buf, true);
        assert!(buf.capacity() >= 5000 + protocol::FRAME_OVERHEAD);
        assert!(buf.capacity() < READ_CHUNK);

        let mut buf = BytesMut::new();
        reserve_read(&mut buf, true);
        assert!(buf.capacity() >= 256 && buf.capacity() < READ_CHUNK);
    }

    #[test]
    fn traffic_reads_take_chunks_sized_to_the_frames() {
        let mut buf = BytesMut::new();
        reserve_read(&mut buf, false);
        assert!(buf.capacity() >= READ_CHUNK);

        let mut buf = header(256 * 1024);
        reserve_read(&mut buf, false);
        assert!(buf.capacity() >= READ_CHUNK_BIG);
    }
}
