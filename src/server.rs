//! Listening and embedding. `Server::start` binds the AMQP listener, spawns the accept loop and returns at
//! once, so a test can start a broker in-process on port 0 and connect to `amqp_url()`. Dropping the server
//! stops accepting and closes every connection.

use crate::broker::Broker;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Server {
    broker: Arc<Broker>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind and start serving. Fails only if the listener cannot be bound.
    pub async fn start(config: Config) -> std::io::Result<Server> {
        let addr = format!("{}:{}", config.bind, config.port);
        let listener = TcpListener::bind(&addr).await?;
        let local_addr = listener.local_addr()?;
        let broker = Broker::new(config);
        let (stop, mut stopped) = watch::channel(false);
        let b = broker.clone();
        let accept = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, peer)) => {
                            tokio::spawn(crate::connection::serve(stream, peer, b.clone()));
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stopped.changed() => break,
                }
            }
        });
        tracing::info!(address = %local_addr, "listening for AMQP 0-9-1");
        Ok(Server {
            broker,
            local_addr,
            stop,
            accept: Some(accept),
        })
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
        let host = if self.local_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.local_addr.ip().to_string()
        };
        let vhost = if c.default_vhost == "/" {
            "%2f".to_string()
        } else {
            c.default_vhost.clone()
        };
        format!(
            "amqp://{}:{}@{}:{}/{}",
            c.default_user,
            c.default_pass,
            host,
            self.local_addr.port(),
            vhost
        )
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stop accepting, close every connection with RabbitMQ's shutdown reason, and wait briefly for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(a) = self.accept.take() {
            let _ = a.await;
        }
        self.broker
            .close_all_connections("broker forced connection closure with reason 'shutdown'");
        for _ in 0..50 {
            if self.broker.connections().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        self.broker
            .close_all_connections("broker forced connection closure with reason 'shutdown'");
    }
}
