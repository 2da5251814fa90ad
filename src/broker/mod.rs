//! The broker: virtual hosts, users and what they may do, runtime parameters, and the registry of client
//! connections. It is the core's top: it knows queues and exchanges, and reaches connections only through
//! the [`Session`] trait. Every change goes through [`Broker::execute`] (see [`command`]); [`boot`] opens
//! the data directory, replays the definitions log and recovers stored messages.

pub mod alarm;
mod apply;
pub mod boot;
pub mod command;
pub mod deflog;
pub mod exchange;
pub mod policy;
pub mod trace;
pub mod users;
pub mod vhost;

pub use boot::BootError;
pub use command::{Actor, Command, DeleteCause, Executed, Mode, Outcome, Ticket};
pub use users::{Access, StoredPassword, User};
pub use vhost::VHost;

use crate::clock::Scheduler;
use crate::config::Config;
use crate::error::{AmqpError, AmqpResult};
use crate::queue::paging::MemoryBudget;
use crate::store::MessageStore;
use crate::FastDashMap as DashMap;
use command::Effects;
use deflog::DefsLog;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A client connection, as the broker sees it (the connection layer implements it).
pub trait Session: Send + Sync {
    fn id(&self) -> u64;
    /// The vhost the connection opened, once it has.
    fn vhost(&self) -> Option<&str>;
    /// The user it logged in as, once open.
    fn user(&self) -> Option<&str>;
    /// Its open channels.
    fn channel_count(&self) -> usize;
    /// Close the connection from the broker side with 320 CONNECTION_FORCED and `reason`.
    fn force_close(&self, reason: &str);
    /// For the layers above, which know the concrete type.
    fn as_any(&self) -> &dyn std::any::Any;
}

crate::counters! {
    /// Objects coming and going (RabbitMQ's churn rates).
    pub struct ChurnStats {
        connection_created,
        connection_closed,
        channel_created,
        channel_closed,
        queue_declared,
        queue_created,
        queue_deleted,
    }
}

/// A salted SHA-256 of nothing anyone uses, checked when the user is unknown (see `authenticate`).
const UNKNOWN_USER_HASH: &str = "AAAAAKUlEh7tmH426qDMNIRFUr10Fj8GY9+q2DyIxs/gfArr";

pub struct Broker {
    pub config: Arc<Config>,
    pub churn: ChurnStats,
    /// When the broker started, in Unix milliseconds on the broker clock.
    pub started_at: u64,
    /// The broker's clock and every timer on it.
    pub timers: Arc<Scheduler>,
    /// The record of each message's life, for tests.
    pub journal: Arc<crate::journal::Journal>,
    /// RabbitMQ's firehose tracer, shared by the vhosts.
    pub firehose: Arc<trace::Firehose>,
    self_ref: Weak<Broker>,
    vhosts: DashMap<String, Arc<VHost>>,
    pub users: users::Users,
    /// Serialises commands: each applies, and is queued in the log, while holding it.
    meta: Arc<Mutex<()>>,
    /// Runtime parameters: (component, vhost, name) → value; and global ones by name.
    parameters: Mutex<BTreeMap<(String, String, String), serde_json::Value>>,
    global_parameters: Mutex<BTreeMap<String, serde_json::Value>>,
    next_connection: AtomicU64,
    connections: DashMap<u64, Arc<dyn Session>>,
    /// Commands that made the start state (builder users and vhosts, startup definitions, configured
    /// policies), applied again by `reset`.
    startup: Mutex<Vec<Command>>,
    /// The durable topology log; None when ephemeral.
    log: Option<Arc<DefsLog>>,
    /// Persistent messages of durable queues; None when ephemeral.
    store: Option<Arc<MessageStore>>,
    /// Bytes of ready message bodies in memory, and where queues start paging them to the store.
    budget: Arc<MemoryBudget>,
    /// Memory and disk alarms, which block publishers.
    pub alarms: Arc<alarm::Alarms>,
    /// The data directory's lock, held for the broker's lifetime.
    _dir_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker that keeps nothing on disk, on the clock its configuration names (real by default).
    pub fn new(config: Config) -> Arc<Broker> {
        let clock = config.make_clock();
        Self::with_clock(config, clock)
    }

    /// A broker that keeps nothing on disk, on the given clock.
    pub fn with_clock(config: Config, clock: crate::clock::Clock) -> Arc<Broker> {
        let b = Self::build(boot::Parts {
            config,
            clock,
            meta: Arc::new(Mutex::new(())),
            log: None,
            store: None,
            dir_lock: None,
        });
        b.create_defaults();
        b
    }

    fn build(p: boot::Parts) -> Arc<Broker> {
        let boot::Parts {
            config,
            clock,
            meta,
            log,
            store,
            dir_lock,
        } = p;
        let timers = Scheduler::new(clock);
        let started_at = timers.wall_ms();
        let journal = Arc::new(crate::journal::Journal::new(
            timers.clock().clone(),
            config.journal_capacity,
            config.journal_on(),
        ));
        Arc::new_cyclic(|w| Broker {
            journal,
            firehose: Default::default(),
            churn: ChurnStats::default(),
            started_at,
            timers,
            self_ref: w.clone(),
            vhosts: DashMap::default(),
            users: Default::default(),
            meta,
            parameters: Mutex::new(BTreeMap::new()),
            global_parameters: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(1),
            connections: DashMap::default(),
            startup: Mutex::new(Vec::new()),
            budget: MemoryBudget::with_keep_stored(
                config.paging_threshold(),
                config.queue_in_memory_messages,
                config.queue_in_memory_total_bytes,
            ),
            alarms: Arc::new(alarm::Alarms::new(
                config.memory_limit(),
                config.disk_free_limit_bytes,
                (!config.ephemeral).then(|| config.data_dir.clone()),
            )),
            config: Arc::new(config),
            log,
            store,
            _dir_lock: dir_lock,
        })
    }

    /// Validate, apply and (when durable) record one command. The change is in effect when this returns;
    /// answer the client once the returned ticket resolves (it fails with 541 if the change could not be
    /// recorded, in which case it has been undone).
    pub fn execute(&self, cmd: Command, actor: &Actor) -> AmqpResult<Executed> {
        let _serial = self.meta.lock();
        let mut fx = Effects::default();
        let outcome = match self.apply(cmd, actor, Mode::Live, &mut fx) {
            Ok(o) => o,
            Err(e) => {
                fx.rollback();
                return Err(e);
            }
        };
        let ticket = self.record(fx)?;
        Ok(Executed { outcome, ticket })
    }

    /// `execute`, then wait until the change is durable.
    pub async fn run(&self, cmd: Command, actor: &Actor) -> AmqpResult<Outcome> {
        let e = self.execute(cmd, actor)?;
        e.ticket.wait().await?;
        Ok(e.outcome)
    }

    /// Queue a command's durable effects in the log, or commit them now when there is nothing to record.
    fn record(&self, mut fx: Effects) -> AmqpResult<Ticket> {
        match &self.log {
            Some(log) if !fx.logged.is_empty() => {
                if let Err(why) = log.usable() {
                    fx.rollback();
                    return Err(AmqpError::internal_error(format!(
                        "cannot record the change in the definitions log: {why}"
                    )));
                }
                let cmds = std::mem::take(&mut fx.logged);
                Ok(log.append(&cmds, fx))
            }
            _ => {
                fx.run_commits();
                Ok(Ticket::Done)
            }
        }
    }

    /// Run a command for the broker itself (expiry, auto-delete, startup), without waiting for the disk.
    pub fn execute_internal(&self, cmd: Command) {
        let name = cmd.name();
        if let Err(e) = self.execute(cmd, &Actor::internal()) {
            tracing::warn!(command = name, error = %e, "internal command failed");
        }
    }

    /// The default vhost and user from the configuration (the user's password is what the config says,
    /// on every start).
    fn create_defaults(&self) {
        let c = &self.config;
        for cmd in [
            Command::AddVhost {
                name: c.default_vhost.clone(),
                description: "Default virtual host".into(),
                tags: Vec::new(),
                default_queue_type: None,
                tracing: false,
            },
            Command::PutUser {
                name: c.default_user.clone(),
                password: StoredPassword::hash(&c.default_pass),
                tags: vec!["administrator".into()],
            },
            Command::SetPermissions {
                user: c.default_user.clone(),
                vhost: c.default_vhost.clone(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        ] {
            // What a previous start already made stays as it is (and is not logged again).
            let done = match &cmd {
                Command::AddVhost { name, .. } => self.vhosts.contains_key(name),
                Command::PutUser { name, .. } => self
                    .users
                    .get(name)
                    .is_some_and(|u| u.password.matches(&c.default_pass)),
                Command::SetPermissions { user, vhost, .. } => {
                    self.users.permission(user, vhost).is_some()
                }
                _ => false,
            };
            if done {
                continue;
            }
            self.execute_internal(cmd);
        }
    }

    /// Create a vhost (a convenience for embedders; the command path underneath).
    pub fn add_vhost(&self, name: &str) {
        self.execute_internal(Command::AddVhost {
            name: name.into(),
            description: String::new(),
            tags: Vec::new(),
            default_queue_type: None,
            tracing: false,
        });
    }

    /// Delete a vhost and everything in it; its connections are closed with RabbitMQ's 320 reason. Returns
    /// false when there was no such vhost.
    pub fn delete_vhost(&self, name: &str) -> bool {
        if self.vhost(name).is_none() {
            return false;
        }
        self.execute_internal(Command::DeleteVhost { name: name.into() });
        true
    }

    /// Apply commands and remember them as part of the start state that `reset` returns to.
    pub async fn apply_startup(&self, cmds: Vec<Command>) -> AmqpResult<()> {
        for c in &cmds {
            self.run(c.clone(), &Actor::internal()).await?;
        }
        self.startup.lock().extend(cmds);
        Ok(())
    }

    /// Return the whole broker to its start state without a restart: every connection closed, every vhost
    /// and user gone, then the configured defaults and the startup commands applied again.
    pub fn reset(&self) {
        self.close_all_connections("broker reset");
        for n in self.vhost_names() {
            self.execute_internal(Command::DeleteVhost { name: n });
        }
        for u in self.users.list() {
            self.execute_internal(Command::DeleteUser { name: u.name });
        }
        {
            let _serial = self.meta.lock();
            self.parameters.lock().clear();
            self.global_parameters.lock().clear();
        }
        self.create_defaults();
        for c in self.startup.lock().clone() {
            self.execute_internal(c);
        }
        tracing::info!("broker reset to its start state");
    }

    /// Empty a vhost back to a fresh one (predeclared exchanges only), keeping who may use it. Its
    /// connections are closed first.
    pub fn reset_vhost(&self, name: &str) -> bool {
        let Some(v) = self.vhost(name) else {
            return false;
        };
        let grants: Vec<_> = self
            .users
            .permissions()
            .into_iter()
            .filter(|(_, vh, _)| vh == name)
            .collect();
        let meta = v.meta();
        self.execute_internal(Command::DeleteVhost { name: name.into() });
        self.execute_internal(Command::AddVhost {
            name: name.into(),
            description: meta.description,
            tags: meta.tags,
            default_queue_type: meta.default_queue_type,
            tracing: meta.tracing,
        });
        for (user, vhost, p) in grants {
            self.execute_internal(Command::SetPermissions {
                user,
                vhost,
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        true
    }

    /// The policies and operator policies from the configuration file, as commands.
    pub fn config_policy_commands(&self) -> Vec<Command> {
        let mut out = Vec::new();
        for (list, operator) in [
            (&self.config.policies, false),
            (&self.config.operator_policies, true),
        ] {
            for p in list {
                out.push(Command::SetPolicy {
                    def: p.clone(),
                    operator,
                });
            }
        }
        out
    }

    /// The durable state as commands, in an order that replays (for the definitions log's snapshot).
    pub fn snapshot(&self) -> Vec<Command> {
        let mut out = Vec::new();
        let mut vhosts: Vec<Arc<VHost>> = self.vhosts.iter().map(|v| v.clone()).collect();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        for v in &vhosts {
            let m = v.meta();
            out.push(Command::AddVhost {
                name: v.name.to_string(),
                description: m.description,
                tags: m.tags,
                default_queue_type: m.default_queue_type,
                tracing: m.tracing,
            });
        }
        for u in self.users.list() {
            out.push(Command::PutUser {
                name: u.name.clone(),
                password: u.password.clone(),
                tags: u.tags.clone(),
            });
            for (name, value) in &u.limits {
                out.push(Command::SetUserLimit {
                    user: u.name.clone(),
                    name: name.clone(),
                    value: *value,
                });
            }
        }
        for (user, vhost, p) in self.users.permissions() {
            out.push(Command::SetPermissions {
                user,
                vhost,
                configure: p.configure.clone(),
                write: p.write.clone(),
                read: p.read.clone(),
            });
        }
        for (user, vhost, t) in self.users.all_topic_permissions() {
            out.push(Command::SetTopicPermissions {
                user,
                vhost,
                exchange: t.exchange,
                write: t.write,
                read: t.read,
            });
        }
        for ((component, vhost, name), value) in self.parameters.lock().iter() {
            out.push(Command::SetParameter {
                component: component.clone(),
                vhost: vhost.clone(),
                name: name.clone(),
                value: value.clone(),
            });
        }
        for (name, value) in self.global_parameters.lock().iter() {
            out.push(Command::SetGlobalParameter {
                name: name.clone(),
                value: value.clone(),
            });
        }
        for v in &vhosts {
            v.snapshot(&mut out);
        }
        out
    }

    /// Flush everything to disk and note a clean shutdown (so the next start trusts the delivery marks).
    pub fn shutdown_storage(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
        boot::shutdown_store(self);
    }

    pub fn vhost_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.vhosts.iter().map(|v| v.key().clone()).collect();
        v.sort();
        v
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut v: Vec<Arc<VHost>> = self.vhosts.iter().map(|v| v.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.users.get(name)
    }

    /// Advance a virtual clock by `by` (see [`crate::Server::advance_clock`]); the broker time after it.
    pub fn advance_clock(&self, by: std::time::Duration) -> u64 {
        self.timers.advance(by);
        self.timers.wall_ms()
    }

    /// Whether the broker runs on a virtual clock.
    pub fn virtual_clock(&self) -> bool {
        self.timers.clock().is_manual()
    }

    /// A user's limit (`max-connections`, `max-channels`) as it stands now; `None` when unlimited.
    pub fn user_limit(&self, user: &str, name: &str) -> Option<i64> {
        self.user(user)
            .and_then(|u| u.limits.get(name).copied())
            .filter(|m| *m >= 0)
    }

    /// Check a user's password; `None` when the login is refused.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<User> {
        match self.user(username) {
            Some(u) => u.password.matches(password).then_some(u),
            None => {
                // Hash anyway, so that a refusal takes as long for a user that does not exist.
                let _ = StoredPassword::Sha256(UNKNOWN_USER_HASH.into()).matches(password);
                None
            }
        }
    }

    /// RabbitMQ's resource permission check: `access` to the `kind` ("exchange" / "queue") `name` in `vhost`,
    /// or its 403. The default exchange is `amq.default` for this purpose, as in RabbitMQ.
    pub fn check_access(
        &self,
        user: &str,
        vhost: &str,
        access: users::Access,
        kind: &str,
        name: &str,
    ) -> AmqpResult<()> {
        let name = if kind == "exchange" && name.is_empty() {
            "amq.default"
        } else {
            name
        };
        let allowed = self
            .users
            .permission(user, vhost)
            .is_some_and(|p| p.allows(access as usize, name));
        if allowed {
            return Ok(());
        }
        // RabbitMQ 3.12 and later name the permission; 3.10's texts (the default profile's) do not.
        let which = if self.config.compat().is_4() {
            match access {
                users::Access::Configure => "configure ",
                users::Access::Write => "write ",
                users::Access::Read => "read ",
            }
        } else {
            ""
        };
        Err(crate::error::AmqpError::access_refused(format!(
            "{which}access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
        )))
    }

    /// RabbitMQ's topic authorisation: with a topic permission set for `exchange`, the routing (or
    /// binding) key must match its write (publish) or read (bind) pattern; without one, anything goes.
    pub fn check_topic_access(
        &self,
        user: &str,
        vhost: &str,
        access: users::Access,
        exchange: &str,
        key: &str,
    ) -> AmqpResult<()> {
        if !self.users.any_topic_permissions() {
            return Ok(());
        }
        let perms = self.users.topic_permissions(user, vhost);
        let Some(p) = perms.iter().find(|p| p.exchange == exchange) else {
            return Ok(());
        };
        let pattern = match access {
            users::Access::Read => &p.read,
            _ => &p.write,
        };
        // RabbitMQ expands these variables in topic permission patterns.
        let pattern = pattern
            .replace("{username}", user)
            .replace("{vhost}", vhost);
        let allowed = !pattern.is_empty()
            && regex_lite::Regex::new(&pattern).is_ok_and(|re| re.is_match(key));
        if allowed {
            return Ok(());
        }
        Err(crate::error::AmqpError::access_refused(format!(
            "access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"
        )))
    }

    /// Whether `user` may open `vhost` (it has permissions there).
    pub fn can_access(&self, user: &str, vhost: &str) -> bool {
        self.users.permission(user, vhost).is_some()
    }

    pub fn parameters(&self) -> Vec<((String, String, String), serde_json::Value)> {
        self.parameters
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn global_parameters(&self) -> Vec<(String, serde_json::Value)> {
        self.global_parameters
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register_connection(&self, c: Arc<dyn Session>) {
        self.connections.insert(c.id(), c);
    }

    pub fn unregister_connection(&self, id: u64) {
        self.connections.remove(&id);
    }

    pub fn connections(&self) -> Vec<Arc<dyn Session>> {
        self.connections.iter().map(|c| c.value().clone()).collect()
    }

    /// Open connections matching `f` (e.g. in a vhost, or of a user).
    pub fn count_connections(&self, f: impl Fn(&dyn Session) -> bool) -> usize {
        self.connections
            .iter()
            .filter(|c| f(c.value().as_ref()))
            .count()
    }

    /// Open channels of `user`'s connections.
    pub fn user_channel_count(&self, user: &str) -> usize {
        self.connections
            .iter()
            .filter(|c| c.value().user() == Some(user))
            .map(|c| c.value().channel_count())
            .sum()
    }

    /// Close every client connection with 320 CONNECTION_FORCED.
    pub fn close_all_connections(&self, reason: &str) {
        for c in self.connections() {
            c.force_close(reason);
        }
    }

    /// The message store, when the broker keeps one.
    pub fn store(&self) -> Option<&Arc<MessageStore>> {
        self.store.as_ref()
    }
}

impl vhost::Deleter for Broker {
    fn delete_queue(&self, vhost: &str, name: &str, cause: DeleteCause) {
        self.execute_internal(Command::DeleteQueue {
            vhost: vhost.into(),
            name: name.into(),
            if_unused: false,
            if_empty: false,
            cause,
        });
    }
}

#[cfg(test)]
mod tests;
