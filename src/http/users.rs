//! Users, permissions and topic permissions.

use super::auth::Caller;
use super::reply::{self, Reply, Result, Vary};
use super::vhosts::tags_of;
use super::{Api, Req};
use crate::broker::users::{Permission, TopicPermission, User};
use crate::broker::{Actor, Command, StoredPassword};
use axum::http::StatusCode;
use base64::Engine;
use serde_json::{json, Value};

fn user_object(u: &User) -> Value {
    let (hash, algo) = u.password.to_rabbit();
    let limits: serde_json::Map<String, Value> = u
        .limits
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({"name": u.name, "password_hash": hash, "hashing_algorithm": algo, "tags": u.tags, "limits": limits})
}

async fn run(api: &Api, cmd: Command) -> Result<()> {
    api.broker
        .run(cmd, &Actor::internal())
        .await
        .map(|_| ())
        .map_err(|e| reply::from_amqp(&e))
}

pub fn list(api: &Api, c: &Caller, without_permissions: bool) -> Result {
    c.require_admin()?;
    let perms = api.broker.users.permissions();
    let users: Vec<Value> = api
        .broker
        .users
        .list()
        .iter()
        .filter(|u| !without_permissions || !perms.iter().any(|(name, _, _)| *name == u.name))
        .map(user_object)
        .collect();
    Ok(Reply::json(&Value::Array(users)))
}

pub fn get(api: &Api, c: &Caller, name: &str) -> Result {
    c.require_admin()?;
    let u = api.broker.user(name).ok_or_else(reply::not_found)?;
    Ok(Reply::json(&user_object(&u)))
}

pub async fn put(api: &Api, c: &Caller, r: &Req, name: &str) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    let Some(tags) = body.get("tags") else {
        return Err(reply::bad_request("tags_not_present"));
    };
    let existed = api.broker.user(name).is_some();
    let password = match (
        body.get("password").and_then(Value::as_str),
        body.get("password_hash").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => {
            return Err(reply::bad_request(
                "both_password_and_password_hash_are_provided",
            ))
        }
        (Some(p), None) => StoredPassword::hash(p),
        (None, Some(h)) => {
            if !h.is_empty() && base64::engine::general_purpose::STANDARD.decode(h).is_err() {
                return Err(reply::bad_request(json!(["not_base64", h])));
            }
            let algo = body.get("hashing_algorithm").and_then(Value::as_str);
            StoredPassword::from_rabbit(h, algo).unwrap_or(StoredPassword::Sha256(h.to_string()))
        }
        // RabbitMQ clears the password of an existing user updated without one, and gives a new user
        // one nobody knows.
        (None, None) => StoredPassword::None,
    };
    run(
        api,
        Command::PutUser {
            name: name.to_string(),
            password,
            tags: tags_of(tags),
        },
    )
    .await?;
    if let Some(limits) = body.get("limits").and_then(Value::as_object) {
        for (k, v) in limits {
            if let Some(value) = v.as_i64() {
                run(
                    api,
                    Command::SetUserLimit {
                        user: name.to_string(),
                        name: k.clone(),
                        value,
                    },
                )
                .await?;
            }
        }
    }
    Ok(Reply::created(!existed))
}

pub async fn delete(api: &Api, c: &Caller, name: &str) -> Result {
    c.require_admin()?;
    api.broker.user(name).ok_or_else(reply::not_found)?;
    run(api, Command::DeleteUser { name: name.into() }).await?;
    Ok(Reply::no_content())
}

pub async fn bulk_delete(api: &Api, c: &Caller, r: &Req) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    reply::require(&body, &["users"])?;
    for u in body["users"].as_array().into_iter().flatten() {
        let Some(name) = u.as_str() else { continue };
        if api.broker.user(name).is_none() {
            return Err(reply::bad_request(json!(["no_such_user", name])));
        }
        run(api, Command::DeleteUser { name: name.into() }).await?;
    }
    Ok(Reply::no_content())
}

fn perm_object(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

fn topic_object(user: &str, vhost: &str, t: &TopicPermission) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": t.exchange, "write": t.write, "read": t.read})
}

pub fn permissions(api: &Api, c: &Caller) -> Result {
    c.require_admin()?;
    let v: Vec<Value> = api
        .broker
        .users
        .permissions()
        .iter()
        .map(|(u, vh, p)| perm_object(u, vh, p))
        .collect();
    Ok(Reply::json(&Value::Array(v)))
}

pub fn vhost_permissions(api: &Api, c: &Caller, vhost: &str) -> Result {
    c.require_admin()?;
    super::vhosts::lookup(api, vhost)?;
    let v: Vec<Value> = api
        .broker
        .users
        .permissions()
        .iter()
        .filter(|(_, vh, _)| vh == vhost)
        .map(|(u, vh, p)| perm_object(u, vh, p))
        .collect();
    Ok(Reply::json(&Value::Array(v)))
}

pub fn user_permissions(api: &Api, c: &Caller, user: &str) -> Result {
    c.require_admin()?;
    api.broker.user(user).ok_or_else(reply::not_found)?;
    let v: Vec<Value> = api
        .broker
        .users
        .permissions()
        .iter()
        .filter(|(u, _, _)| u == user)
        .map(|(u, vh, p)| perm_object(u, vh, p))
        .collect();
    Ok(Reply::json(&Value::Array(v)))
}

pub fn get_permission(api: &Api, c: &Caller, vhost: &str, user: &str) -> Result {
    c.require_admin()?;
    let p = api
        .broker
        .users
        .permission(user, vhost)
        .ok_or_else(reply::not_found)?;
    Ok(Reply::json(&perm_object(user, vhost, &p)))
}

pub async fn put_permission(api: &Api, c: &Caller, r: &Req, vhost: &str, user: &str) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    reply::require(&body, &["configure", "write", "read"])?;
    if api.broker.user(user).is_none() || api.broker.vhost(vhost).is_none() {
        return Err(reply::bad_request("vhost_or_user_not_found"));
    }
    let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let existed = api.broker.users.permission(user, vhost).is_some();
    run(
        api,
        Command::SetPermissions {
            user: user.into(),
            vhost: vhost.into(),
            configure: s("configure"),
            write: s("write"),
            read: s("read"),
        },
    )
    .await?;
    Ok(Reply::created(!existed))
}

pub async fn delete_permission(api: &Api, c: &Caller, vhost: &str, user: &str) -> Result {
    c.require_admin()?;
    api.broker
        .users
        .permission(user, vhost)
        .ok_or_else(reply::not_found)?;
    run(
        api,
        Command::ClearPermissions {
            user: user.into(),
            vhost: vhost.into(),
        },
    )
    .await?;
    Ok(Reply::no_content())
}

fn topic_list(api: &Api, keep: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    api.broker
        .users
        .all_topic_permissions()
        .iter()
        .filter(|(u, v, _)| keep(u, v))
        .map(|(u, v, t)| topic_object(u, v, t))
        .collect()
}

fn topic_reply(v: Vec<Value>) -> Reply {
    Reply::json(&Value::Array(v)).vary(Vary::NoAccept)
}

pub fn topic_permissions(api: &Api, c: &Caller) -> Result {
    c.require_admin()?;
    Ok(topic_reply(topic_list(api, |_, _| true)))
}

pub fn vhost_topic_permissions(api: &Api, c: &Caller, vhost: &str) -> Result {
    c.require_admin()?;
    super::vhosts::lookup(api, vhost)?;
    Ok(topic_reply(topic_list(api, |_, v| v == vhost)))
}

pub fn user_topic_permissions(api: &Api, c: &Caller, user: &str) -> Result {
    c.require_admin()?;
    api.broker.user(user).ok_or_else(reply::not_found)?;
    Ok(topic_reply(topic_list(api, |u, _| u == user)))
}

/// RabbitMQ answers with every exchange's entry for the user in the vhost (an array), whatever
/// exchange the path names.
pub fn get_topic_permission(api: &Api, c: &Caller, vhost: &str, user: &str) -> Result {
    c.require_admin()?;
    let list = topic_list(api, |u, v| u == user && v == vhost);
    if list.is_empty() {
        return Err(reply::not_found().vary(Vary::NoAccept));
    }
    Ok(topic_reply(list))
}

pub async fn put_topic_permission(
    api: &Api,
    c: &Caller,
    r: &Req,
    vhost: &str,
    user: &str,
) -> Result {
    c.require_admin()?;
    let body = r.json()?;
    reply::require(&body, &["exchange", "write", "read"])?;
    if api.broker.user(user).is_none() || api.broker.vhost(vhost).is_none() {
        return Err(reply::bad_request("vhost_or_user_not_found"));
    }
    let had = !api.broker.users.topic_permissions(user, vhost).is_empty();
    let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    run(
        api,
        Command::SetTopicPermissions {
            user: user.into(),
            vhost: vhost.into(),
            exchange: s("exchange"),
            write: s("write"),
            read: s("read"),
        },
    )
    .await?;
    Ok(Reply::created(!had).vary(Vary::NoAccept))
}

pub async fn delete_topic_permission(
    api: &Api,
    c: &Caller,
    vhost: &str,
    user: &str,
    exchange: Option<&str>,
) -> Result {
    c.require_admin()?;
    let list = api.broker.users.topic_permissions(user, vhost);
    let found = match exchange {
        Some(x) => list.iter().any(|t| t.exchange == x),
        None => !list.is_empty(),
    };
    if !found {
        return Err(
            Reply::error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
                .vary(Vary::NoAccept),
        );
    }
    run(
        api,
        Command::ClearTopicPermissions {
            user: user.into(),
            vhost: vhost.into(),
            exchange: exchange.map(str::to_string),
        },
    )
    .await?;
    Ok(Reply::no_content().vary(Vary::NoAccept))
}
