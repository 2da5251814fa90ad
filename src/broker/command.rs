//! The one way topology and access control change. Every change — vhost, user, permission, topic
//! permission, exchange, queue, binding, policy, operator policy, runtime parameter, limit — is a
//! [`Command`], executed by [`Broker::execute`](super::Broker::execute), which validates it with RabbitMQ's
//! reply codes and texts, applies it, and records it in the definitions log when it touches durable state.
//! AMQP methods, boot replay, definitions import and the management API all come through here; nothing
//! else mutates topology.
//!
//! # Durability and order
//! Commands are applied one at a time under the broker's metadata lock, and a command with a durable effect
//! is appended to the definitions log under the same lock, so the log's order is the order of application.
//! The caller gets a [`Ticket`] and answers its client only once the ticket resolves: the log's own thread
//! group-commits the entries (one `fdatasync` for many) off the async workers. If the write fails, every
//! entry not yet on disk is undone, newest first, and each ticket resolves to 541 INTERNAL_ERROR: nothing is
//! left half-applied. What cannot be undone (dropping a deleted queue's messages, closing a deleted vhost's
//! connections) is deferred until the entry is durable.
//!
//! # Determinism
//! The log records commands in their *decided* form: a conditional delete that succeeded is recorded as an
//! unconditional one, and effects a command cascades into (an auto-delete exchange losing its last binding)
//! are recorded as commands of their own. Replaying the recorded commands in order with [`Mode::Replay`]
//! therefore rebuilds the same durable state without depending on anything unrecorded (transient queues,
//! consumers, messages). Apply reads no wall clock and chooses no names: server-named queues and password
//! salts are chosen by the caller before the command is built. This is the shape a replicated metadata log
//! needs.

use super::policy::PolicyDef;
use super::users::StoredPassword;
use crate::queue::{Consumer, Queue};
use amq_protocol::types::FieldTable;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn all() -> String {
    ".*".to_string()
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a queue is deleted (internal deletions re-check their condition when they apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteCause {
    /// A client asked (queue.delete, the management API).
    #[default]
    Client,
    /// An auto-delete queue lost its last consumer.
    AutoDelete,
    /// x-expires passed without use.
    Expired,
    /// The exclusive owner's connection closed.
    OwnerGone,
}

impl DeleteCause {
    fn is_client(&self) -> bool {
        *self == DeleteCause::Client
    }
}

/// A change to topology or access control. Serialised, one per line, in the definitions log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create a vhost, or update its metadata if it exists.
    #[serde(alias = "vhost")]
    AddVhost {
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        default_queue_type: Option<String>,
        #[serde(default)]
        tracing: bool,
    },
    DeleteVhost {
        name: String,
    },
    /// Create or replace a user.
    #[serde(alias = "user")]
    PutUser {
        name: String,
        password: StoredPassword,
        #[serde(default)]
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    #[serde(alias = "grant")]
    SetPermissions {
        user: String,
        vhost: String,
        #[serde(default = "all")]
        configure: String,
        #[serde(default = "all")]
        write: String,
        #[serde(default = "all")]
        read: String,
    },
    ClearPermissions {
        user: String,
        vhost: String,
    },
    SetTopicPermissions {
        user: String,
        vhost: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// Clear one exchange's topic permissions, or all of them in the vhost.
    ClearTopicPermissions {
        user: String,
        vhost: String,
        #[serde(default)]
        exchange: Option<String>,
    },
    #[serde(alias = "exchange")]
    DeclareExchange {
        vhost: String,
        name: String,
        kind: String,
        #[serde(default = "yes")]
        durable: bool,
        #[serde(default)]
        auto_delete: bool,
        #[serde(default)]
        internal: bool,
        #[serde(default)]
        arguments: FieldTable,
    },
    DeleteExchange {
        vhost: String,
        name: String,
        #[serde(default, skip_serializing_if = "is_false")]
        if_unused: bool,
    },
    /// Declare a queue. An exclusive queue belongs to the acting connection.
    #[serde(alias = "queue")]
    DeclareQueue {
        vhost: String,
        name: String,
        #[serde(default = "yes")]
        durable: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        exclusive: bool,
        #[serde(default)]
        auto_delete: bool,
        #[serde(default)]
        arguments: FieldTable,
    },
    DeleteQueue {
        vhost: String,
        name: String,
        #[serde(default, skip_serializing_if = "is_false")]
        if_unused: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        if_empty: bool,
        #[serde(default, skip_serializing_if = "DeleteCause::is_client")]
        cause: DeleteCause,
    },
    Bind(BindingArgs),
    Unbind(BindingArgs),
    #[serde(alias = "policy")]
    SetPolicy {
        def: PolicyDef,
        #[serde(default)]
        operator: bool,
    },
    ClearPolicy {
        vhost: String,
        name: String,
        #[serde(default)]
        operator: bool,
    },
    /// A vhost-scoped runtime parameter (RabbitMQ's `set_parameter`).
    SetParameter {
        component: String,
        vhost: String,
        name: String,
        value: serde_json::Value,
    },
    ClearParameter {
        component: String,
        vhost: String,
        name: String,
    },
    SetGlobalParameter {
        name: String,
        value: serde_json::Value,
    },
    ClearGlobalParameter {
        name: String,
    },
    /// One vhost limit (`max-connections`, `max-queues`); a negative value means unlimited.
    SetVhostLimit {
        vhost: String,
        name: String,
        value: i64,
    },
    ClearVhostLimit {
        vhost: String,
        name: String,
    },
    /// One user limit (`max-connections`, `max-channels`).
    SetUserLimit {
        user: String,
        name: String,
        value: i64,
    },
    ClearUserLimit {
        user: String,
        name: String,
    },
}

impl Command {
    /// The command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::AddVhost { .. } => "add_vhost",
            Command::DeleteVhost { .. } => "delete_vhost",
            Command::PutUser { .. } => "put_user",
            Command::DeleteUser { .. } => "delete_user",
            Command::SetPermissions { .. } => "set_permissions",
            Command::ClearPermissions { .. } => "clear_permissions",
            Command::SetTopicPermissions { .. } => "set_topic_permissions",
            Command::ClearTopicPermissions { .. } => "clear_topic_permissions",
            Command::DeclareExchange { .. } => "declare_exchange",
            Command::DeleteExchange { .. } => "delete_exchange",
            Command::DeclareQueue { .. } => "declare_queue",
            Command::DeleteQueue { .. } => "delete_queue",
            Command::Bind(_) => "bind",
            Command::Unbind(_) => "unbind",
            Command::SetPolicy { .. } => "set_policy",
            Command::ClearPolicy { .. } => "clear_policy",
            Command::SetParameter { .. } => "set_parameter",
            Command::ClearParameter { .. } => "clear_parameter",
            Command::SetGlobalParameter { .. } => "set_global_parameter",
            Command::ClearGlobalParameter { .. } => "clear_global_parameter",
            Command::SetVhostLimit { .. } => "set_vhost_limit",
            Command::ClearVhostLimit { .. } => "clear_vhost_limit",
            Command::SetUserLimit { .. } => "set_user_limit",
            Command::ClearUserLimit { .. } => "clear_user_limit",
        }
    }
}

/// What a bind or unbind names: a binding from `source` to a queue (or, with `to_exchange`, an exchange).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingArgs {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub to_exchange: bool,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default)]
    pub arguments: FieldTable,
}

/// Who executes a command: for exclusive-queue ownership, for telling the acting channel's consumers apart,
/// and (with permission checks) for whose rights apply. `internal()` is the broker itself.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user: Option<Arc<str>>,
    pub conn: Option<u64>,
    pub channel: Option<u16>,
}

impl Actor {
    pub fn internal() -> Actor {
        Actor::default()
    }

    /// A client connection's channel.
    pub fn channel(user: Arc<str>, conn: u64, channel: u16) -> Actor {
        Actor {
            user: Some(user),
            conn: Some(conn),
            channel: Some(channel),
        }
    }

    /// The connection id used for exclusive-queue checks (0 for the broker and the management API, which
    /// own no queue).
    pub fn conn_id(&self) -> u64 {
        self.conn.unwrap_or(0)
    }
}

/// How a command is applied: live (validated, logged, cascading), or replayed from the log at boot (no
/// logging, no cascades: those were logged as commands of their own; a failure is logged and skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// What a command produced, for the reply.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// queue.declare: the queue and its counts.
    Queue {
        queue: Arc<Queue>,
        messages: u32,
        consumers: u32,
    },
    /// queue.delete: how many ready messages went with it, and the consumers of the acting channel that it
    /// cancelled (the channel tells its client after delete-ok, as RabbitMQ orders them).
    QueueDeleted {
        messages: u32,
        cancelled_here: Vec<Arc<Consumer>>,
    },
}

/// What applying one command did beyond its outcome: the commands to record, how to undo it if the record
/// cannot be written, and what to do once it is durable.
#[derive(Default)]
pub struct Effects {
    pub(super) logged: Vec<Command>,
    pub(super) undo: Vec<Box<dyn FnOnce() + Send>>,
    pub(super) commit: Vec<Box<dyn FnOnce() + Send>>,
}

impl Effects {
    /// Record `cmd` (a durable effect) in the log.
    pub fn log(&mut self, cmd: Command) {
        self.logged.push(cmd);
    }

    /// How to take this effect back if the log cannot record it.
    pub fn on_undo(&mut self, f: impl FnOnce() + Send + 'static) {
        self.undo.push(Box::new(f));
    }

    /// What to do only once the effect is durable (irreversible steps).
    pub fn on_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.commit.push(Box::new(f));
    }

    /// Undo everything, newest first.
    pub(super) fn rollback(self) {
        for u in self.undo.into_iter().rev() {
            u();
        }
    }

    /// Run the deferred steps.
    pub(super) fn run_commits(self) {
        for c in self.commit {
            c();
        }
    }
}

pub use super::deflog::Ticket;

/// A command's outcome, and the ticket to wait on before answering the client.
#[derive(Debug)]
pub struct Executed {
    pub outcome: Outcome,
    pub ticket: Ticket,
}
