//! One task per client connection. [`reader`] reads the socket into a growing buffer and cuts complete frames
//! (a frame split across reads simply waits for more bytes); [`dispatch`] feeds them to the connection
//! [`lifecycle`] machine (handshake and close) and to the channels; [`writer`] drains the outbound buffer
//! ([`crate::channel::link`]) that replies and deliveries go through, so this task never blocks on a slow socket write. Channel errors close
//! the channel; connection errors close the connection, each with RabbitMQ's reply code and text.

mod dispatch;
pub mod handshake;
pub mod lifecycle;
mod reader;
mod writer;

use crate::broker::{Broker, User, VHost};
pub use crate::channel::link::{ConnInfo, ConnShared, Outbound, RecvStats};
use crate::channel::{Channel, Pending};
use crate::error::AmqpError;
use crate::queue::Queue;
use crate::FastMap as HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;

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
    let id = broker.next_connection_id();
    let shared = Arc::new(ConnShared::new(id, peer, local, broker.timers.wall_ms()));
    let outbound = shared.outbound.clone();
    broker.register_connection(shared.clone());
    broker.churn.connection_created.add(1);
    let writer = tokio::spawn(writer::run_writer(wr, outbound.clone()));
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
