//! The management HTTP API and Prometheus listener, driven by real clients: rabbitmq_http_client (the
//! Rust client RabbitMQ's team maintains) for the broad sweep, plain HTTP for status codes, headers and
//! error bodies, lapin for what a change through the API does to AMQP clients.
//!
//! With `MGMT_URL` (and `AMQP_URL`) set the suite runs against that broker instead, which is how it was
//! checked against RabbitMQ 3.10's management plugin; Warren-only checks (Prometheus, restarts) skip the
//! external broker by starting their own Warren.

mod client;
mod endpoints;
mod firehose;
mod http;
mod journal;
mod prometheus;

use crate::common::TestBroker;
use rabbitmq_http_client::api::Client;

/// A broker with its management API, and an administrator's client for it.
pub struct Mgmt {
    /// Keeps an in-process Warren running for the test.
    pub server: Option<warren::Server>,
    pub base: String,
    pub amqp: TestBroker,
}

pub type Api = Client<String, String, String>;

impl Mgmt {
    /// A fresh Warren with management and Prometheus on free ports, or the external broker named by
    /// `MGMT_URL` / `AMQP_URL`.
    pub async fn start() -> Mgmt {
        if let (Ok(base), Ok(url)) = (std::env::var("MGMT_URL"), std::env::var("AMQP_URL")) {
            return Mgmt {
                server: None,
                base: base.trim_end_matches('/').to_string(),
                amqp: TestBroker::from_url(url),
            };
        }
        Mgmt::warren().await
    }

    /// Always an in-process Warren (for Warren-only features).
    pub async fn warren() -> Mgmt {
        let server = warren::Server::builder()
            .management_port(Some(0))
            .prometheus_port(Some(0))
            .start()
            .await
            .expect("start Warren");
        let base = server.management_url().expect("management listens");
        let amqp = TestBroker::from_url(server.amqp_url());
        Mgmt {
            server: Some(server),
            base,
            amqp,
        }
    }

    pub fn api(&self) -> Api {
        self.api_as("guest", "guest")
    }

    pub fn api_as(&self, user: &str, pass: &str) -> Api {
        Client::new(format!("{}/api", self.base), user.into(), pass.into())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A plain HTTP request as guest.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .get(self.url(path))
            .basic_auth("guest", Some("guest"))
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(path))
            .basic_auth("guest", Some("guest"))
    }

    /// The Prometheus listener's base URL (Warren only).
    pub fn prometheus(&self) -> String {
        let port = self
            .server
            .as_ref()
            .and_then(|s| s.prometheus_port())
            .expect("an in-process Warren with Prometheus");
        format!("http://127.0.0.1:{port}")
    }
}

/// Poll `f` until it yields Some, for figures the management plugin samples (RabbitMQ refreshes
/// queue and connection stats every few seconds; Warren's are live, so there this returns at once).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
