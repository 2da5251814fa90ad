//! Bindings: lists (with every queue's implicit default-exchange binding), the bindings between two
//! objects, creating one (201 with RabbitMQ's relative, twice-encoded Location) and getting or deleting one
//! by its properties key.

use super::auth::Caller;
use super::exchanges::{args, run};
use super::reply::{self, Reply, Result};
use super::{Api, Req};
use crate::broker::command::BindingArgs;
use crate::broker::exchange::Binding;
use crate::broker::{Command, VHost};
use crate::protocol::fields;
use amq_protocol::types::FieldTable;
use axum::http::{header, StatusCode};
use base64::Engine;
use serde_json::{json, Value};

/// RabbitMQ's quote_plus: letters, digits and `-_.` stay, a space is `+`, the rest is %XX.
pub fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encoding that keeps RFC 3986's unreserved characters (`~` too), as the Location header of
/// RabbitMQ's binding POST does: `q3/my.key~W8PYWg`, `q3/a%2Bb%252F…`.
fn quote_unreserved(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
fn unquote_plus(s: &str) -> String {
    super::decode(&s.replace('+', " "))
}

/// A stable short hash of binding arguments (RabbitMQ's is Erlang's phash2; clients only echo it back).
fn args_hash(args: &FieldTable) -> String {
    let text = fields::table_to_json(args).to_string();
    let h = crc32fast::hash(text.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes())
}

/// The binding's key in URLs and listings.
pub fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    match (routing_key.is_empty(), args.inner().is_empty()) {
        (true, true) => "~".to_string(),
        (false, true) => quote_plus(routing_key),
        (_, false) => format!("{}~{}", quote_plus(routing_key), args_hash(args)),
    }
}

fn object(vhost: &str, source: &str, b: &Binding) -> Value {
    json!({
        "source": source,
        "vhost": vhost,
        "destination": b.destination.name(),
        "destination_type": if b.destination.is_queue() { "queue" } else { "exchange" },
        "routing_key": b.routing_key,
        "arguments": fields::table_to_json(&b.arguments),
        "properties_key": properties_key(&b.routing_key, &b.arguments),
    })
}

fn default_binding(vhost: &str, queue: &str) -> Value {
    json!({
        "source": "", "vhost": vhost, "destination": queue, "destination_type": "queue",
        "routing_key": queue, "arguments": {}, "properties_key": quote_plus(queue),
    })
}

/// Every binding of a vhost: the default exchange's implicit ones first, then each exchange's.
fn all(v: &VHost) -> Vec<Value> {
    let mut queues = v.queues();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Value> = queues
        .iter()
        .map(|q| default_binding(&v.name, &q.name))
        .collect();
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for x in exchanges.iter().filter(|x| !x.name.is_empty()) {
        let mut bs = x.bindings();
        bs.sort_by(|a, b| {
            (a.destination.name(), &a.routing_key).cmp(&(b.destination.name(), &b.routing_key))
        });
        out.extend(bs.iter().map(|b| object(&v.name, &x.name, b)));
    }
    out
}

pub fn list(api: &Api, c: &Caller, vhost: Option<&str>) -> Result {
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
    let out: Vec<Value> = vhosts.iter().flat_map(|v| all(v)).collect();
    Ok(Reply::json(&Value::Array(out)))
}

pub fn of_exchange(api: &Api, c: &Caller, vhost: &str, name: &str, source: bool) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let out: Vec<Value> = all(&v)
        .into_iter()
        .filter(|b| {
            if source {
                b["source"] == name
            } else {
                b["destination"] == name && b["destination_type"] == "exchange"
            }
        })
        .collect();
    Ok(Reply::json(&Value::Array(out)))
}

pub fn of_queue(api: &Api, c: &Caller, vhost: &str, name: &str) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    if v.queue(name).is_none() {
        return Ok(Reply::json(&json!([default_binding(vhost, name)])));
    }
    let out: Vec<Value> = all(&v)
        .into_iter()
        .filter(|b| b["destination"] == name && b["destination_type"] == "queue")
        .collect();
    Ok(Reply::json(&Value::Array(out)))
}

fn between_bindings(v: &VHost, source: &str, to_exchange: bool, destination: &str) -> Vec<Binding> {
    let Some(x) = v.exchange(source).filter(|x| !x.name.is_empty()) else {
        return Vec::new();
    };
    x.bindings()
        .into_iter()
        .filter(|b| b.destination.name() == destination && b.destination.is_queue() != to_exchange)
        .collect()
}

fn between_values(v: &VHost, source: &str, to_exchange: bool, destination: &str) -> Vec<Value> {
    between_bindings(v, source, to_exchange, destination)
        .iter()
        .map(|b| object(&v.name, source, b))
        .collect()
}

pub fn between(
    api: &Api,
    c: &Caller,
    vhost: &str,
    source: &str,
    to_exchange: bool,
    destination: &str,
) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    Ok(Reply::json(&Value::Array(between_values(
        &v,
        source,
        to_exchange,
        destination,
    ))))
}

pub async fn create(
    api: &Api,
    c: &Caller,
    r: &Req,
    vhost: &str,
    source: &str,
    to_exchange: bool,
    destination: &str,
) -> Result {
    let Ok(body) = r.json() else {
        return Err(Reply::status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let routing_key = match body.get("routing_key") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let arguments = args(body.get("arguments"));
    let location = format!(
        "{}/{}",
        quote_unreserved(destination),
        quote_unreserved(&properties_key(&routing_key, &arguments))
    );
    let cmd = Command::Bind(BindingArgs {
        vhost: vhost.to_string(),
        source: source.to_string(),
        destination: destination.to_string(),
        to_exchange,
        routing_key,
        arguments,
    });
    run(api, c, cmd).await?;
    Ok(Reply::status(StatusCode::CREATED).header(header::LOCATION, location))
}

/// A binding named in a URL by its properties key.
pub struct BindingPath<'a> {
    pub vhost: &'a str,
    pub source: &'a str,
    pub to_exchange: bool,
    pub destination: &'a str,
    pub props: &'a str,
}

fn find(api: &Api, c: &Caller, b: &BindingPath) -> Result<Binding> {
    let v = super::vhosts::lookup(api, b.vhost)?;
    c.require_vhost(&api.broker, b.vhost)?;
    between_bindings(&v, b.source, b.to_exchange, b.destination)
        .into_iter()
        .find(|x| properties_key(&x.routing_key, &x.arguments) == b.props)
        .ok_or_else(reply::not_found)
}

pub fn get(api: &Api, c: &Caller, b: &BindingPath) -> Result {
    let found = find(api, c, b)?;
    Ok(Reply::json(&object(b.vhost, b.source, &found)))
}

pub async fn delete(api: &Api, c: &Caller, b: &BindingPath<'_>) -> Result {
    let found = find(api, c, b)?;
    let cmd = Command::Unbind(BindingArgs {
        vhost: b.vhost.to_string(),
        source: b.source.to_string(),
        destination: b.destination.to_string(),
        to_exchange: b.to_exchange,
        routing_key: found.routing_key,
        arguments: found.arguments,
    });
    run(api, c, cmd).await?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_keys_as_rabbitmq_writes_them() {
        let none = FieldTable::default();
        assert_eq!(properties_key("", &none), "~");
        assert_eq!(properties_key("a.#", &none), "a.%23");
        assert_eq!(
            properties_key("a b/c~d%e#*", &none),
            "a+b%2Fc%7Ed%25e%23%2A"
        );
        let mut args = FieldTable::default();
        args.insert("x".into(), amq_protocol::types::AMQPValue::LongInt(1));
        let k = properties_key("my.key", &args);
        assert!(
            k.starts_with("my.key~") && k.len() == "my.key~".len() + 6,
            "{k}"
        );
        assert_eq!(quote_unreserved(&properties_key("a b", &none)), "a%2Bb");
        assert_eq!(quote_unreserved(&k), k, "the args separator stays as it is");
        assert_eq!(quote_unreserved(&properties_key("", &none)), "~");
        assert_eq!(unquote_plus("a+b%2Fc"), "a b/c");
    }
}
