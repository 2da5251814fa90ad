//! What the channel layer, and the queues dispatching through it, see of a connection: its shared outbound
//! buffer, which every task encodes frames into (method replies from the connection task, deliveries from
//! whichever task dispatched a queue), and its identity, negotiated settings and counters. The connection
//! layer owns the socket, the reader task and the writer task that drains this buffer; it builds on this
//! module, never the other way round.
//!
//! When the buffer runs past a high-water mark, queues stop dispatching to the connection and register as
//! waiters; the writer wakes them once it has drained.

use crate::broker::Session;
use crate::error::AmqpError;
use crate::protocol::{self, OutBuf};
use crate::queue::Queue;
use crate::FastMap as HashMap;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

crate::counters! {
    /// What the reader received (bumped by the connection task only).
    pub struct RecvStats {
        recv_oct,
        recv_cnt,
    }
}

/// What a connection negotiated and said about itself, fixed once it is open.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client_properties: crate::protocol::fields::EncodedTable,
    pub mechanism: String,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    /// The client takes basic.cancel from the broker (capability `consumer_cancel_notify`).
    pub cancel_notify: bool,
}

/// What other tasks may see of a connection.
#[derive(Debug)]
pub struct ConnShared {
    pub id: u64,
    pub peer: SocketAddr,
    /// The broker's side of the socket.
    pub local: SocketAddr,
    /// When the connection was accepted, in Unix milliseconds.
    pub connected_at: u64,
    /// The TLS version, on a TLS connection ("tlsv1.3").
    pub tls: Option<&'static str>,
    pub outbound: Arc<Outbound>,
    pub recv: RecvStats,
    /// The open channels, for the management API.
    pub channels: Mutex<HashMap<u16, Arc<super::ChannelShared>>>,
    info: std::sync::OnceLock<ConnInfo>,
    frame_max: AtomicU32,
    cancel_notify: AtomicBool,
    /// Woken when another task asks the connection task to close the connection (with a reason, 320
    /// CONNECTION_FORCED) or a channel (a consumer timeout).
    kill: Notify,
    kill_reason: Mutex<Option<String>>,
    channel_errors: Mutex<Vec<(Weak<super::ChannelShared>, AmqpError)>>,
    vhost: std::sync::OnceLock<Arc<crate::broker::VHost>>,
    user: std::sync::OnceLock<Arc<str>>,
    /// RabbitMQ's connection name, "peer -> local", made once.
    label: Arc<str>,
}

impl ConnShared {
    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    /// The user this connection logged in as, once it has.
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(|u| &**u)
    }

    /// The user, shared (journal and firehose records name it).
    pub fn user_arc(&self) -> Option<&Arc<str>> {
        self.user.get()
    }

    /// The connection's name, shared.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The vhost this connection opened, once it has.
    pub fn open_vhost(&self) -> Option<&Arc<crate::broker::VHost>> {
        self.vhost.get()
    }

    /// What the connection negotiated, once it is open.
    pub fn info(&self) -> Option<&ConnInfo> {
        self.info.get()
    }

    /// RabbitMQ's connection name: "peer -> local".
    pub fn name(&self) -> String {
        self.label.to_string()
    }

    /// A fresh connection's shared half, before the handshake.
    pub fn new(id: u64, peer: SocketAddr, local: SocketAddr, connected_at: u64) -> ConnShared {
        ConnShared {
            id,
            peer,
            local,
            connected_at,
            tls: None,
            outbound: Arc::new(Outbound::new()),
            recv: RecvStats::default(),
            channels: Mutex::new(HashMap::default()),
            info: std::sync::OnceLock::new(),
            // Until tune-ok, frames are limited to the protocol minimum.
            frame_max: AtomicU32::new(protocol::FRAME_MIN_SIZE),
            cancel_notify: AtomicBool::new(false),
            kill: Notify::new(),
            kill_reason: Mutex::new(None),
            channel_errors: Mutex::new(Vec::new()),
            vhost: std::sync::OnceLock::new(),
            user: std::sync::OnceLock::new(),
            label: Arc::from(format!("{peer} -> {local}")),
        }
    }

    /// tune-ok fixed the frame size.
    pub fn set_frame_max(&self, frame_max: u32) {
        self.frame_max.store(frame_max, Ordering::Relaxed);
    }

    /// connection.open succeeded: what was negotiated, where, and as whom.
    pub fn set_open(&self, info: ConnInfo, vhost: &Arc<crate::broker::VHost>, user: &str) {
        self.cancel_notify
            .store(info.cancel_notify, Ordering::Relaxed);
        let _ = self.info.set(info);
        let _ = self.vhost.set(vhost.clone());
        let _ = self.user.set(Arc::from(user));
    }

    /// Resolves when the broker asked this connection to close ([`Session::force_close`]) or to close one
    /// of its channels ([`ConnShared::close_channel`]).
    pub async fn killed(&self) {
        self.kill.notified().await
    }

    /// Why the broker closed this connection, if it did.
    pub fn take_kill_reason(&self) -> Option<String> {
        self.kill_reason.lock().take()
    }

    /// Ask the connection task to close `channel` with `e` (from another task, such as a timer). Weak, so a
    /// request that arrives after the client closed the channel and opened another with its number does not
    /// close the new one.
    pub fn close_channel(&self, channel: Weak<super::ChannelShared>, e: AmqpError) {
        self.channel_errors.lock().push((channel, e));
        self.kill.notify_one();
    }

    /// The channel closes other tasks asked for.
    pub fn take_channel_errors(&self) -> Vec<(Weak<super::ChannelShared>, AmqpError)> {
        std::mem::take(&mut *self.channel_errors.lock())
    }

    pub fn cancel_notify(&self) -> bool {
        self.cancel_notify.load(Ordering::Relaxed)
    }
}

impl Session for ConnShared {
    fn id(&self) -> u64 {
        self.id
    }

    fn vhost(&self) -> Option<&str> {
        self.vhost.get().map(|v| &*v.name)
    }

    fn user(&self) -> Option<&str> {
        ConnShared::user(self)
    }

    fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    fn force_close(&self, reason: &str) {
        *self.kill_reason.lock() = Some(reason.to_string());
        self.kill.notify_one();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Past this many buffered bytes, dispatch to this connection pauses.
const HIGH_WATER: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Outbound {
    buf: Mutex<OutBuf>,
    /// Bytes buffered, written under `buf`'s lock. Relaxed is enough: a queue that saw the connection
    /// congested registers in `waiters` and checks again, and that mutex orders its second look after the
    /// writer's reset (the writer resets, then takes the `waiters` lock to wake them).
    buffered: AtomicUsize,
    notify: Notify,
    waiters: Mutex<Vec<Weak<Queue>>>,
    /// Woken when the writer has drained the buffer below the high-water mark (or stopped): the
    /// connection task stops reading a client that does not read what it is sent until then.
    drained: Notify,
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
        self.send_quiet(f);
        self.wake();
    }

    /// `send` without waking the writer: the caller will `wake` it once it has queued a batch, so that a
    /// dispatch round of hundreds of deliveries costs the writer one wake-up and one write, not one each.
    pub fn send_quiet(&self, f: impl FnOnce(&mut OutBuf)) {
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        let mut b = self.buf.lock();
        f(&mut b);
        self.buffered.store(b.total_len(), Ordering::Relaxed);
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn congested(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) > HIGH_WATER
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

    /// Negotiated heartbeat in seconds (0 = off).
    pub(crate) fn heartbeat(&self) -> u16 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Resolves when frames are buffered or the connection starts closing.
    pub(crate) async fn wait(&self) {
        self.notify.notified().await
    }

    /// The writer has stopped: drop what is buffered and every later frame.
    pub(crate) fn finish(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.closing.store(true, Ordering::SeqCst);
        {
            let mut b = self.buf.lock();
            b.clear();
            self.buffered.store(0, Ordering::Relaxed);
        }
        self.drained.notify_waiters();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Swap the buffered frames into `spare` (the writer's); false when nothing is buffered.
    pub(crate) fn take(&self, spare: &mut OutBuf) -> bool {
        let mut b = self.buf.lock();
        if b.is_empty() {
            return false;
        }
        std::mem::swap(&mut *b, spare);
        self.buffered.store(0, Ordering::Relaxed);
        true
    }

    /// Resolves once the buffer is below the high-water mark, or the writer has stopped.
    pub async fn drained(&self) {
        loop {
            let n = self.drained.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if !self.congested() || self.is_dead() {
                return;
            }
            n.await;
        }
    }

    /// Dispatch the queues that paused on this connection, and let its reader go on (the writer has
    /// drained it).
    pub(crate) fn wake_waiters(&self) {
        self.drained.notify_waiters();
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for q in waiters.iter().filter_map(Weak::upgrade) {
            q.dispatch();
        }
    }
}

impl Outbound {
    /// Bytes waiting to be written (RabbitMQ's send_pend).
    pub fn pending_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }
}
