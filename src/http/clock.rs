//! Warren's clock endpoints (not RabbitMQ's): `GET /api/warren/clock` tells the broker time and whether it
//! is virtual; `POST /api/warren/clock/advance` with `{"ms": N}` moves a virtual clock forward, firing
//! everything that falls due on the way (TTL expiry, dead-lettering, queue expiry, consumer timeouts), and
//! answers the new time. Administrators only.

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
