//! Exchanges and their bindings. Each exchange type lives in its own file behind a pure routing index; this
//! module holds what they share: the exchange record and its binding set. Bind and unbind update the set and
//! the type's index in O(1) (O(words) for topic patterns), whatever the number of bindings; routing reads the
//! index. Routing across exchange-to-exchange bindings and alternate exchanges happens in `VHost::route`.

pub mod dense;
pub mod direct;
pub mod fanout;
pub mod headers;
pub mod topic;

use crate::error::{AmqpError, AmqpResult};
use crate::queue::Queue;
use amq_protocol::types::FieldTable;
use dense::DenseMap;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Clone, Debug)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<str>),
}

/// A destination by name: what identifies it in binding sets and the vhost's reverse index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DestKey {
    Queue(Arc<str>),
    Exchange(Arc<str>),
}

impl DestKey {
    pub fn name(&self) -> &str {
        match self {
            DestKey::Queue(n) | DestKey::Exchange(n) => n,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, DestKey::Queue(_))
    }
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => &q.name,
            Destination::Exchange(x) => x,
        }
    }

    pub fn is_queue(&self) -> bool {
        matches!(self, Destination::Queue(_))
    }

    pub fn key(&self) -> DestKey {
        match self {
            Destination::Queue(q) => DestKey::Queue(q.name.clone()),
            Destination::Exchange(x) => DestKey::Exchange(x.clone()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// What makes a binding distinct: destination, key and arguments (compared in their wire encoding, which
/// is canonical because a field table keeps its keys sorted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindingId {
    pub dest: DestKey,
    pub routing_key: String,
    args: Box<[u8]>,
}

impl BindingId {
    pub fn new(dest: DestKey, routing_key: &str, args: &FieldTable) -> BindingId {
        BindingId {
            dest,
            routing_key: routing_key.to_string(),
            args: encode_args(args),
        }
    }
}

fn encode_args(args: &FieldTable) -> Box<[u8]> {
    if args.inner().is_empty() {
        return Box::default();
    }
    // Cannot fail for a table that was decoded or built in memory; fall back to a distinct key.
    crate::protocol::fields::encode_table(args)
        .unwrap_or_else(|| format!("{args:?}").into_bytes().into_boxed_slice())
}

/// The per-type routing index, updated binding by binding.
#[derive(Debug)]
enum Index {
    Direct(direct::DirectIndex),
    /// Fanout and headers route by walking every binding.
    Walk,
    Topic(topic::TopicIndex),
}

/// A binding as an exchange keeps it, with what routing needs precomputed.
#[derive(Debug)]
pub struct Bound {
    pub binding: Binding,
    /// A headers binding's x-match (validated at bind).
    pub xmatch: headers::XMatch,
}

#[derive(Debug)]
struct Bindings {
    list: DenseMap<BindingId, Bound>,
    /// The bindings to each destination, so deleting a queue touches only its own.
    by_dest: crate::FastMap<DestKey, crate::FastSet<BindingId>>,
    index: Index,
}

crate::counters! {
    /// Messages published into an exchange, and those that matched nothing (publish_out is the
    /// difference). Added to by every publishing task at once.
    pub struct ExchangeStats {
        publish_in,
        unroutable,
    }
}

#[derive(Debug)]
pub struct Exchange {
    pub name: Arc<str>,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// The alternate exchange: the argument's, else the applicable policy's.
    alternate: RwLock<Option<String>>,
    bindings: RwLock<Bindings>,
    deleted: AtomicBool,
    pub stats: ExchangeStats,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Exchange {
        let alternate = crate::protocol::fields::get(&arguments, "alternate-exchange")
            .and_then(crate::protocol::fields::as_str)
            .map(|s| s.into_owned());
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(Default::default()),
            ExchangeKind::Fanout | ExchangeKind::Headers => Index::Walk,
            ExchangeKind::Topic => Index::Topic(Default::default()),
        };
        Exchange {
            name: Arc::from(name),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate: RwLock::new(alternate),
            bindings: RwLock::new(Bindings {
                list: DenseMap::default(),
                by_dest: Default::default(),
                index,
            }),
            deleted: AtomicBool::new(false),
            stats: ExchangeStats::default(),
        }
    }

    pub fn alternate(&self) -> Option<String> {
        self.alternate.read().clone()
    }

    /// The alternate exchange named by the argument, if any.
    pub fn alternate_arg(&self) -> Option<String> {
        crate::protocol::fields::get(&self.arguments, "alternate-exchange")
            .and_then(crate::protocol::fields::as_str)
            .map(|s| s.into_owned())
    }

    pub fn set_alternate(&self, ae: Option<String>) {
        *self.alternate.write() = ae;
    }

    pub fn mark_deleted(&self, deleted: bool) {
        self.deleted.store(deleted, Ordering::Release);
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Validate binding arguments for this exchange type before binding.
    pub fn check_binding_args(&self, args: &FieldTable) -> AmqpResult<()> {
        if self.kind == ExchangeKind::Headers {
            headers::parse_x_match(args)?;
        }
        Ok(())
    }

    /// Add a binding; an identical one (same destination, key and arguments) is a no-op (false).
    pub fn bind(&self, b: Binding) -> bool {
        let id = BindingId::new(b.destination.key(), &b.routing_key, &b.arguments);
        let mut g = self.bindings.write();
        if g.list.contains_key(&id) {
            return false;
        }
        match &mut g.index {
            Index::Direct(ix) => ix.insert(&b.routing_key, b.destination.clone()),
            Index::Topic(ix) => ix.insert(&b.routing_key, b.destination.clone()),
            Index::Walk => {}
        }
        let xmatch = headers::parse_x_match(&b.arguments).unwrap_or(headers::XMatch::All);
        g.by_dest
            .entry(id.dest.clone())
            .or_default()
            .insert(id.clone());
        g.list.insert(id, Bound { binding: b, xmatch });
        true
    }

    /// Remove one binding; returns it if it existed.
    pub fn unbind(&self, id: &BindingId) -> Option<Binding> {
        let mut g = self.bindings.write();
        let b = g.list.remove(id)?.binding;
        if let Some(ids) = g.by_dest.get_mut(&id.dest) {
            ids.remove(id);
            if ids.is_empty() {
                g.by_dest.remove(&id.dest);
            }
        }
        match &mut g.index {
            Index::Direct(ix) => ix.remove(&b.routing_key, &id.dest),
            Index::Topic(ix) => ix.remove(&b.routing_key, &id.dest),
            Index::Walk => {}
        }
        Some(b)
    }

    /// Remove every binding to `dest` (it is being deleted), returning them.
    pub fn unbind_all_to(&self, dest: &DestKey) -> Vec<Binding> {
        let ids: Vec<BindingId> = self
            .bindings
            .read()
            .by_dest
            .get(dest)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        ids.iter().filter_map(|id| self.unbind(id)).collect()
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().list.is_empty()
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.read().list.len()
    }

    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings
            .read()
            .list
            .values()
            .map(|b| b.binding.clone())
            .collect()
    }

    /// The destinations this exchange's own bindings select for a message.
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut impl FnMut(&Destination),
    ) {
        let g = self.bindings.read();
        match &g.index {
            Index::Direct(ix) => ix.route(routing_key, out),
            Index::Topic(ix) => ix.route(routing_key, out),
            Index::Walk if self.kind == ExchangeKind::Fanout => fanout::route(g.list.values(), out),
            Index::Walk => headers::route(g.list.values(), headers, out),
        }
    }
}

/// Validate exchange arguments on declare (RabbitMQ checks alternate-exchange's type).
pub fn validate_args(name: &str, vhost: &str, args: &FieldTable) -> AmqpResult<()> {
    if let Some(v) = crate::protocol::fields::get(args, "alternate-exchange") {
        if crate::protocol::fields::as_str(v).is_none() {
            return Err(AmqpError::precondition_failed(format!(
                "invalid type '{}' for arg 'alternate-exchange' in exchange '{}' in vhost '{}'",
                crate::protocol::fields::type_name(v),
                name,
                vhost
            )));
        }
    }
    Ok(())
}
