//! One task per client connection. [`reader`] reads the socket into a growing buffer and cuts complete frames
//! (a frame split across reads simply waits for more bytes); [`dispatch`] feeds them to the connection
//! [`lifecycle`] machine (handshake and close) and to the channels; [`outbound`] is the writer task that
//! replies and deliveries go through, so this task never blocks on a slow socket write. Channel errors close
//! the channel; connection errors close the connection, each with RabbitMQ's reply code and text.

mod dispatch;
pub mod handshake;
pub mod lifecycle;
pub mod outbound;
mod reader;

use crate::broker::{Broker, Session, User, VHost};
use crate::channel::{Channel, Pending};
use crate::error::AmqpError;
use crate::protocol;
use crate::queue::Queue;
use crate::FastMap as HashMap;
pub use outbound::Outbound;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

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
    pub client_properties: amq_protocol::types::FieldTable,
    pub mechanism: String,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
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
    pub outbound: Arc<Outbound>,
    pub recv: RecvStats,
    /// The open channels, for the management API.
    pub channels: Mutex<HashMap<u16, Arc<crate::channel::ChannelShared>>>,
    info: std::sync::OnceLock<ConnInfo>,
    frame_max: AtomicU32,
    cancel_notify: AtomicBool,
    /// Set with a reason to make the connection close itself with 320 CONNECTION_FORCED.
    kill: Notify,
    kill_reason: Mutex<Option<String>>,
    vhost: std::sync::OnceLock<String>,
    user: std::sync::OnceLock<String>,
}

impl ConnShared {
    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    /// The user this connection logged in as, once it has.
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(String::as_str)
    }

    /// What the connection negotiated, once it is open.
    pub fn info(&self) -> Option<&ConnInfo> {
        self.info.get()
    }

    /// RabbitMQ's connection name: "peer -> local".
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
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
        self.vhost.get().map(String::as_str)
    }

    fn force_close(&self, reason: &str) {
        *self.kill_reason.lock() = Some(reason.to_string());
        self.kill.notify_one();
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The running connection's session: who, where, and what was negotiated.
struct Open {
    user: Arc<str>,
    vhost: Arc<VHost>,
}

pub struct Connection {
    broker: Arc<Broker>,
    shared: Arc<ConnShared>,
    machine: lifecycle::Machine,
    open: Option<Open>,
    /// Negotiated in tune-ok.
    heartbeat: u16,
    channel_max: u16,
    /// Boxed: a map sized for a few channels would otherwise hold several empty Channel-sized slots.
    channels: HashMap<u16, Box<Channel>>,
    /// A basic.publish arrived in the current read batch (a resource alarm blocks only publishers).
    published: bool,
    exclusive_queues: Vec<Arc<Queue>>,
    confirm_dirty: Vec<u16>,
    /// A reply waiting for a command to be durable: no further frame is handled until it resolves.
    pending: Option<Pending>,
    closing_deadline: Option<Instant>,
}

/// Serve one accepted TCP connection until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let (rd, wr) = stream.into_split();
    let outbound = Arc::new(Outbound::new());
    let id = broker.next_connection_id();
    let shared = Arc::new(ConnShared {
        id,
        peer,
        local,
        connected_at: broker.timers.wall_ms(),
        outbound: outbound.clone(),
        recv: RecvStats::default(),
        channels: Mutex::new(HashMap::default()),
        info: std::sync::OnceLock::new(),
        // Until tune-ok, frames are limited to the protocol minimum.
        frame_max: AtomicU32::new(protocol::FRAME_MIN_SIZE),
        cancel_notify: AtomicBool::new(false),
        kill: Notify::new(),
        kill_reason: Mutex::new(None),
        vhost: std::sync::OnceLock::new(),
        user: std::sync::OnceLock::new(),
    });
    broker.register_connection(shared.clone());
    broker.churn.connection_created.add(1);
    let writer = tokio::spawn(outbound::run_writer(wr, outbound.clone()));
    let mut conn = Connection {
        heartbeat: broker.config.heartbeat,
        channel_max: broker.config.channel_max,
        broker: broker.clone(),
        shared: shared.clone(),
        machine: lifecycle::Machine::default(),
        open: None,
        channels: HashMap::default(),
        published: false,
        exclusive_queues: Vec::new(),
        confirm_dirty: Vec::new(),
        pending: None,
        closing_deadline: None,
    };
    let span = tracing::info_span!("connection", conn = id, peer = %peer);
    {
        use tracing::Instrument;
        conn.run(rd).instrument(span).await;
    }
    conn.release();
    broker.unregister_connection(id);
    broker.churn.connection_closed.add(1);
    outbound.close();
    let _ = writer.await;
    if let Some(v) = conn.open.as_ref().map(|o| &o.vhost) {
        v.totals.recv_oct.add(shared.recv.recv_oct.get());
        v.totals.send_oct.add(outbound.sent.send_oct.get());
    }
}

/// The broker as the lifecycle machine sees it.
struct BrokerEnv<'a> {
    broker: &'a Broker,
    peer: SocketAddr,
}

impl lifecycle::Env for BrokerEnv<'_> {
    fn config(&self) -> &crate::Config {
        &self.broker.config
    }

    fn authenticate(&self, mechanism: &str, user: &str, pass: &str) -> Result<User, String> {
        let Some(account) = self.broker.authenticate(user, pass) else {
            return Err(format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ));
        };
        if self.broker.config.loopback_users.iter().any(|u| u == user)
            && !self.peer.ip().is_loopback()
        {
            return Err(format!("user '{user}' can only connect via localhost"));
        }
        Ok(account)
    }

    fn open_vhost(&self, user: &User, name: &str) -> Result<Arc<VHost>, AmqpError> {
        let Some(vhost) = self.broker.vhost(name) else {
            return Err(AmqpError::not_allowed(format!("vhost {name} not found")));
        };
        if !self.broker.can_access(&user.name, name) {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{name}' refused for user '{}'",
                user.name
            )));
        }
        Ok(vhost)
    }
}
