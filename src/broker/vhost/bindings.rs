//! Binding and unbinding (applied by commands, under the metadata lock): queue and exchange-to-exchange
//! bindings, each an O(1) change to the source exchange's index, with the vhost's reverse index (which
//! exchanges bind to each destination) kept in step so that deleting a destination visits only its own
//! bindings.

use super::{default_exchange_error, VHost};
use crate::broker::command::{Actor, BindingArgs, Command, Effects, Mode};
use crate::broker::exchange::{Binding, BindingId, DestKey, Destination, Exchange};
use crate::error::AmqpResult;
use std::sync::Arc;

impl VHost {
    /// Count one more binding from `source` to `dest` in the reverse index.
    pub(super) fn note_source(&self, dest: &DestKey, source: &Arc<str>) {
        *self
            .sources
            .lock()
            .entry(dest.clone())
            .or_default()
            .entry(source.clone())
            .or_insert(0) += 1;
    }

    /// Count one binding from `source` to `dest` less.
    pub(super) fn forget_source(&self, dest: &DestKey, source: &str) {
        let mut s = self.sources.lock();
        if let Some(by_source) = s.get_mut(dest) {
            if let Some(n) = by_source.get_mut(source) {
                *n -= 1;
                if *n == 0 {
                    by_source.remove(source);
                }
            }
            if by_source.is_empty() {
                s.remove(dest);
            }
        }
    }

    /// Put a removed binding back (undo).
    fn undo_unbind(&self, fx: &mut Effects, x: &Arc<Exchange>, b: Binding) {
        let (me, xr) = (self.self_ref.clone(), x.clone());
        fx.on_undo(move || {
            let dest = b.destination.key();
            if xr.bind(b) {
                if let Some(v) = me.upgrade() {
                    v.note_source(&dest, &xr.name);
                }
            }
        });
    }

    /// Add a binding to `x` (with its reverse-index entry and undo).
    fn add_binding(&self, x: &Arc<Exchange>, b: Binding, fx: &mut Effects) -> bool {
        let dest = b.destination.key();
        let id = BindingId::new(dest.clone(), &b.routing_key, &b.arguments);
        if !x.bind(b) {
            return false;
        }
        self.note_source(&dest, &x.name);
        let (me, xr) = (self.self_ref.clone(), x.clone());
        fx.on_undo(move || {
            if xr.unbind(&id).is_some() {
                if let Some(v) = me.upgrade() {
                    v.forget_source(&id.dest, &xr.name);
                }
            }
        });
        true
    }

    /// Remove a binding from `x` (with its reverse-index entry and undo).
    fn drop_binding(&self, x: &Arc<Exchange>, id: &BindingId, fx: &mut Effects) -> bool {
        let Some(b) = x.unbind(id) else {
            return false;
        };
        self.forget_source(&id.dest, &x.name);
        self.undo_unbind(fx, x, b);
        true
    }

    pub(crate) fn bind(
        &self,
        s: &BindingArgs,
        actor: &Actor,
        _mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        check_names(s)?;
        let (destination, durable_dest) = if s.to_exchange {
            let d = self.get_exchange(&s.destination)?;
            (Destination::Exchange(d.name.clone()), d.durable)
        } else {
            let q = self.get_queue(&s.destination)?;
            q.check_access(actor.conn_id())?;
            let durable = q.durable;
            (Destination::Queue(q), durable)
        };
        let x = self.get_exchange(&s.source)?;
        x.check_binding_args(&s.arguments)?;
        let added = self.add_binding(
            &x,
            Binding {
                destination,
                routing_key: s.routing_key.to_string(),
                arguments: s.arguments.clone(),
            },
            fx,
        );
        if added && x.durable && durable_dest {
            fx.log(Command::Bind(s.clone()));
        }
        Ok(())
    }

    pub(crate) fn unbind(
        &self,
        s: &BindingArgs,
        actor: &Actor,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<()> {
        check_names(s)?;
        let Some(x) = self.exchange(&s.source) else {
            return Ok(());
        };
        let (dest, durable_dest) = if s.to_exchange {
            let Some(d) = self.exchange(&s.destination) else {
                return Ok(());
            };
            (DestKey::Exchange(d.name.clone()), d.durable)
        } else {
            let Some(q) = self.queue(&s.destination) else {
                return Ok(());
            };
            q.check_access(actor.conn_id())?;
            (DestKey::Queue(q.name.clone()), q.durable)
        };
        let id = BindingId::new(dest, &s.routing_key, &s.arguments);
        if self.drop_binding(&x, &id, fx) {
            if x.durable && durable_dest {
                fx.log(Command::Unbind(s.clone()));
            }
            self.maybe_auto_delete(&x, mode, fx);
        }
        Ok(())
    }

    /// Remove every binding leading to `dest` (being deleted); sources left without bindings auto-delete.
    pub(super) fn unbind_all_to(&self, dest: &DestKey, mode: Mode, fx: &mut Effects) {
        let sources: Vec<Arc<str>> = self
            .sources
            .lock()
            .get(dest)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for name in sources {
            let Some(src) = self.exchange(&name) else {
                continue;
            };
            let mut removed = false;
            for b in src.unbind_all_to(dest) {
                removed = true;
                self.forget_source(dest, &src.name);
                self.undo_unbind(fx, &src, b);
            }
            if removed {
                self.maybe_auto_delete(&src, mode, fx);
            }
        }
    }
}

/// Neither end of a binding may be the default exchange.
fn check_names(s: &BindingArgs) -> crate::error::AmqpResult<()> {
    if s.source.is_empty() || (s.to_exchange && s.destination.is_empty()) {
        return Err(default_exchange_error());
    }
    Ok(())
}
