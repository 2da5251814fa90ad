//! Applying one command: validation with RabbitMQ's codes and texts, the change itself, what to log, how to
//! undo it and what to defer until it is durable. Called with the metadata lock held (by `execute`, and by
//! boot replay with `Mode::Replay`).

use super::command::{Actor, Command, Effects, Mode, Outcome};
use super::users::{Access, Permission, TopicPermission, User};
use super::vhost::exchanges::ExchangeDeclare;
use super::vhost::queues::QueueDeclare;
use super::vhost::{VHost, VhostMeta};
use super::Broker;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use crate::queue::Storage;
use std::collections::BTreeMap;
use std::sync::Arc;

fn no_vhost(name: &str) -> AmqpError {
    AmqpError::not_found(format!("vhost '{name}' not found"))
}

fn no_user(name: &str) -> AmqpError {
    AmqpError::not_found(format!("user '{name}' not found"))
}

impl Broker {
    fn vhost_of(&self, name: &str) -> AmqpResult<Arc<VHost>> {
        self.vhost(name).ok_or_else(|| no_vhost(name))
    }

    /// The resource check of a client's command (internal actors — boot replay, the HTTP API, queue
    /// expiry — are not checked here).
    fn access_for(
        &self,
        actor: &Actor,
        vhost: &str,
        access: Access,
        kind: &str,
        name: &str,
    ) -> AmqpResult<()> {
        match &actor.user {
            Some(user) => self.check_access(user, vhost, access, kind, name),
            None => Ok(()),
        }
    }

    /// A binding needs write on its destination and read on its source (and, on a topic exchange, the
    /// user's topic permission for the binding key). Binding to the default exchange is refused later.
    fn binding_access(&self, actor: &Actor, b: &super::command::BindingArgs) -> AmqpResult<()> {
        let Some(user) = &actor.user else {
            return Ok(());
        };
        if b.source.is_empty() {
            return Ok(());
        }
        let dest_kind = if b.to_exchange { "exchange" } else { "queue" };
        self.check_access(user, &b.vhost, Access::Write, dest_kind, &b.destination)?;
        self.check_access(user, &b.vhost, Access::Read, "exchange", &b.source)?;
        let topic = self
            .vhost(&b.vhost)
            .and_then(|v| v.exchange(&b.source))
            .is_some_and(|x| x.kind == super::exchange::ExchangeKind::Topic);
        if topic {
            self.check_topic_access(user, &b.vhost, Access::Read, &b.source, &b.routing_key)?;
        }
        Ok(())
    }

    pub(super) fn apply(
        &self,
        cmd: Command,
        actor: &Actor,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<Outcome> {
        match cmd {
            Command::AddVhost {
                name,
                description,
                tags,
                default_queue_type,
                tracing,
            } => {
                let meta = VhostMeta {
                    description,
                    tags,
                    default_queue_type,
                    tracing,
                };
                self.apply_add_vhost(&name, meta, fx);
            }
            Command::DeleteVhost { name } => self.apply_delete_vhost(&name, fx),
            Command::PutUser {
                name,
                password,
                tags,
            } => {
                if name.is_empty() {
                    return Err(AmqpError::precondition_failed(
                        "user name must not be empty",
                    ));
                }
                let limits = self.users.get(&name).map(|u| u.limits).unwrap_or_default();
                let user = User {
                    name: name.clone(),
                    password: password.clone(),
                    tags: tags.clone(),
                    limits,
                };
                let old = self.users.put(user);
                fx.log(Command::PutUser {
                    name: name.clone(),
                    password,
                    tags,
                });
                let me = self.self_ref.clone();
                fx.on_undo(move || {
                    if let Some(b) = me.upgrade() {
                        match old {
                            Some(u) => {
                                b.users.put(u);
                            }
                            None => {
                                b.users.remove(&name);
                            }
                        }
                    }
                });
            }
            Command::DeleteUser { name } => {
                let Some(old) = self.users.remove(&name) else {
                    return Ok(Outcome::Done);
                };
                let grants = self.users.take_user(&name);
                fx.log(Command::DeleteUser { name: name.clone() });
                let me = self.self_ref.clone();
                fx.on_undo(move || {
                    if let Some(b) = me.upgrade() {
                        b.users.put(old);
                        b.users.restore_grants(grants);
                    }
                });
            }
            Command::SetPermissions {
                user,
                vhost,
                configure,
                write,
                read,
            } => {
                self.users.get(&user).ok_or_else(|| no_user(&user))?;
                self.vhost_of(&vhost)?;
                let p = Permission::new(&configure, &write, &read)
                    .map_err(AmqpError::precondition_failed)?;
                let old = self.users.set_permission(&user, &vhost, p);
                fx.log(Command::SetPermissions {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    configure,
                    write,
                    read,
                });
                self.undo_permission(fx, user, vhost, old);
            }
            Command::ClearPermissions { user, vhost } => {
                let Some(old) = self.users.clear_permission(&user, &vhost) else {
                    return Ok(Outcome::Done);
                };
                fx.log(Command::ClearPermissions {
                    user: user.clone(),
                    vhost: vhost.clone(),
                });
                self.undo_permission(fx, user, vhost, Some(old));
            }
            Command::SetTopicPermissions {
                user,
                vhost,
                exchange,
                write,
                read,
            } => {
                self.users.get(&user).ok_or_else(|| no_user(&user))?;
                self.vhost_of(&vhost)?;
                for re in [&write, &read] {
                    regex_lite::Regex::new(re).map_err(|e| {
                        AmqpError::precondition_failed(format!(
                            "invalid regular expression '{re}': {e}"
                        ))
                    })?;
                }
                let old = self.users.topic_permissions(&user, &vhost);
                let mut list = old.clone();
                list.retain(|t| t.exchange != exchange);
                list.push(TopicPermission {
                    exchange: exchange.clone(),
                    write: write.clone(),
                    read: read.clone(),
                });
                self.users.set_topic_permissions(&user, &vhost, list);
                fx.log(Command::SetTopicPermissions {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    exchange,
                    write,
                    read,
                });
                self.undo_topic(fx, user, vhost, old);
            }
            Command::ClearTopicPermissions {
                user,
                vhost,
                exchange,
            } => {
                let old = self.users.topic_permissions(&user, &vhost);
                let mut list = old.clone();
                match &exchange {
                    Some(x) => list.retain(|t| &t.exchange != x),
                    None => list.clear(),
                }
                if list.len() == old.len() {
                    return Ok(Outcome::Done);
                }
                self.users.set_topic_permissions(&user, &vhost, list);
                fx.log(Command::ClearTopicPermissions {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    exchange,
                });
                self.undo_topic(fx, user, vhost, old);
            }
            Command::DeclareExchange {
                vhost,
                name,
                kind,
                durable,
                auto_delete,
                internal,
                arguments,
            } => {
                // After the default-exchange and type checks, before the reserved-prefix one, as RabbitMQ.
                if !name.is_empty() && super::exchange::ExchangeKind::parse(&kind).is_some() {
                    self.access_for(actor, &vhost, Access::Configure, "exchange", &name)?;
                    let fresh = self.vhost_of(&vhost)?.exchange(&name).is_none();
                    let ae = fields::get(&arguments, "alternate-exchange").and_then(fields::as_str);
                    if let (true, Some(ae)) = (fresh, ae) {
                        self.access_for(actor, &vhost, Access::Read, "exchange", &name)?;
                        self.access_for(actor, &vhost, Access::Write, "exchange", &ae)?;
                    }
                }
                let d = ExchangeDeclare {
                    name: &name,
                    kind: &kind,
                    durable,
                    auto_delete,
                    internal,
                    arguments: &arguments,
                };
                self.vhost_of(&vhost)?.declare_exchange(&d, mode, fx)?;
            }
            Command::DeleteExchange {
                vhost,
                name,
                if_unused,
            } => {
                // The system-exchange refusal comes first; a missing exchange is refused like one there.
                if !name.is_empty() && !name.starts_with("amq.") {
                    self.access_for(actor, &vhost, Access::Configure, "exchange", &name)?;
                }
                self.vhost_of(&vhost)?
                    .delete_exchange(&name, if_unused, mode, fx)?;
            }
            Command::DeclareQueue {
                vhost,
                name,
                durable,
                exclusive,
                auto_delete,
                arguments,
            } => {
                let req = QueueDeclare {
                    name: &name,
                    durable,
                    exclusive,
                    auto_delete,
                    arguments: &arguments,
                };
                let v = self.vhost_of(&vhost)?;
                let existed = v.queue(&name).is_some();
                self.access_for(actor, &vhost, Access::Configure, "queue", &name)?;
                // A new queue's dead-letter exchange: read on the queue, then write on the exchange.
                let dlx =
                    fields::get(&arguments, "x-dead-letter-exchange").and_then(fields::as_str);
                if let (false, Some(dlx)) = (existed, dlx) {
                    self.access_for(actor, &vhost, Access::Read, "queue", &name)?;
                    self.access_for(actor, &vhost, Access::Write, "exchange", &dlx)?;
                }
                let out = v.declare_queue(&req, actor, mode, fx)?;
                self.churn.queue_declared.add(1);
                if !existed {
                    self.churn.queue_created.add(1);
                }
                return Ok(out);
            }
            Command::DeleteQueue {
                vhost,
                name,
                if_unused,
                if_empty,
                cause,
            } => {
                let v = self.vhost_of(&vhost)?;
                let existed = v.queue(&name).is_some();
                self.access_for(actor, &vhost, Access::Configure, "queue", &name)?;
                let out = v.delete_queue(&name, if_unused, if_empty, cause, actor, mode, fx)?;
                if existed && v.queue(&name).is_none() {
                    self.churn.queue_deleted.add(1);
                }
                return Ok(out);
            }
            Command::Bind(b) => {
                self.binding_access(actor, &b)?;
                self.vhost_of(&b.vhost)?.bind(&b, actor, mode, fx)?
            }
            Command::Unbind(b) => {
                self.binding_access(actor, &b)?;
                self.vhost_of(&b.vhost)?.unbind(&b, actor, mode, fx)?
            }
            Command::SetPolicy { def, operator } => {
                let v = self.vhost_of(&def.vhost)?;
                let before = v
                    .set_policy(def.clone(), operator)
                    .map_err(AmqpError::precondition_failed)?;
                fx.log(Command::SetPolicy { def, operator });
                fx.on_undo(move || v.restore_policies(before, operator));
            }
            Command::ClearPolicy {
                vhost,
                name,
                operator,
            } => {
                let v = self.vhost_of(&vhost)?;
                if let Some(before) = v.clear_policy(&name, operator) {
                    fx.log(Command::ClearPolicy {
                        vhost,
                        name,
                        operator,
                    });
                    fx.on_undo(move || v.restore_policies(before, operator));
                }
            }
            Command::SetParameter {
                component,
                vhost,
                name,
                value,
            } => {
                self.vhost_of(&vhost)?;
                let key = (component.clone(), vhost.clone(), name.clone());
                let old = self.parameters.lock().insert(key.clone(), value.clone());
                fx.log(Command::SetParameter {
                    component,
                    vhost,
                    name,
                    value,
                });
                self.undo_parameter(fx, key, old);
            }
            Command::ClearParameter {
                component,
                vhost,
                name,
            } => {
                let key = (component.clone(), vhost.clone(), name.clone());
                if let Some(old) = self.parameters.lock().remove(&key) {
                    fx.log(Command::ClearParameter {
                        component,
                        vhost,
                        name,
                    });
                    self.undo_parameter(fx, key, Some(old));
                }
            }
            Command::SetGlobalParameter { name, value } => {
                let old = self
                    .global_parameters
                    .lock()
                    .insert(name.clone(), value.clone());
                fx.log(Command::SetGlobalParameter {
                    name: name.clone(),
                    value,
                });
                self.undo_global(fx, name, old);
            }
            Command::ClearGlobalParameter { name } => {
                if let Some(old) = self.global_parameters.lock().remove(&name) {
                    fx.log(Command::ClearGlobalParameter { name: name.clone() });
                    self.undo_global(fx, name, Some(old));
                }
            }
            Command::SetVhostLimit { vhost, name, value } => {
                let v = self.vhost_of(&vhost)?;
                check_limit_name(&name, &["max-connections", "max-queues"])?;
                let old = v.set_limit(&name, Some(value));
                fx.log(Command::SetVhostLimit {
                    vhost,
                    name: name.clone(),
                    value,
                });
                fx.on_undo(move || {
                    v.set_limit(&name, old);
                });
            }
            Command::ClearVhostLimit { vhost, name } => {
                let v = self.vhost_of(&vhost)?;
                if let Some(old) = v.set_limit(&name, None) {
                    fx.log(Command::ClearVhostLimit {
                        vhost,
                        name: name.clone(),
                    });
                    fx.on_undo(move || {
                        v.set_limit(&name, Some(old));
                    });
                }
            }
            Command::SetUserLimit { user, name, value } => {
                check_limit_name(&name, &["max-connections", "max-channels"])?;
                self.set_user_limit(&user, &name, Some(value), fx)?;
            }
            Command::ClearUserLimit { user, name } => {
                self.set_user_limit(&user, &name, None, fx)?;
            }
        }
        Ok(Outcome::Done)
    }

    fn apply_add_vhost(&self, name: &str, meta: VhostMeta, fx: &mut Effects) {
        let log_cmd = Command::AddVhost {
            name: name.to_string(),
            description: meta.description.clone(),
            tags: meta.tags.clone(),
            default_queue_type: meta.default_queue_type.clone(),
            tracing: meta.tracing,
        };
        if let Some(v) = self.vhost(name) {
            let old = v.set_meta(meta.clone());
            if old != meta {
                fx.log(log_cmd);
                fx.on_undo(move || {
                    v.set_meta(old);
                });
            }
            return;
        }
        let storage = self.store.clone().map(|store| Storage {
            store,
            budget: self.budget.clone(),
        });
        let deleter: std::sync::Weak<dyn super::vhost::Deleter> = self.self_ref.clone();
        let v = VHost::new(
            name,
            self.timers.clone(),
            self.journal.clone(),
            self.firehose.clone(),
            self.config.compat(),
            storage,
            deleter,
        );
        v.set_meta(meta);
        self.vhosts.insert(name.to_string(), v.clone());
        fx.log(log_cmd);
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                b.vhosts.remove_if(&*v.name, |_, x| Arc::ptr_eq(x, &v));
            }
        });
        tracing::info!(vhost = name, "vhost created");
    }

    /// Remove a vhost at once (with the permissions granted in it); its connections are closed and its
    /// queues' messages dropped once the deletion is durable.
    fn apply_delete_vhost(&self, name: &str, fx: &mut Effects) {
        let Some((_, v)) = self.vhosts.remove(name) else {
            return;
        };
        let grants = self.users.take_vhost(name);
        fx.log(Command::DeleteVhost {
            name: name.to_string(),
        });
        let me = self.self_ref.clone();
        let undo_v = v.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                let n = undo_v.name.to_string();
                b.vhosts.insert(n, undo_v);
                b.users.restore_grants(grants);
            }
        });
        let me = self.self_ref.clone();
        let gone = name.to_string();
        fx.on_commit(move || {
            if let Some(b) = me.upgrade() {
                for c in b.connections() {
                    if c.vhost() == Some(gone.as_str()) {
                        c.force_close(&format!("vhost '{gone}' is deleted"));
                    }
                }
            }
            for q in v.queues() {
                for c in q.detach() {
                    c.channel.cancelled(&c);
                }
                q.discard_all();
            }
            tracing::info!(vhost = %gone, "vhost deleted");
        });
    }

    fn set_user_limit(
        &self,
        user: &str,
        name: &str,
        value: Option<i64>,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        let mut u = self.users.get(user).ok_or_else(|| no_user(user))?;
        let old = match value {
            Some(v) => u.limits.insert(name.to_string(), v),
            None => u.limits.remove(name),
        };
        if value.is_none() && old.is_none() {
            return Ok(());
        }
        self.users.put(u);
        fx.log(match value {
            Some(value) => Command::SetUserLimit {
                user: user.to_string(),
                name: name.to_string(),
                value,
            },
            None => Command::ClearUserLimit {
                user: user.to_string(),
                name: name.to_string(),
            },
        });
        let (me, user, name) = (self.self_ref.clone(), user.to_string(), name.to_string());
        fx.on_undo(move || {
            if let Some(mut u) = me.upgrade().and_then(|b| b.users.get(&user)) {
                match old {
                    Some(v) => u.limits.insert(name, v),
                    None => u.limits.remove(&name),
                };
                if let Some(b) = me.upgrade() {
                    b.users.put(u);
                }
            }
        });
        Ok(())
    }

    fn undo_permission(
        &self,
        fx: &mut Effects,
        user: String,
        vhost: String,
        old: Option<Arc<Permission>>,
    ) {
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                match old {
                    Some(p) => b.users.restore_grants(super::users::Grants {
                        perms: vec![((user, vhost), p)],
                        topic: Vec::new(),
                    }),
                    None => {
                        b.users.clear_permission(&user, &vhost);
                    }
                }
            }
        });
    }

    fn undo_topic(&self, fx: &mut Effects, user: String, vhost: String, old: Vec<TopicPermission>) {
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                b.users.set_topic_permissions(&user, &vhost, old);
            }
        });
    }

    fn undo_parameter(
        &self,
        fx: &mut Effects,
        key: (String, String, String),
        old: Option<serde_json::Value>,
    ) {
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                let mut p = b.parameters.lock();
                match old {
                    Some(v) => p.insert(key, v),
                    None => p.remove(&key),
                };
            }
        });
    }

    fn undo_global(&self, fx: &mut Effects, name: String, old: Option<serde_json::Value>) {
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(b) = me.upgrade() {
                let mut p: parking_lot::MutexGuard<'_, BTreeMap<String, serde_json::Value>> =
                    b.global_parameters.lock();
                match old {
                    Some(v) => p.insert(name, v),
                    None => p.remove(&name),
                };
            }
        });
    }
}

fn check_limit_name(name: &str, known: &[&str]) -> AmqpResult<()> {
    if known.contains(&name) {
        Ok(())
    } else {
        Err(AmqpError::precondition_failed(format!(
            "unknown limit '{name}' (known: {})",
            known.join(", ")
        )))
    }
}
