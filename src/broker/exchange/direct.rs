//! Direct exchange: a binding matches when its key equals the routing key exactly.

use super::{Binding, Destination};
use crate::FastMap as HashMap;

#[derive(Default, Debug)]
pub struct DirectIndex {
    by_key: HashMap<String, Vec<Destination>>,
}

impl DirectIndex {
    pub fn rebuild(bindings: &[Binding]) -> Self {
        let mut by_key: HashMap<String, Vec<Destination>> = HashMap::default();
        for b in bindings {
            by_key
                .entry(b.routing_key.clone())
                .or_default()
                .push(b.destination.clone());
        }
        DirectIndex { by_key }
    }

    pub fn route(&self, routing_key: &str, out: &mut impl FnMut(&Destination)) {
        if let Some(ds) = self.by_key.get(routing_key) {
            ds.iter().for_each(out);
        }
    }
}
