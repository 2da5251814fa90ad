//! A virtual host: its exchanges, queues and bindings, and every operation on them. AMQP methods (and later the
//! management API) call these functions; they hold no lock across another object's lock except in the fixed
//! order vhost map → exchange bindings → queue.

use super::exchange::{self, Binding, Destination, Exchange, ExchangeKind};
use super::persist::{DefOp, DefsLog};
use super::policy::{self, Policy, PolicyDef};
use super::queue_args;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use crate::queue::Queue;
use crate::FastDashMap as DashMap;
use amq_protocol::types::{AMQPValue, FieldTable};
use smallvec::SmallVec;
use std::sync::Arc;

pub type Routed = SmallVec<[Arc<Queue>; 4]>;

#[derive(Debug)]
pub struct VHost {
    pub name: Arc<str>,
    self_ref: std::sync::Weak<VHost>,
    log: Option<Arc<DefsLog>>,
    store: Option<crate::queue::Storage>,
    exchanges: DashMap<String, Arc<Exchange>>,
    queues: DashMap<String, Arc<Queue>>,
    /// Direct reply-to names and the channels they lead to.
    replies: DashMap<String, crate::channel::reply_to::ReplyTarget>,
    policies: parking_lot::RwLock<Vec<Policy>>,
    operator_policies: parking_lot::RwLock<Vec<Policy>>,
}

/// What a queue.declare asks for.
pub struct QueueDeclare<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
}

fn default_exchange_error() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

impl VHost {
    pub fn new(
        name: &str,
        log: Option<Arc<DefsLog>>,
        store: Option<crate::queue::Storage>,
    ) -> Arc<VHost> {
        Arc::new_cyclic(|w| Self::build(name, w.clone(), log, store))
    }

    /// Record a durable topology change in the definitions log (when the broker keeps one).
    fn log(&self, op: impl FnOnce(String) -> DefOp) {
        if let Some(l) = &self.log {
            l.append(op(self.name.to_string()));
        }
    }

    fn build(
        name: &str,
        self_ref: std::sync::Weak<VHost>,
        log: Option<Arc<DefsLog>>,
        store: Option<crate::queue::Storage>,
    ) -> VHost {
        let v = VHost {
            name: Arc::from(name),
            log,
            store,
            self_ref,
            exchanges: DashMap::default(),
            queues: DashMap::default(),
            replies: DashMap::default(),
            policies: parking_lot::RwLock::new(Vec::new()),
            operator_policies: parking_lot::RwLock::new(Vec::new()),
        };
        let builtin = [
            ("", ExchangeKind::Direct, false),
            ("amq.direct", ExchangeKind::Direct, false),
            ("amq.fanout", ExchangeKind::Fanout, false),
            ("amq.topic", ExchangeKind::Topic, false),
            ("amq.headers", ExchangeKind::Headers, false),
            ("amq.match", ExchangeKind::Headers, false),
            ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
        ];
        for (n, k, internal) in builtin {
            v.exchanges.insert(
                n.to_string(),
                Arc::new(Exchange::new(
                    n,
                    k,
                    true,
                    false,
                    internal,
                    FieldTable::default(),
                )),
            );
        }
        v
    }

    /// Add or replace a policy (or operator policy) and apply it to existing queues and exchanges.
    pub fn set_policy(&self, def: PolicyDef, operator: bool) -> Result<(), String> {
        let p = Policy::new(def)?;
        {
            let mut list = if operator {
                self.operator_policies.write()
            } else {
                self.policies.write()
            };
            list.retain(|x| x.name() != p.name());
            list.push(p.clone());
        }
        self.log(|_| DefOp::Policy {
            def: p.def.clone(),
            operator,
        });
        self.apply_policies();
        Ok(())
    }

    /// Remove a policy; returns whether it existed.
    pub fn clear_policy(&self, name: &str, operator: bool) -> bool {
        let removed = {
            let mut list = if operator {
                self.operator_policies.write()
            } else {
                self.policies.write()
            };
            let before = list.len();
            list.retain(|x| x.name() != name);
            list.len() != before
        };
        if removed {
            self.log(|vhost| DefOp::ClearPolicy {
                vhost,
                name: name.to_string(),
                operator,
            });
            self.apply_policies();
        }
        removed
    }

    pub fn policies(&self, operator: bool) -> Vec<PolicyDef> {
        let list = if operator {
            self.operator_policies.read()
        } else {
            self.policies.read()
        };
        list.iter().map(|p| p.def.clone()).collect()
    }

    /// The name of the policy that applies to a queue (or exchange), if any.
    pub fn policy_for(&self, name: &str, to_queue: bool) -> Option<String> {
        policy::select(&self.policies.read(), name, to_queue).map(|p| p.name().to_string())
    }

    /// A queue's configuration from its arguments and the policies that apply to it.
    fn effective_config(&self, q: &Queue) -> queue_args::QueueConfig {
        let base = queue_args::QueueConfig::from_args(&q.arguments);
        let policies = self.policies.read();
        let operator = self.operator_policies.read();
        policy::queue_config(
            base,
            policy::select(&policies, &q.name, true),
            policy::select(&operator, &q.name, true),
        )
    }

    fn apply_policies(&self) {
        for q in self.queues() {
            q.set_config(self.effective_config(&q));
        }
        let policies = self.policies.read();
        for x in self.exchanges() {
            let ae = policy::alternate_exchange(
                x.alternate_arg(),
                policy::select(&policies, &x.name, false),
            );
            x.set_alternate(ae);
        }
    }

    pub fn register_reply(&self, name: &str, target: crate::channel::reply_to::ReplyTarget) {
        self.replies.insert(name.to_string(), target);
    }

    pub fn unregister_reply(&self, name: &str) {
        self.replies.remove(name);
    }

    /// The live channel behind a direct reply-to name.
    pub fn reply_target(
        &self,
        name: &str,
    ) -> Option<(Arc<crate::channel::ChannelShared>, Arc<str>)> {
        let t = self.replies.get(name)?;
        let ch = t.channel.upgrade().filter(|c| !c.is_closed())?;
        Some((ch, t.consumer_tag.clone()))
    }

    fn no_exchange(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no exchange '{}' in vhost '{}'", name, self.name))
    }

    fn no_queue(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no queue '{}' in vhost '{}'", name, self.name))
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| e.clone())
    }

    /// Look up an exchange for publishing or binding, with RabbitMQ's 404.
    pub fn get_exchange(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        self.exchange(name).ok_or_else(|| self.no_exchange(name))
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.clone())
    }

    pub fn get_queue(&self, name: &str) -> AmqpResult<Arc<Queue>> {
        self.queue(name).ok_or_else(|| self.no_queue(name))
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|e| e.value().clone()).collect()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.value().clone()).collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        if passive {
            return self.get_exchange(name).map(|_| ());
        }
        // RabbitMQ checks the type before looking the exchange up, and treats a bad one as a connection error.
        let Some(kind) = ExchangeKind::parse(kind) else {
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{kind}'"
            )));
        };
        if let Some(existing) = self.exchange(name) {
            let ineq = |arg: &str, got: String, cur: String| {
                AmqpError::precondition_failed(format!(
                    "inequivalent arg '{arg}' for exchange '{name}' in vhost '{}': received '{got}' but current is '{cur}'",
                    self.name
                ))
            };
            if existing.kind != kind {
                return Err(ineq(
                    "type",
                    kind.as_str().into(),
                    existing.kind.as_str().into(),
                ));
            }
            if existing.durable != durable {
                return Err(ineq(
                    "durable",
                    durable.to_string(),
                    existing.durable.to_string(),
                ));
            }
            if existing.auto_delete != auto_delete {
                return Err(ineq(
                    "auto_delete",
                    auto_delete.to_string(),
                    existing.auto_delete.to_string(),
                ));
            }
            if existing.internal != internal {
                return Err(ineq(
                    "internal",
                    internal.to_string(),
                    existing.internal.to_string(),
                ));
            }
            let got = fields::get(arguments, "alternate-exchange");
            let cur = fields::get(&existing.arguments, "alternate-exchange");
            check_arg_equivalence("alternate-exchange", "exchange", name, &self.name, got, cur)?;
            return Ok(());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        exchange::validate_args(name, &self.name, arguments)?;
        let x = Arc::new(Exchange::new(
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments.clone(),
        ));
        if x.alternate_arg().is_none() {
            let policies = self.policies.read();
            x.set_alternate(policy::alternate_exchange(
                None,
                policy::select(&policies, name, false),
            ));
        }
        let inserted = Arc::ptr_eq(
            self.exchanges
                .entry(name.to_string())
                .or_insert(x.clone())
                .value(),
            &x,
        );
        if inserted && durable {
            self.log(|vhost| DefOp::Exchange {
                vhost,
                name: name.to_string(),
                kind: kind.as_str().to_string(),
                auto_delete,
                internal,
                arguments: arguments.clone(),
            });
        }
        Ok(())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        if name.starts_with("amq.") && self.exchanges.contains_key(name) {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let Some(x) = self.exchange(name) else {
            return Ok(());
        };
        if if_unused && x.has_bindings() {
            return Err(AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(&x);
        Ok(())
    }

    fn remove_exchange(&self, x: &Arc<Exchange>) {
        if self
            .exchanges
            .remove_if(&*x.name, |_, v| Arc::ptr_eq(v, x))
            .is_none()
        {
            return;
        }
        x.mark_deleted();
        if x.durable {
            self.log(|vhost| DefOp::DeleteExchange {
                vhost,
                name: x.name.to_string(),
            });
        }
        let dest = Destination::Exchange(x.name.clone());
        self.unbind_everywhere(&dest);
    }

    /// Remove every binding leading to `dest`, and auto-delete the source exchanges that lose their last one.
    fn unbind_everywhere(&self, dest: &Destination) {
        for src in self.exchanges() {
            if src.unbind_all_to(dest) {
                self.maybe_auto_delete(&src);
            }
        }
    }

    fn maybe_auto_delete(&self, x: &Arc<Exchange>) {
        if x.auto_delete && !x.has_bindings() {
            self.remove_exchange(x);
        }
    }

    pub fn declare_queue(
        &self,
        req: &QueueDeclare,
        conn_id: u64,
    ) -> AmqpResult<(Arc<Queue>, u32, u32)> {
        if req.passive {
            let q = self.get_queue(req.name)?;
            q.check_access(conn_id)?;
            q.touch();
            let (m, c) = q.counts();
            return Ok((q, m, c));
        }
        if req.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                req.name
            )));
        }
        self.declare_queue_unchecked(req, conn_id)
    }

    /// Declare without the reserved-name check (for server-named queues).
    pub fn declare_queue_unchecked(
        &self,
        req: &QueueDeclare,
        conn_id: u64,
    ) -> AmqpResult<(Arc<Queue>, u32, u32)> {
        let durable = req.durable && !req.exclusive;
        if let Some(q) = self.queue(req.name) {
            self.check_queue_equivalence(&q, req, durable, conn_id)?;
            q.touch();
            let (m, c) = q.counts();
            return Ok((q, m, c));
        }
        queue_args::validate(req.name, &self.name, req.arguments)?;
        let qtype = queue_args::QueueConfig::from_args(req.arguments).queue_type;
        if qtype != queue_args::QueueType::Classic {
            // Replicated queue types refuse the properties that tie a queue to one connection or consumer.
            // In RabbitMQ's order: auto-delete, exclusive, then durability.
            let bad = if req.auto_delete {
                Some("auto-delete")
            } else if req.exclusive {
                Some("exclusive-owner")
            } else if !req.durable {
                Some("non-durable")
            } else {
                None
            };
            if let Some(prop) = bad {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid property '{prop}' for queue '{}' in vhost '{}'",
                    req.name, self.name
                )));
            }
        }
        let owner = req.exclusive.then_some(conn_id);
        let q = Arc::new(Queue::new(crate::queue::QueueSpec {
            name: req.name,
            vhost: &self.name,
            durable,
            exclusive_owner: owner,
            auto_delete: req.auto_delete,
            arguments: req.arguments.clone(),
            vhost_ref: self.self_ref.clone(),
            storage: self.store.clone(),
        }));
        let created = q.clone();
        let q = self.queues.entry(req.name.to_string()).or_insert(q).clone();
        if Arc::ptr_eq(&q, &created) && q.durable {
            self.log(|vhost| DefOp::Queue {
                vhost,
                name: q.name.to_string(),
                auto_delete: q.auto_delete,
                arguments: q.arguments.clone(),
            });
        }
        if !self.policies.read().is_empty() || !self.operator_policies.read().is_empty() {
            q.set_config(self.effective_config(&q));
        }
        q.touch();
        if q.exclusive_owner.is_some() && q.exclusive_owner != owner {
            return Err(q.locked_error());
        }
        let (m, c) = q.counts();
        Ok((q, m, c))
    }

    fn check_queue_equivalence(
        &self,
        q: &Queue,
        req: &QueueDeclare,
        durable: bool,
        conn_id: u64,
    ) -> AmqpResult<()> {
        match q.exclusive_owner {
            Some(owner) if owner != conn_id || !req.exclusive => return Err(q.locked_error()),
            None if req.exclusive => return Err(q.locked_error()),
            _ => {}
        }
        let ineq = |arg: &str, got: bool, cur: bool| {
            AmqpError::precondition_failed(format!(
                "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{got}' but current is '{cur}'",
                q.name, self.name
            ))
        };
        if q.durable != durable {
            return Err(ineq("durable", durable, q.durable));
        }
        if q.auto_delete != req.auto_delete {
            return Err(ineq("auto_delete", req.auto_delete, q.auto_delete));
        }
        for key in queue_args::EQUIVALENCE_KEYS {
            let mut got = fields::get(req.arguments, key);
            let mut cur = fields::get(&q.arguments, key);
            if *key == "x-queue-type" {
                let classic = |v: Option<&AMQPValue>| {
                    v.and_then(fields::as_str).is_some_and(|s| s == "classic")
                };
                if classic(got) {
                    got = None;
                }
                if classic(cur) {
                    cur = None;
                }
            }
            check_arg_equivalence(key, "queue", &q.name, &self.name, got, cur)?;
        }
        Ok(())
    }

    /// queue.delete: a missing queue is not an error (delete-ok with 0), as in RabbitMQ.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn_id: u64,
    ) -> AmqpResult<u32> {
        let Some(q) = self.queue(name) else {
            return Ok(0);
        };
        q.check_access(conn_id)?;
        if q.queue_type == queue_args::QueueType::Quorum && (if_unused || if_empty) {
            let flag = if if_unused { "if-unused" } else { "if-empty" };
            return Err(AmqpError::not_implemented(format!(
                "cannot delete queue '{}' in vhost '{}'. queue.delete operations with {flag} flag set are not supported by quorum queues",
                name, self.name
            )));
        }
        let (messages, consumers) = q.counts();
        if if_unused && consumers > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{}' in vhost '{}' in use",
                name, self.name
            )));
        }
        if if_empty && messages > 0 {
            return Err(AmqpError::precondition_failed(format!(
                "queue '{}' in vhost '{}' not empty",
                name, self.name
            )));
        }
        Ok(self.remove_queue(&q))
    }

    /// Remove a queue: unbind it, cancel its consumers, drop its messages. Returns the ready count dropped.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        if self
            .queues
            .remove_if(&*q.name, |_, v| Arc::ptr_eq(v, q))
            .is_none()
        {
            return 0;
        }
        let (n, consumers) = q.take_for_delete();
        for c in consumers {
            c.channel.server_cancel(&c);
        }
        self.unbind_everywhere(&Destination::Queue(q.clone()));
        if q.durable {
            self.log(|vhost| DefOp::DeleteQueue {
                vhost,
                name: q.name.to_string(),
            });
        }
        tracing::debug!(vhost = %self.name, queue = %q.name, "queue deleted");
        n
    }

    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        args: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        if exchange.is_empty() {
            return Err(default_exchange_error());
        }
        let q = self.get_queue(queue)?;
        q.check_access(conn_id)?;
        let x = self.get_exchange(exchange)?;
        x.check_binding_args(args)?;
        let durable = x.durable && q.durable;
        let added = x.bind(Binding {
            destination: Destination::Queue(q),
            routing_key: routing_key.to_string(),
            arguments: args.clone(),
        });
        if added && durable {
            self.log_binding(true, exchange, queue, false, routing_key, args);
        }
        Ok(())
    }

    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        args: &FieldTable,
        conn_id: u64,
    ) -> AmqpResult<()> {
        if exchange.is_empty() {
            return Err(default_exchange_error());
        }
        let (Some(q), Some(x)) = (self.queue(queue), self.exchange(exchange)) else {
            return Ok(());
        };
        q.check_access(conn_id)?;
        let durable = x.durable && q.durable;
        if x.unbind(&Destination::Queue(q), routing_key, args) {
            if durable {
                self.log_binding(false, exchange, queue, false, routing_key, args);
            }
            self.maybe_auto_delete(&x);
        }
        Ok(())
    }

    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        if destination.is_empty() || source.is_empty() {
            return Err(default_exchange_error());
        }
        let dst = self.get_exchange(destination)?;
        let src = self.get_exchange(source)?;
        src.check_binding_args(args)?;
        let added = src.bind(Binding {
            destination: Destination::Exchange(dst.name.clone()),
            routing_key: routing_key.to_string(),
            arguments: args.clone(),
        });
        if added && src.durable && dst.durable {
            self.log_binding(true, source, destination, true, routing_key, args);
        }
        Ok(())
    }

    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        routing_key: &str,
        args: &FieldTable,
    ) -> AmqpResult<()> {
        if destination.is_empty() || source.is_empty() {
            return Err(default_exchange_error());
        }
        let (Some(dst), Some(src)) = (self.exchange(destination), self.exchange(source)) else {
            return Ok(());
        };
        if src.unbind(&Destination::Exchange(dst.name.clone()), routing_key, args) {
            if src.durable && dst.durable {
                self.log_binding(false, source, destination, true, routing_key, args);
            }
            self.maybe_auto_delete(&src);
        }
        Ok(())
    }

    fn log_binding(
        &self,
        bind: bool,
        source: &str,
        destination: &str,
        to_exchange: bool,
        key: &str,
        args: &FieldTable,
    ) {
        self.log(|vhost| {
            let (source, destination, routing_key, arguments) = (
                source.to_string(),
                destination.to_string(),
                key.to_string(),
                args.clone(),
            );
            if bind {
                DefOp::Bind {
                    vhost,
                    source,
                    destination,
                    to_exchange,
                    routing_key,
                    arguments,
                }
            } else {
                DefOp::Unbind {
                    vhost,
                    source,
                    destination,
                    to_exchange,
                    routing_key,
                    arguments,
                }
            }
        });
    }

    /// The durable topology of this vhost as definitions-log operations (for compaction).
    pub fn snapshot(&self, out: &mut Vec<DefOp>) {
        let vhost = self.name.to_string();
        for x in self.exchanges() {
            if x.durable && !x.name.is_empty() && !x.name.starts_with("amq.") {
                out.push(DefOp::Exchange {
                    vhost: vhost.clone(),
                    name: x.name.to_string(),
                    kind: x.kind.as_str().to_string(),
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: x.arguments.clone(),
                });
            }
        }
        for q in self.queues() {
            if q.durable {
                out.push(DefOp::Queue {
                    vhost: vhost.clone(),
                    name: q.name.to_string(),
                    auto_delete: q.auto_delete,
                    arguments: q.arguments.clone(),
                });
            }
        }
        for x in self.exchanges().into_iter().filter(|x| x.durable) {
            for b in x.bindings() {
                let (durable, to_exchange) = match &b.destination {
                    Destination::Queue(q) => (q.durable, false),
                    Destination::Exchange(d) => (self.exchange(d).is_some_and(|d| d.durable), true),
                };
                if durable {
                    out.push(DefOp::Bind {
                        vhost: vhost.clone(),
                        source: x.name.to_string(),
                        destination: b.destination.name().to_string(),
                        to_exchange,
                        routing_key: b.routing_key.clone(),
                        arguments: b.arguments.clone(),
                    });
                }
            }
        }
        for (list, operator) in [
            (self.policies.read(), false),
            (self.operator_policies.read(), true),
        ] {
            for p in list.iter() {
                out.push(DefOp::Policy {
                    def: p.def.clone(),
                    operator,
                });
            }
        }
    }

    /// Route a message: the exchange's bindings, exchange-to-exchange bindings (each exchange visited once),
    /// alternate exchanges for exchanges that matched nothing, and every extra CC/BCC routing key. Each queue
    /// appears once in the result.
    pub fn route(
        &self,
        x: &Arc<Exchange>,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
    ) {
        if x.name.is_empty() {
            for k in keys {
                if let Some(q) = self.queue(k) {
                    if !out.iter().any(|o| Arc::ptr_eq(o, &q)) {
                        out.push(q);
                    }
                }
            }
            return;
        }
        let mut visited: SmallVec<[Arc<str>; 4]> = SmallVec::new();
        let mut work: SmallVec<[Arc<Exchange>; 4]> = SmallVec::new();
        work.push(x.clone());
        visited.push(x.name.clone());
        while let Some(ex) = work.pop() {
            let mut matched = false;
            for key in keys {
                ex.route(key, headers, &mut |d: &Destination| {
                    matched = true;
                    match d {
                        Destination::Queue(q) => {
                            if !q.is_deleted() && !out.iter().any(|o| Arc::ptr_eq(o, q)) {
                                out.push(q.clone());
                            }
                        }
                        Destination::Exchange(name) => {
                            if !visited.iter().any(|v| v == name) {
                                visited.push(name.clone());
                                if let Some(next) = self.exchange(name) {
                                    work.push(next);
                                }
                            }
                        }
                    }
                });
            }
            if !matched {
                if let Some(ae) = ex.alternate() {
                    if !visited.iter().any(|v| &**v == ae.as_str()) {
                        visited.push(Arc::from(ae.as_str()));
                        if let Some(next) = self.exchange(&ae) {
                            work.push(next);
                        }
                    }
                }
            }
        }
    }
}

/// RabbitMQ's equivalence check on one argument, with its 406 text.
fn check_arg_equivalence(
    key: &str,
    kind: &str,
    name: &str,
    vhost: &str,
    got: Option<&AMQPValue>,
    cur: Option<&AMQPValue>,
) -> AmqpResult<()> {
    let same = match (got, cur) {
        (None, None) => true,
        (Some(a), Some(b)) => fields::equivalent(a, b),
        _ => false,
    };
    if same {
        return Ok(());
    }
    let detail = match (got, cur) {
        (Some(a), Some(b)) if fields::same_class(a, b) => {
            format!(
                "received '{}' but current is '{}'",
                fields::display(a),
                fields::display(b)
            )
        }
        _ => format!(
            "received {} but current is {}",
            fields::describe_arg(got),
            fields::describe_arg(cur)
        ),
    };
    Err(AmqpError::precondition_failed(format!(
        "inequivalent arg '{key}' for {kind} '{name}' in vhost '{vhost}': {detail}"
    )))
}
