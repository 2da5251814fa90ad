//! One task per client connection. It reads the socket into a growing buffer, cuts complete frames (a frame
//! split across reads simply waits for more bytes), and drives the connection state machine: protocol header,
//! start/start-ok, tune/tune-ok, open, then channel traffic, and close in either direction. Replies and
//! deliveries are written through `Outbound` by a separate writer task, so this task never blocks on a slow
//! socket write. Channel errors close the channel; connection errors close the connection, each with
//! RabbitMQ's reply code and text.

pub mod handshake;
pub mod outbound;

use crate::broker::{alarm, Broker, User, VHost};
use crate::channel::methods::{Ctx, Settle};
use crate::channel::{Channel, ChannelShared, ChannelState};
use crate::error::AmqpError;
use crate::protocol::{self, split_frame, RawFrame};
use crate::queue::Queue;
use crate::FastMap as HashMap;
use amq_protocol::protocol::{access, basic, channel, connection, AMQPClass};
use bytes::BytesMut;
pub use outbound::Outbound;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Read buffer growth for ordinary traffic, and for connections whose frames are large.
const READ_CHUNK: usize = 64 * 1024;
const READ_CHUNK_BIG: usize = 1024 * 1024;
/// The handshake's reads: a client's start-ok is a few hundred bytes.
const READ_CHUNK_HANDSHAKE: usize = 1024;

/// Make room for the next read, in chunks sized to the traffic: a frame that straddles two reads is copied
/// when the buffer grows, so connections carrying large frames read (and copy) in larger chunks. `small` (the
/// handshake) grows only by what the pending frame needs, so a connection that then sits idle holds a small
/// buffer rather than a mostly untouched 64 KiB one whose first page still counts towards RSS.
fn reserve_read(buf: &mut BytesMut, small: bool) {
    let pending = if buf.len() >= 7 {
        u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize + protocol::FRAME_OVERHEAD
    } else {
        0
    };
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

/// A read at least this large suggests the peer has more queued: yield before the next one.
const YIELD_AFTER_BYTES: usize = 4096;

/// How long a connection the client closed waits for the client to close its socket (capped by the heartbeat).
const CLOSED_LINGER_SECS: u64 = 30;

/// What other tasks may see of a connection.
#[derive(Debug)]
pub struct ConnShared {
    pub id: u64,
    pub peer: SocketAddr,
    pub outbound: Arc<Outbound>,
    frame_max: AtomicU32,
    cancel_notify: AtomicBool,
    /// Set with a reason to make the connection close itself with 320 CONNECTION_FORCED.
    kill: Notify,
    kill_reason: Mutex<Option<String>>,
    vhost: std::sync::OnceLock<String>,
}

impl ConnShared {
    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    /// The vhost this connection opened, once it has.
    pub fn vhost(&self) -> Option<&str> {
        self.vhost.get().map(String::as_str)
    }

    pub fn cancel_notify(&self) -> bool {
        self.cancel_notify.load(Ordering::Relaxed)
    }

    /// Close this connection from the broker side with 320 CONNECTION_FORCED and `reason`.
    pub fn force_close(&self, reason: &str) {
        *self.kill_reason.lock() = Some(reason.to_string());
        self.kill.notify_one();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Running,
    /// The broker sent connection.close and waits for close-ok.
    Closing,
    /// The client closed and got close-ok; input is ignored until it closes the socket.
    Closed,
    Done,
}

pub struct Connection {
    broker: Arc<Broker>,
    shared: Arc<ConnShared>,
    state: State,
    user: Option<User>,
    user_name: Option<Arc<str>>,
    vhost: Option<Arc<VHost>>,
    /// Boxed: a map sized for a few channels would otherwise hold several empty Channel-sized slots.
    channels: HashMap<u16, Box<Channel>>,
    channel_max: u16,
    heartbeat: u16,
    auth_failure_close: bool,
    /// The client asked for connection.blocked / unblocked notifications.
    blocked_capable: bool,
    /// A basic.publish arrived in the current read batch (a resource alarm blocks only publishers).
    published: bool,
    exclusive_queues: Vec<Arc<Queue>>,
    confirm_dirty: Vec<u16>,
    closing_deadline: Option<Instant>,
}

/// Serve one accepted TCP connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let outbound = Arc::new(Outbound::new());
    let id = broker.next_connection_id();
    let shared = Arc::new(ConnShared {
        id,
        peer,
        outbound: outbound.clone(),
        // Until tune-ok, frames are limited to the protocol minimum.
        frame_max: AtomicU32::new(protocol::FRAME_MIN_SIZE),
        cancel_notify: AtomicBool::new(false),
        kill: Notify::new(),
        kill_reason: Mutex::new(None),
        vhost: std::sync::OnceLock::new(),
    });
    broker.register_connection(shared.clone());
    let writer = tokio::spawn(outbound::run_writer(wr, outbound.clone()));
    let mut conn = Connection {
        channel_max: broker.config.channel_max,
        heartbeat: broker.config.heartbeat,
        broker: broker.clone(),
        shared: shared.clone(),
        state: State::AwaitStartOk,
        user: None,
        user_name: None,
        vhost: None,
        channels: HashMap::default(),
        auth_failure_close: false,
        blocked_capable: false,
        published: false,
        exclusive_queues: Vec::new(),
        confirm_dirty: Vec::new(),
        closing_deadline: None,
    };
    let span = tracing::info_span!("connection", conn = id, peer = %peer);
    let _enter = span.enter();
    drop(_enter);
    {
        use tracing::Instrument;
        conn.run(rd).instrument(span).await;
    }
    conn.cleanup();
    broker.unregister_connection(id);
    outbound.close();
    let _ = writer.await;
}

/// The outcome of handling input: keep going, or stop reading (the writer flushes and closes the socket).
enum Flow {
    Continue,
    Stop,
}

impl Connection {
    async fn run(&mut self, mut rd: OwnedReadHalf) {
        let handshake_deadline =
            Instant::now() + Duration::from_millis(self.broker.config.handshake_timeout_ms);
        // Small until traffic shows up: most connections sit idle after the handshake.
        let mut buf = BytesMut::with_capacity(READ_CHUNK_HANDSHAKE);
        let mut grown = false;
        let mut last_read = 0usize;
        // Protocol header.
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
        if !handshake::header_ok(&header) {
            tracing::info!(header = ?&header[..], "bad protocol header");
            self.shared
                .outbound
                .send(|b| b.extend_from_slice(protocol::PROTOCOL_HEADER));
            return;
        }
        self.shared.outbound.send(|b| handshake::write_start(b));
        tracing::debug!("sent connection.start");
        loop {
            // Frames already buffered (a client may pipeline the whole handshake in one write) go first.
            loop {
                let frame = match split_frame(&mut buf, self.shared.frame_max()) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        buf.clear();
                        if self.state != State::Running {
                            return;
                        }
                        self.close_connection(AmqpError::frame_error(e.explanation()));
                        break;
                    }
                };
                if let Flow::Stop = self.handle_frame(frame) {
                    self.flush_confirms();
                    return;
                }
            }
            self.flush_confirms();
            if self.state == State::Done {
                return;
            }
            if std::mem::take(&mut self.published)
                && self.state == State::Running
                && self.broker.alarms.active() != 0
                && !Box::pin(self.wait_out_alarm()).await
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
            let deadline = match self.state {
                State::AwaitStartOk | State::AwaitTuneOk | State::AwaitOpen => {
                    Some(handshake_deadline)
                }
                State::Closing | State::Closed => self.closing_deadline,
                State::Running if self.heartbeat > 0 => {
                    Some(Instant::now() + Duration::from_secs(self.heartbeat as u64 * 2))
                }
                _ => None,
            };
            let read = async {
                let read = async {
                    if !grown {
                        // Until the connection carries a stream of traffic, read on the small handshake
                        // buffer, so an idle connection never holds a large one (its first page would count
                        // towards RSS). Readiness can be left over from the last read, hence the try loop.
                        loop {
                            rd.readable().await?;
                            reserve_read(&mut buf, true);
                            let free = buf.capacity() - buf.len();
                            match rd.try_read_buf(&mut buf) {
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                // A read that fills the buffer means more is waiting: switch to full chunks.
                                r => return r.map(|n| (n, n == free)),
                            }
                        }
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
                    }
                    None => {
                        match self.state {
                            State::Running => tracing::info!(heartbeat = self.heartbeat, "missed heartbeats from client, closing"),
                            State::Closing => tracing::debug!("no close-ok in time"),
                            State::Closed => tracing::debug!("client did not close its socket in time"),
                            _ => tracing::info!("handshake timeout"),
                        }
                        return;
                    }
                },
                _ = self.shared.kill.notified() => {
                    let reason = self.shared.kill_reason.lock().take().unwrap_or_default();
                    self.close_connection(AmqpError::new(crate::error::ReplyCode::ConnectionForced, reason));
                }
            }
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
        if self.blocked_capable {
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
                _ = self.shared.kill.notified() => {
                    let reason = self.shared.kill_reason.lock().take().unwrap_or_default();
                    self.close_connection(AmqpError::new(crate::error::ReplyCode::ConnectionForced, reason));
                    return self.state != State::Done;
                }
            }
        }
        tracing::info!("publisher unblocked");
        if self.blocked_capable {
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {})),
            );
        }
        true
    }

    fn flush_confirms(&mut self) {
        for id in self.confirm_dirty.drain(..) {
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.flush_confirms();
            }
        }
    }

    fn handle_frame(&mut self, f: RawFrame) -> Flow {
        match self.state {
            State::AwaitStartOk | State::AwaitTuneOk | State::AwaitOpen => self.handshake_frame(f),
            State::Closing => {
                // Only close / close-ok matter now.
                if f.kind == protocol::FRAME_METHOD && f.channel == 0 {
                    if let Ok((_, AMQPClass::Connection(m))) =
                        amq_protocol::protocol::parse_class(&f.payload[..])
                    {
                        match m {
                            connection::AMQPMethod::CloseOk(_) => {
                                self.state = State::Done;
                                return Flow::Stop;
                            }
                            connection::AMQPMethod::Close(_) => {
                                self.send_method(
                                    0,
                                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                        connection::CloseOk {},
                                    )),
                                );
                                self.state = State::Done;
                                return Flow::Stop;
                            }
                            _ => {}
                        }
                    }
                }
                Flow::Continue
            }
            State::Running => match self.running_frame(f) {
                Ok(()) => {
                    if self.state == State::Done {
                        Flow::Stop
                    } else {
                        Flow::Continue
                    }
                }
                Err(e) => {
                    self.close_connection(e);
                    Flow::Continue
                }
            },
            State::Closed => Flow::Continue,
            State::Done => Flow::Stop,
        }
    }

    fn send_method(&self, channel: u16, m: AMQPClass) {
        self.shared
            .outbound
            .send(|b| protocol::write_method(b, channel, m));
    }

    /// Close the connection from the broker side with a hard error.
    fn close_connection(&mut self, e: AmqpError) {
        if matches!(self.state, State::Closing | State::Closed | State::Done) {
            return;
        }
        tracing::warn!(code = e.code.code(), text = %e.reply_text(), class = e.class_id, method = e.method_id, "closing connection");
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: e.code.code(),
                reply_text: e.reply_text().as_str().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        self.cleanup();
        self.state = State::Closing;
        let wait = if self.heartbeat > 0 {
            (self.heartbeat as u64).min(30)
        } else {
            30
        };
        self.closing_deadline = Some(Instant::now() + Duration::from_secs(wait));
    }

    /// Close one channel from the broker side with a soft error.
    fn close_channel(&mut self, id: u16, e: AmqpError) {
        tracing::info!(channel = id, code = e.code.code(), text = %e.reply_text(), "closing channel");
        let vhost = self.vhost.clone();
        if let Some(ch) = self.channels.get_mut(&id) {
            if let Some(v) = &vhost {
                Self::cleanup_channel(ch, v);
            }
            ch.state = ChannelState::Closing;
        }
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: e.code.code(),
                reply_text: e.reply_text().as_str().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
    }

    /// Release what a channel holds: its consumers (auto-deleting queues that lose their last one) and its
    /// unacknowledged messages, which go back to their queues.
    fn cleanup_channel(ch: &mut Channel, vhost: &Arc<VHost>) {
        ch.shared.mark_closed();
        for c in ch.shared.take_consumers() {
            if c.queue.remove_consumer(&c) {
                vhost.remove_queue(&c.queue);
            }
        }
        let entries = ch.shared.take_all();
        ch.settle(entries, Settle::Requeue);
        ch.publish = None;
        ch.tx = None;
        if let Some(r) = ch.reply.take() {
            vhost.unregister_reply(&r.name);
        }
    }

    /// Everything a finished connection must give back.
    fn cleanup(&mut self) {
        let Some(vhost) = self.vhost.clone() else {
            return;
        };
        for (_, mut ch) in self.channels.drain() {
            Self::cleanup_channel(&mut ch, &vhost);
        }
        for q in std::mem::take(&mut self.exclusive_queues) {
            vhost.remove_queue(&q);
        }
    }

    fn running_frame(&mut self, f: RawFrame) -> Result<(), AmqpError> {
        match f.kind {
            protocol::FRAME_METHOD => {
                // amq-protocol drops basic.qos prefetch_size, which RabbitMQ refuses when non-zero.
                if f.payload.len() >= 8 && f.payload[..4] == [0, 60, 0, 10] {
                    let size = u32::from_be_bytes([
                        f.payload[4],
                        f.payload[5],
                        f.payload[6],
                        f.payload[7],
                    ]);
                    if size != 0 && f.channel != 0 && self.channels.contains_key(&f.channel) {
                        return Err(AmqpError::not_implemented(format!(
                            "prefetch_size!=0 ({size})"
                        ))
                        .on(60, 10));
                    }
                }
                let parsed = match protocol::parse_publish(&f.payload) {
                    Some(p) => {
                        self.published = true;
                        Ok(AMQPClass::Basic(basic::AMQPMethod::Publish(p)))
                    }
                    None => parse_method(&f.payload),
                };
                let method = match parsed {
                    Ok(m) => m,
                    Err(None) => {
                        // RabbitMQ drops the connection without a close on an unknown method.
                        tracing::warn!("unknown method, dropping connection");
                        self.cleanup();
                        self.state = State::Done;
                        return Ok(());
                    }
                    Err(Some(e)) => return Err(e),
                };
                if f.channel == 0 {
                    self.connection_method(method)
                } else {
                    self.channel_method(f.channel, method)
                }
            }
            protocol::FRAME_HEADER | protocol::FRAME_BODY if f.channel == 0 => {
                Err(AmqpError::unexpected_frame(format!(
                    "type {}, all octets = {}",
                    f.kind,
                    protocol::erlang_binary(&f.payload)
                )))
            }
            protocol::FRAME_HEADER | protocol::FRAME_BODY => self.channel_content(f),
            protocol::FRAME_HEARTBEAT if !f.payload.is_empty() => {
                Err(AmqpError::frame_error(format!(
                    "type 8, all octets = {}: unknown_frame",
                    protocol::erlang_binary(&f.payload)
                )))
            }
            protocol::FRAME_HEARTBEAT => {
                if f.channel != 0 {
                    return Err(AmqpError::unexpected_frame(format!(
                        "type 8, all octets = {}",
                        protocol::erlang_binary(&f.payload)
                    )));
                }
                Ok(())
            }
            kind => Err(AmqpError::frame_error(format!(
                "type {kind}, all octets = {}: unknown_frame",
                protocol::erlang_binary(&f.payload)
            ))),
        }
    }

    fn connection_method(&mut self, m: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "client closed connection");
                self.cleanup();
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                // Like RabbitMQ, leave closing the socket to the client (within a grace period): closing it
                // first can turn a client's racing second close into a reset.
                self.state = State::Closed;
                let linger = match self.heartbeat {
                    0 => CLOSED_LINGER_SECS,
                    hb => (hb as u64).min(CLOSED_LINGER_SECS),
                };
                self.closing_deadline = Some(Instant::now() + Duration::from_secs(linger));
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                        connection::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::Blocked(_))
            | AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => Ok(()),
            _ => Err(
                AmqpError::channel_error("unexpected method in connection state running")
                    .on(class_id, method_id),
            ),
        }
    }

    fn channel_method(&mut self, id: u16, m: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        let Some(ch) = self.channels.get_mut(&id) else {
            if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = m {
                return self.open_channel(id);
            }
            return Err(AmqpError::channel_error("expected 'channel.open'").on(class_id, method_id));
        };
        if ch.state == ChannelState::Closing {
            match m {
                AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                    return Err(AmqpError::channel_error("second 'channel.open' seen").on(20, 10));
                }
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                    self.channels.remove(&id);
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                }
                _ => {}
            }
            return Ok(());
        }
        if ch.wedged {
            return Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )
            .on(60, 40));
        }
        if let Some(p) = &ch.publish {
            let text = if p.header.is_none() {
                "expected content header for class 60, got non content header frame instead"
            } else {
                "expected content body, got non content body frame instead"
            };
            return Err(AmqpError::unexpected_frame(text).on(60, 40));
        }
        let result = self.dispatch_channel_method(id, m);
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = e.on(class_id, method_id);
                if e.is_hard() {
                    Err(e)
                } else {
                    self.close_channel(id, e);
                    Ok(())
                }
            }
        }
    }

    fn open_channel(&mut self, id: u16) -> Result<(), AmqpError> {
        if self.channels.len() >= self.channel_max as usize {
            return Err(AmqpError::not_allowed(format!(
                "number of channels opened ({}) has reached the negotiated channel_max ({})",
                self.channels.len(),
                self.channel_max
            )));
        }
        let shared = Arc::new(ChannelShared::new(id, self.shared.clone()));
        self.channels.insert(id, Box::new(Channel::new(shared)));
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
        );
        tracing::debug!(channel = id, "channel opened");
        Ok(())
    }

    /// The vhost and user name a channel method works with (cheap clones: both are shared).
    fn session(&self) -> Result<(Arc<VHost>, Arc<str>), AmqpError> {
        match (&self.vhost, &self.user_name) {
            (Some(v), Some(u)) => Ok((v.clone(), u.clone())),
            _ => Err(AmqpError::internal_error("no vhost")),
        }
    }

    fn dispatch_channel_method(&mut self, id: u16, m: AMQPClass) -> Result<(), AmqpError> {
        let (vhost, user) = self.session()?;
        let Some(ch) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let mut ctx = Ctx {
            broker: &self.broker,
            vhost: &vhost,
            conn: &self.shared,
            user: &user,
            exclusive_queues: &mut self.exclusive_queues,
        };
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                Self::cleanup_channel(ch, &vhost);
                self.channels.remove(&id);
                self.send_method(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => Ok(()),
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.send_method(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.send_method(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(m) => ch.exchange_method(&mut ctx, m),
            AMQPClass::Queue(m) => ch.queue_method(&mut ctx, m),
            AMQPClass::Basic(m) => {
                let is_publish = matches!(m, basic::AMQPMethod::Publish(_));
                let r = ch.basic_method(&mut ctx, m);
                if is_publish && ch.confirm {
                    self.confirm_dirty.push(id);
                }
                r
            }
            AMQPClass::Confirm(m) => ch.confirm_method(&mut ctx, m),
            AMQPClass::Tx(m) => ch.tx_method(&mut ctx, m),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn channel_content(&mut self, f: RawFrame) -> Result<(), AmqpError> {
        let (vhost, user) = self.session()?;
        let id = f.channel;
        let Some(ch) = self.channels.get_mut(&id) else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        if ch.state == ChannelState::Closing || ch.wedged {
            return Ok(());
        }
        let Some(pending) = &ch.publish else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        if f.kind == protocol::FRAME_HEADER && pending.header.is_some() {
            return Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )
            .on(60, 40));
        }
        if f.kind == protocol::FRAME_BODY && pending.header.is_none() {
            return Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            )
            .on(60, 40));
        }
        if f.kind == protocol::FRAME_HEADER {
            let class = f
                .payload
                .get(0..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            if class != 60 {
                return Err(AmqpError::unexpected_frame(format!(
                    "expected content header for class 60, got one for class {class} instead"
                ))
                .on(60, 40));
            }
        }
        let mut ctx = Ctx {
            broker: &self.broker,
            vhost: &vhost,
            conn: &self.shared,
            user: &user,
            exclusive_queues: &mut self.exclusive_queues,
        };
        let complete = if f.kind == protocol::FRAME_HEADER {
            ch.content_header(&ctx, f.payload)
        } else {
            ch.content_body(f.payload)
        };
        let result = match complete {
            Ok(true) => ch.finish_publish(&mut ctx),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if ch.confirm {
            self.confirm_dirty.push(id);
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = e.on(60, 40);
                if e.is_hard() {
                    Err(e)
                } else {
                    self.close_channel(id, e);
                    Ok(())
                }
            }
        }
    }
}

/// Decode a method frame payload with amq-protocol. `Err(None)` is an unknown class or method.
fn parse_method(payload: &[u8]) -> Result<AMQPClass, Option<AmqpError>> {
    match amq_protocol::protocol::parse_class(payload) {
        Ok((_, m)) => Ok(m),
        Err(_) => {
            let class_id = payload
                .get(0..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let method_id = payload
                .get(2..4)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            if handshake::known_method(class_id, method_id) {
                let args = payload.get(4..).unwrap_or_default();
                Err(Some(
                    AmqpError::frame_error(format!(
                        "cannot decode {}",
                        protocol::erlang_binary(args)
                    ))
                    .on(class_id, method_id),
                ))
            } else {
                Err(None)
            }
        }
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
