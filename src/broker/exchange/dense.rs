//! A hash map whose values sit in one dense vector: O(1) insert, lookup and removal (the last value moves
//! into the removed slot), and iteration as fast as a slice. Exchanges keep their bindings in one so that a
//! fanout or headers exchange walks a vector per publish while bind and unbind stay O(1) at any size.

use std::hash::Hash;

#[derive(Debug)]
pub struct DenseMap<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
    pos: crate::FastMap<K, usize>,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            keys: Vec::new(),
            values: Vec::new(),
            pos: Default::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> DenseMap<K, V> {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.pos.contains_key(k)
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.pos.get(k).map(|&i| &self.values[i])
    }

    /// Insert or replace; returns the value replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some(&i) = self.pos.get(&k) {
            return Some(std::mem::replace(&mut self.values[i], v));
        }
        self.pos.insert(k.clone(), self.values.len());
        self.keys.push(k);
        self.values.push(v);
        None
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.pos.remove(k)?;
        self.keys.swap_remove(i);
        let v = self.values.swap_remove(i);
        if let Some(moved) = self.keys.get(i) {
            self.pos.insert(moved.clone(), i);
        }
        Some(v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.keys.iter()
    }

    pub fn values(&self) -> std::slice::Iter<'_, V> {
        self.values.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keeps_every_other_entry_reachable() {
        let mut m = DenseMap::default();
        for i in 0..100 {
            assert!(m.insert(i, i * 10).is_none());
        }
        for i in (0..100).step_by(3) {
            assert_eq!(m.remove(&i), Some(i * 10));
        }
        assert_eq!(m.remove(&0), None);
        for i in 0..100 {
            assert_eq!(m.get(&i).copied(), (i % 3 != 0).then_some(i * 10));
        }
        assert_eq!(m.len(), m.values().count());
        assert_eq!(m.insert(1, 7), Some(10));
    }
}
