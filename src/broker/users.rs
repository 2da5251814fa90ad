//! Users, their passwords and tags, and what they may do where: permissions (configure / write / read
//! regexes per vhost, as RabbitMQ's `set_permissions`), topic permissions (write / read regexes per topic
//! exchange, as `set_topic_permissions`) and per-user limits. Changes arrive only as commands
//! (`broker::command`); this module holds the state and the checks.

use crate::FastDashMap as DashMap;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a user's password is kept (and written to the definitions log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredPassword {
    /// Only from definitions logs of earlier versions; new passwords are always hashed.
    Plain(String),
    /// RabbitMQ's rabbit_password_hashing_sha256: base64 of a 4-byte salt + SHA-256(salt + password).
    Sha256(String),
    /// rabbit_password_hashing_sha512: the same with SHA-512.
    Sha512(String),
    /// rabbit_password_hashing_md5 (RabbitMQ's legacy hash).
    Md5(String),
    /// No password: password login is refused.
    None,
}

impl StoredPassword {
    /// A fresh salted SHA-256 hash of `password`, RabbitMQ's default. The salt is random, so this is called
    /// before a command is built, never inside apply.
    pub fn hash(password: &str) -> StoredPassword {
        let salt: [u8; 4] = rand::random();
        StoredPassword::Sha256(salted::<Sha256>(&salt, password))
    }

    /// From RabbitMQ's `password_hash` and `hashing_algorithm` fields (definitions, management API).
    pub fn from_rabbit(hash: &str, algorithm: Option<&str>) -> Result<StoredPassword, String> {
        if hash.is_empty() {
            return Ok(StoredPassword::None);
        }
        match algorithm.unwrap_or("rabbit_password_hashing_sha256") {
            "rabbit_password_hashing_sha256" => Ok(StoredPassword::Sha256(hash.to_string())),
            "rabbit_password_hashing_sha512" => Ok(StoredPassword::Sha512(hash.to_string())),
            "rabbit_password_hashing_md5" => Ok(StoredPassword::Md5(hash.to_string())),
            other => Err(format!("unsupported hashing algorithm '{other}'")),
        }
    }

    /// RabbitMQ's `password_hash` and `hashing_algorithm`, for export.
    pub fn to_rabbit(&self) -> (String, &'static str) {
        const SHA256: &str = "rabbit_password_hashing_sha256";
        match self {
            StoredPassword::Sha256(h) => (h.clone(), SHA256),
            StoredPassword::Sha512(h) => (h.clone(), "rabbit_password_hashing_sha512"),
            StoredPassword::Md5(h) => (h.clone(), "rabbit_password_hashing_md5"),
            StoredPassword::Plain(p) => {
                let salt: [u8; 4] = rand::random();
                (salted::<Sha256>(&salt, p), SHA256)
            }
            StoredPassword::None => (String::new(), SHA256),
        }
    }

    /// Check a password, in time independent of where the first difference is.
    pub fn matches(&self, given: &str) -> bool {
        match self {
            StoredPassword::Plain(p) => ct_eq(p.as_bytes(), given.as_bytes()),
            StoredPassword::Sha256(h) => check_salted::<Sha256>(h, given),
            StoredPassword::Sha512(h) => check_salted::<Sha512>(h, given),
            StoredPassword::Md5(h) => {
                let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(h) else {
                    return false;
                };
                ct_eq(&raw, &md5(given.as_bytes()))
            }
            StoredPassword::None => false,
        }
    }
}

fn salted<D: Digest>(salt: &[u8; 4], password: &str) -> String {
    let mut h = D::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut raw = salt.to_vec();
    raw.extend_from_slice(&h.finalize());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn check_salted<D: Digest>(hash_b64: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(hash_b64) else {
        return false;
    };
    if raw.len() != 4 + <D as Digest>::output_size() {
        return false;
    }
    let mut h = D::new();
    h.update(&raw[..4]);
    h.update(password.as_bytes());
    ct_eq(h.finalize().as_slice(), &raw[4..])
}

/// Equality that looks at every byte whatever the first difference (lengths may differ in time).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// MD5, for RabbitMQ's legacy password hash only (RFC 1321; not used for anything else).
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f2 = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f2.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: StoredPassword,
    pub tags: Vec<String>,
    /// max-connections, max-channels (RabbitMQ's user limits); absent means unlimited.
    pub limits: BTreeMap<String, i64>,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// A user's rights in one vhost: three regexes over resource names, as RabbitMQ's `set_permissions`.
#[derive(Debug, Clone)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
    compiled: [regex_lite::Regex; 3],
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, String> {
        let re = |s: &str| {
            regex_lite::Regex::new(s).map_err(|e| format!("invalid regular expression '{s}': {e}"))
        };
        Ok(Permission {
            configure: configure.to_string(),
            write: write.to_string(),
            read: read.to_string(),
            compiled: [re(configure)?, re(write)?, re(read)?],
        })
    }

    /// Whether `name` matches the configure (0), write (1) or read (2) pattern. RabbitMQ matches the regex
    /// anywhere in the name; an empty pattern matches nothing.
    pub fn allows(&self, which: usize, name: &str) -> bool {
        let src = [&self.configure, &self.write, &self.read][which];
        !src.is_empty() && self.compiled[which].is_match(name)
    }
}

/// Which of a permission's three patterns an operation needs (RabbitMQ's configure / write / read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure = 0,
    Write = 1,
    Read = 2,
}

/// A user's rights on one topic exchange in one vhost (routing keys checked on publish and bind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// Every user and what each may do.
#[derive(Debug, Default)]
pub struct Users {
    users: DashMap<String, User>,
    /// (user, vhost) → permission.
    perms: DashMap<(String, String), Arc<Permission>>,
    /// (user, vhost) → topic permissions, one per exchange.
    topic: DashMap<(String, String), Vec<TopicPermission>>,
    /// Set once any topic permission exists: until then publishes skip the topic check entirely.
    any_topic: std::sync::atomic::AtomicBool,
}

impl Users {
    pub fn get(&self, name: &str) -> Option<User> {
        self.users.get(name).map(|u| u.clone())
    }

    pub fn list(&self) -> Vec<User> {
        let mut v: Vec<User> = self.users.iter().map(|u| u.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn put(&self, u: User) -> Option<User> {
        self.users.insert(u.name.clone(), u)
    }

    pub fn remove(&self, name: &str) -> Option<User> {
        self.users.remove(name).map(|(_, u)| u)
    }

    pub fn clear(&self) {
        self.users.clear();
        self.perms.clear();
        self.topic.clear();
    }

    pub fn permission(&self, user: &str, vhost: &str) -> Option<Arc<Permission>> {
        self.perms
            .get(&(user.to_string(), vhost.to_string()))
            .map(|p| p.clone())
    }

    pub fn set_permission(
        &self,
        user: &str,
        vhost: &str,
        p: Permission,
    ) -> Option<Arc<Permission>> {
        self.perms
            .insert((user.to_string(), vhost.to_string()), Arc::new(p))
    }

    pub fn clear_permission(&self, user: &str, vhost: &str) -> Option<Arc<Permission>> {
        self.perms
            .remove(&(user.to_string(), vhost.to_string()))
            .map(|(_, p)| p)
    }

    /// Every (user, vhost, permission), sorted.
    pub fn permissions(&self) -> Vec<(String, String, Arc<Permission>)> {
        let mut v: Vec<_> = self
            .perms
            .iter()
            .map(|e| (e.key().0.clone(), e.key().1.clone(), e.value().clone()))
            .collect();
        v.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        v
    }

    /// Whether any topic permission was ever set (the publish path's shortcut).
    pub fn any_topic_permissions(&self) -> bool {
        self.any_topic.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn topic_permissions(&self, user: &str, vhost: &str) -> Vec<TopicPermission> {
        self.topic
            .get(&(user.to_string(), vhost.to_string()))
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Every (user, vhost, topic permission), sorted.
    pub fn all_topic_permissions(&self) -> Vec<(String, String, TopicPermission)> {
        let mut v: Vec<_> = self
            .topic
            .iter()
            .flat_map(|e| {
                let (u, vh) = e.key().clone();
                e.value()
                    .iter()
                    .map(move |t| (u.clone(), vh.clone(), t.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| (&a.1, &a.0, &a.2.exchange).cmp(&(&b.1, &b.0, &b.2.exchange)));
        v
    }

    /// Replace the user's topic permissions in a vhost wholesale (for set, clear and undo).
    pub fn set_topic_permissions(&self, user: &str, vhost: &str, list: Vec<TopicPermission>) {
        let key = (user.to_string(), vhost.to_string());
        if list.is_empty() {
            self.topic.remove(&key);
        } else {
            self.any_topic
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.topic.insert(key, list);
        }
    }

    /// Forget everything granted in `vhost` (it was deleted), returning it for an undo.
    pub fn take_vhost(&self, vhost: &str) -> Grants {
        self.take_where(|_, v| v == vhost)
    }

    /// Forget everything granted to `user` (it was deleted), returning it for an undo.
    pub fn take_user(&self, user: &str) -> Grants {
        self.take_where(|u, _| u == user)
    }

    fn take_where(&self, matches: impl Fn(&str, &str) -> bool) -> Grants {
        let hit = |k: &(String, String)| matches(&k.0, &k.1);
        let perms: Vec<_> = self
            .perms
            .iter()
            .filter(|e| hit(e.key()))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (k, _) in &perms {
            self.perms.remove(k);
        }
        let topic: Vec<_> = self
            .topic
            .iter()
            .filter(|e| hit(e.key()))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (k, _) in &topic {
            self.topic.remove(k);
        }
        Grants { perms, topic }
    }

    /// Put back what `take_vhost` or `take_user` returned.
    pub fn restore_grants(&self, g: Grants) {
        for (k, p) in g.perms {
            self.perms.insert(k, p);
        }
        for (k, t) in g.topic {
            self.any_topic
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.topic.insert(k, t);
        }
    }
}

/// Permissions and topic permissions taken away together, keyed by (user, vhost).
#[derive(Debug, Default)]
pub struct Grants {
    pub perms: Vec<((String, String), Arc<Permission>)>,
    pub topic: Vec<((String, String), Vec<TopicPermission>)>,
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_password_hashes() {
        // salt 0x908DC60A + sha256(salt + "test12")
        let salt = [0x90u8, 0x8D, 0xC6, 0x0A];
        let h = StoredPassword::Sha256(salted::<Sha256>(&salt, "test12"));
        assert!(h.matches("test12"));
        assert!(!h.matches("nope"));
        let h = StoredPassword::Sha512(salted::<Sha512>(&salt, "test12"));
        assert!(h.matches("test12") && !h.matches("test1"));
        assert!(StoredPassword::hash("pw").matches("pw"));
        assert!(!StoredPassword::None.matches(""));
    }

    #[test]
    fn md5_known_vector() {
        let hex: String = md5(b"The quick brown fox jumps over the lazy dog")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "9e107d9d372bb6826bd81d3542a419d6");
    }

    #[test]
    fn permission_patterns() {
        let p = Permission::new(".*", "^amq\\.gen.*", "").unwrap();
        assert!(p.allows(0, "anything"));
        assert!(p.allows(1, "amq.gen-x"));
        assert!(!p.allows(1, "q"));
        assert!(!p.allows(2, "q"), "an empty pattern matches nothing");
        assert!(Permission::new("(", ".*", ".*").is_err());
    }
}
