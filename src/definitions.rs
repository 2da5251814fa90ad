//! RabbitMQ-format definitions (the JSON that `rabbitmqctl export_definitions` and the management API produce):
//! users, vhosts, permissions, exchanges, queues, bindings and policies, applied at start through the same
//! broker functions the AMQP methods use.

use crate::broker::vhost::QueueDeclare;
use crate::broker::{Broker, User};
use crate::protocol::fields;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Definitions {
    pub users: Vec<UserDef>,
    pub vhosts: Vec<VhostDef>,
    pub permissions: Vec<PermissionDef>,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub policies: Vec<crate::broker::policy::PolicyDef>,
    pub operator_policies: Vec<crate::broker::policy::PolicyDef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserDef {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub hashing_algorithm: Option<String>,
    #[serde(default)]
    pub tags: Tags,
}

/// RabbitMQ writes tags as a list (3.10+) or a comma-separated string (older exports).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    #[default]
    None,
    List(Vec<String>),
    Text(String),
}

impl Tags {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Tags::None => Vec::new(),
            Tags::List(v) => v.clone(),
            Tags::Text(s) => s
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct VhostDef {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
}

fn default_vhost() -> String {
    "/".to_string()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    #[serde(rename = "type", default = "default_type")]
    pub kind: String,
    #[serde(default = "default_true")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub arguments: serde_json::Value,
}

fn default_type() -> String {
    "direct".to_string()
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueDef {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    #[serde(default = "default_true")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BindingDef {
    pub source: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub destination: String,
    #[serde(default = "default_queue")]
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default)]
    pub arguments: serde_json::Value,
}

fn default_queue() -> String {
    "queue".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    #[error("cannot read definitions file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid definitions JSON: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("definitions: {0}")]
    Apply(String),
}

/// Check a password against a RabbitMQ password hash (base64 of a 4-byte salt + SHA-256(salt + password)).
pub fn check_password_hash(hash_b64: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(hash_b64) else {
        return false;
    };
    if raw.len() != 4 + 32 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(&raw[..4]);
    h.update(password.as_bytes());
    h.finalize().as_slice() == &raw[4..]
}

/// Read a definitions file.
pub fn read_file(path: &Path) -> Result<Definitions, DefinitionsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(serde_json::from_str(&text)?)
}

/// Apply definitions: vhosts and users first, then exchanges, queues and bindings.
pub fn apply(broker: &Broker, d: &Definitions) -> Result<(), DefinitionsError> {
    for v in &d.vhosts {
        broker.add_vhost(&v.name);
    }
    for u in &d.users {
        let hashed = match (&u.password, &u.password_hash) {
            (Some(p), _) => crate::broker::Password::Plain(p.clone()),
            (None, Some(h)) => {
                let algo = u
                    .hashing_algorithm
                    .as_deref()
                    .unwrap_or("rabbit_password_hashing_sha256");
                if algo != "rabbit_password_hashing_sha256" {
                    return Err(DefinitionsError::Apply(format!(
                        "user '{}': hashing algorithm {algo} is not supported (use sha256 or a plain password)",
                        u.name
                    )));
                }
                crate::broker::Password::Sha256(h.clone())
            }
            (None, None) => crate::broker::Password::None,
        };
        let vhosts = broker.user(&u.name).map(|x| x.vhosts).unwrap_or_default();
        broker.add_user(User {
            name: u.name.clone(),
            password: hashed,
            tags: u.tags.to_vec(),
            vhosts,
        });
    }
    for p in &d.permissions {
        broker.grant(&p.user, &p.vhost);
    }
    let vhost = |name: &str| {
        broker
            .vhost(name)
            .ok_or_else(|| DefinitionsError::Apply(format!("vhost '{name}' does not exist")))
    };
    let fail = |what: String, e: crate::error::AmqpError| {
        DefinitionsError::Apply(format!("{what}: {}", e.reply_text()))
    };
    for x in &d.exchanges {
        let args = fields::table_from_json(&x.arguments);
        vhost(&x.vhost)?
            .declare_exchange(
                &x.name,
                &x.kind,
                false,
                x.durable,
                x.auto_delete,
                x.internal,
                &args,
            )
            .map_err(|e| fail(format!("exchange '{}'", x.name), e))?;
    }
    for q in &d.queues {
        let args = fields::table_from_json(&q.arguments);
        let req = QueueDeclare {
            name: &q.name,
            passive: false,
            durable: q.durable,
            exclusive: false,
            auto_delete: q.auto_delete,
            arguments: &args,
        };
        vhost(&q.vhost)?
            .declare_queue_unchecked(&req, 0)
            .map_err(|e| fail(format!("queue '{}'", q.name), e))?;
    }
    for b in &d.bindings {
        let args = fields::table_from_json(&b.arguments);
        let v = vhost(&b.vhost)?;
        let r = if b.destination_type == "exchange" {
            v.bind_exchange(&b.destination, &b.source, &b.routing_key, &args)
        } else {
            v.bind_queue(&b.destination, &b.source, &b.routing_key, &args, 0)
        };
        r.map_err(|e| fail(format!("binding '{}' -> '{}'", b.source, b.destination), e))?;
    }
    for (list, operator) in [(&d.policies, false), (&d.operator_policies, true)] {
        for p in list {
            vhost(&p.vhost)?
                .set_policy(p.clone(), operator)
                .map_err(DefinitionsError::Apply)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_password_hash() {
        // salt 0x908DC60A + sha256(salt + "test12")
        let salt = [0x90u8, 0x8D, 0xC6, 0x0A];
        let mut h = Sha256::new();
        h.update(salt);
        h.update(b"test12");
        let mut raw = salt.to_vec();
        raw.extend_from_slice(&h.finalize());
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(check_password_hash(&b64, "test12"));
        assert!(!check_password_hash(&b64, "nope"));
    }

    #[test]
    fn applies_topology() {
        let broker = Broker::new(crate::Config::default());
        let json = r#"{
            "vhosts": [{"name": "/"}, {"name": "app"}],
            "users": [{"name": "bob", "password": "secret", "tags": "management"}],
            "permissions": [{"user": "bob", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}],
            "exchanges": [{"name": "ex", "vhost": "app", "type": "topic", "durable": true}],
            "queues": [{"name": "q", "vhost": "app", "durable": true, "arguments": {"x-message-ttl": 1000}}],
            "bindings": [{"source": "ex", "vhost": "app", "destination": "q", "destination_type": "queue", "routing_key": "a.#"}]
        }"#;
        let d: Definitions = serde_json::from_str(json).unwrap();
        apply(&broker, &d).unwrap();
        let v = broker.vhost("app").unwrap();
        assert!(v.queue("q").is_some());
        assert_eq!(v.exchange("ex").unwrap().bindings().len(), 1);
        let bob = broker.authenticate("bob", "secret").unwrap();
        assert_eq!(bob.vhosts, vec!["app".to_string()]);
        assert!(broker.authenticate("bob", "wrong").is_none());
    }
}
