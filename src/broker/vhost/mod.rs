//! A virtual host: its exchanges, queues, bindings and policies. Lookups and routing read it concurrently
//! through lock-free maps; every change is applied by a command (see `broker::command`) under the broker's
//! metadata lock, by the functions in [`exchanges`], [`queues`] and [`bindings`]. [`route`] is the hot path.
//! The vhost is the queues' [`QueueHost`]: dead-lettered messages route through it and expired queues are
//! deleted through it.

pub mod bindings;
pub mod exchanges;
pub mod queues;
pub mod route;

pub use route::RouteSet;

use super::command::{BindingArgs, Command, DeleteCause};
use super::exchange::{DestKey, Exchange, ExchangeKind};
use super::policy::{self, Policy, PolicyDef};
use crate::clock::Scheduler;
use crate::queue::args::QueueConfig;
use crate::queue::message::Message;
use crate::queue::{Queue, QueueHost, Routed, Storage};
use crate::FastDashMap as DashMap;
use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

/// Where replies for a direct reply-to name go: the requesting channel, as the channel layer implements it.
pub trait ReplySink: Send + Sync {
    fn deliver_reply(&self, consumer_tag: &str, msg: &Message);
    fn is_closed(&self) -> bool;
}

/// The routing-key prefix of direct reply-to names.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// One direct reply-to registration.
#[derive(Clone)]
pub struct ReplyTarget {
    pub sink: Weak<dyn ReplySink>,
    pub consumer_tag: Arc<str>,
}

/// A vhost's descriptive settings (management API and definitions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VhostMeta {
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    pub tracing: bool,
}

/// Who deletes a queue the broker itself decides to delete (the vhost's owner, the broker).
pub trait Deleter: Send + Sync {
    fn delete_queue(&self, vhost: &str, name: &str, cause: DeleteCause);
}

pub struct VHost {
    pub name: Arc<str>,
    self_ref: Weak<VHost>,
    timers: Arc<Scheduler>,
    pub journal: Arc<crate::journal::Journal>,
    pub firehose: Arc<crate::broker::trace::Firehose>,
    /// The RabbitMQ line the broker behaves as.
    pub compat: crate::config::Compat,
    /// The firehose is on (RabbitMQ's tracing): publishes and deliveries are copied to amq.rabbitmq.trace.
    tracing: std::sync::atomic::AtomicBool,
    store: Option<Storage>,
    /// Runs deletions the vhost's queues ask for (expiry) as commands.
    deleter: Weak<dyn Deleter>,
    exchanges: DashMap<String, Arc<Exchange>>,
    queues: DashMap<String, Arc<Queue>>,
    /// For each destination, the exchanges with bindings to it and how many: deleting a queue visits only
    /// those. Changed only under the broker's metadata lock.
    sources: Mutex<crate::FastMap<DestKey, crate::FastMap<Arc<str>, u32>>>,
    /// Direct reply-to names and the channels they lead to.
    replies: DashMap<String, ReplyTarget>,
    policies: RwLock<Vec<Policy>>,
    operator_policies: RwLock<Vec<Policy>>,
    meta: RwLock<VhostMeta>,
    limits: RwLock<BTreeMap<String, i64>>,
    /// Counts of channels and connections that have closed, so the vhost's totals survive them.
    pub totals: VhostTotals,
}

/// What closed channels and connections of a vhost did.
#[derive(Debug, Default)]
pub struct VhostTotals {
    pub channels: crate::metrics::MessageStats,
    pub recv_oct: crate::metrics::Counter,
    pub send_oct: crate::metrics::Counter,
}

impl std::fmt::Debug for VHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VHost")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn default_exchange_error() -> crate::error::AmqpError {
    crate::error::AmqpError::access_refused("operation not permitted on the default exchange")
}

impl VHost {
    pub fn new(
        name: &str,
        timers: Arc<Scheduler>,
        journal: Arc<crate::journal::Journal>,
        firehose: Arc<crate::broker::trace::Firehose>,
        compat: crate::config::Compat,
        store: Option<Storage>,
        deleter: Weak<dyn Deleter>,
    ) -> Arc<VHost> {
        Arc::new_cyclic(|w| {
            let v = VHost {
                name: Arc::from(name),
                self_ref: w.clone(),
                timers,
                journal,
                firehose,
                compat,
                tracing: Default::default(),
                store,
                deleter,
                exchanges: DashMap::default(),
                queues: DashMap::default(),
                sources: Mutex::new(Default::default()),
                replies: DashMap::default(),
                policies: RwLock::new(Vec::new()),
                operator_policies: RwLock::new(Vec::new()),
                meta: RwLock::new(VhostMeta::default()),
                limits: RwLock::new(BTreeMap::new()),
                totals: VhostTotals::default(),
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
        })
    }

    /// A vhost on its own, with no store and a real clock (benches and tests of routing).
    pub fn standalone(name: &str) -> Arc<VHost> {
        let deleter: Weak<dyn Deleter> = Weak::<NoDeleter>::new();
        Self::new(
            name,
            Scheduler::new(crate::clock::Clock::real()),
            crate::journal::Journal::off(),
            Default::default(),
            Default::default(),
            None,
            deleter,
        )
    }

    pub fn weak(&self) -> Weak<VHost> {
        self.self_ref.clone()
    }

    pub fn meta(&self) -> VhostMeta {
        self.meta.read().clone()
    }

    pub(super) fn set_meta(&self, m: VhostMeta) -> VhostMeta {
        self.tracing
            .store(m.tracing, std::sync::atomic::Ordering::Relaxed);
        std::mem::replace(&mut *self.meta.write(), m)
    }

    /// Whether anything watches this vhost's messages (firehose or journal): publishes then say who made them.
    #[inline]
    pub fn observed(&self) -> bool {
        self.tracing() || self.journal.on(&self.name)
    }

    /// Whether the firehose copies this vhost's publishes and deliveries to amq.rabbitmq.trace.
    #[inline]
    pub fn tracing(&self) -> bool {
        self.tracing.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn limits(&self) -> BTreeMap<String, i64> {
        self.limits.read().clone()
    }

    pub fn limit(&self, name: &str) -> Option<i64> {
        self.limits.read().get(name).copied().filter(|v| *v >= 0)
    }

    pub(super) fn set_limit(&self, name: &str, value: Option<i64>) -> Option<i64> {
        let mut l = self.limits.write();
        match value {
            Some(v) => l.insert(name.to_string(), v),
            None => l.remove(name),
        }
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| e.clone())
    }

    /// Look up an exchange for publishing or binding, with RabbitMQ's 404.
    pub fn get_exchange(&self, name: &str) -> crate::error::AmqpResult<Arc<Exchange>> {
        self.exchange(name).ok_or_else(|| self.no_exchange(name))
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.clone())
    }

    pub fn get_queue(&self, name: &str) -> crate::error::AmqpResult<Arc<Queue>> {
        self.queue(name).ok_or_else(|| self.no_queue(name))
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|e| e.value().clone()).collect()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.value().clone()).collect()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn no_exchange(&self, name: &str) -> crate::error::AmqpError {
        crate::error::AmqpError::not_found(format!(
            "no exchange '{}' in vhost '{}'",
            name, self.name
        ))
    }

    fn no_queue(&self, name: &str) -> crate::error::AmqpError {
        crate::error::AmqpError::not_found(format!("no queue '{}' in vhost '{}'", name, self.name))
    }

    pub fn register_reply(&self, name: &str, target: ReplyTarget) {
        self.replies.insert(name.to_string(), target);
    }

    pub fn unregister_reply(&self, name: &str) {
        self.replies.remove(name);
    }

    /// The live channel behind a direct reply-to name.
    pub fn reply_target(&self, name: &str) -> Option<(Arc<dyn ReplySink>, Arc<str>)> {
        let t = self.replies.get(name)?;
        let sink = t.sink.upgrade().filter(|c| !c.is_closed())?;
        Some((sink, t.consumer_tag.clone()))
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

    /// The definitions of the policy and operator policy that apply to an object, merged (the operator
    /// policy's values win), as the management API's effective_policy_definition.
    pub fn effective_policy(
        &self,
        name: &str,
        to_queue: bool,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        if let Some(p) = policy::select(&self.policies.read(), name, to_queue) {
            out.extend(p.def.definition.clone());
        }
        if to_queue {
            if let Some(p) = policy::select(&self.operator_policies.read(), name, true) {
                out.extend(p.def.definition.clone());
            }
        }
        out
    }

    /// The name of the operator policy that applies to a queue, if any.
    pub fn operator_policy_for(&self, name: &str) -> Option<String> {
        policy::select(&self.operator_policies.read(), name, true).map(|p| p.name().to_string())
    }

    /// A queue's configuration from its arguments and the policies that apply to it.
    fn effective_config(&self, q: &Queue) -> QueueConfig {
        let base = QueueConfig::from_args(&q.arguments);
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

    /// Add or replace a policy; returns the list before, for an undo.
    pub(super) fn set_policy(
        self: &Arc<Self>,
        def: PolicyDef,
        operator: bool,
    ) -> Result<Vec<Policy>, String> {
        let p = Policy::new(def)?;
        let before = {
            let mut list = if operator {
                self.operator_policies.write()
            } else {
                self.policies.write()
            };
            let before = list.clone();
            list.retain(|x| x.name() != p.name());
            list.push(p);
            before
        };
        self.apply_policies();
        Ok(before)
    }

    /// Remove a policy; returns the list before if it existed.
    pub(super) fn clear_policy(&self, name: &str, operator: bool) -> Option<Vec<Policy>> {
        let before = {
            let mut list = if operator {
                self.operator_policies.write()
            } else {
                self.policies.write()
            };
            if !list.iter().any(|x| x.name() == name) {
                return None;
            }
            let before = list.clone();
            list.retain(|x| x.name() != name);
            before
        };
        self.apply_policies();
        Some(before)
    }

    /// Put a policy list back (undo).
    pub(super) fn restore_policies(&self, list: Vec<Policy>, operator: bool) {
        if operator {
            *self.operator_policies.write() = list;
        } else {
            *self.policies.write() = list;
        }
        self.apply_policies();
    }

    /// The durable topology of this vhost as commands (for the definitions log's snapshot).
    pub fn snapshot(&self, out: &mut Vec<Command>) {
        let vhost = self.name.to_string();
        let mut exchanges = self.exchanges();
        exchanges.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &exchanges {
            if x.durable && !x.name.is_empty() && !x.name.starts_with("amq.") {
                out.push(Command::DeclareExchange {
                    vhost: vhost.clone(),
                    name: x.name.to_string(),
                    kind: x.kind.as_str().to_string(),
                    durable: true,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    arguments: x.arguments.clone(),
                });
            }
        }
        let mut queues = self.queues();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        for q in queues.iter().filter(|q| q.durable) {
            out.push(Command::DeclareQueue {
                vhost: vhost.clone(),
                name: q.name.to_string(),
                durable: true,
                exclusive: false,
                auto_delete: q.auto_delete,
                arguments: q.arguments.clone(),
            });
        }
        for x in exchanges.iter().filter(|x| x.durable) {
            for b in x.bindings() {
                let (durable, to_exchange) = match &b.destination {
                    super::exchange::Destination::Queue(q) => (q.durable, false),
                    super::exchange::Destination::Exchange(d) => {
                        (self.exchange(d).is_some_and(|d| d.durable), true)
                    }
                };
                if durable {
                    out.push(Command::Bind(BindingArgs {
                        vhost: vhost.clone(),
                        source: x.name.to_string(),
                        destination: b.destination.name().to_string(),
                        to_exchange,
                        routing_key: b.routing_key.clone(),
                        arguments: b.arguments.clone(),
                    }));
                }
            }
        }
        for (list, operator) in [(&self.policies, false), (&self.operator_policies, true)] {
            for p in list.read().iter() {
                out.push(Command::SetPolicy {
                    def: p.def.clone(),
                    operator,
                });
            }
        }
        for (name, value) in self.limits.read().iter() {
            out.push(Command::SetVhostLimit {
                vhost: vhost.clone(),
                name: name.clone(),
                value: *value,
            });
        }
    }
}

impl QueueHost for VHost {
    fn route(
        &self,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
    ) -> bool {
        let Some(x) = self.exchange(exchange) else {
            return false;
        };
        self.route(&x, keys, headers, out);
        true
    }

    fn expire(&self, queue: &Arc<Queue>) {
        if let Some(d) = self.deleter.upgrade() {
            d.delete_queue(&self.name, &queue.name, DeleteCause::Expired);
        }
    }
}

struct NoDeleter;
impl Deleter for NoDeleter {
    fn delete_queue(&self, _: &str, _: &str, _: DeleteCause) {}
}
