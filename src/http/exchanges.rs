//! Exchanges: list, get, declare, delete, and publishing a message through one.

use super::auth::Caller;
use super::collect::{self, EXCHANGE_MSG};
use super::reply::{self, Reply, Result};
use super::stats::{self, Key};
use super::{Api, Req};
use crate::broker::exchange::Exchange;
use crate::broker::{Command, VHost};
use crate::protocol::fields;
use crate::queue::message::Message;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::FieldTable;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

fn object(api: &Api, v: &VHost, x: &Arc<Exchange>, r: &Req) -> Result<Value> {
    let mut o = json!({
        "arguments": fields::table_to_json(&x.arguments),
        "auto_delete": x.auto_delete,
        "durable": x.durable,
        "internal": x.internal,
        "name": x.name.to_string(),
        "type": x.kind.as_str(),
        "user_who_performed_action": if x.name.is_empty() || x.name.starts_with("amq.") { "rmq-internal" } else { "" },
        "vhost": v.name.to_string(),
    });
    let values = collect::exchange_values(x);
    if !r.flag("disable_stats") && values[0] > 0 {
        let w = stats::window(r, "msg_rates")?;
        let ms = api
            .stats
            .stats_object(&Key::of(x), EXCHANGE_MSG, &values, w, false);
        o["message_stats"] = Value::Object(ms);
    }
    Ok(o)
}

pub fn list(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    let vhosts = match vhost {
        Some(v) => {
            let vh = super::vhosts::lookup(api, v)?;
            c.require_vhost(&api.broker, v)?;
            vec![vh]
        }
        None => api
            .broker
            .vhosts()
            .into_iter()
            .filter(|v| c.sees(&api.broker, &v.name))
            .collect(),
    };
    let mut items = Vec::new();
    for v in &vhosts {
        for x in v.exchanges() {
            items.push(object(api, v, &x, r)?);
        }
    }
    super::list::reply(items, r)
}

pub fn get(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let x = v.exchange(name).ok_or_else(reply::not_found)?;
    let mut o = object(api, &v, &x, r)?;
    o["incoming"] = json!([]);
    o["outgoing"] = json!([]);
    Ok(super::list::single(o, r))
}

/// A JSON boolean, also given as the strings "true" and "false".
pub fn bool_of(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

pub async fn put(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let body = r.json()?;
    if api.broker.vhost(vhost).is_none() {
        return Err(reply::vhost_not_found());
    }
    c.require_vhost(&api.broker, vhost)?;
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("direct");
    if crate::broker::exchange::ExchangeKind::parse(kind).is_none() {
        return Err(reply::bad_request(format!(
            "unknown exchange type '{kind}'"
        )));
    }
    let existed = api
        .broker
        .vhost(vhost)
        .and_then(|v| v.exchange(name))
        .is_some();
    let cmd = Command::DeclareExchange {
        vhost: vhost.to_string(),
        name: name.to_string(),
        kind: kind.to_string(),
        durable: bool_of(body.get("durable")),
        auto_delete: bool_of(body.get("auto_delete")),
        internal: bool_of(body.get("internal")),
        arguments: fields::table_from_json(body.get("arguments").unwrap_or(&Value::Null)),
    };
    run(api, c, cmd).await?;
    Ok(Reply::created(!existed))
}

/// Run a command as the calling user.
pub async fn run(api: &Api, c: &Caller, cmd: Command) -> Result<crate::broker::Outcome> {
    let actor = crate::broker::Actor {
        user: Some(Arc::from(c.name())),
        conn: None,
        channel: None,
    };
    api.broker
        .run(cmd, &actor)
        .await
        .map_err(|e| reply::from_amqp(&e))
}

pub async fn delete(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    v.exchange(name).ok_or_else(reply::not_found)?;
    let cmd = Command::DeleteExchange {
        vhost: vhost.to_string(),
        name: name.to_string(),
        if_unused: r.flag("if-unused"),
    };
    run(api, c, cmd).await?;
    Ok(Reply::no_content())
}

/// BasicProperties from the management API's `properties` object.
pub fn properties(p: &Value) -> Result<BasicProperties> {
    let mut props = BasicProperties::default();
    let Some(p) = p.as_object() else {
        return Ok(props);
    };
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    let int = |k: &str| -> Result<Option<u64>> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| reply::bad_request(json!(["not_int", k]))),
        }
    };
    if let Some(v) = s("content_type") {
        props = props.with_content_type(v.into());
    }
    if let Some(v) = s("content_encoding") {
        props = props.with_content_encoding(v.into());
    }
    if let Some(h) = p.get("headers").filter(|h| h.is_object()) {
        props = props.with_headers(fields::table_from_json(h));
    }
    if let Some(v) = int("delivery_mode")? {
        props = props.with_delivery_mode(v.min(255) as u8);
    }
    if let Some(v) = int("priority")? {
        props = props.with_priority(v.min(255) as u8);
    }
    if let Some(v) = s("correlation_id") {
        props = props.with_correlation_id(v.into());
    }
    if let Some(v) = s("reply_to") {
        props = props.with_reply_to(v.into());
    }
    if let Some(v) = s("expiration") {
        props = props.with_expiration(v.into());
    }
    if let Some(v) = s("message_id") {
        props = props.with_message_id(v.into());
    }
    if let Some(v) = int("timestamp")? {
        props = props.with_timestamp(v);
    }
    if let Some(v) = s("type") {
        props = props.with_type(v.into());
    }
    if let Some(v) = s("user_id") {
        props = props.with_user_id(v.into());
    }
    if let Some(v) = s("app_id") {
        props = props.with_app_id(v.into());
    }
    Ok(props)
}

pub async fn publish(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let body = r.json()?;
    reply::require(
        &body,
        &["properties", "routing_key", "payload", "payload_encoding"],
    )?;
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let payload = body["payload"].as_str().unwrap_or_default();
    let body_bytes = match body["payload_encoding"].as_str() {
        Some("string") => Bytes::copy_from_slice(payload.as_bytes()),
        Some("base64") => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|_| reply::bad_request(json!(["not_base64", payload])))?,
        ),
        other => {
            return Err(reply::bad_request(json!([
                "unsupported_encoding",
                other.unwrap_or_default()
            ])))
        }
    };
    let Some(x) = v.exchange(name) else {
        return Err(reply::bad_request(format!(
            "404 NOT_FOUND - no exchange '{name}' in vhost '{vhost}'"
        )));
    };
    let props = properties(&body["properties"])?;
    crate::channel::methods::validate_properties(&props, c.name())
        .map_err(|e| reply::bad_request(format!("{} {}", e.code.code(), e.reply_text())))?;
    let routing_key = body["routing_key"].as_str().unwrap_or_default();
    let msg = Arc::new(Message {
        exchange: x.name.clone(),
        routing_key: routing_key.into(),
        header: crate::protocol::encode_content_header(body_bytes.len() as u64, &props),
        properties: crate::queue::message::Props::new(props),
        body: body_bytes,
        broker_deaths: false,
    });
    let connection: Arc<str> = Arc::from("<warren@localhost.management>");
    let user: Arc<str> = Arc::from(c.name());
    let origin = crate::broker::trace::Origin {
        connection: &connection,
        channel: 1,
        user: &user,
        mandatory: false,
        trace: true,
    };
    let published = v.publish(&x, msg, None, Some(&origin));
    Ok(Reply::json(&json!({"routed": published.routed})))
}

/// A field table from a JSON `arguments` value (an absent one is empty).
pub fn args(v: Option<&Value>) -> FieldTable {
    fields::table_from_json(v.unwrap_or(&Value::Null))
}
