//! Declaring and deleting queues (applied by commands, under the metadata lock), with RabbitMQ's
//! equivalence checks, exclusivity rules and texts. Deleting a queue is two steps: it leaves the vhost,
//! its bindings and its consumers at once, and its messages are dropped only once the deletion is durable
//! (so a deletion the definitions log cannot record is undone whole).

use super::exchanges::check_arg_equivalence;
use super::VHost;
use crate::broker::command::{Actor, Command, DeleteCause, Effects, Mode, Outcome};
use crate::broker::exchange::DestKey;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use crate::queue::args::{self as queue_args, QueueConfig, QueueType};
use crate::queue::{Queue, QueueHost, QueueSpec};
use amq_protocol::types::{AMQPValue, FieldTable};
use std::sync::{Arc, Weak};

/// What a queue.declare asks for.
pub struct QueueDeclare<'a> {
    pub name: &'a str,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
}

/// RabbitMQ refuses client-chosen queue names in the reserved `amq.` namespace.
pub fn check_queue_name(name: &str) -> AmqpResult<()> {
    if name.starts_with("amq.") {
        return Err(AmqpError::access_refused(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    Ok(())
}

impl VHost {
    /// queue.declare with passive=true: a query (it restarts the queue's x-expires countdown, as in RabbitMQ).
    pub fn check_queue(&self, name: &str, conn_id: u64) -> AmqpResult<(Arc<Queue>, u32, u32)> {
        let q = self.get_queue(name)?;
        q.check_access(conn_id)?;
        q.touch();
        let (m, c) = q.counts();
        Ok((q, m, c))
    }

    pub(crate) fn declare_queue(
        &self,
        req: &QueueDeclare,
        actor: &Actor,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<Outcome> {
        let conn_id = actor.conn_id();
        let durable = req.durable && !req.exclusive;
        if let Some(q) = self.queue(req.name) {
            self.check_queue_equivalence(&q, req, durable, conn_id)?;
            q.touch();
            let (messages, consumers) = q.counts();
            return Ok(Outcome::Queue {
                queue: q,
                messages,
                consumers,
            });
        }
        queue_args::validate(req.name, &self.name, req.arguments)?;
        let qtype = QueueConfig::from_args(req.arguments).queue_type;
        if self.compat.is_4() {
            queue_args::validate_4(req.name, &self.name, req.arguments, qtype)?;
            if !req.durable && !req.exclusive {
                return Err(AmqpError::internal_error(queue_args::deprecated_feature(
                    "transient_nonexcl_queues",
                )));
            }
        }
        if qtype != QueueType::Classic {
            // Replicated queue types refuse the properties that tie a queue to one connection or consumer.
            // In RabbitMQ's order: auto-delete, exclusive, then durability.
            let bad = if req.auto_delete {
                Some("auto-delete")
            } else if req.exclusive {
                Some("exclusive-owner")
            } else if !req.durable {
                Some("non-durable")
            } else {
                None
            };
            if let Some(prop) = bad {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid property '{prop}' for queue '{}' in vhost '{}'",
                    req.name, self.name
                )));
            }
        }
        if let (Some(max), Mode::Live) = (self.limit("max-queues"), mode) {
            if self.queues.len() as i64 >= max {
                return Err(AmqpError::precondition_failed(format!(
                    "cannot declare queue '{}': queue limit in vhost '{}' ({max}) is reached",
                    req.name, self.name
                )));
            }
        }
        let host: Weak<dyn QueueHost> = self.self_ref.clone();
        let q = Arc::new(Queue::new(QueueSpec {
            name: req.name,
            vhost: &self.name,
            durable,
            exclusive_owner: req.exclusive.then_some(conn_id),
            auto_delete: req.auto_delete,
            arguments: req.arguments.clone(),
            host,
            timers: self.timers.clone(),
            storage: self.store.clone(),
            journal: self.journal.clone(),
            compat: self.compat,
        }));
        self.queues.insert(req.name.to_string(), q.clone());
        if durable {
            fx.log(Command::DeclareQueue {
                vhost: self.name.to_string(),
                name: req.name.to_string(),
                durable: true,
                exclusive: false,
                auto_delete: req.auto_delete,
                arguments: req.arguments.clone(),
            });
        }
        let me = self.self_ref.clone();
        let undo_q = q.clone();
        fx.on_undo(move || {
            if let Some(v) = me.upgrade() {
                if v.queues
                    .remove_if(&*undo_q.name, |_, x| Arc::ptr_eq(x, &undo_q))
                    .is_some()
                {
                    for c in undo_q.detach() {
                        c.channel.cancelled(&c);
                    }
                    undo_q.discard_all();
                }
            }
        });
        if !self.policies.read().is_empty() || !self.operator_policies.read().is_empty() {
            q.set_config(self.effective_config(&q));
        }
        q.touch();
        Ok(Outcome::Queue {
            queue: q,
            messages: 0,
            consumers: 0,
        })
    }

    fn check_queue_equivalence(
        &self,
        q: &Queue,
        req: &QueueDeclare,
        durable: bool,
        conn_id: u64,
    ) -> AmqpResult<()> {
        match q.exclusive_owner {
            Some(owner) if owner != conn_id || !req.exclusive => return Err(q.locked_error()),
            None if req.exclusive => return Err(q.locked_error()),
            _ => {}
        }
        let ineq = |arg: &str, got: bool, cur: bool| {
            AmqpError::precondition_failed(format!(
                "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{got}' but current is '{cur}'",
                q.name, self.name
            ))
        };
        if q.durable != durable {
            return Err(ineq("durable", durable, q.durable));
        }
        if q.auto_delete != req.auto_delete {
            return Err(ineq("auto_delete", req.auto_delete, q.auto_delete));
        }
        for key in queue_args::EQUIVALENCE_KEYS {
            let mut got = fields::get(req.arguments, key);
            let mut cur = fields::get(&q.arguments, key);
            if *key == "x-queue-type" {
                let classic = |v: Option<&AMQPValue>| {
                    v.and_then(fields::as_str).is_some_and(|s| s == "classic")
                };
                if classic(got) {
                    got = None;
                }
                if classic(cur) {
                    cur = None;
                }
            }
            check_arg_equivalence(key, "queue", &q.name, &self.name, got, cur)?;
        }
        Ok(())
    }

    /// queue.delete: a missing queue is not an error (delete-ok with 0), as in RabbitMQ. An internal
    /// deletion (auto-delete, expiry) re-checks that it is still due.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        cause: DeleteCause,
        actor: &Actor,
        mode: Mode,
        fx: &mut Effects,
    ) -> AmqpResult<Outcome> {
        let none = Outcome::QueueDeleted {
            messages: 0,
            cancelled_here: Vec::new(),
        };
        let Some(q) = self.queue(name) else {
            return Ok(none);
        };
        match cause {
            DeleteCause::Client => {
                q.check_access(actor.conn_id())?;
                if q.queue_type == QueueType::Quorum && (if_unused || if_empty) {
                    let flag = if if_unused { "if-unused" } else { "if-empty" };
                    return Err(AmqpError::not_implemented(format!(
                        "cannot delete queue '{}' in vhost '{}'. queue.delete operations with {flag} flag set are not supported by quorum queues",
                        name, self.name
                    )));
                }
                let (messages, consumers) = q.counts();
                if if_unused && consumers > 0 {
                    return Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' in use",
                        name, self.name
                    )));
                }
                if if_empty && messages > 0 {
                    return Err(AmqpError::precondition_failed(format!(
                        "queue '{}' in vhost '{}' not empty",
                        name, self.name
                    )));
                }
            }
            DeleteCause::AutoDelete if !q.auto_delete_due() => return Ok(none),
            DeleteCause::Expired if !q.expiry_due() => return Ok(none),
            _ => {}
        }
        let (messages, cancelled_here) = self.remove_queue(&q, actor, mode, fx);
        Ok(Outcome::QueueDeleted {
            messages,
            cancelled_here,
        })
    }

    /// Take a queue out: from the vhost, its bindings (sources left without bindings auto-delete), its
    /// consumers (cancelled; those of the acting channel are returned for the caller to tell after its
    /// reply). Its messages go once the deletion is durable. Returns the ready count.
    fn remove_queue(
        &self,
        q: &Arc<Queue>,
        actor: &Actor,
        mode: Mode,
        fx: &mut Effects,
    ) -> (u32, Vec<Arc<crate::queue::Consumer>>) {
        if self
            .queues
            .remove_if(&*q.name, |_, v| Arc::ptr_eq(v, q))
            .is_none()
        {
            return (0, Vec::new());
        }
        let messages = q.message_count();
        let mut here = Vec::new();
        let acting = actor.conn.zip(actor.channel);
        for c in q.detach() {
            if acting.is_some_and(|a| c.channel.key() == a) {
                here.push(c);
            } else {
                c.channel.cancelled(&c);
            }
        }
        if q.durable {
            fx.log(Command::DeleteQueue {
                vhost: self.name.to_string(),
                name: q.name.to_string(),
                if_unused: false,
                if_empty: false,
                cause: DeleteCause::Client,
            });
        }
        let me = self.self_ref.clone();
        let undo_q = q.clone();
        fx.on_undo(move || {
            if let Some(v) = me.upgrade() {
                v.queues.insert(undo_q.name.to_string(), undo_q.clone());
                undo_q.restore();
            }
        });
        self.unbind_all_to(&DestKey::Queue(q.name.clone()), mode, fx);
        let gone = q.clone();
        fx.on_commit(move || {
            gone.discard_all();
        });
        tracing::debug!(vhost = %self.name, queue = %q.name, "queue deleted");
        (messages, here)
    }
}
