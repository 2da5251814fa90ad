//! Declaring and deleting exchanges (applied by commands, under the metadata lock), with RabbitMQ's
//! validation order and texts, and auto-delete of an exchange that loses its last binding.

use super::{default_exchange_error, VHost};
use crate::broker::command::{Command, Effects, Mode};
use crate::broker::exchange::{self, DestKey, Exchange, ExchangeKind};
use crate::broker::policy;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::Arc;

/// What an exchange.declare asks for.
pub struct ExchangeDeclare<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: &'a FieldTable,
}

impl VHost {
    /// exchange.declare with passive=true: a query, not a change.
    pub fn check_exchange(&self, name: &str) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        self.get_exchange(name).map(|_| ())
    }

    pub(crate) fn declare_exchange(
        &self,
        d: &ExchangeDeclare,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        let name = d.name;
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        // RabbitMQ checks the type before looking the exchange up, and treats a bad one as a connection error.
        let Some(kind) = ExchangeKind::parse(d.kind) else {
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{}'",
                d.kind
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
            for (arg, got, cur) in [
                ("durable", d.durable, existing.durable),
                ("auto_delete", d.auto_delete, existing.auto_delete),
                ("internal", d.internal, existing.internal),
            ] {
                if got != cur {
                    return Err(ineq(arg, got.to_string(), cur.to_string()));
                }
            }
            let got = fields::get(d.arguments, "alternate-exchange");
            let cur = fields::get(&existing.arguments, "alternate-exchange");
            check_arg_equivalence("alternate-exchange", "exchange", name, &self.name, got, cur)?;
            return Ok(());
        }
        if name.starts_with("amq.") && mode == Mode::Live {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        exchange::validate_args(name, &self.name, d.arguments)?;
        let x = Arc::new(Exchange::new(
            name,
            kind,
            d.durable,
            d.auto_delete,
            d.internal,
            d.arguments.clone(),
        ));
        if x.alternate_arg().is_none() {
            let policies = self.policies.read();
            x.set_alternate(policy::alternate_exchange(
                None,
                policy::select(&policies, name, false),
            ));
        }
        self.exchanges.insert(name.to_string(), x.clone());
        if d.durable {
            fx.log(Command::DeclareExchange {
                vhost: self.name.to_string(),
                name: name.to_string(),
                kind: kind.as_str().to_string(),
                durable: true,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments.clone(),
            });
        }
        let me = self.self_ref.clone();
        fx.on_undo(move || {
            if let Some(v) = me.upgrade() {
                v.remove_exchange(&x, Mode::Replay, &mut Effects::default());
            }
        });
        Ok(())
    }

    pub(crate) fn delete_exchange(
        &self,
        name: &str,
        if_unused: bool,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(default_exchange_error());
        }
        if name.starts_with("amq.") && self.exchanges.contains_key(name) && mode == Mode::Live {
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
        self.remove_exchange(&x, mode, fx);
        Ok(())
    }

    /// Remove an exchange with every binding from and to it; sources that lose their last binding to it
    /// auto-delete (live only: replay has those deletions as commands of their own).
    pub(super) fn remove_exchange(&self, x: &Arc<Exchange>, mode: Mode, fx: &mut Effects) {
        if self
            .exchanges
            .remove_if(&*x.name, |_, v| Arc::ptr_eq(v, x))
            .is_none()
        {
            return;
        }
        x.mark_deleted(true);
        if x.durable {
            fx.log(Command::DeleteExchange {
                vhost: self.name.to_string(),
                name: x.name.to_string(),
                if_unused: false,
            });
        }
        // Its own bindings stay with it (for an undo); only the reverse index forgets them.
        for b in x.bindings() {
            self.forget_source(&b.destination.key(), &x.name);
        }
        let me = self.self_ref.clone();
        let xr = x.clone();
        fx.on_undo(move || {
            if let Some(v) = me.upgrade() {
                xr.mark_deleted(false);
                v.exchanges.insert(xr.name.to_string(), xr.clone());
                for b in xr.bindings() {
                    v.note_source(&b.destination.key(), &xr.name);
                }
            }
        });
        self.unbind_all_to(&DestKey::Exchange(x.name.clone()), mode, fx);
        tracing::debug!(vhost = %self.name, exchange = %x.name, "exchange deleted");
    }

    /// Auto-delete `x` if it is auto-delete and has no bindings left (live only).
    pub(super) fn maybe_auto_delete(&self, x: &Arc<Exchange>, mode: Mode, fx: &mut Effects) {
        if mode == Mode::Live && x.auto_delete && !x.has_bindings() {
            self.remove_exchange(x, mode, fx);
        }
    }
}

/// RabbitMQ's equivalence check on one argument, with its 406 text.
pub(super) fn check_arg_equivalence(
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
    // RabbitMQ names the types only when one side is absent; two values are shown bare, whatever their types.
    let detail = match (got, cur) {
        (Some(a), Some(b)) => {
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
