//! Where the broker under test listens: a Warren started in-process on a free port (once, shared by every
//! case), or the broker at `AMQP_ADDR` (host:port) when that is set, e.g. a RabbitMQ to re-validate the table.

use std::net::{SocketAddr, ToSocketAddrs};
use tokio::sync::OnceCell;

static WARREN: OnceCell<warren::Server> = OnceCell::const_new();

pub async fn target() -> SocketAddr {
    if let Ok(addr) = std::env::var("AMQP_ADDR") {
        return addr
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("AMQP_ADDR={addr:?}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("AMQP_ADDR={addr:?} resolves to nothing"));
    }
    let server = WARREN
        .get_or_init(|| async {
            let config = warren::Config {
                bind: "127.0.0.1".into(),
                port: 0,
                ephemeral: true,
                ..Default::default()
            };
            warren::Server::start(config).await.expect("start Warren")
        })
        .await;
    server.local_addr()
}
