//! Virtual hosts: list, get, create or update (description, tags, default queue type, tracing), delete.

use super::auth::Caller;
use super::collect::{self, LENGTHS, MSG};
use super::reply::{self, Reply, Result};
use super::stats::{self, Key};
use super::{Api, Req};
use crate::broker::{Actor, Command, VHost};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A tags value given as a list or a comma-separated string.
pub fn tags_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

pub fn lookup(api: &Api, name: &str) -> Result<Arc<VHost>> {
    api.broker.vhost(name).ok_or_else(reply::not_found)
}

fn object(
    api: &Api,
    v: &VHost,
    r: &Req,
    sessions: &[Arc<dyn crate::broker::Session>],
) -> Result<Value> {
    let m = v.meta();
    let mut o = Map::new();
    o.insert("name".into(), json!(v.name.to_string()));
    o.insert("description".into(), json!(m.description));
    o.insert("tags".into(), json!(m.tags));
    let dqt = m
        .default_queue_type
        .clone()
        .unwrap_or_else(|| "undefined".into());
    o.insert("default_queue_type".into(), json!(dqt));
    let mut meta = json!({"description": m.description, "tags": m.tags});
    if let Some(t) = &m.default_queue_type {
        meta["default_queue_type"] = json!(t);
    }
    o.insert("metadata".into(), meta);
    o.insert("tracing".into(), json!(m.tracing));
    o.insert(
        "cluster_state".into(),
        json!({super::overview::NODE: "running"}),
    );
    if r.flag("disable_stats") {
        return Ok(Value::Object(o));
    }
    let t = collect::vhost_totals(v, sessions);
    let key = Key::Vhost(v.name.to_string());
    if v.queue_count() > 0 {
        let lw = stats::window(r, "lengths")?;
        o.extend(super::overview::lengths_object(
            api,
            &key,
            &t.lengths,
            MSG.len(),
            lw,
        ));
    }
    let octets_at = MSG.len() + LENGTHS.len();
    if t.octets.iter().any(|x| *x > 0) {
        let names: Vec<String> = (0..octets_at)
            .map(|i| format!("_{i}"))
            .chain(["recv_oct".to_string(), "send_oct".to_string()])
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut vals = vec![0; octets_at];
        vals.extend(&t.octets);
        let dw = stats::window(r, "data_rates")?;
        let oct = api.stats.stats_object(&key, &refs, &vals, dw, false);
        o.extend(oct.into_iter().filter(|(k, _)| !k.starts_with('_')));
    }
    if t.msg.iter().any(|x| *x > 0) {
        let w = stats::window(r, "msg_rates")?;
        let ms = api.stats.stats_object(&key, MSG, &t.msg, w, false);
        o.insert("message_stats".into(), Value::Object(ms));
    }
    Ok(Value::Object(o))
}

pub fn list(api: &Api, c: &Caller, r: &Req) -> Result {
    let sessions = api.broker.connections();
    let mut items = Vec::new();
    for v in api.broker.vhosts() {
        if c.sees(&api.broker, &v.name) {
            items.push(object(api, &v, r, &sessions)?);
        }
    }
    super::list::reply(items, r)
}

pub fn get(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    c.require_admin()?;
    let v = lookup(api, name)?;
    let sessions = api.broker.connections();
    Ok(super::list::single(object(api, &v, r, &sessions)?, r))
}

pub async fn put(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    let existing = api.broker.vhost(name).map(|v| v.meta());
    let dqt = body
        .get("defaultqueuetype")
        .or_else(|| body.get("default_queue_type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(t) = &dqt {
        if !matches!(t.as_str(), "classic" | "quorum" | "stream") {
            return Err(reply::bad_request("invalid_queue_type"));
        }
    }
    let tracing = match body.get("tracing") {
        None => existing.as_ref().is_some_and(|m| m.tracing),
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => return Err(reply::bad_request(json!(["not_boolean", other]))),
    };
    // As in RabbitMQ, every PUT sets the description and tags: left out, they become empty.
    let cmd = Command::AddVhost {
        name: name.to_string(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_default(),
        tags: body.get("tags").map(tags_of).unwrap_or_default(),
        default_queue_type: dqt
            .or_else(|| existing.as_ref().and_then(|m| m.default_queue_type.clone())),
        tracing,
    };
    let actor = Actor::internal();
    api.broker
        .run(cmd, &actor)
        .await
        .map_err(|e| reply::from_amqp(&e))?;
    if existing.is_none() {
        // The creator may use what it created, as in RabbitMQ.
        let grant = Command::SetPermissions {
            user: c.name().to_string(),
            vhost: name.to_string(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        api.broker
            .run(grant, &actor)
            .await
            .map_err(|e| reply::from_amqp(&e))?;
    }
    Ok(Reply::created(existing.is_none()))
}

pub async fn delete(api: &Api, c: &Caller, name: &str) -> Result {
    c.require_admin()?;
    lookup(api, name)?;
    api.broker
        .run(
            Command::DeleteVhost {
                name: name.to_string(),
            },
            &Actor::internal(),
        )
        .await
        .map_err(|e| reply::from_amqp(&e))?;
    Ok(Reply::no_content())
}

/// POST /api/vhosts/{v}/start/{node}: Warren's vhosts never stop; starting one is a no-op.
pub fn start(api: &Api, c: &Caller, name: &str, node: &str) -> Result {
    c.require_admin()?;
    lookup(api, name)?;
    if node != super::overview::NODE {
        return Err(reply::bad_request(format!(
            "Request to node {node} failed with nodedown"
        )));
    }
    Ok(Reply::no_content().vary(reply::Vary::NoAccept))
}
