//! Listening and embedding. `Server::start` binds the AMQP listener, spawns the accept loop and returns at
//! once, so a test can start a broker in-process on port 0 and connect to `amqp_url()`. Dropping the server
//! stops accepting and closes every connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warren::server::StartError> {
//! let server = warren::Server::builder().vhost("tests").user("app", "secret").start().await?;
//! let url = server.amqp_url(); // amqp://guest:guest@127.0.0.1:PORT/%2f
//! # drop(url);
//! server.broker().reset(); // back to the start state between tests
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

use crate::broker::{Broker, Command, StoredPassword};
use crate::config::Config;
use crate::definitions::{Definitions, DefinitionsError};
use crate::tls::{HttpListener, TlsState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Definitions(#[from] DefinitionsError),
    #[error(transparent)]
    Boot(#[from] crate::broker::BootError),
    #[error("start-up definitions: {0}")]
    Startup(crate::error::AmqpError),
    #[error("recovery thread: {0}")]
    RecoveryThread(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

pub struct Server {
    broker: Arc<Broker>,
    /// The plain AMQP listener's address, or the TLS one's when plain AMQP is off.
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsState>>,
    management_tls: bool,
    stop: watch::Sender<bool>,
    accept: Vec<JoinHandle<()>>,
    /// The management API and Prometheus listeners, when enabled.
    management: Option<SocketAddr>,
    prometheus: Option<SocketAddr>,
    http_tasks: Vec<JoinHandle<()>>,
}

async fn bind_amqp(addr: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Accept AMQP clients until told to stop. A TLS client's handshake runs in its connection's own task
/// (bounded by the handshake timeout), so a stalled handshake never holds up the accept loop.
fn spawn_accept(
    listener: TcpListener,
    broker: Arc<Broker>,
    tls: Option<Arc<TlsState>>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => match &tls {
                        None => {
                            tokio::spawn(crate::connection::serve(
                                crate::tls::Stream::Plain(tcp),
                                peer,
                                broker.clone(),
                            ));
                        }
                        Some(tls) => {
                            let (tls, b) = (tls.clone(), broker.clone());
                            tokio::spawn(async move {
                                let timeout = Duration::from_millis(b.config.handshake_timeout_ms);
                                match tls.accept(tcp, timeout).await {
                                    Ok(s) => crate::connection::serve(s, peer, b).await,
                                    Err(e) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                                }
                            });
                        }
                    },
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stopped.changed() => break,
            }
        }
    })
}

/// Bind an HTTP listener from its configuration. Its port defaults to `usual`, or to a free one when the
/// AMQP port itself was asked to be free (harnesses that start several brokers side by side).
async fn bind_http(
    l: &crate::config::Listener,
    usual: u16,
    amqp_port: u16,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    if !l.enabled {
        return Ok(None);
    }
    let port = l.port.unwrap_or(if amqp_port == 0 { 0 } else { usual });
    let addr = format!("{}:{port}", l.bind);
    let bind_err = |source| StartError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok(Some((listener, local)))
}

/// Builds an embedded broker. Its defaults suit tests: loopback only, a free port, nothing on disk.
#[derive(Debug)]
pub struct ServerBuilder {
    config: Config,
    vhosts: Vec<String>,
    users: Vec<(String, String)>,
    definitions: Vec<Definitions>,
}

impl ServerBuilder {
    /// Replace the whole configuration (the builder's test-friendly defaults included).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.config.bind = addr.into();
        self
    }
    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.config.ephemeral = ephemeral;
        self
    }
    /// Behave as RabbitMQ "3.13" (the default) or "4.3".
    pub fn compat(mut self, line: &str) -> Self {
        self.config.compat = line.to_string();
        self
    }
    /// Record the message journal (on by default here; off by default for the `warren` binary).
    pub fn journal(mut self, on: bool) -> Self {
        self.config.journal = Some(on);
        self
    }
    /// Run on a virtual clock: broker time moves only with [`Server::advance_clock`].
    pub fn virtual_clock(mut self, on: bool) -> Self {
        self.config.clock = if on { "virtual" } else { "real" }.to_string();
        self
    }
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = dir.into();
        self
    }
    /// The management API's port (0: a free one, the builder's default); `None` turns it off.
    pub fn management_port(mut self, port: Option<u16>) -> Self {
        self.config.management.enabled = port.is_some();
        self.config.management.port = port;
        self
    }
    /// The Prometheus listener's port (0: a free one, the builder's default); `None` turns it off.
    pub fn prometheus_port(mut self, port: Option<u16>) -> Self {
        self.config.prometheus.enabled = port.is_some();
        self.config.prometheus.port = port;
        self
    }
    /// Create a vhost at start; every user added with `user` may use it.
    pub fn vhost(mut self, name: impl Into<String>) -> Self {
        self.vhosts.push(name.into());
        self
    }
    /// Create a user (administrator, access to the default vhost and every `vhost`).
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }
    /// Apply RabbitMQ-format definitions at start (and again on `Broker::reset`).
    pub fn definitions(mut self, d: Definitions) -> Self {
        self.definitions.push(d);
        self
    }
    pub fn definitions_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.definitions = Some(path.into());
        self
    }

    pub async fn start(self) -> Result<Server, StartError> {
        let c = &self.config;
        let mut cmds = Vec::new();
        for v in &self.vhosts {
            cmds.push(Command::AddVhost {
                name: v.clone(),
                description: String::new(),
                tags: Vec::new(),
                default_queue_type: None,
                tracing: false,
            });
        }
        let grant = |user: &str, vhost: &str| Command::SetPermissions {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        for v in &self.vhosts {
            cmds.push(grant(&c.default_user, v));
        }
        for (name, pass) in &self.users {
            cmds.push(Command::PutUser {
                name: name.clone(),
                password: StoredPassword::hash(pass),
                tags: vec!["administrator".into()],
            });
            cmds.push(grant(name, &c.default_vhost));
            for v in &self.vhosts {
                cmds.push(grant(name, v));
            }
        }
        for d in &self.definitions {
            cmds.extend(d.to_commands(None)?);
        }
        Server::start_with(self.config, cmds).await
    }
}

impl Server {
    /// A builder with test-friendly defaults (127.0.0.1, port 0, ephemeral, the message journal on).
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: {
                let mut c = Config {
                    bind: "127.0.0.1".into(),
                    port: 0,
                    ephemeral: true,
                    journal: Some(true),
                    ..Default::default()
                };
                c.management.bind = "127.0.0.1".into();
                c.prometheus.bind = "127.0.0.1".into();
                c
            },
            vhosts: Vec::new(),
            users: Vec::new(),
            definitions: Vec::new(),
        }
    }

    /// Bind and start serving with `config`.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Self::start_with(config, Vec::new()).await
    }

    /// Start, then apply `setup` after the configured definitions and policies; all of them make the start
    /// state that `Broker::reset` returns to.
    async fn start_with(config: Config, setup: Vec<Command>) -> Result<Server, StartError> {
        let addr = format!("{}:{}", config.bind, config.port);
        let config_port = config.port;
        let definitions = match config.definitions.clone() {
            Some(p) => Some(
                tokio::task::spawn_blocking(move || crate::definitions::read_file(&p))
                    .await
                    .map_err(|e| StartError::RecoveryThread(e.to_string()))??,
            ),
            None => None,
        };
        let tls = match &config.tls {
            Some(t) => Some(TlsState::new(t)?),
            None => None,
        };
        let plain = match config.tcp_listener {
            true => Some(bind_amqp(&addr).await?),
            false => None,
        };
        let secure = match &config.tls {
            Some(t) => Some(bind_amqp(&format!("{}:{}", config.bind, t.port)).await?),
            None => None,
        };
        let tls_addr = secure.as_ref().map(|(_, a)| *a);
        let Some(local_addr) = plain.as_ref().map(|(_, a)| *a).or(tls_addr) else {
            return Err(StartError::Bind {
                addr,
                source: std::io::Error::other("no AMQP listener configured"),
            });
        };
        // Recovery on a thread of its own that ends with it: the allocator frees a finished thread's empty
        // pages and hands the rest to the threads that later free them. Done on this (long-lived, mostly
        // idle) thread, the recovery's temporary maps and the pages of the recovered queue index stayed
        // resident: 10M messages recovered to 1.8 GiB RSS instead of 0.8 GiB, and kept 0.5 GiB after a drain.
        let handle = tokio::runtime::Handle::current();
        let broker = std::thread::Builder::new()
            .name("warren-recovery".into())
            .spawn(move || {
                let _rt = handle.enter();
                Broker::open(config)
            })
            .map_err(|e| StartError::RecoveryThread(e.to_string()))?
            .join()
            .map_err(|_| StartError::RecoveryThread("panicked".into()))??;
        let mut startup = match &definitions {
            Some(d) => d.to_commands(None)?,
            None => Vec::new(),
        };
        startup.extend(setup);
        startup.extend(broker.config_policy_commands());
        broker
            .apply_startup(startup)
            .await
            .map_err(StartError::Startup)?;
        broker.timers.spawn_driver();
        broker.alarms.sample();
        crate::broker::alarm::Alarms::spawn_monitor(Arc::downgrade(&broker.alarms));
        let mut http_tasks = Vec::new();
        let mgmt = bind_http(&broker.config.management, 15672, config_port).await?;
        let prom = bind_http(&broker.config.prometheus, 15692, config_port).await?;
        let (management, prometheus) = (mgmt.as_ref().map(|m| m.1), prom.as_ref().map(|p| p.1));
        let https = |on: bool| if on { tls.clone() } else { None };
        let http_listener = |l: TcpListener, on: bool| {
            HttpListener::new(l, https(on)).map_err(|source| StartError::Bind {
                addr: "HTTP listener".into(),
                source,
            })
        };
        let management_tls = broker.config.management.tls;
        if let Some((listener, addr)) = mgmt {
            let stats = crate::http::stats::Sampler::new();
            stats.spawn(Arc::downgrade(&broker), crate::http::collect::read_all);
            let api = Arc::new(crate::http::Shared {
                broker: Arc::downgrade(&broker),
                stats,
                amqp_port: local_addr.port(),
                mgmt_port: addr.port(),
                prometheus_port: prometheus.map(|p| p.port()),
            });
            let listener = http_listener(listener, management_tls)?;
            http_tasks.push(tokio::spawn(crate::http::serve(listener, api)));
            tracing::info!(address = %addr, tls = management_tls, "listening for the management HTTP API");
        }
        if let Some((listener, addr)) = prom {
            let prom_tls = broker.config.prometheus.tls;
            let listener = http_listener(listener, prom_tls)?;
            http_tasks.push(tokio::spawn(crate::http::prometheus::serve(
                listener,
                Arc::downgrade(&broker),
            )));
            tracing::info!(address = %addr, tls = prom_tls, "listening for Prometheus scrapes");
        }
        let (stop, stopped) = watch::channel(false);
        let mut accept = Vec::new();
        if let Some((listener, addr)) = plain {
            accept.push(spawn_accept(
                listener,
                broker.clone(),
                None,
                stopped.clone(),
            ));
            tracing::info!(address = %addr, "listening for AMQP 0-9-1");
        }
        if let Some((listener, addr)) = secure {
            accept.push(spawn_accept(listener, broker.clone(), tls.clone(), stopped));
            tracing::info!(address = %addr, "listening for AMQP 0-9-1 over TLS");
        }
        Ok(Server {
            broker,
            local_addr,
            tls_addr,
            tls,
            management_tls,
            stop,
            accept,
            management,
            prometheus,
            http_tasks,
        })
    }

    /// The management API's port, when it listens.
    pub fn management_port(&self) -> Option<u16> {
        self.management.map(|a| a.port())
    }

    /// The Prometheus listener's port, when it listens.
    pub fn prometheus_port(&self) -> Option<u16> {
        self.prometheus.map(|a| a.port())
    }

    /// The management API's base URL, e.g. `http://127.0.0.1:15672` (https with `[management] tls`).
    pub fn management_url(&self) -> Option<String> {
        let scheme = if self.management_tls { "https" } else { "http" };
        self.management.map(|a| {
            let host = if a.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                a.ip().to_string()
            };
            format!("{scheme}://{host}:{}", a.port())
        })
    }

    /// Move a virtual clock forward by `by`, firing, in time order, every expiry, dead-lettering, queue
    /// expiry and consumer timeout that falls due; returns the broker time (Unix ms) afterwards. On the real
    /// clock this only fires what is already due.
    pub fn advance_clock(&self, by: Duration) -> u64 {
        self.broker.advance_clock(by)
    }

    /// Journal events matching `f` (the newest 10,000 at most), oldest first.
    pub fn journal(&self, f: &crate::journal::Filter) -> Vec<crate::journal::Event> {
        self.broker.journal.query(f, 10_000).0
    }

    /// Wait until an event matching `f` is in the journal; after `timeout`, an error that says what the
    /// journal does hold about the message (the same filter, any event).
    pub async fn wait_for(
        &self,
        f: crate::journal::Filter,
        timeout: Duration,
    ) -> Result<crate::journal::Event, String> {
        let j = &self.broker.journal;
        if let Some(e) = j.wait(&f, timeout).await {
            return Ok(e);
        }
        let related = crate::journal::Filter {
            kind: None,
            ..f.clone()
        };
        let seen: Vec<String> = j
            .query(&related, 50)
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        let want = f.kind.map_or("any event", |k| k.as_str());
        Err(format!(
            "expected {want} matching {f:?} within {timeout:?}; journal has: {}",
            if seen.is_empty() {
                "nothing about it".to_string()
            } else {
                seen.join(", ")
            }
        ))
    }

    /// Wait until nothing is in flight (see `GET /api/warren/idle`); after `timeout`, an error listing what
    /// still is.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = crate::http::clock::in_flight(&self.broker);
            if pending.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the broker was not idle within {timeout:?}: {}",
                    serde_json::Value::Object(pending)
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The broker's time, in Unix milliseconds (virtual or real).
    pub fn broker_time_ms(&self) -> u64 {
        self.broker.timers.wall_ms()
    }

    /// The AMQPS listener's port, when TLS is configured.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_addr.map(|a| a.port())
    }

    /// Re-read the TLS certificate, key and CA files (SIGHUP). Open connections keep their session; new
    /// ones get the new certificate. On an error the old files stay in force.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        match &self.tls {
            Some(t) => t.reload(),
            None => Ok(()),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// A URL for clients, with the default user's credentials and the default vhost.
    pub fn amqp_url(&self) -> String {
        let c = &self.broker.config;
        let vhost = if c.default_vhost == "/" {
            "%2f".to_string()
        } else {
            c.default_vhost.clone()
        };
        self.url_for(&c.default_user, &c.default_pass, &vhost)
    }

    /// A URL for a given user and (already URL-encoded) vhost.
    pub fn url_for(&self, user: &str, pass: &str, vhost: &str) -> String {
        let host = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.local_addr.ip().to_string()
        };
        format!(
            "amqp://{user}:{pass}@{host}:{}/{vhost}",
            self.local_addr.port()
        )
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stop accepting, close every connection with RabbitMQ's shutdown reason, and wait briefly for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for a in std::mem::take(&mut self.accept) {
            let _ = a.await;
        }
        for t in self.http_tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        self.broker
            .close_all_connections("broker forced connection closure with reason 'shutdown'");
        for _ in 0..50 {
            if self.broker.connections().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.shutdown_storage()).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for a in self.accept.drain(..) {
            a.abort();
        }
        for t in self.http_tasks.drain(..) {
            t.abort();
        }
        self.broker
            .close_all_connections("broker forced connection closure with reason 'shutdown'");
    }
}
