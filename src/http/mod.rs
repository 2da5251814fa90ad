//! The management HTTP API, RabbitMQ's, on its own listener. One file per resource family; this module
//! parses the request (percent-decoded path segments, query, body), matches the path against RabbitMQ's
//! routes — unknown paths are 404 and wrong methods 405 before any authentication, as in RabbitMQ — then
//! authenticates and calls the handler. Every change goes through the broker's command path.
//!
//! Layer: the top, beside the AMQP listener; it reads the core, channels and connections and changes
//! nothing but through commands (and connection closes).

mod auth;
mod bindings;
pub mod clock;
pub mod collect;
mod conns;
mod defs;
mod exchanges;
mod journal;
mod list;
mod overview;
mod params;
pub mod prometheus;
mod queues;
pub mod reply;
pub mod stats;
mod ui;
mod users;
mod vhosts;

use crate::broker::Broker;
use auth::Caller;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Method, Request, Response, StatusCode};
use reply::{not_found, Reply};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest request body accepted (RabbitMQ's default).
const MAX_BODY: usize = 10_000_000;

/// What the listener holds: the broker by weak reference, so an idle keep-alive client never keeps a
/// stopped broker (and its data directory's lock) alive.
pub struct Shared {
    pub broker: std::sync::Weak<Broker>,
    pub stats: Arc<stats::Sampler>,
    /// Listening ports, for the overview, listeners and health checks.
    pub amqp_port: u16,
    pub mgmt_port: u16,
    pub prometheus_port: Option<u16>,
}

/// What the handlers of one request share.
pub struct Api {
    pub broker: Arc<Broker>,
    pub stats: Arc<stats::Sampler>,
    pub amqp_port: u16,
    pub mgmt_port: u16,
    pub prometheus_port: Option<u16>,
}

/// One request, parsed.
pub struct Req {
    pub method: Method,
    pub query: BTreeMap<String, String>,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
    pub peer: SocketAddr,
}

impl Req {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.q(key) == Some("true")
    }

    /// The body as JSON (an empty body is an empty object). RabbitMQ's `not_json` otherwise.
    pub fn json(&self) -> reply::Result<serde_json::Value> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(serde_json::json!({}));
        }
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            Ok(serde_json::Value::String(_)) => Err(reply::bad_request(
                "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?",
            )),
            _ => Err(reply::bad_request("not_json")),
        }
    }
}

fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decode a query string (`+` is a space, as in forms).
fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(&k.replace('+', " ")), decode(&v.replace('+', " ")));
    }
    out
}

/// Whether the client accepts JSON (RabbitMQ refuses other types with 406, and JSON with parameters).
fn accepts_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|t| {
        let t = t.trim();
        let (ty, params) = match t.split_once(';') {
            Some((ty, p)) => (ty.trim(), p.trim()),
            None => (t, ""),
        };
        let q_only = params.is_empty() || params.starts_with("q=");
        q_only && matches!(ty, "application/json" | "*/*" | "application/*")
    })
}

/// Serve the API on `listener` until the broker goes.
pub async fn serve(listener: crate::tls::HttpListener, shared: Arc<Shared>) {
    let app = axum::Router::new().fallback(handle).with_state(shared);
    if let Err(e) = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<crate::tls::Peer>(),
    )
    .await
    {
        tracing::error!(error = %e, "management listener stopped");
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(crate::tls::Peer(peer)): ConnectInfo<crate::tls::Peer>,
    req: Request<Body>,
) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let Some(broker) = shared.broker.upgrade() else {
        return Reply::status(StatusCode::SERVICE_UNAVAILABLE).into_response(head);
    };
    let api = Api {
        broker,
        stats: shared.stats.clone(),
        amqp_port: shared.amqp_port,
        mgmt_port: shared.mgmt_port,
        prometheus_port: shared.prometheus_port,
    };
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    if raw_path == "/api" || raw_path == "/api/" {
        return Reply::status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, "/api/index.html")
            .into_response(head);
    }
    let Some(rest) = raw_path.strip_prefix("/api/") else {
        if matches!(parts.method, Method::GET | Method::HEAD) {
            if let Some(page) = ui::file(&raw_path, head).await {
                return page;
            }
        }
        return not_found().vary(reply::Vary::Origin).into_response(head);
    };
    let segs: Vec<String> = rest.trim_end_matches('/').split('/').map(decode).collect();
    let Some(route) = routes::parse(&segs) else {
        return not_found().vary(reply::Vary::Origin).into_response(head);
    };
    let method = if head {
        Method::GET
    } else {
        parts.method.clone()
    };
    let allowed = route.allowed();
    if method == Method::OPTIONS {
        return Reply::status(StatusCode::OK)
            .vary(reply::Vary::Origin)
            .header(header::ALLOW, allow_header(allowed))
            .into_response(true);
    }
    if !allowed.contains(&method.as_str()) {
        return Reply::status(StatusCode::METHOD_NOT_ALLOWED)
            .vary(reply::Vary::Origin)
            .header(header::ALLOW, allow_header(allowed))
            .into_response(true);
    }
    if !accepts_json(&parts.headers) {
        return Reply::status(StatusCode::NOT_ACCEPTABLE)
            .vary(reply::Vary::Origin)
            .into_response(true);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Reply::status(StatusCode::PAYLOAD_TOO_LARGE).into_response(head);
        }
    };
    let r = Req {
        method,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
        peer,
    };
    let caller = if route.public() {
        Caller::anonymous()
    } else {
        match auth::authenticate(&api.broker, &r) {
            Ok(c) => c,
            Err(reply) => return reply.into_response(head),
        }
    };
    let out = routes::dispatch(&api, &caller, &r, route).await;
    match out {
        Ok(reply) | Err(reply) => reply.into_response(head),
    }
}

fn allow_header(methods: &[&str]) -> String {
    let mut all: Vec<&str> = Vec::new();
    if methods.contains(&"GET") {
        all.push("HEAD");
    }
    all.extend(methods.iter().copied());
    all.push("OPTIONS");
    all.join(", ")
}

mod routes;
