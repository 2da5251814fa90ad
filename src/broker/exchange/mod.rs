//! Exchanges and their bindings. Each exchange type lives in its own file behind a pure routing function; this
//! module holds what they share: the exchange record, its binding list, and the per-type index that routing
//! reads. Routing across exchange-to-exchange bindings and alternate exchanges happens in `VHost::route`.

pub mod direct;
pub mod fanout;
pub mod headers;
pub mod topic;

use crate::error::{AmqpError, AmqpResult};
use crate::queue::Queue;
use amq_protocol::types::FieldTable;
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

    fn same(&self, other: &Destination) -> bool {
        self.is_queue() == other.is_queue() && self.name() == other.name()
    }
}

#[derive(Clone, Debug)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// Per-type routing index, rebuilt when bindings change (rare) so that routing (hot) stays cheap.
#[derive(Debug)]
enum Index {
    Direct(direct::DirectIndex),
    Fanout,
    Topic(Vec<(topic::Pattern, Destination)>),
    Headers(Vec<(headers::XMatch, FieldTable, Destination)>),
}

#[derive(Debug)]
struct Bindings {
    list: Vec<Binding>,
    index: Index,
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
        let bindings = Bindings {
            list: Vec::new(),
            index: Self::index(kind, &[]),
        };
        Exchange {
            name: Arc::from(name),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate: RwLock::new(alternate),
            bindings: RwLock::new(bindings),
            deleted: AtomicBool::new(false),
        }
    }

    fn index(kind: ExchangeKind, list: &[Binding]) -> Index {
        match kind {
            ExchangeKind::Direct => Index::Direct(direct::DirectIndex::rebuild(list)),
            ExchangeKind::Fanout => Index::Fanout,
            ExchangeKind::Topic => Index::Topic(
                list.iter()
                    .map(|b| {
                        (
                            topic::Pattern::compile(&b.routing_key),
                            b.destination.clone(),
                        )
                    })
                    .collect(),
            ),
            ExchangeKind::Headers => Index::Headers(
                list.iter()
                    .map(|b| {
                        let xm =
                            headers::parse_x_match(&b.arguments).unwrap_or(headers::XMatch::All);
                        (xm, b.arguments.clone(), b.destination.clone())
                    })
                    .collect(),
            ),
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

    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
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

    /// Add a binding; an identical one (same destination, key and arguments) is a no-op.
    pub fn bind(&self, b: Binding) -> bool {
        let mut g = self.bindings.write();
        if g.list.iter().any(|x| {
            x.destination.same(&b.destination)
                && x.routing_key == b.routing_key
                && x.arguments == b.arguments
        }) {
            return false;
        }
        g.list.push(b);
        g.index = Self::index(self.kind, &g.list);
        true
    }

    /// Remove a binding; returns whether one was removed.
    pub fn unbind(&self, dest: &Destination, routing_key: &str, args: &FieldTable) -> bool {
        let mut g = self.bindings.write();
        let before = g.list.len();
        g.list.retain(|x| {
            !(x.destination.same(dest) && x.routing_key == routing_key && &x.arguments == args)
        });
        let removed = g.list.len() != before;
        if removed {
            g.index = Self::index(self.kind, &g.list);
        }
        removed
    }

    /// Remove every binding to a destination (when it is deleted); returns whether any was removed.
    pub fn unbind_all_to(&self, dest: &Destination) -> bool {
        let mut g = self.bindings.write();
        let before = g.list.len();
        g.list.retain(|x| !x.destination.same(dest));
        let removed = g.list.len() != before;
        if removed {
            g.index = Self::index(self.kind, &g.list);
        }
        removed
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().list.is_empty()
    }

    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().list.clone()
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
            Index::Fanout => fanout::route(&g.list, out),
            Index::Topic(pats) => {
                let key = topic::words(routing_key);
                for (p, d) in pats {
                    if p.matches_words(&key) {
                        out(d);
                    }
                }
            }
            Index::Headers(hs) => {
                for (xm, args, d) in hs {
                    if headers::matches(args, *xm, headers) {
                        out(d);
                    }
                }
            }
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
