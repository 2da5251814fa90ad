//! Routing a message through a vhost: the exchange's own bindings, exchange-to-exchange bindings (each
//! exchange visited once, so cycles end), the alternate exchange of an exchange that matched nothing, and
//! every extra CC/BCC routing key. Each queue appears once in the result; de-duplication stays linear
//! however many queues a message reaches.

use super::VHost;
use crate::broker::exchange::{Destination, Exchange};
use crate::queue::{Queue, Routed};
use amq_protocol::types::FieldTable;
use smallvec::SmallVec;
use std::sync::Arc;

/// Above this many entries, membership is checked in a hash set instead of by scanning.
const SCAN_LIMIT: usize = 16;

/// A set of queues in insertion order, built up by routing.
#[derive(Default)]
pub struct RouteSet<'a> {
    out: Option<&'a mut Routed>,
    seen: Option<crate::FastSet<usize>>,
}

impl<'a> RouteSet<'a> {
    fn new(out: &'a mut Routed) -> Self {
        let seen =
            (out.len() > SCAN_LIMIT).then(|| out.iter().map(|q| Arc::as_ptr(q) as usize).collect());
        RouteSet {
            out: Some(out),
            seen,
        }
    }

    fn insert(&mut self, q: &Arc<Queue>) {
        let Some(out) = self.out.as_deref_mut() else {
            return;
        };
        let addr = Arc::as_ptr(q) as usize;
        match &mut self.seen {
            Some(seen) => {
                if seen.insert(addr) {
                    out.push(q.clone());
                }
            }
            None => {
                if out.iter().any(|o| Arc::as_ptr(o) as usize == addr) {
                    return;
                }
                out.push(q.clone());
                if out.len() > SCAN_LIMIT {
                    self.seen = Some(out.iter().map(|q| Arc::as_ptr(q) as usize).collect());
                }
            }
        }
    }
}

impl VHost {
    /// Route a message published to `x` with `keys` (its routing key, then any CC and BCC keys) into `out`.
    pub fn route(
        &self,
        x: &Arc<Exchange>,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Routed,
    ) {
        let mut set = RouteSet::new(out);
        if x.name.is_empty() {
            for k in keys {
                if let Some(q) = self.queue(k) {
                    set.insert(&q);
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
                            if !q.is_deleted() {
                                set.insert(q);
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
