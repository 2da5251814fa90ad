//! Configuration: every key has a default, so the broker runs with no file at all. A TOML file (`--config`)
//! overrides the defaults; environment variables and command-line flags override the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Messages a queue keeps in memory when their bodies are on disk anyway (`queue_in_memory_messages`).
pub const DEFAULT_QUEUE_IN_MEMORY_MESSAGES: usize = 2048;
/// Bytes of ready messages, all queues together, up to which queues keep `queue_in_memory_messages`.
pub const DEFAULT_QUEUE_IN_MEMORY_TOTAL_BYTES: u64 = 8 << 20;

/// RabbitMQ 3.13's default max_message_size (128 MiB); 4.x's is 16 MiB.
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 134_217_728;
const DEFAULT_MAX_MESSAGE_SIZE_4: u64 = 16_777_216;

/// The RabbitMQ line Warren behaves as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compat {
    #[default]
    V3_13,
    V4_3,
}

impl Compat {
    pub fn is_4(self) -> bool {
        self == Compat::V4_3
    }

    /// The RabbitMQ version reported (connection.start, management API, definitions export).
    pub fn version(self) -> &'static str {
        match self {
            Compat::V3_13 => crate::protocol::RABBITMQ_VERSION,
            Compat::V4_3 => crate::protocol::RABBITMQ_VERSION_4,
        }
    }

    /// The smallest frame_max a client may negotiate, and the frame limit before tune-ok.
    pub fn frame_min(self) -> u32 {
        match self {
            Compat::V3_13 => crate::protocol::FRAME_MIN_SIZE,
            Compat::V4_3 => 8192,
        }
    }
}

/// The largest max_message_size RabbitMQ accepts (512 MiB).
pub const MAX_MESSAGE_SIZE_CAP: u64 = 536_870_912;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for AMQP.
    pub bind: String,
    /// AMQP port; 0 picks a free port.
    pub port: u16,
    /// Where durable state lives.
    pub data_dir: PathBuf,
    /// Keep everything in memory and write nothing to disk.
    pub ephemeral: bool,
    /// tracing filter, e.g. "info" or "warren=debug".
    pub log_level: String,
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    /// Users that may only connect from a loopback address (RabbitMQ's loopback_users).
    pub loopback_users: Vec<String>,
    /// Highest channel count offered in connection.tune.
    pub channel_max: u16,
    /// Largest frame offered in connection.tune, in bytes.
    pub frame_max: u32,
    /// Heartbeat interval offered in connection.tune, in seconds (0 disables).
    pub heartbeat: u16,
    /// Time allowed from TCP accept to connection.open, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size).
    pub max_message_size: u64,
    /// How long a delivery may stay unacknowledged before its channel is closed with 406, in milliseconds
    /// (RabbitMQ's consumer_timeout; 0 disables). A queue's `x-consumer-timeout` argument or `consumer-timeout`
    /// policy key overrides it.
    pub consumer_timeout: u64,
    /// Client connections the node accepts at once (RabbitMQ's connection_max); 0 means no limit.
    pub connection_max: usize,
    /// A RabbitMQ-format definitions file (users, vhosts, permissions, exchanges, queues, bindings) applied
    /// at start (RabbitMQ's load_definitions).
    pub definitions: Option<PathBuf>,
    /// When a persistent message counts as safe for its publisher confirm: "always" (fdatasync first, the
    /// default), "interval" (one fdatasync every sync_interval_ms; confirms wait for it), or "never" (after
    /// write(): survives a broker crash but not a power cut).
    pub sync: String,
    pub sync_interval_ms: u64,
    /// Policies applied at start, in RabbitMQ's shape (vhost, name, pattern, apply-to, priority, definition).
    pub policies: Vec<PolicyDef>,
    /// Operator policies applied at start.
    pub operator_policies: Vec<PolicyDef>,
    /// The memory alarm: publishers are blocked while the process's resident memory is above this
    /// fraction of the machine's (or cgroup's) memory (RabbitMQ's vm_memory_high_watermark.relative).
    pub memory_high_watermark: f64,
    /// The memory alarm as an absolute number of bytes; overrides `memory_high_watermark` when set.
    pub memory_limit_bytes: Option<u64>,
    /// Queues page message bodies out to the store once the ready messages held in memory exceed this
    /// fraction of the memory limit (RabbitMQ's vm_memory_high_watermark_paging_ratio).
    pub memory_paging_ratio: f64,
    /// Messages a queue keeps in memory when their bodies are in the message store anyway (persistent
    /// messages on durable queues); the rest of its backlog is an index in memory and bodies on disk.
    pub queue_in_memory_messages: usize,
    /// Bytes of ready messages held in memory by all queues together up to which each keeps
    /// `queue_in_memory_messages` of its stored ones; past it each keeps 64 if it has consumers and none
    /// otherwise (so a thousand idle backlogs cost their index windows, not 2,048 messages each).
    pub queue_in_memory_total_bytes: u64,
    /// The disk alarm: publishers are blocked while the data directory's file system has less free space
    /// than this (RabbitMQ's disk_free_limit.absolute).
    pub disk_free_limit_bytes: u64,
    /// Size at which the message store starts a new segment file (4 KiB to 4 GiB; RabbitMQ's
    /// msg_store_file_size_limit). A segment's space comes back once all its messages are consumed.
    pub store_segment_bytes: u64,
    /// "real" (the machine's clock) or "virtual": broker time starts at the real time and moves only when a
    /// test advances it (`POST /api/warren/clock/advance`, `Server::advance_clock`), firing every TTL,
    /// expiry and timeout that falls due. Socket heartbeats and timeouts stay on real time.
    pub clock: String,
    /// The message journal (`GET /api/warren/journal`): on or off for every vhost at start (off when unset;
    /// `Server::builder()` turns it on). It halves peak throughput, so a plain `--ephemeral` does not.
    pub journal: Option<bool>,
    /// Which RabbitMQ to behave as: "3.13" (the default) or "4.3", whose refusals and defaults differ
    /// (see the README's list).
    pub compat: String,
    /// Events the journal keeps; the oldest are dropped beyond it.
    pub journal_capacity: usize,
    /// Whether to listen for plain (non-TLS) AMQP on `port`; off leaves only the TLS listener.
    pub tcp_listener: bool,
    /// AMQPS: a TLS listener, when configured.
    pub tls: Option<Tls>,
    /// SASL mechanisms offered (RabbitMQ's auth_mechanisms). PLAIN and AMQPLAIN are always accepted; add
    /// "EXTERNAL" to let TLS clients with a verified certificate log in as the user it names.
    pub auth_mechanisms: Vec<String>,
    /// How a verified client certificate names its user for EXTERNAL: "common_name" (the subject's CN) or
    /// "distinguished_name" (the whole subject as RabbitMQ formats it, `CN=app,O=Example,C=US`, which is
    /// RabbitMQ's own default).
    pub ssl_cert_login_from: String,
    /// The management HTTP API (and web UI) listener.
    pub management: Listener,
    /// The Prometheus metrics listener.
    pub prometheus: Listener,
}

/// An HTTP listener: where, and whether at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listener {
    pub enabled: bool,
    pub bind: String,
    /// None: the protocol's usual port (15672 for management, 15692 for Prometheus); 0 picks a free one.
    pub port: Option<u16>,
    /// Serve HTTPS with the certificate of the `[tls]` table.
    pub tls: bool,
}

/// The `[tls]` table: AMQPS with rustls (TLS 1.2 and 1.3 only). Certificates are re-read on SIGHUP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// AMQPS port (5671 by convention); 0 picks a free one.
    #[serde(default = "default_tls_port")]
    pub port: u16,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM bundle) that client certificates are verified against.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against `ca`.
    #[serde(default)]
    pub verify_peer: bool,
    /// With `verify_peer`, refuse clients that present no certificate.
    #[serde(default)]
    pub fail_if_no_peer_cert: bool,
}

fn default_tls_port() -> u16 {
    5671
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            enabled: true,
            bind: "0.0.0.0".to_string(),
            port: None,
            tls: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".to_string(),
            port: 5672,
            data_dir: PathBuf::from("./warren-data"),
            ephemeral: false,
            log_level: "info".to_string(),
            default_user: "guest".to_string(),
            default_pass: "guest".to_string(),
            default_vhost: "/".to_string(),
            loopback_users: vec!["guest".to_string()],
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
            handshake_timeout_ms: 10_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            consumer_timeout: 1_800_000,
            connection_max: 0,
            definitions: None,
            sync: "always".to_string(),
            sync_interval_ms: 10,
            policies: Vec::new(),
            operator_policies: Vec::new(),
            memory_high_watermark: 0.4,
            memory_limit_bytes: None,
            memory_paging_ratio: 0.5,
            queue_in_memory_messages: DEFAULT_QUEUE_IN_MEMORY_MESSAGES,
            queue_in_memory_total_bytes: DEFAULT_QUEUE_IN_MEMORY_TOTAL_BYTES,
            store_segment_bytes: crate::store::StoreConfig::DEFAULT_SEGMENT_SIZE,
            disk_free_limit_bytes: 50_000_000,
            clock: "real".to_string(),
            journal: None,
            compat: "3.13".to_string(),
            journal_capacity: 100_000,
            tcp_listener: true,
            tls: None,
            auth_mechanisms: vec!["PLAIN".to_string(), "AMQPLAIN".to_string()],
            ssl_cert_login_from: "common_name".to_string(),
            management: Listener::default(),
            prometheus: Listener::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyTo {
    #[default]
    All,
    Queues,
    Exchanges,
}

/// A policy as RabbitMQ's definitions, management API and Warren's config file write it (applied by
/// `broker::policy`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct PolicyDef {
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default)]
    pub apply_to: ApplyTo,
    #[serde(default)]
    pub priority: i64,
    pub definition: serde_json::Map<String, serde_json::Value>,
}

fn default_vhost() -> String {
    "/".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Apply RabbitMQ's environment variables and Warren's own (WARREN_* wins).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let pick = |names: &[&str]| {
            names
                .iter()
                .rev()
                .find_map(|n| get(n).filter(|v| !v.is_empty()))
        };
        if let Some(u) = pick(&["RABBITMQ_DEFAULT_USER", "WARREN_DEFAULT_USER"]) {
            self.default_user = u;
        }
        if let Some(p) = pick(&["RABBITMQ_DEFAULT_PASS", "WARREN_DEFAULT_PASS"]) {
            self.default_pass = p;
        }
        if let Some(v) = pick(&["RABBITMQ_DEFAULT_VHOST", "WARREN_DEFAULT_VHOST"]) {
            self.default_vhost = v;
        }
    }

    /// The memory alarm's threshold in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit_bytes
            .unwrap_or_else(|| (total_memory() as f64 * self.memory_high_watermark) as u64)
    }

    /// Bytes of ready messages in memory above which queues page out.
    pub fn paging_threshold(&self) -> u64 {
        (self.memory_limit() as f64 * self.memory_paging_ratio) as u64
    }

    pub fn compat(&self) -> Compat {
        if self.compat == "4.3" {
            Compat::V4_3
        } else {
            Compat::V3_13
        }
    }

    /// The largest message body accepted: as configured, or the compat line's default.
    pub fn max_message_size(&self) -> u64 {
        if self.compat().is_4() && self.max_message_size == DEFAULT_MAX_MESSAGE_SIZE {
            DEFAULT_MAX_MESSAGE_SIZE_4
        } else {
            self.max_message_size
        }
    }

    /// Whether the journal records from the start.
    pub fn journal_on(&self) -> bool {
        self.journal.unwrap_or(false)
    }

    /// The broker clock this configuration asks for.
    pub fn make_clock(&self) -> crate::clock::Clock {
        if self.clock == "virtual" {
            crate::clock::Clock::manual()
        } else {
            crate::clock::Clock::real()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.memory_high_watermark > 0.0 && self.memory_high_watermark <= 1.0) {
            return Err(ConfigError::Invalid(
                "memory_high_watermark must be in (0, 1]".into(),
            ));
        }
        if !(self.memory_paging_ratio > 0.0 && self.memory_paging_ratio <= 1.0) {
            return Err(ConfigError::Invalid(
                "memory_paging_ratio must be in (0, 1]".into(),
            ));
        }
        if self.frame_max < crate::protocol::FRAME_MIN_SIZE {
            return Err(ConfigError::Invalid(format!(
                "frame_max must be at least {}",
                crate::protocol::FRAME_MIN_SIZE
            )));
        }
        if self.channel_max == 0 {
            return Err(ConfigError::Invalid(
                "channel_max must be at least 1".into(),
            ));
        }
        if let Some(t) = &self.tls {
            if t.verify_peer && t.ca.is_none() {
                return Err(ConfigError::Invalid(
                    "tls.verify_peer needs tls.ca (the CA bundle client certificates are checked against)"
                        .into(),
                ));
            }
        } else if !self.tcp_listener {
            return Err(ConfigError::Invalid(
                "tcp_listener = false needs a [tls] listener".into(),
            ));
        }
        if (self.management.tls || self.prometheus.tls) && self.tls.is_none() {
            return Err(ConfigError::Invalid(
                "an HTTP listener with tls = true needs the [tls] table's certificate".into(),
            ));
        }
        if let Some(m) = self
            .auth_mechanisms
            .iter()
            .find(|m| !matches!(m.as_str(), "PLAIN" | "AMQPLAIN" | "EXTERNAL"))
        {
            return Err(ConfigError::Invalid(format!(
                "unknown authentication mechanism {m} (PLAIN, AMQPLAIN, EXTERNAL)"
            )));
        }
        if !matches!(self.compat.as_str(), "3.13" | "4.3") {
            return Err(ConfigError::Invalid(
                "compat must be \"3.13\" or \"4.3\"".into(),
            ));
        }
        if !matches!(self.clock.as_str(), "real" | "virtual") {
            return Err(ConfigError::Invalid(
                "clock must be \"real\" or \"virtual\"".into(),
            ));
        }
        if !matches!(
            self.ssl_cert_login_from.as_str(),
            "common_name" | "distinguished_name"
        ) {
            return Err(ConfigError::Invalid(
                "ssl_cert_login_from must be common_name or distinguished_name".into(),
            ));
        }
        // RabbitMQ's hard cap on max_message_size.
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE_CAP {
            return Err(ConfigError::Invalid(format!(
                "max_message_size must be between 1 and {MAX_MESSAGE_SIZE_CAP}"
            )));
        }
        Ok(())
    }
}

/// The memory this process may use: the machine's, or its cgroup's limit when lower. 4 GiB when neither
/// can be read.
pub fn total_memory() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c).unwrap_or(4 << 30),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults() {
        let c: Config = toml::from_str("port = 5999\nheartbeat = 10").unwrap();
        assert_eq!(c.port, 5999);
        assert_eq!(c.heartbeat, 10);
        assert_eq!(c.frame_max, 131_072);
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }

    #[test]
    fn policies_in_toml() {
        let c: Config = toml::from_str(
            r#"
            [[policies]]
            name = "ttl"
            pattern = "^ttl\\."
            apply-to = "queues"
            priority = 1
            definition = { message-ttl = 100, dead-letter-exchange = "dlx" }
            "#,
        )
        .unwrap();
        assert_eq!(c.policies.len(), 1);
        assert_eq!(c.policies[0].vhost, "/");
        assert_eq!(
            c.policies[0].definition["message-ttl"],
            serde_json::json!(100)
        );
    }

    #[test]
    fn env_overrides() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "RABBITMQ_DEFAULT_USER" => Some("alice".into()),
            "WARREN_DEFAULT_PASS" => Some("pw".into()),
            _ => None,
        });
        assert_eq!(c.default_user, "alice");
        assert_eq!(c.default_pass, "pw");
        assert_eq!(c.default_vhost, "/");
    }
}
