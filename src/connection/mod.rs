//! One task per client connection. [`reader`] reads the socket into a growing buffer and cuts complete frames
//! (a frame split across reads simply waits for more bytes); [`dispatch`] feeds them to the connection
//! [`lifecycle`] machine (handshake and close) and to the channels; [`writer`] drains the outbound buffer
//! ([`crate::channel::link`]) that replies and deliveries go through, so this task never blocks on a slow socket write. Channel errors close
//! the channel; connection errors close the connection, each with RabbitMQ's reply code and text.

mod dispatch;
pub mod handshake;
pub mod lifecycle;
mod reader;
pub mod transport;
mod writer;

use crate::broker::{Broker, User, VHost};
pub use crate::channel::link::{ConnInfo, ConnShared, Outbound, RecvStats};
use crate::channel::{Channel, Pending};
use crate::error::AmqpError;
use crate::queue::Queue;
use crate::FastMap as HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// Consumer timeouts of this connection's channels.
    ack_sweep: Arc<crate::channel::AckSweep>,
}

/// Serve one accepted connection (its TLS handshake done, if it uses TLS) until it closes.
pub async fn serve(stream: crate::tls::Stream, peer: SocketAddr, broker: Arc<Broker>) {
    let _ = stream.tcp().set_nodelay(true);
    let local = stream.tcp().local_addr().unwrap_or(peer);
    // EXTERNAL is offered only when configured (as RabbitMQ needs it enabled), and then only to a client
    // whose verified certificate names a user.
    let external = broker
        .config
        .auth_mechanisms
        .iter()
        .any(|m| m == "EXTERNAL")
        .then(|| stream.peer_user(&broker.config.ssl_cert_login_from))
        .flatten();
    let tls = stream.tls_version();
    let (rd, wr) = transport::split(stream);
    let id = broker.next_connection_id();
    let mut shared = ConnShared::new(id, peer, local, broker.timers.wall_ms());
    shared.tls = tls;
    // Until tune-ok, frames are limited to the smallest frame_max of the RabbitMQ line we behave as.
    shared.set_frame_max(broker.config.compat().frame_min());
    let shared = Arc::new(shared);
    let outbound = shared.outbound.clone();
    broker.register_connection(shared.clone());
    broker.churn.connection_created.add(1);
    let writer = tokio::spawn(writer::run_writer(wr, outbound.clone()));
    let mut conn = Connection {
        heartbeat: broker.config.heartbeat,
        channel_max: broker.config.channel_max,
        broker: broker.clone(),
        shared: shared.clone(),
        machine: lifecycle::Machine {
            external,
            ..Default::default()
        },
        open: None,
        channels: HashMap::default(),
        published: false,
        exclusive_queues: Vec::new(),
        confirm_dirty: Vec::new(),
        pending: None,
        closing_deadline: None,
        ack_sweep: crate::channel::AckSweep::new(
            broker.timers.clone(),
            broker.config.consumer_timeout,
        ),
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

impl BrokerEnv<'_> {
    /// The login's outcome: refused without an account, or for a loopback-only user from elsewhere.
    fn admit(&self, mechanism: &str, user: &str, account: Option<User>) -> Result<User, String> {
        let Some(account) = account else {
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
}

impl lifecycle::Env for BrokerEnv<'_> {
    fn config(&self) -> &crate::Config {
        &self.broker.config
    }

    fn authenticate(&self, mechanism: &str, user: &str, pass: &str) -> Result<User, String> {
        let account = self.broker.authenticate(user, pass);
        self.admit(mechanism, user, account)
    }

    fn authenticate_external(&self, user: &str) -> Result<User, String> {
        // The certificate is the credential: the user only has to exist.
        self.admit("EXTERNAL", user, self.broker.user(user))
    }

    fn open_vhost(&self, user: &User, name: &str) -> Result<Arc<VHost>, AmqpError> {
        let Some(vhost) = self.broker.vhost(name) else {
            return Err(AmqpError::not_allowed(format!("vhost {name} not found")));
        };
        let node_max = self.broker.config.connection_max;
        // Open connections, besides this one: sockets still in their handshake (or held after a refused
        // login) do not take a slot from users who can log in.
        if node_max > 0 && self.broker.count_connections(|c| c.user().is_some()) >= node_max {
            return Err(AmqpError::not_allowed(format!(
                "connection refused: node connection limit ({node_max}) is reached"
            )));
        }
        if !self.broker.can_access(&user.name, name) {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{name}' refused for user '{}'",
                user.name
            )));
        }
        if let Some(max) = vhost.limit("max-connections") {
            let open = self.broker.count_connections(|c| c.vhost() == Some(name));
            if open as i64 >= max {
                return Err(AmqpError::not_allowed(format!(
                    "access to vhost '{name}' refused for user '{}': connection limit ({max}) is reached",
                    user.name
                )));
            }
        }
        if let Some(max) = self.broker.user_limit(&user.name, "max-connections") {
            let open = self
                .broker
                .count_connections(|c| c.user() == Some(user.name.as_str()));
            if open as i64 >= max {
                return Err(AmqpError::not_allowed(format!(
                    "connection refused for user '{}': user connection limit ({max}) is reached",
                    user.name
                )));
            }
        }
        Ok(vhost)
    }
}
