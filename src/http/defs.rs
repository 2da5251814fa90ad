//! Definitions export and import, the aliveness test and the health checks.

use super::auth::Caller;
use super::reply::{self, Reply, Result};
use super::{Api, Req};
use crate::broker::{Actor, Command};
use crate::definitions::{self, Definitions};
use axum::http::{header, StatusCode};
use serde_json::{json, Value};

pub fn export(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    c.require_admin()?;
    let body = match vhost {
        None => definitions::export(&api.broker),
        Some(v) => definitions::export_vhost(&api.broker, v)
            .ok_or_else(|| reply::bad_request("vhost_not_found"))?,
    };
    let mut out = Reply::json(&body);
    if let Some(name) = r.q("download") {
        out = out.header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename={name}"),
        );
    }
    Ok(out)
}

/// The JSON document of an import: the body itself, or the `file` part of a multipart form.
fn document(r: &Req) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        return Some(v);
    }
    let ct = r.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"');
    let text = String::from_utf8_lossy(&r.body);
    for part in text.split(&format!("--{boundary}")) {
        if let Some((head, body)) = part.split_once("\r\n\r\n") {
            if head.contains("name=\"file\"") {
                let body = body.trim_end_matches("\r\n");
                return serde_json::from_str(body).ok();
            }
        }
    }
    None
}

pub async fn import(api: &Api, c: &Caller, r: &Req, vhost: Option<&str>) -> Result {
    c.require_admin()?;
    if let Some(v) = vhost {
        if api.broker.vhost(v).is_none() {
            return Err(reply::vhost_not_found());
        }
    }
    let failed = || reply::bad_request("failed_to_parse_json");
    let doc = document(r).filter(Value::is_object).ok_or_else(failed)?;
    let d: Definitions = serde_json::from_value(doc).map_err(|_| failed())?;
    let known: Vec<String> = d.vhosts.iter().map(|v| v.name.clone()).collect();
    let missing = d
        .queues
        .iter()
        .map(|q| &q.vhost)
        .chain(d.exchanges.iter().map(|x| &x.vhost))
        .chain(d.bindings.iter().map(|b| &b.vhost))
        .chain(d.permissions.iter().map(|p| &p.vhost))
        .find(|v| vhost.is_none() && api.broker.vhost(v).is_none() && !known.contains(v));
    if let Some(v) = missing {
        return Err(reply::bad_request(json!(["no_such_vhost", v])));
    }
    definitions::import(&api.broker, &d, vhost)
        .await
        .map_err(|e| reply::bad_request(e.to_string()))?;
    Ok(Reply::no_content())
}

/// Declare `aliveness-test`, publish to it and get the message back (the queue stays, as in RabbitMQ).
pub async fn aliveness(api: &Api, c: &Caller, vhost: &str) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let declare = Command::DeclareQueue {
        vhost: vhost.to_string(),
        name: "aliveness-test".into(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: Default::default(),
    };
    api.broker
        .run(declare, &Actor::internal())
        .await
        .map_err(|e| reply::from_amqp(&e))?;
    let q = v.queue("aliveness-test").ok_or_else(reply::not_found)?;
    q.purge();
    let props = amq_protocol::protocol::BasicProperties::default();
    let msg = std::sync::Arc::new(crate::queue::message::Message {
        exchange: "".into(),
        routing_key: "aliveness-test".into(),
        header: crate::protocol::encode_content_header(12, &props),
        properties: crate::queue::message::Props::new(props),
        body: bytes::Bytes::from_static(b"test_message"),
        broker_deaths: false,
    });
    q.publish(msg);
    let got = q.purge();
    if got != 1 {
        return Err(
            Reply::json(&json!({"status": "failed", "reason": "message not delivered"}))
                .with_status(StatusCode::SERVICE_UNAVAILABLE),
        );
    }
    Ok(Reply::json(&json!({"status": "ok"})))
}

fn failed(body: Value) -> Reply {
    Reply::json(&body).with_status(StatusCode::SERVICE_UNAVAILABLE)
}

pub fn health(api: &Api, _c: &Caller, path: &[String]) -> Result {
    let ok = || Ok(Reply::json(&json!({"status": "ok"})));
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["node"] => ok(),
        [which @ ("alarms" | "local-alarms")] => {
            let bits = api.broker.alarms.active();
            if bits == 0 {
                return ok();
            }
            let mut alarms = Vec::new();
            for (bit, name) in [
                (crate::broker::alarm::MEMORY, "memory"),
                (crate::broker::alarm::DISK, "disk"),
            ] {
                if bits & bit != 0 {
                    alarms.push(json!({"node": super::overview::NODE, "resource": name}));
                }
            }
            let reason = if *which == "alarms" {
                "There are alarms in effect in the cluster"
            } else {
                "There are alarms in effect on the node"
            };
            Err(failed(
                json!({"alarms": alarms, "reason": reason, "status": "failed"}),
            ))
        }
        ["virtual-hosts"] => ok(),
        ["port-listener", port] => {
            let Ok(port) = port.parse::<u16>() else {
                return Err(reply::bad_request("Invalid port"));
            };
            let mut ports = vec![api.mgmt_port, api.amqp_port];
            ports.extend(api.prometheus_port);
            if ports.contains(&port) {
                Ok(Reply::json(&json!({"status": "ok", "port": port})))
            } else {
                Err(failed(
                    json!({"status": "failed", "reason": "No active listener", "missing": port, "ports": ports}),
                ))
            }
        }
        ["protocol-listener", proto] => {
            let name = match *proto {
                "amqp" | "amqp091" | "amqp0-9-1" => Some("amqp"),
                "http" | "management" => Some("http"),
                "http/prometheus" | "prometheus" if api.prometheus_port.is_some() => {
                    Some("http/prometheus")
                }
                _ => None,
            };
            match name {
                Some(n) => Ok(Reply::json(&json!({"status": "ok", "protocol": n}))),
                None => {
                    let mut protocols = vec!["http", "amqp"];
                    if api.prometheus_port.is_some() {
                        protocols.push("http/prometheus");
                    }
                    Err(failed(
                        json!({"status": "failed", "reason": "No active listener", "missing": proto, "protocols": protocols}),
                    ))
                }
            }
        }
        ["certificate-expiration", n, unit] => {
            if n.parse::<u64>().is_err() {
                return Err(reply::bad_request("Invalid expiration value."));
            }
            if !matches!(*unit, "days" | "weeks" | "months" | "years") {
                return Err(reply::bad_request(
                    "Time unit not recognised. Supported units: days, weeks, months, years.",
                ));
            }
            ok()
        }
        ["node-is-quorum-critical"] | ["node-is-mirror-sync-critical"] => Ok(Reply::json(
            &json!({"status": "ok", "reason": "single node cluster"}),
        )),
        ["ready-to-serve-clients"] | ["is-in-service"] => ok(),
        _ => Err(reply::not_found()),
    }
}
