//! Topic exchange matching with RabbitMQ's word rules: keys split on '.', the empty key has zero words, '*' is
//! exactly one (possibly empty) word, '#' is zero or more words, and both are special only as whole words.
//!
//! Bindings live in a trie of pattern words. Routing walks it as a nondeterministic automaton, one routing
//! key word at a time, over the *set* of trie nodes the key prefix can be at: a '#' node stays in the set
//! (it may absorb another word) and is also skipped through (it may match none). The set never holds a node
//! twice, so a key of `k` words costs at most `k × nodes` steps however the patterns nest '#' — no
//! backtracking, so no binding a client can declare makes routing exponential. Bind and unbind cost
//! O(pattern words); empty branches are pruned on unbind.

use super::{DestKey, Destination};
use smallvec::SmallVec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Lit(String),
    Star,
    Hash,
}

/// A binding key split into words, with runs of '#' collapsed (they match the same as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Word>);

/// A routing key split into words once, to be matched against many patterns.
pub fn words(key: &str) -> SmallVec<[&str; 16]> {
    if key.is_empty() {
        SmallVec::new()
    } else {
        key.split('.').collect()
    }
}

impl Pattern {
    pub fn compile(binding_key: &str) -> Pattern {
        let mut out: Vec<Word> = Vec::new();
        for w in words(binding_key) {
            let word = match w {
                "*" => Word::Star,
                "#" => Word::Hash,
                lit => Word::Lit(lit.to_string()),
            };
            if word == Word::Hash && out.last() == Some(&Word::Hash) {
                continue;
            }
            out.push(word);
        }
        Pattern(out)
    }

    /// Whether this one pattern matches `routing_key` (through a one-binding index, so the same automaton).
    pub fn matches(&self, routing_key: &str) -> bool {
        let mut ix = TopicIndex::default();
        ix.insert_pattern(self, Destination::Exchange("".into()));
        let mut hit = false;
        ix.route(routing_key, &mut |_| hit = true);
        hit
    }
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Node {
    lits: crate::FastMap<Box<str>, u32>,
    star: Option<u32>,
    hash: Option<u32>,
    /// Reached through a '#' edge: may absorb any number of further words.
    is_hash: bool,
    dests: Vec<Destination>,
    parent: u32,
    /// The edge from the parent (for pruning).
    edge: Option<Word>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.dests.is_empty() && self.lits.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// Every binding of a topic exchange, as a trie of pattern words (node 0 is the root).
#[derive(Debug)]
pub struct TopicIndex {
    nodes: Vec<Node>,
    free: Vec<u32>,
}

impl Default for TopicIndex {
    fn default() -> Self {
        TopicIndex {
            nodes: vec![Node {
                parent: NONE,
                ..Default::default()
            }],
            free: Vec::new(),
        }
    }
}

impl TopicIndex {
    fn alloc(&mut self, parent: u32, edge: Word) -> u32 {
        let node = Node {
            is_hash: edge == Word::Hash,
            parent,
            edge: Some(edge),
            ..Default::default()
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn child(&self, n: u32, w: &Word) -> Option<u32> {
        let node = &self.nodes[n as usize];
        match w {
            Word::Lit(s) => node.lits.get(s.as_str()).copied(),
            Word::Star => node.star,
            Word::Hash => node.hash,
        }
    }

    pub fn insert(&mut self, binding_key: &str, d: Destination) {
        self.insert_pattern(&Pattern::compile(binding_key), d);
    }

    fn insert_pattern(&mut self, p: &Pattern, d: Destination) {
        let mut n = 0u32;
        for w in &p.0 {
            n = match self.child(n, w) {
                Some(c) => c,
                None => {
                    let c = self.alloc(n, w.clone());
                    let node = &mut self.nodes[n as usize];
                    match w {
                        Word::Lit(s) => {
                            node.lits.insert(s.as_str().into(), c);
                        }
                        Word::Star => node.star = Some(c),
                        Word::Hash => node.hash = Some(c),
                    }
                    c
                }
            };
        }
        self.nodes[n as usize].dests.push(d);
    }

    /// Remove one binding of `binding_key` to `dest`, pruning branches left empty.
    pub fn remove(&mut self, binding_key: &str, dest: &DestKey) {
        let p = Pattern::compile(binding_key);
        let mut n = 0u32;
        for w in &p.0 {
            match self.child(n, w) {
                Some(c) => n = c,
                None => return,
            }
        }
        let dests = &mut self.nodes[n as usize].dests;
        if let Some(i) = dests.iter().position(|d| d.key() == *dest) {
            dests.swap_remove(i);
        }
        while n != 0 && self.nodes[n as usize].is_empty() {
            let parent = self.nodes[n as usize].parent;
            let edge = self.nodes[n as usize].edge.take();
            let pnode = &mut self.nodes[parent as usize];
            match edge {
                Some(Word::Lit(s)) => {
                    pnode.lits.remove(s.as_str());
                }
                Some(Word::Star) => pnode.star = None,
                Some(Word::Hash) => pnode.hash = None,
                None => {}
            }
            self.nodes[n as usize] = Node::default();
            self.free.push(n);
            n = parent;
        }
    }

    /// Add `n`, and what it reaches through '#' edges matching no word, to `set` (once each).
    fn add_closure(&self, n: u32, set: &mut Vec<u32>, seen: &mut Seen) {
        let mut n = Some(n);
        while let Some(x) = n {
            if !seen.insert(x) {
                return;
            }
            set.push(x);
            n = self.nodes[x as usize].hash;
        }
    }

    pub fn route(&self, routing_key: &str, out: &mut impl FnMut(&Destination)) {
        let mut cur: Vec<u32> = Vec::new();
        let mut seen = Seen::default();
        self.add_closure(0, &mut cur, &mut seen);
        let mut next: Vec<u32> = Vec::new();
        for w in words(routing_key) {
            next.clear();
            seen.clear();
            for &n in &cur {
                let node = &self.nodes[n as usize];
                if node.is_hash && seen.insert(n) {
                    next.push(n);
                }
                if let Some(&c) = node.lits.get(w) {
                    self.add_closure(c, &mut next, &mut seen);
                }
                if let Some(c) = node.star {
                    self.add_closure(c, &mut next, &mut seen);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            if cur.is_empty() {
                return;
            }
        }
        for &n in &cur {
            self.nodes[n as usize].dests.iter().for_each(&mut *out);
        }
    }
}

/// The node ids already in a set: a short list checked linearly, a hash set once it grows.
#[derive(Default)]
struct Seen {
    small: SmallVec<[u32; 16]>,
    big: Option<crate::FastSet<u32>>,
}

impl Seen {
    fn insert(&mut self, n: u32) -> bool {
        if let Some(b) = &mut self.big {
            return b.insert(n);
        }
        if self.small.contains(&n) {
            return false;
        }
        if self.small.len() == 16 {
            let mut b: crate::FastSet<u32> = self.small.drain(..).collect();
            b.insert(n);
            self.big = Some(b);
        } else {
            self.small.push(n);
        }
        true
    }

    fn clear(&mut self) {
        self.small.clear();
        if let Some(b) = &mut self.big {
            b.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, k: &str) -> bool {
        Pattern::compile(p).matches(k)
    }

    #[test]
    fn rabbitmq_word_rules() {
        let yes = [
            ("#", ""),
            ("#", "a.b"),
            ("#", "."),
            ("*", "a"),
            ("a.*", "a.b"),
            ("a.*", "a."),
            ("a.#", "a"),
            ("a.#", "a."),
            ("a.#", "a..b"),
            ("#.a", "a"),
            ("#.a", ".a"),
            ("a.#.b", "a.b"),
            ("a.#.b", "a.x.y.b"),
            ("*.#", "a"),
            ("#.*", "."),
            ("", ""),
            ("a#", "a#"),
            ("a.*#", "a.*#"),
            ("*.*", "a."),
            ("#.#", ""),
            ("#.*.#", "a"),
            ("a.#.#.b", "a.b"),
        ];
        for (p, k) in yes {
            assert!(m(p, k), "{p:?} should match {k:?}");
        }
        let no = [
            ("*", ""),
            ("*", "."),
            ("*", "a.b"),
            ("a.*", "a"),
            ("", "a"),
            ("a#", "ab"),
            ("*.#", ""),
            ("#.*", ""),
            ("a.#.b", "a.b.c"),
            ("a", "b"),
            ("#.*.*", "a"),
        ];
        for (p, k) in no {
            assert!(!m(p, k), "{p:?} should not match {k:?}");
        }
    }

    fn q(name: &str) -> Destination {
        Destination::Exchange(name.into())
    }

    fn routed(ix: &TopicIndex, key: &str) -> Vec<String> {
        let mut v = Vec::new();
        ix.route(key, &mut |d| v.push(d.name().to_string()));
        v.sort();
        v
    }

    #[test]
    fn index_routes_many_patterns_and_prunes_on_remove() {
        let mut ix = TopicIndex::default();
        ix.insert("a.*", q("1"));
        ix.insert("a.#", q("2"));
        ix.insert("#", q("3"));
        ix.insert("a.b", q("4"));
        ix.insert("a.b", q("5"));
        assert_eq!(routed(&ix, "a.b"), ["1", "2", "3", "4", "5"]);
        assert_eq!(routed(&ix, "a"), ["2", "3"]);
        ix.remove("a.b", &DestKey::Exchange("4".into()));
        ix.remove("#", &DestKey::Exchange("3".into()));
        assert_eq!(routed(&ix, "a.b"), ["1", "2", "5"]);
        for (k, d) in [("a.*", "1"), ("a.#", "2"), ("a.b", "5")] {
            ix.remove(k, &DestKey::Exchange(d.into()));
        }
        assert!(ix.nodes[0].is_empty(), "every branch pruned");
        let before = ix.nodes.len();
        ix.insert("x.y.z", q("6"));
        assert_eq!(ix.nodes.len(), before, "freed nodes are reused");
    }

    #[test]
    fn pathological_hash_patterns_route_quickly() {
        // 127 '#' words alternating with literals against a 255-byte key: exponential with backtracking.
        let pattern = vec!["#.a"; 64].join(".");
        let key = vec!["a"; 127].join(".");
        let miss = format!("{key}.b");
        let mut ix = TopicIndex::default();
        ix.insert(&pattern, q("x"));
        ix.insert(&vec!["#"; 127].join("."), q("y"));
        // With backtracking these two calls would not finish; the automaton does ~127 × 130 steps each.
        assert_eq!(routed(&ix, &key), ["x", "y"]);
        assert_eq!(routed(&ix, &miss), ["y"]);
    }
}
