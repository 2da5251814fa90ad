//! Warren's message journal over HTTP (not RabbitMQ's): `GET /api/warren/journal?…` lists what happened to
//! messages, filtered by vhost, message_id, correlation_id, queue, exchange, event and broker-time range;
//! `wait_ms` waits for a first match (408 with the related events when none comes); `PUT` switches it on or
//! off (for every vhost, or one), `DELETE` empties it.

use super::auth::Caller;
use super::reply::{self, Reply, Result};
use super::{Api, Req};
use crate::journal::{Detail, Event, Filter, Kind};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// Events answered when no `limit` is given, and the most a request may ask for.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;
/// The longest `wait_ms` honoured.
const MAX_WAIT_MS: u64 = 300_000;

fn names(v: &[std::sync::Arc<str>]) -> Value {
    json!(v.iter().map(|n| &**n).collect::<Vec<_>>())
}

fn event_json(e: &Event) -> Value {
    let mut o = Map::new();
    o.insert("seq".into(), json!(e.seq));
    o.insert("time".into(), json!(e.time));
    o.insert("event".into(), json!(e.kind.as_str()));
    o.insert("vhost".into(), json!(&*e.vhost));
    for (k, v) in [
        ("message_id", &e.message_id),
        ("correlation_id", &e.correlation_id),
        ("exchange", &e.exchange),
        ("routing_key", &e.routing_key),
        ("queue", &e.queue),
    ] {
        o.insert(k.into(), json!(v.as_deref()));
    }
    let actor = |o: &mut Map<String, Value>, a: &crate::journal::Actor| {
        o.insert("connection".into(), json!(&*a.connection));
        o.insert("channel".into(), json!(a.channel));
        o.insert("user".into(), json!(&*a.user));
    };
    match &e.detail {
        Detail::None => {}
        Detail::Published {
            by,
            mandatory,
            header,
        } => {
            actor(&mut o, by);
            o.insert("mandatory".into(), json!(mandatory));
            if let Some((_, p)) = crate::protocol::decode_content_header(header) {
                o.insert("properties".into(), super::queues::properties_json(&p));
            }
        }
        Detail::Routed { queues, alternate } => {
            o.insert("queues".into(), names(queues));
            if !alternate.is_empty() {
                o.insert("alternate_exchanges".into(), names(alternate));
            }
        }
        Detail::Unroutable { mandatory } => {
            o.insert("mandatory".into(), json!(mandatory));
        }
        Detail::Returned {
            reply_code,
            reply_text,
        } => {
            o.insert("reply_code".into(), json!(reply_code));
            o.insert("reply_text".into(), json!(reply_text));
        }
        Detail::Confirmed { ack } => {
            o.insert("ack".into(), json!(ack));
        }
        Detail::Delivered {
            by,
            consumer_tag,
            delivery_tag,
            redelivered,
        } => {
            actor(&mut o, by);
            o.insert("consumer_tag".into(), json!(consumer_tag.as_deref()));
            o.insert("delivery_tag".into(), json!(delivery_tag));
            o.insert("redelivered".into(), json!(redelivered));
        }
        Detail::Settled {
            delivery_tag,
            requeue,
        } => {
            o.insert("delivery_tag".into(), json!(delivery_tag));
            o.insert("requeue".into(), json!(requeue));
        }
        Detail::DeadLettered {
            reason,
            exchange,
            routing_keys,
            queues,
        } => {
            o.insert("reason".into(), json!(reason));
            o.insert("dead_letter_exchange".into(), json!(&**exchange));
            o.insert("dead_letter_routing_keys".into(), json!(routing_keys));
            o.insert("queues".into(), names(queues));
        }
        Detail::Dropped { reason } => {
            o.insert("reason".into(), json!(reason));
        }
    }
    Value::Object(o)
}

fn number(r: &Req, key: &str) -> Result<Option<u64>> {
    r.q(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| reply::bad_request(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

fn filter(r: &Req) -> Result<Filter> {
    let s = |k: &str| r.q(k).map(str::to_string);
    let kind = match r.q("event") {
        None => None,
        Some(e) => Some(Kind::parse(e).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            reply::bad_request(format!(
                "unknown event '{e}'; events are {}",
                all.join(", ")
            ))
        })?),
    };
    Ok(Filter {
        vhost: s("vhost"),
        message_id: s("message_id"),
        correlation_id: s("correlation_id"),
        queue: s("queue"),
        exchange: s("exchange"),
        kind,
        since: number(r, "since")?,
        until: number(r, "until")?,
    })
}

fn body(api: &Api, events: &[Event], evicted: u64) -> Map<String, Value> {
    let j = &api.broker.journal;
    let mut o = Map::new();
    o.insert("enabled".into(), json!(j.enabled_everywhere()));
    o.insert("vhosts".into(), names(&j.enabled_vhosts()));
    o.insert("capacity".into(), json!(j.capacity()));
    o.insert("evicted".into(), json!(evicted));
    o.insert(
        "events".into(),
        Value::Array(events.iter().map(event_json).collect()),
    );
    o
}

pub async fn get(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    let f = filter(r)?;
    let limit = number(r, "limit")?
        .map_or(DEFAULT_LIMIT, |n| n as usize)
        .min(MAX_LIMIT);
    let j = &api.broker.journal;
    let Some(wait) = number(r, "wait_ms")? else {
        let (events, evicted) = j.query(&f, limit);
        return Ok(Reply::json(&Value::Object(body(api, &events, evicted))));
    };
    let wait = std::time::Duration::from_millis(wait.min(MAX_WAIT_MS));
    if j.wait(&f, wait).await.is_some() {
        let (events, evicted) = j.query(&f, limit);
        return Ok(Reply::json(&Value::Object(body(api, &events, evicted))));
    }
    // What did happen, to explain the wait that failed: the same filters but any event.
    let related = Filter { kind: None, ..f };
    let (rel, evicted) = j.query(&related, limit);
    let mut o = body(api, &[], evicted);
    o.insert(
        "related".into(),
        Value::Array(rel.iter().map(event_json).collect()),
    );
    Ok(Reply::json(&Value::Object(o)).with_status(StatusCode::REQUEST_TIMEOUT))
}

pub fn put(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    let b = r.json()?;
    let Some(on) = b.get("enabled").and_then(Value::as_bool) else {
        return Err(reply::bad_request(
            "expected {\"enabled\": true|false} and optionally \"vhost\"",
        ));
    };
    let vhost = b.get("vhost").and_then(Value::as_str);
    if let Some(v) = vhost {
        if api.broker.vhost(v).is_none() {
            return Err(reply::vhost_not_found());
        }
    }
    api.broker.journal.set(vhost, on);
    Ok(Reply::no_content())
}

pub fn delete(api: &Api, c: &Caller) -> Result {
    c.require_admin()?;
    api.broker.journal.clear();
    Ok(Reply::no_content())
}
