//! The broker handle: virtual hosts, users and their permissions, and connection ids. Everything a client can
//! change goes through here and `VHost`, so the AMQP methods and the management API share one implementation.

pub mod alarm;
pub mod exchange;
pub mod message;
pub mod persist;
pub mod policy;
pub mod queue_args;
pub mod vhost;

use crate::config::Config;
use crate::connection::ConnShared;
use crate::definitions::{Definitions, DefinitionsError};
use crate::queue::ready::MemoryBudget;
use crate::queue::ready::Paged;
use crate::queue::unix_ms;
use crate::store::{MessageStore, RecoveredQueue, StoreConfig, SyncPolicy};
use crate::FastDashMap as DashMap;
use message::RecordMeta;
use persist::{DefOp, DefsLog, PersistError, StoredPassword};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vhost::QueueDeclare;
pub use vhost::VHost;

/// How a user's password is stored.
#[derive(Debug, Clone)]
pub enum Password {
    Plain(String),
    /// RabbitMQ's rabbit_password_hashing_sha256 format (base64 of salt + SHA-256(salt + password)).
    Sha256(String),
    /// No password: password login is refused.
    None,
}

impl Password {
    pub fn matches(&self, given: &str) -> bool {
        match self {
            Password::Plain(p) => p == given,
            Password::Sha256(h) => crate::definitions::check_password_hash(h, given),
            Password::None => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: Password,
    pub tags: Vec<String>,
    /// Vhosts this user may open.
    pub vhosts: Vec<String>,
}

#[derive(Debug)]
pub struct Broker {
    pub config: Arc<Config>,
    vhosts: DashMap<String, Arc<VHost>>,
    users: DashMap<String, User>,
    next_connection: AtomicU64,
    connections: DashMap<u64, Arc<ConnShared>>,
    startup_definitions: parking_lot::Mutex<Option<Definitions>>,
    /// The durable topology log; None when ephemeral.
    log: Option<Arc<DefsLog>>,
    /// Persistent messages of durable queues; None when ephemeral.
    store: Option<Arc<MessageStore>>,
    /// Bytes of ready message bodies in memory, and where queues start paging them to the store.
    budget: Arc<MemoryBudget>,
    /// Memory and disk alarms, which block publishers.
    pub alarms: Arc<alarm::Alarms>,
    /// The data directory's lock, held for the broker's lifetime.
    dir_lock: Option<std::fs::File>,
}

/// Present in the data directory only between a clean shutdown and the next start.
const CLEAN_SHUTDOWN: &str = "clean-shutdown";

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore").finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker that keeps nothing on disk.
    pub fn new(config: Config) -> Arc<Broker> {
        let b = Self::build(config, None, None);
        b.create_defaults();
        Arc::new(b)
    }

    fn build(
        config: Config,
        log: Option<Arc<DefsLog>>,
        store: Option<Arc<MessageStore>>,
    ) -> Broker {
        Broker {
            vhosts: DashMap::default(),
            users: DashMap::default(),
            next_connection: AtomicU64::new(1),
            connections: DashMap::default(),
            startup_definitions: parking_lot::Mutex::new(None),
            budget: MemoryBudget::with_keep_stored(
                config.paging_threshold(),
                config.queue_in_memory_messages,
            ),
            alarms: Arc::new(alarm::Alarms::new(
                config.memory_limit(),
                config.disk_free_limit_bytes,
                (!config.ephemeral).then(|| config.data_dir.clone()),
            )),
            config: Arc::new(config),
            log,
            store,
            dir_lock: None,
        }
    }

    /// A broker backed by its data directory (or `new` when the configuration is ephemeral): the durable
    /// topology is replayed from the definitions log, which is then compacted.
    pub fn open(config: Config) -> Result<Arc<Broker>, PersistError> {
        if config.ephemeral {
            return Ok(Self::new(config));
        }
        let dir_lock = persist::lock_data_dir(&config.data_dir)?;
        let (log, ops) = DefsLog::open(&config.data_dir)?;
        let log = Arc::new(log);
        let mut store_cfg = StoreConfig::new(config.data_dir.join("messages"));
        store_cfg.sync = match config.sync.as_str() {
            "never" => SyncPolicy::Never,
            "interval" => {
                SyncPolicy::Interval(std::time::Duration::from_millis(config.sync_interval_ms))
            }
            _ => SyncPolicy::Always,
        };
        let (store, recovered) = MessageStore::open(store_cfg)?;
        // Delivery marks are written lazily; after a crash a message may have been delivered without its mark
        // reaching the disk, so every recovered message counts as possibly redelivered, as the spec allows.
        let marker = config.data_dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let _ = std::fs::remove_file(&marker);
        if !clean {
            tracing::info!(dir = %config.data_dir.display(), "last shutdown was not clean; recovered messages will be marked redelivered");
        }
        let mut b = Self::build(config, Some(log.clone()), Some(store.clone()));
        b.dir_lock = Some(dir_lock);
        let replayed = ops.len();
        for op in ops {
            b.replay(op);
        }
        b.recover_messages(&store, recovered, clean);
        b.create_defaults();
        let mut snapshot = Vec::new();
        b.snapshot(&mut snapshot);
        log.compact_and_enable(&snapshot)?;
        tracing::info!(operations = replayed, kept = snapshot.len(), dir = %b.config.data_dir.display(), "definitions recovered");
        Ok(Arc::new(b))
    }

    /// Put the store's live messages back into their queues; messages of queues that are gone are dropped.
    fn recover_messages(
        &self,
        store: &Arc<MessageStore>,
        recovered: Vec<RecoveredQueue>,
        clean: bool,
    ) {
        let queues: std::collections::HashMap<String, Arc<crate::queue::Queue>> = self
            .vhosts
            .iter()
            .flat_map(|v| v.queues())
            .map(|q| (crate::queue::store_key(&q.vhost, &q.name), q))
            .collect();
        let mut total = 0usize;
        let started = std::time::Instant::now();
        for rq in recovered {
            if rq.queue.starts_with(crate::queue::ready::TRANSIENT_PREFIX) {
                // Pages of transient messages, written only to save memory: they die with the process.
                store.drop_queue(&rq.queue);
                continue;
            }
            let Some(q) = queues.get(&rq.queue) else {
                tracing::info!(queue = %rq.queue.replace('\u{1}', "/"), messages = rq.messages.len(), "dropping stored messages of a queue that no longer exists");
                store.drop_queue(&rq.queue);
                continue;
            };
            let mut msgs = Vec::with_capacity(rq.messages.len());
            let (now, wall_now) = (crate::queue::now_ms(), unix_ms());
            for m in rq.messages {
                let Some(meta) = RecordMeta::decode(&m.head) else {
                    tracing::warn!(vhost = %q.vhost, queue = %q.name, msg_id = m.msg_id, "stored message in an unknown format skipped");
                    store.ack(&rq.queue, &[m.msg_id]);
                    continue;
                };
                // Expiry deadlines are stored as wall-clock times and mapped back onto this process's clock.
                let expires = match meta.expires_at {
                    0 => u64::MAX,
                    at => now.saturating_add(at.saturating_sub(wall_now)),
                };
                let paged = Paged {
                    seq: m.msg_id,
                    id: m.msg_id,
                    loc: m.location,
                    expires,
                    body_len: meta.body_len,
                    delivery_count: 0,
                    redelivered: m.delivered || !clean,
                    transient: false,
                };
                msgs.push((meta.priority, paged));
            }
            total += msgs.len();
            q.recover(msgs);
            if total > 0 && total % 100_000 < 1 {
                tracing::info!(messages = total, "recovering messages");
            }
        }
        tracing::info!(
            messages = total,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "messages recovered"
        );
    }

    /// Flush everything to disk and note a clean shutdown (so the next start trusts the delivery marks).
    pub fn shutdown_storage(&self) {
        let Some(store) = &self.store else { return };
        match store.sync_now() {
            Ok(()) => {
                if let Err(e) = std::fs::write(self.config.data_dir.join(CLEAN_SHUTDOWN), b"") {
                    tracing::warn!(error = %e, "cannot write the clean-shutdown marker");
                }
            }
            Err(e) => tracing::error!(error = %e, "final sync of the message store failed"),
        }
    }

    fn log(&self, op: DefOp) {
        if let Some(l) = &self.log {
            l.append(op);
        }
    }

    /// Apply one definitions-log operation through the normal broker functions.
    fn replay(&self, op: DefOp) {
        let vh = |name: &str| self.vhost(name);
        let result: Result<(), String> = match op {
            DefOp::Vhost { name } => {
                self.add_vhost(&name);
                Ok(())
            }
            DefOp::DeleteVhost { name } => {
                self.delete_vhost(&name);
                Ok(())
            }
            DefOp::User {
                name,
                password,
                tags,
            } => {
                let password = match password {
                    StoredPassword::Plain(p) => Password::Plain(p),
                    StoredPassword::Sha256(h) => Password::Sha256(h),
                    StoredPassword::None => Password::None,
                };
                let vhosts = self.user(&name).map(|u| u.vhosts).unwrap_or_default();
                self.users.insert(
                    name.clone(),
                    User {
                        name,
                        password,
                        tags,
                        vhosts,
                    },
                );
                Ok(())
            }
            DefOp::DeleteUser { name } => {
                self.users.remove(&name);
                Ok(())
            }
            DefOp::Grant { user, vhost } => {
                self.grant(&user, &vhost);
                Ok(())
            }
            DefOp::Exchange {
                vhost,
                name,
                kind,
                auto_delete,
                internal,
                arguments,
            } => vh(&vhost)
                .map(|v| {
                    v.declare_exchange(&name, &kind, false, true, auto_delete, internal, &arguments)
                })
                .map_or(Ok(()), |r| r.map_err(|e| e.reply_text())),
            DefOp::DeleteExchange { vhost, name } => vh(&vhost)
                .map(|v| v.delete_exchange(&name, false))
                .map_or(Ok(()), |r| r.map_err(|e| e.reply_text())),
            DefOp::Queue {
                vhost,
                name,
                auto_delete,
                arguments,
            } => {
                let req = QueueDeclare {
                    name: &name,
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete,
                    arguments: &arguments,
                };
                vh(&vhost)
                    .map(|v| v.declare_queue_unchecked(&req, 0).map(|_| ()))
                    .map_or(Ok(()), |r| r.map_err(|e| e.reply_text()))
            }
            DefOp::DeleteQueue { vhost, name } => vh(&vhost)
                .map(|v| v.delete_queue(&name, false, false, 0).map(|_| ()))
                .map_or(Ok(()), |r| r.map_err(|e| e.reply_text())),
            DefOp::Bind {
                vhost,
                source,
                destination,
                to_exchange,
                routing_key,
                arguments,
            } => vh(&vhost)
                .map(|v| {
                    if to_exchange {
                        v.bind_exchange(&destination, &source, &routing_key, &arguments)
                    } else {
                        v.bind_queue(&destination, &source, &routing_key, &arguments, 0)
                    }
                })
                .map_or(Ok(()), |r| r.map_err(|e| e.reply_text())),
            DefOp::Unbind {
                vhost,
                source,
                destination,
                to_exchange,
                routing_key,
                arguments,
            } => vh(&vhost)
                .map(|v| {
                    if to_exchange {
                        v.unbind_exchange(&destination, &source, &routing_key, &arguments)
                    } else {
                        v.unbind_queue(&destination, &source, &routing_key, &arguments, 0)
                    }
                })
                .map_or(Ok(()), |r| r.map_err(|e| e.reply_text())),
            DefOp::Policy { def, operator } => {
                vh(&def.vhost.clone()).map_or(Ok(()), |v| v.set_policy(def, operator))
            }
            DefOp::ClearPolicy {
                vhost,
                name,
                operator,
            } => {
                if let Some(v) = vh(&vhost) {
                    v.clear_policy(&name, operator);
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "definitions log entry could not be applied; skipped");
        }
    }

    /// The durable state as definitions-log operations.
    fn snapshot(&self, out: &mut Vec<DefOp>) {
        for v in self.vhosts.iter() {
            out.push(DefOp::Vhost {
                name: v.key().clone(),
            });
        }
        for u in self.users.iter() {
            out.push(Self::user_op(&u));
            for v in &u.vhosts {
                out.push(DefOp::Grant {
                    user: u.name.clone(),
                    vhost: v.clone(),
                });
            }
        }
        for v in self.vhosts.iter() {
            v.snapshot(out);
        }
    }

    fn user_op(u: &User) -> DefOp {
        let password = match &u.password {
            Password::Plain(p) => StoredPassword::Plain(p.clone()),
            Password::Sha256(h) => StoredPassword::Sha256(h.clone()),
            Password::None => StoredPassword::None,
        };
        DefOp::User {
            name: u.name.clone(),
            password,
            tags: u.tags.clone(),
        }
    }

    /// The default vhost and user from the configuration.
    fn create_defaults(&self) {
        let vhost = self.config.default_vhost.clone();
        self.add_vhost(&vhost);
        let user = User {
            name: self.config.default_user.clone(),
            password: Password::Plain(self.config.default_pass.clone()),
            tags: vec!["administrator".to_string()],
            vhosts: vec![vhost],
        };
        self.users.insert(user.name.clone(), user);
    }

    /// Apply definitions and remember them as part of the start state that `reset` returns to.
    pub fn load_startup_definitions(&self, d: Definitions) -> Result<(), DefinitionsError> {
        crate::definitions::apply(self, &d)?;
        *self.startup_definitions.lock() = Some(d);
        Ok(())
    }

    /// Delete a vhost and everything in it; its connections are closed with RabbitMQ's 320 reason.
    /// Returns false when there was no such vhost.
    pub fn delete_vhost(&self, name: &str) -> bool {
        if self.vhosts.remove(name).is_none() {
            return false;
        }
        self.log(DefOp::DeleteVhost {
            name: name.to_string(),
        });
        for c in self.connections() {
            if c.vhost() == Some(name) {
                c.force_close(&format!("vhost '{name}' is deleted"));
            }
        }
        for mut u in self.users.iter_mut() {
            u.vhosts.retain(|v| v != name);
        }
        tracing::info!(vhost = name, "vhost deleted");
        true
    }

    /// Empty a vhost back to a fresh one (predeclared exchanges only), keeping who may use it. Its connections
    /// are closed first.
    pub fn reset_vhost(&self, name: &str) -> bool {
        let users: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.vhosts.iter().any(|v| v == name))
            .map(|u| u.name.clone())
            .collect();
        if !self.delete_vhost(name) {
            return false;
        }
        self.add_vhost(name);
        for u in users {
            self.grant(&u, name);
        }
        true
    }

    /// Return the whole broker to its start state without a restart: every connection closed, every vhost
    /// and user gone, then the configured defaults and the startup definitions applied again.
    pub fn reset(&self) {
        self.close_all_connections("broker reset");
        let names: Vec<String> = self.vhosts.iter().map(|v| v.key().clone()).collect();
        for n in names {
            self.delete_vhost(&n);
        }
        self.users.clear();
        self.create_defaults();
        if let Some(d) = self.startup_definitions.lock().as_ref() {
            if let Err(e) = crate::definitions::apply(self, d) {
                tracing::error!(error = %e, "reapplying startup definitions after reset failed");
            }
        }
        if let Err(e) = self.apply_config_policies() {
            tracing::error!(error = %e, "reapplying configured policies after reset failed");
        }
        tracing::info!("broker reset to its start state");
    }

    /// Apply the policies and operator policies from the configuration file.
    pub fn apply_config_policies(&self) -> Result<(), String> {
        for (list, operator) in [
            (&self.config.policies, false),
            (&self.config.operator_policies, true),
        ] {
            for p in list {
                let v = self
                    .vhost(&p.vhost)
                    .ok_or_else(|| format!("policy '{}': no vhost '{}'", p.name, p.vhost))?;
                v.set_policy(p.clone(), operator)?;
            }
        }
        Ok(())
    }

    pub fn vhost_names(&self) -> Vec<String> {
        self.vhosts.iter().map(|v| v.key().clone()).collect()
    }

    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        let mut created = false;
        let v = self
            .vhosts
            .entry(name.to_string())
            .or_insert_with(|| {
                created = true;
                let storage = self.store.clone().map(|store| crate::queue::Storage {
                    store,
                    budget: self.budget.clone(),
                });
                VHost::new(name, self.log.clone(), storage)
            })
            .clone();
        if created {
            self.log(DefOp::Vhost {
                name: name.to_string(),
            });
        }
        v
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users.get(name).map(|u| u.clone())
    }

    pub fn add_user(&self, user: User) {
        self.log(Self::user_op(&user));
        for v in &user.vhosts {
            self.log(DefOp::Grant {
                user: user.name.clone(),
                vhost: v.clone(),
            });
        }
        self.users.insert(user.name.clone(), user);
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Check a user's password; `None` when the login is refused.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<User> {
        self.user(username).filter(|u| u.password.matches(password))
    }

    /// Let `user` open `vhost`.
    pub fn grant(&self, user: &str, vhost: &str) {
        if let Some(mut u) = self.users.get_mut(user) {
            if !u.vhosts.iter().any(|v| v == vhost) {
                u.vhosts.push(vhost.to_string());
                self.log(DefOp::Grant {
                    user: user.to_string(),
                    vhost: vhost.to_string(),
                });
            }
        }
    }

    pub fn register_connection(&self, c: Arc<ConnShared>) {
        self.connections.insert(c.id, c);
    }

    pub fn unregister_connection(&self, id: u64) {
        self.connections.remove(&id);
    }

    pub fn connections(&self) -> Vec<Arc<ConnShared>> {
        self.connections.iter().map(|c| c.value().clone()).collect()
    }

    /// Close every client connection with 320 CONNECTION_FORCED.
    pub fn close_all_connections(&self, reason: &str) {
        for c in self.connections() {
            c.force_close(reason);
        }
    }
}
