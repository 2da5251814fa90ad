//! Topic exchange matching with RabbitMQ's word rules: keys split on '.', the empty key has zero words, '*' is
//! exactly one (possibly empty) word, '#' is zero or more words, and both are special only as whole words.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    Lit(String),
    Star,
    Hash,
}

/// A compiled binding key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Word>);

/// A routing key split into words once, to be matched against many patterns.
pub fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
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
            // Consecutive '#' match the same as one and would only slow matching down.
            if word == Word::Hash && out.last() == Some(&Word::Hash) {
                continue;
            }
            out.push(word);
        }
        Pattern(out)
    }

    pub fn matches(&self, routing_key: &str) -> bool {
        self.matches_words(&words(routing_key))
    }

    /// Match a routing key already split by `words`.
    pub fn matches_words(&self, key: &[&str]) -> bool {
        match_words(&self.0, key)
    }
}

fn match_words(p: &[Word], k: &[&str]) -> bool {
    match p.first() {
        None => k.is_empty(),
        Some(Word::Hash) => {
            if p.len() == 1 {
                return true;
            }
            (0..=k.len()).any(|i| match_words(&p[1..], &k[i..]))
        }
        Some(Word::Star) => !k.is_empty() && match_words(&p[1..], &k[1..]),
        Some(Word::Lit(w)) => !k.is_empty() && k[0] == w && match_words(&p[1..], &k[1..]),
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
        ];
        for (p, k) in no {
            assert!(!m(p, k), "{p:?} should not match {k:?}");
        }
    }
}
