//! Warren's test endpoints (not RabbitMQ's), for administrators: `GET /api/warren/clock` tells the broker
//! time and whether it is virtual; `POST /api/warren/clock/advance` with `{"ms": N}` moves a virtual clock
//! forward, firing everything that falls due on the way (TTL expiry, dead-lettering, queue expiry,
//! consumer timeouts), and answers the new time; `GET /api/warren/idle?timeout_ms=N` answers once nothing
//! is in flight — or 408 with what still is — so tests wait for the broker instead of sleeping.

use super::auth::Caller;
use super::reply::{self, Reply, Result};
use super::{Api, Req};
use serde_json::json;

fn state(api: &Api) -> serde_json::Value {
    json!({
        "mode": if api.broker.virtual_clock() { "virtual" } else { "real" },
        "now": api.broker.timers.wall_ms(),
    })
}

pub fn get(api: &Api, c: &Caller) -> Result {
    c.require_admin()?;
    Ok(Reply::json(&state(api)))
}

pub fn advance(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    if !api.broker.virtual_clock() {
        return Err(reply::bad_request(
            "the broker runs on the real clock; start it with --clock virtual to advance time",
        ));
    }
    let body = r.json()?;
    let Some(ms) = body.get("ms").and_then(serde_json::Value::as_u64) else {
        return Err(reply::bad_request(
            "expected {\"ms\": N} with N a non-negative integer",
        ));
    };
    api.broker
        .advance_clock(std::time::Duration::from_millis(ms));
    Ok(Reply::json(&state(api)))
}

/// How long `idle` waits by default, and at most.
const IDLE_DEFAULT_MS: u64 = 10_000;
const IDLE_MAX_MS: u64 = 300_000;

/// What keeps the broker from being idle, or nothing.
pub fn in_flight(b: &crate::broker::Broker) -> serde_json::Map<String, serde_json::Value> {
    let mut pending = serde_json::Map::new();
    let mut deliverable = Vec::new();
    for v in b.vhosts() {
        for q in v.queues() {
            if q.deliverable() {
                deliverable.push(json!({"vhost": &*v.name, "name": &*q.name}));
            }
        }
    }
    if !deliverable.is_empty() {
        pending.insert("deliverable_queues".into(), json!(deliverable));
    }
    let (mut unacked, mut unconfirmed, mut unsent) = (0u64, 0u64, 0u64);
    for s in b.connections() {
        let Some(c) = s
            .as_any()
            .downcast_ref::<crate::channel::link::ConnShared>()
        else {
            continue;
        };
        unsent += c.outbound.pending_bytes() as u64;
        for ch in c.channels.lock().values() {
            let (u, p) = ch.pending_counts();
            unacked += u;
            unconfirmed += p;
        }
    }
    for (k, n) in [
        ("unacknowledged_deliveries", unacked),
        ("unconfirmed_publishes", unconfirmed),
        ("unsent_bytes", unsent),
    ] {
        if n > 0 {
            pending.insert(k.into(), json!(n));
        }
    }
    if b.timers
        .next_deadline()
        .is_some_and(|d| d <= b.timers.now_ms())
    {
        pending.insert("timers_due".into(), json!(true));
    }
    pending
}

pub async fn idle(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    let wait = match r.q("timeout_ms") {
        None => IDLE_DEFAULT_MS,
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| reply::bad_request("timeout_ms must be a non-negative integer"))?
            .min(IDLE_MAX_MS),
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
    let started = tokio::time::Instant::now();
    loop {
        let pending = in_flight(&api.broker);
        if pending.is_empty() {
            return Ok(Reply::json(&json!({
                "idle": true,
                "waited_ms": started.elapsed().as_millis() as u64,
            })));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Reply::json(&json!({"idle": false, "pending": pending}))
                .with_status(axum::http::StatusCode::REQUEST_TIMEOUT));
        }
        // Short polls: what a test waits for (a consumer's ack, a confirm) typically takes well under this.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
