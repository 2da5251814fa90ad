//! RabbitMQ-format definitions: the JSON that `rabbitmqctl export_definitions` and the management API
//! produce. Import turns a document into broker [`Command`]s (vhosts and users first, then permissions,
//! parameters and policies, then exchanges, queues and bindings) that go through the one command path;
//! export writes the broker's state in RabbitMQ's shape, so a file exported from either broker imports into
//! the other.

use crate::broker::command::BindingArgs;
use crate::broker::policy::PolicyDef;
use crate::broker::{Broker, Command, StoredPassword};
use crate::protocol::fields;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Definitions {
    pub users: Vec<UserDef>,
    pub vhosts: Vec<VhostDef>,
    pub permissions: Vec<PermissionDef>,
    pub topic_permissions: Vec<TopicPermissionDef>,
    pub parameters: Vec<ParameterDef>,
    pub global_parameters: Vec<GlobalParameterDef>,
    pub policies: Vec<PolicyDef>,
    /// Warren's config-file form; RabbitMQ exports them as `operator_policy` parameters.
    pub operator_policies: Vec<PolicyDef>,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
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
    #[serde(default)]
    pub limits: serde_json::Map<String, Value>,
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
    pub fn to_vec(&self) -> Vec<String> {
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

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VhostDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub default_queue_type: Option<String>,
    /// 3.11+ put description, tags and default queue type here.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

fn all() -> String {
    ".*".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    #[serde(default = "all")]
    pub configure: String,
    #[serde(default = "all")]
    pub write: String,
    #[serde(default = "all")]
    pub read: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    #[serde(default)]
    pub write: String,
    #[serde(default)]
    pub read: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParameterDef {
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub component: String,
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GlobalParameterDef {
    pub name: String,
    pub value: Value,
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
    pub arguments: Value,
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
    pub arguments: Value,
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
    pub arguments: Value,
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

/// Read a definitions file.
pub fn read_file(path: &Path) -> Result<Definitions, DefinitionsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(serde_json::from_str(&text)?)
}

impl Definitions {
    /// The commands that make this document true, in an order that applies. With `vhost`, every object is
    /// placed in that vhost (RabbitMQ's per-vhost import, whose items carry no vhost).
    pub fn to_commands(&self, vhost: Option<&str>) -> Result<Vec<Command>, DefinitionsError> {
        let vh = |v: &str| vhost.unwrap_or(v).to_string();
        let mut out = Vec::new();
        for v in &self.vhosts {
            let meta = v.metadata.clone().unwrap_or_default();
            let description = v
                .description
                .clone()
                .or_else(|| {
                    meta.get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let tags = match (&v.tags, meta.get("tags")) {
                (Some(t), _) => t.to_vec(),
                (None, Some(t)) => serde_json::from_value::<Tags>(t.clone())
                    .map(|t| t.to_vec())
                    .unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            let default_queue_type = v.default_queue_type.clone().or_else(|| {
                meta.get("default_queue_type")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            out.push(Command::AddVhost {
                name: v.name.clone(),
                description,
                tags,
                default_queue_type,
                tracing: false,
            });
        }
        for u in &self.users {
            let password = match (&u.password, &u.password_hash) {
                (Some(p), _) => StoredPassword::hash(p),
                (None, Some(h)) => {
                    StoredPassword::from_rabbit(h, u.hashing_algorithm.as_deref())
                        .map_err(|e| DefinitionsError::Apply(format!("user '{}': {e}", u.name)))?
                }
                (None, None) => StoredPassword::None,
            };
            out.push(Command::PutUser {
                name: u.name.clone(),
                password,
                tags: u.tags.to_vec(),
            });
            for (name, value) in &u.limits {
                if let Some(value) = value.as_i64() {
                    out.push(Command::SetUserLimit {
                        user: u.name.clone(),
                        name: name.clone(),
                        value,
                    });
                }
            }
        }
        for p in &self.permissions {
            out.push(Command::SetPermissions {
                user: p.user.clone(),
                vhost: vh(&p.vhost),
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        for t in &self.topic_permissions {
            out.push(Command::SetTopicPermissions {
                user: t.user.clone(),
                vhost: vh(&t.vhost),
                exchange: t.exchange.clone(),
                write: t.write.clone(),
                read: t.read.clone(),
            });
        }
        for g in &self.global_parameters {
            out.push(Command::SetGlobalParameter {
                name: g.name.clone(),
                value: g.value.clone(),
            });
        }
        for p in &self.parameters {
            match p.component.as_str() {
                "vhost-limits" => {
                    for (name, value) in p.value.as_object().into_iter().flatten() {
                        if let Some(value) = value.as_i64() {
                            out.push(Command::SetVhostLimit {
                                vhost: vh(&p.vhost),
                                name: name.clone(),
                                value,
                            });
                        }
                    }
                }
                "operator_policy" => {
                    let mut def: PolicyDef =
                        serde_json::from_value(p.value.clone()).map_err(|e| {
                            DefinitionsError::Apply(format!("operator policy '{}': {e}", p.name))
                        })?;
                    def.vhost = vh(&p.vhost);
                    def.name = p.name.clone();
                    out.push(Command::SetPolicy {
                        def,
                        operator: true,
                    });
                }
                _ => out.push(Command::SetParameter {
                    component: p.component.clone(),
                    vhost: vh(&p.vhost),
                    name: p.name.clone(),
                    value: p.value.clone(),
                }),
            }
        }
        for (list, operator) in [(&self.policies, false), (&self.operator_policies, true)] {
            for p in list {
                let mut def = p.clone();
                def.vhost = vh(&p.vhost);
                out.push(Command::SetPolicy { def, operator });
            }
        }
        for x in &self.exchanges {
            out.push(Command::DeclareExchange {
                vhost: vh(&x.vhost),
                name: x.name.clone(),
                kind: x.kind.clone(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: fields::table_from_json(&x.arguments),
            });
        }
        for q in &self.queues {
            out.push(Command::DeclareQueue {
                vhost: vh(&q.vhost),
                name: q.name.clone(),
                durable: q.durable,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: fields::table_from_json(&q.arguments),
            });
        }
        for b in &self.bindings {
            out.push(Command::Bind(BindingArgs {
                vhost: vh(&b.vhost),
                source: b.source.clone(),
                destination: b.destination.clone(),
                to_exchange: b.destination_type == "exchange",
                routing_key: b.routing_key.clone(),
                arguments: fields::table_from_json(&b.arguments),
            }));
        }
        Ok(out)
    }
}

/// Apply definitions through the broker's command path, stopping at the first failure.
pub async fn import(
    broker: &Broker,
    d: &Definitions,
    vhost: Option<&str>,
) -> Result<(), DefinitionsError> {
    let actor = crate::broker::Actor::internal();
    for c in d.to_commands(vhost)? {
        let what = c.name();
        broker
            .run(c, &actor)
            .await
            .map_err(|e| DefinitionsError::Apply(format!("{what}: {}", e.reply_text())))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct UserOut {
    name: String,
    password_hash: String,
    hashing_algorithm: &'static str,
    tags: Vec<String>,
    limits: serde_json::Map<String, Value>,
}

#[derive(Serialize)]
struct PermissionOut {
    user: String,
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Serialize)]
struct TopicPermissionOut {
    user: String,
    vhost: String,
    exchange: String,
    write: String,
    read: String,
}

#[derive(Serialize)]
struct ParameterOut {
    value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<String>,
    component: String,
    name: String,
}

#[derive(Serialize)]
struct PolicyOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<String>,
    name: String,
    pattern: String,
    #[serde(rename = "apply-to")]
    apply_to: crate::broker::policy::ApplyTo,
    definition: serde_json::Map<String, Value>,
    priority: i64,
}

#[derive(Serialize)]
struct QueueOut {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<String>,
    durable: bool,
    auto_delete: bool,
    arguments: Value,
}

#[derive(Serialize)]
struct ExchangeOut {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: Value,
}

#[derive(Serialize)]
struct BindingOut {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<String>,
    destination: String,
    destination_type: &'static str,
    routing_key: String,
    arguments: Value,
}

/// Parameters, policies, queues, exchanges and bindings of the given vhosts, in RabbitMQ's shapes; `tag`
/// says whether each object names its vhost (the whole-broker export) or not (the per-vhost one).
#[derive(Default)]
struct Objects {
    parameters: Vec<ParameterOut>,
    policies: Vec<PolicyOut>,
    queues: Vec<QueueOut>,
    exchanges: Vec<ExchangeOut>,
    bindings: Vec<BindingOut>,
}

fn objects(b: &Broker, vhosts: &[std::sync::Arc<crate::broker::VHost>], tag: bool) -> Objects {
    let mut o = Objects::default();
    let name_of = |v: &crate::broker::VHost| tag.then(|| v.name.to_string());
    for ((component, vhost, name), value) in b.parameters() {
        if vhosts.iter().any(|v| *v.name == *vhost) {
            o.parameters.push(ParameterOut {
                value,
                vhost: Some(vhost),
                component,
                name,
            });
        }
    }
    for v in vhosts {
        let limits = v.limits();
        if !limits.is_empty() {
            o.parameters.push(ParameterOut {
                value: serde_json::to_value(&limits).unwrap_or_default(),
                vhost: Some(v.name.to_string()),
                component: "vhost-limits".into(),
                name: "limits".into(),
            });
        }
        for p in v.policies(true) {
            o.parameters.push(ParameterOut {
                value: serde_json::json!({
                    "pattern": p.pattern,
                    "definition": p.definition,
                    "priority": p.priority,
                    "apply-to": p.apply_to,
                }),
                vhost: Some(v.name.to_string()),
                component: "operator_policy".into(),
                name: p.name,
            });
        }
        for p in v.policies(false) {
            o.policies.push(PolicyOut {
                vhost: Some(v.name.to_string()),
                name: p.name,
                pattern: p.pattern,
                apply_to: p.apply_to,
                definition: p.definition,
                priority: p.priority,
            });
        }
        let mut queues = v.queues();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues.iter().filter(|q| q.exclusive_owner.is_none()) {
            o.queues.push(QueueOut {
                name: q.name.to_string(),
                vhost: name_of(v),
                durable: q.durable,
                auto_delete: q.auto_delete,
                arguments: fields::table_to_json(&q.arguments),
            });
        }
        let mut exchanges = v.exchanges();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &exchanges {
            if x.name.is_empty() || x.name.starts_with("amq.") {
                continue;
            }
            o.exchanges.push(ExchangeOut {
                name: x.name.to_string(),
                vhost: name_of(v),
                kind: x.kind.as_str(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: fields::table_to_json(&x.arguments),
            });
        }
        for x in &exchanges {
            if x.name.is_empty() {
                continue;
            }
            for bd in x.bindings() {
                if matches!(&bd.destination, crate::broker::exchange::Destination::Queue(q) if q.exclusive_owner.is_some())
                {
                    continue;
                }
                o.bindings.push(BindingOut {
                    source: x.name.to_string(),
                    vhost: name_of(v),
                    destination: bd.destination.name().to_string(),
                    destination_type: if bd.destination.is_queue() {
                        "queue"
                    } else {
                        "exchange"
                    },
                    routing_key: bd.routing_key.clone(),
                    arguments: fields::table_to_json(&bd.arguments),
                });
            }
        }
    }
    o
}

/// The whole broker's definitions, as `GET /api/definitions` returns them.
pub fn export(b: &Broker) -> Value {
    let users: Vec<UserOut> = b
        .users
        .list()
        .into_iter()
        .map(|u| {
            let (password_hash, hashing_algorithm) = u.password.to_rabbit();
            UserOut {
                name: u.name,
                password_hash,
                hashing_algorithm,
                tags: u.tags,
                limits: u
                    .limits
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect(),
            }
        })
        .collect();
    let vhosts = b.vhosts();
    let vhost_list: Vec<Value> = vhosts
        .iter()
        .map(|v| {
            let m = v.meta();
            serde_json::json!({
                "name": v.name.to_string(),
                "description": m.description,
                "tags": m.tags,
                "metadata": {"description": m.description, "tags": m.tags},
            })
        })
        .collect();
    let permissions: Vec<PermissionOut> = b
        .users
        .permissions()
        .into_iter()
        .map(|(user, vhost, p)| PermissionOut {
            user,
            vhost,
            configure: p.configure.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
        })
        .collect();
    let topic_permissions: Vec<TopicPermissionOut> = b
        .users
        .all_topic_permissions()
        .into_iter()
        .map(|(user, vhost, t)| TopicPermissionOut {
            user,
            vhost,
            exchange: t.exchange,
            write: t.write,
            read: t.read,
        })
        .collect();
    let global_parameters: Vec<Value> = b
        .global_parameters()
        .into_iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    let o = objects(b, &vhosts, true);
    serde_json::json!({
        "rabbit_version": b.config.compat().version(),
        "rabbitmq_version": b.config.compat().version(),
        "product_name": "RabbitMQ",
        "product_version": b.config.compat().version(),
        "users": users,
        "vhosts": vhost_list,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": o.parameters,
        "global_parameters": global_parameters,
        "policies": o.policies,
        "queues": o.queues,
        "exchanges": o.exchanges,
        "bindings": o.bindings,
    })
}

/// One vhost's definitions, as `GET /api/definitions/{vhost}` returns them (objects without their vhost).
pub fn export_vhost(b: &Broker, vhost: &str) -> Option<Value> {
    let v = b.vhost(vhost)?;
    let o = objects(b, &[v], false);
    Some(serde_json::json!({
        "rabbit_version": b.config.compat().version(),
        "parameters": o.parameters,
        "policies": o.policies,
        "queues": o.queues,
        "exchanges": o.exchanges,
        "bindings": o.bindings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn applies_topology_and_exports_it_back() {
        let broker = Broker::new(crate::Config::default());
        let json = r#"{
            "vhosts": [{"name": "/"}, {"name": "app"}],
            "users": [{"name": "bob", "password": "secret", "tags": "management"}],
            "permissions": [{"user": "bob", "vhost": "app", "configure": ".*", "write": ".*", "read": ".*"}],
            "exchanges": [{"name": "ex", "vhost": "app", "type": "topic", "durable": true}],
            "queues": [{"name": "q", "vhost": "app", "durable": true, "arguments": {"x-message-ttl": 1000}}],
            "bindings": [{"source": "ex", "vhost": "app", "destination": "q", "destination_type": "queue", "routing_key": "a.#"}],
            "parameters": [{"vhost": "app", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 10}}]
        }"#;
        let d: Definitions = serde_json::from_str(json).unwrap();
        import(&broker, &d, None).await.unwrap();
        let v = broker.vhost("app").unwrap();
        assert!(v.queue("q").is_some());
        assert_eq!(v.exchange("ex").unwrap().bindings().len(), 1);
        assert_eq!(v.limit("max-queues"), Some(10));
        assert!(broker.authenticate("bob", "secret").is_some());
        assert!(broker.can_access("bob", "app"));
        assert!(broker.authenticate("bob", "wrong").is_none());

        // What is exported imports into a fresh broker as the same state.
        let out = export(&broker);
        let again: Definitions = serde_json::from_value(out.clone()).unwrap();
        let fresh = Broker::new(crate::Config::default());
        import(&fresh, &again, None).await.unwrap();
        assert_eq!(export(&fresh)["queues"], out["queues"]);
        assert_eq!(export(&fresh)["bindings"], out["bindings"]);
        assert_eq!(export(&fresh)["parameters"], out["parameters"]);
        assert!(fresh.authenticate("bob", "secret").is_some());
    }
}
