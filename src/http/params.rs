//! Policies, operator policies, runtime parameters, global parameters, and vhost and user limits.

use super::auth::Caller;
use super::reply::{self, Reply, Result, Vary};
use super::{Api, Req};
use crate::broker::policy::{ApplyTo, PolicyDef};
use crate::broker::{Actor, Command};
use serde_json::{json, Value};

async fn run(api: &Api, cmd: Command) -> Result<()> {
    api.broker
        .run(cmd, &Actor::internal())
        .await
        .map(|_| ())
        .map_err(|e| reply::from_amqp(&e))
}

/// RabbitMQ's policy keys (3.10); anything else is refused.
const POLICY_KEYS: &[&str] = &[
    "alternate-exchange",
    "consumer-timeout",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "delivery-limit",
    "expires",
    "federation-upstream",
    "federation-upstream-set",
    "ha-mode",
    "ha-params",
    "ha-promote-on-failure",
    "ha-promote-on-shutdown",
    "ha-sync-batch-size",
    "ha-sync-mode",
    "initial-cluster-size",
    "max-age",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
    "overflow",
    "queue-leader-locator",
    "queue-master-locator",
    "queue-mode",
    "queue-version",
    "stream-max-segment-size-bytes",
];

const OPERATOR_POLICY_KEYS: &[&str] = &[
    "delivery-limit",
    "expires",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "max-length",
    "max-length-bytes",
    "message-ttl",
];

/// An Erlang binary as RabbitMQ prints it in validation messages; HTML-escaped for `/api/policies`.
fn erl_bin(s: &str, html: bool) -> String {
    if html {
        format!("&lt;&lt;\"{s}\"&gt;&gt;")
    } else {
        format!("<<\"{s}\">>")
    }
}

fn validation(msg: String) -> Reply {
    reply::bad_request(format!("Validation failed\n\n{msg}\n"))
}

fn policy_object(p: &PolicyDef) -> Value {
    json!({"vhost": p.vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
           "definition": p.definition, "priority": p.priority})
}

fn vary(operator: bool) -> Vary {
    if operator {
        Vary::NoAccept
    } else {
        Vary::Accept
    }
}

pub fn policies(api: &Api, c: &Caller, operator: bool, vhost: Option<&str>) -> Result {
    if let Some(v) = vhost {
        super::vhosts::lookup(api, v)?;
        c.require_vhost(&api.broker, v)?;
    }
    let mut out = Vec::new();
    for v in api.broker.vhosts() {
        if vhost.is_some_and(|x| x != &*v.name) || !c.sees(&api.broker, &v.name) {
            continue;
        }
        let mut list = v.policies(operator);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(list.iter().map(policy_object));
    }
    Ok(Reply::json(&Value::Array(out)).vary(vary(operator)))
}

pub fn get_policy(api: &Api, c: &Caller, operator: bool, vhost: &str, name: &str) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_vhost(&api.broker, vhost)?;
    let p = v
        .policies(operator)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| reply::not_found().vary(vary(operator)))?;
    Ok(Reply::json(&policy_object(&p)).vary(vary(operator)))
}

pub async fn put_policy(
    api: &Api,
    c: &Caller,
    r: &Req,
    operator: bool,
    vhost: &str,
    name: &str,
) -> Result {
    let body = r.json()?;
    let v = api.broker.vhost(vhost).ok_or_else(reply::vhost_not_found)?;
    c.require_policymaker(&api.broker, vhost)?;
    reply::require(&body, &["pattern", "definition"])?;
    let html = !operator;
    let pattern = body["pattern"].as_str().unwrap_or_default().to_string();
    if let Err(e) = regex_lite::Regex::new(&pattern) {
        return Err(validation(format!(
            "pattern should be regular expression but is invalid: {{\"{}\",1}}",
            e.to_string().lines().last().unwrap_or_default()
        )));
    }
    let definition = body["definition"].as_object().cloned().unwrap_or_default();
    if definition.is_empty() {
        return Err(validation("no policy provided".into()));
    }
    let known = if operator {
        OPERATOR_POLICY_KEYS
    } else {
        POLICY_KEYS
    };
    let unknown: Vec<String> = definition
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| {
            let val = match v {
                Value::String(s) => erl_bin(s, html),
                other => other.to_string(),
            };
            format!("{{{},{val}}}", erl_bin(k, html))
        })
        .collect();
    if !unknown.is_empty() {
        return Err(validation(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        )));
    }
    let apply_to = match body.get("apply-to").and_then(Value::as_str) {
        None | Some("all") => ApplyTo::All,
        Some("queues") => ApplyTo::Queues,
        Some("exchanges") => ApplyTo::Exchanges,
        Some(other) => {
            return Err(validation(format!(
                "apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'"
            )))
        }
    };
    let priority = match body.get("priority") {
        None => 0,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            return Err(validation(format!(
                "priority should be a number, actually was {}",
                erl_bin(s, html)
            )))
        }
        Some(other) => {
            return Err(validation(format!(
                "priority should be a number, actually was {other}"
            )))
        }
    };
    let existed = v.policies(operator).iter().any(|p| p.name == name);
    let def = PolicyDef {
        vhost: vhost.to_string(),
        name: name.to_string(),
        pattern,
        apply_to,
        priority,
        definition,
    };
    // The broker checks the values themselves (a negative max-length, say).
    api.broker
        .run(Command::SetPolicy { def, operator }, &Actor::internal())
        .await
        .map_err(|e| match e.code {
            crate::error::ReplyCode::PreconditionFailed => validation(e.text),
            _ => reply::from_amqp(&e),
        })?;
    Ok(Reply::created(!existed).vary(vary(operator)))
}

pub async fn delete_policy(
    api: &Api,
    c: &Caller,
    operator: bool,
    vhost: &str,
    name: &str,
) -> Result {
    let v = super::vhosts::lookup(api, vhost)?;
    c.require_policymaker(&api.broker, vhost)?;
    if !v.policies(operator).iter().any(|p| p.name == name) {
        return Err(reply::not_found().vary(vary(operator)));
    }
    run(
        api,
        Command::ClearPolicy {
            vhost: vhost.into(),
            name: name.into(),
            operator,
        },
    )
    .await?;
    Ok(Reply::no_content().vary(vary(operator)))
}

/// Every vhost-scoped parameter RabbitMQ lists: stored ones, operator policies and vhost limits.
fn all_parameters(api: &Api, c: &Caller) -> Vec<(String, String, String, Value)> {
    let mut out: Vec<(String, String, String, Value)> = api
        .broker
        .parameters()
        .into_iter()
        .map(|((comp, v, n), val)| (comp, v, n, val))
        .collect();
    for v in api.broker.vhosts() {
        for p in v.policies(true) {
            out.push((
                "operator_policy".into(),
                v.name.to_string(),
                p.name.clone(),
                json!({"pattern": p.pattern, "definition": p.definition, "priority": p.priority, "apply-to": p.apply_to}),
            ));
        }
        let limits = v.limits();
        if !limits.is_empty() {
            out.push((
                "vhost-limits".into(),
                v.name.to_string(),
                "limits".into(),
                json!(limits),
            ));
        }
    }
    out.retain(|(_, v, _, _)| c.sees(&api.broker, v));
    out
}

fn parameter_object(p: &(String, String, String, Value)) -> Value {
    json!({"value": p.3, "vhost": p.1, "component": p.0, "name": p.2})
}

pub fn parameters(api: &Api, c: &Caller, component: Option<&str>, vhost: Option<&str>) -> Result {
    if let Some(v) = vhost {
        super::vhosts::lookup(api, v)?;
    }
    let out: Vec<Value> = all_parameters(api, c)
        .iter()
        .filter(|p| component.is_none_or(|x| p.0 == x) && vhost.is_none_or(|x| p.1 == x))
        .map(parameter_object)
        .collect();
    Ok(Reply::json(&Value::Array(out)))
}

pub fn get_parameter(api: &Api, c: &Caller, component: &str, vhost: &str, name: &str) -> Result {
    all_parameters(api, c)
        .iter()
        .find(|p| p.0 == component && p.1 == vhost && p.2 == name)
        .map(|p| Reply::json(&parameter_object(p)))
        .ok_or_else(reply::not_found)
}

pub async fn put_parameter(
    api: &Api,
    c: &Caller,
    r: &Req,
    component: &str,
    vhost: &str,
    name: &str,
) -> Result {
    let body = r.json()?;
    api.broker.vhost(vhost).ok_or_else(reply::vhost_not_found)?;
    c.require_policymaker(&api.broker, vhost)?;
    reply::require(&body, &["value"])?;
    let existed = api
        .broker
        .parameters()
        .iter()
        .any(|((comp, v, n), _)| comp == component && v == vhost && n == name);
    run(
        api,
        Command::SetParameter {
            component: component.into(),
            vhost: vhost.into(),
            name: name.into(),
            value: body["value"].clone(),
        },
    )
    .await?;
    Ok(Reply::created(!existed))
}

pub async fn delete_parameter(
    api: &Api,
    c: &Caller,
    component: &str,
    vhost: &str,
    name: &str,
) -> Result {
    c.require_policymaker(&api.broker, vhost)?;
    let exists = api
        .broker
        .parameters()
        .iter()
        .any(|((comp, v, n), _)| comp == component && v == vhost && n == name);
    if !exists {
        return Err(reply::not_found());
    }
    run(
        api,
        Command::ClearParameter {
            component: component.into(),
            vhost: vhost.into(),
            name: name.into(),
        },
    )
    .await?;
    Ok(Reply::no_content())
}

pub fn global_parameters(api: &Api, c: &Caller) -> Result {
    c.require_admin()?;
    let out: Vec<Value> = api
        .broker
        .global_parameters()
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    Ok(Reply::json(&Value::Array(out)))
}

pub fn get_global(api: &Api, c: &Caller, name: &str) -> Result {
    c.require_admin()?;
    api.broker
        .global_parameters()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(n, v)| Reply::json(&json!({"value": v, "name": n})))
        .ok_or_else(reply::not_found)
}

pub async fn put_global(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    reply::require(&body, &["value"])?;
    let existed = api
        .broker
        .global_parameters()
        .iter()
        .any(|(n, _)| n == name);
    run(
        api,
        Command::SetGlobalParameter {
            name: name.into(),
            value: body["value"].clone(),
        },
    )
    .await?;
    Ok(Reply::created(!existed))
}

pub async fn delete_global(api: &Api, c: &Caller, name: &str) -> Result {
    c.require_admin()?;
    if !api
        .broker
        .global_parameters()
        .iter()
        .any(|(n, _)| n == name)
    {
        return Err(reply::not_found());
    }
    run(api, Command::ClearGlobalParameter { name: name.into() }).await?;
    Ok(Reply::no_content())
}

pub fn vhost_limits(api: &Api, c: &Caller, vhost: Option<&str>) -> Result {
    if let Some(v) = vhost {
        super::vhosts::lookup(api, v)?;
        c.require_vhost(&api.broker, v)?;
    }
    let out: Vec<Value> = api
        .broker
        .vhosts()
        .iter()
        .filter(|v| vhost.is_none_or(|x| x == &*v.name) && c.sees(&api.broker, &v.name))
        .filter(|v| !v.limits().is_empty())
        .map(|v| json!({"vhost": v.name.to_string(), "value": v.limits()}))
        .collect();
    Ok(Reply::json(&Value::Array(out)).vary(Vary::NoAccept))
}

/// A limit's value: a JSON integer (RabbitMQ's wording for anything else).
fn limit_value(body: &Value, name: &str, prefix: bool) -> Result<i64> {
    reply::require(body, &["value"])?;
    match &body["value"] {
        Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap_or(-1)),
        other => {
            let shown = match other {
                Value::String(s) => format!("<<\"{s}\">>"),
                v => v.to_string(),
            };
            let msg = format!("{name} should be a number, actually was {shown}");
            Err(if prefix {
                validation(msg)
            } else {
                reply::bad_request(msg)
            })
        }
    }
}

pub async fn put_vhost_limit(api: &Api, c: &Caller, r: &Req, vhost: &str, name: &str) -> Result {
    let body = r.json()?;
    api.broker.vhost(vhost).ok_or_else(reply::vhost_not_found)?;
    c.require_admin()?;
    if !matches!(name, "max-connections" | "max-queues") {
        let v = body.get("value").cloned().unwrap_or(Value::Null);
        return Err(validation(format!(
            "Unrecognised terms [{{<<\"{name}\">>,{v}}}] in limits"
        )));
    }
    let value = limit_value(&body, name, true)?;
    run(
        api,
        Command::SetVhostLimit {
            vhost: vhost.into(),
            name: name.into(),
            value,
        },
    )
    .await?;
    Ok(Reply::no_content().vary(Vary::NoAccept))
}

pub async fn delete_vhost_limit(api: &Api, c: &Caller, vhost: &str, name: &str) -> Result {
    super::vhosts::lookup(api, vhost)?;
    c.require_admin()?;
    run(
        api,
        Command::ClearVhostLimit {
            vhost: vhost.into(),
            name: name.into(),
        },
    )
    .await?;
    Ok(Reply::no_content().vary(Vary::NoAccept))
}

pub fn user_limits(api: &Api, c: &Caller, user: Option<&str>) -> Result {
    c.require_admin()?;
    if let Some(u) = user {
        api.broker.user(u).ok_or_else(reply::not_found)?;
    }
    let out: Vec<Value> = api
        .broker
        .users
        .list()
        .iter()
        .filter(|u| user.is_none_or(|x| x == u.name) && !u.limits.is_empty())
        .map(|u| json!({"user": u.name, "value": u.limits}))
        .collect();
    Ok(Reply::json(&Value::Array(out)).vary(Vary::NoAccept))
}

pub async fn put_user_limit(api: &Api, c: &Caller, r: &Req, user: &str, name: &str) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    if api.broker.user(user).is_none() {
        return Err(reply::bad_request(json!(["no_such_user", user])));
    }
    if !matches!(name, "max-connections" | "max-channels") {
        let v = body.get("value").cloned().unwrap_or(Value::Null);
        return Err(reply::bad_request(format!(
            "Unrecognised terms [{{<<\"{name}\">>,{v}}}] in user-limits"
        )));
    }
    let value = limit_value(&body, name, false)?;
    run(
        api,
        Command::SetUserLimit {
            user: user.into(),
            name: name.into(),
            value,
        },
    )
    .await?;
    Ok(Reply::no_content().vary(Vary::NoAccept))
}

pub async fn delete_user_limit(api: &Api, c: &Caller, user: &str, name: &str) -> Result {
    c.require_admin()?;
    if api.broker.user(user).is_some() {
        run(
            api,
            Command::ClearUserLimit {
                user: user.into(),
                name: name.into(),
            },
        )
        .await?;
    }
    Ok(Reply::no_content().vary(Vary::NoAccept))
}
