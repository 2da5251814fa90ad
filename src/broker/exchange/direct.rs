//! Direct exchange: a binding matches when its key equals the routing key exactly. The index maps each key
//! to its destinations and is updated one binding at a time.

use super::{DestKey, Destination};
use crate::FastMap as HashMap;
use smallvec::SmallVec;

#[derive(Default, Debug)]
pub struct DirectIndex {
    by_key: HashMap<String, SmallVec<[Destination; 1]>>,
}

impl DirectIndex {
    pub fn insert(&mut self, key: &str, d: Destination) {
        match self.by_key.get_mut(key) {
            Some(ds) => ds.push(d),
            None => {
                self.by_key.insert(key.to_string(), smallvec::smallvec![d]);
            }
        }
    }

    /// Remove one binding of `key` to `dest`.
    pub fn remove(&mut self, key: &str, dest: &DestKey) {
        if let Some(ds) = self.by_key.get_mut(key) {
            if let Some(i) = ds.iter().position(|d| d.key() == *dest) {
                ds.swap_remove(i);
            }
            if ds.is_empty() {
                self.by_key.remove(key);
            }
        }
    }

    pub fn route(&self, routing_key: &str, out: &mut impl FnMut(&Destination)) {
        if let Some(ds) = self.by_key.get(routing_key) {
            ds.iter().for_each(out);
        }
    }
}
