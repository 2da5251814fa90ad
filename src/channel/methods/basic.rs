//! basic.qos, consume, cancel, get, ack, nack, reject and recover. (basic.publish is in `publish`.)

use super::{clean_owned_name, reply, Ctx};
use crate::broker::{Command, DeleteCause};
use crate::channel::content::PublishStart;
use crate::channel::{reply_to, Channel, Pending, Then, TxOp, Unacked, Wait};
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::{self, fields};
use crate::queue::args::QueueType;
use crate::queue::{Consumer, Got, Queue};
use amq_protocol::protocol::{basic, AMQPClass};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub enum Settle {
    Ack,
    /// Back to the queue, counted as a failed delivery (quorum delivery limits).
    Requeue,
    /// Back to the queue without counting (RabbitMQ 4.3's nack and recover).
    Return,
    Discard,
}

impl Channel {
    pub fn basic_method(&mut self, ctx: &mut Ctx, m: basic::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        match m {
            basic::AMQPMethod::Publish(p) => {
                // Once per message: take the decoded strings over instead of copying them.
                self.content.start(PublishStart {
                    exchange: clean_owned_name(p.exchange.into()),
                    routing_key: p.routing_key.into(),
                    mandatory: p.mandatory,
                    immediate: p.immediate,
                    refused: None,
                });
            }
            basic::AMQPMethod::Deliver(_) => self.content.start(PublishStart::refused(60)),
            basic::AMQPMethod::GetOk(_) => self.content.start(PublishStart::refused(71)),
            basic::AMQPMethod::Return(_) => self.content.start(PublishStart::refused(50)),
            basic::AMQPMethod::Qos(q) => {
                // RabbitMQ 4.3 no longer has channel-wide prefetch: global=true sets the per-consumer one.
                let redispatch = if q.global && !ctx.vhost.compat.is_4() {
                    self.shared.set_global_prefetch(q.prefetch_count as u32);
                    true
                } else {
                    self.consumer_prefetch = q.prefetch_count as u32;
                    self.shared
                        .mode
                        .prefetch
                        .store(self.consumer_prefetch, Ordering::Relaxed);
                    // As in RabbitMQ, a per-consumer qos lifts any channel-wide limit set before.
                    let lifted = self.shared.global_prefetch() > 0;
                    if lifted {
                        self.shared.set_global_prefetch(0);
                    }
                    lifted
                };
                // qos-ok goes out before any delivery the new limit allows, as in RabbitMQ.
                reply(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                if redispatch {
                    for queue in self.shared.consumed_queues() {
                        queue.dispatch();
                    }
                }
            }
            basic::AMQPMethod::Consume(c) => self.consume(ctx, c)?,
            basic::AMQPMethod::Cancel(c) => {
                let tag = c.consumer_tag.to_string();
                if !self.reply_cancel(ctx, &tag) {
                    if let Some(consumer) = self.shared.remove_consumer(&tag) {
                        release_consumer(ctx, &consumer);
                    }
                }
                if !c.nowait {
                    reply(
                        ctx,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag.clone(),
                        })),
                    );
                }
            }
            basic::AMQPMethod::Get(g) => {
                let qname = self.queue_name(g.queue.as_str())?;
                ctx.check(crate::broker::Access::Read, "queue", &qname)?;
                let q = ctx.vhost.get_queue(&qname)?;
                q.check_access(ctx.conn.id)?;
                if q.queue_type == QueueType::Quorum && q.is_single_active() {
                    // RabbitMQ 4.2+ prints the queue type as an Erlang binary.
                    let kind = if ctx.vhost.compat.is_4() {
                        "<<\"quorum\">>"
                    } else {
                        "quorum"
                    };
                    return Err(AmqpError::resource_locked(format!(
                        "cannot obtain access to locked queue '{}' in vhost '{}'. basic.get operations are not supported by {kind} queues with single active consumer",
                        qname, ctx.vhost.name
                    )));
                }
                self.get(ctx, q, g.no_ack);
            }
            basic::AMQPMethod::Ack(a) => {
                let entries = self.shared.take(a.delivery_tag, a.multiple)?;
                match &mut self.tx {
                    Some(ops) => {
                        self.shared
                            .mode
                            .uncommitted_acks
                            .fetch_add(entries.len() as u32, Ordering::Relaxed);
                        ops.push(TxOp::Ack(entries));
                    }
                    None => {
                        self.shared
                            .journal_settled(&entries, crate::journal::Kind::Acked, false);
                        self.settle(entries, Settle::Ack)
                    }
                }
            }
            basic::AMQPMethod::Nack(n) => {
                let entries = self.shared.take(n.delivery_tag, n.multiple)?;
                // RabbitMQ 4.3 does not count a nack's requeue toward a quorum queue's delivery limit.
                let counted = !ctx.vhost.compat.is_4();
                self.reject(entries, n.requeue, counted, crate::journal::Kind::Nacked);
            }
            basic::AMQPMethod::Reject(r) => {
                let entries = self.shared.take(r.delivery_tag, false)?;
                self.reject(entries, r.requeue, true, crate::journal::Kind::Rejected);
            }
            basic::AMQPMethod::Recover(r) => {
                if !r.requeue {
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                // recover-ok goes out before the redeliveries, as in RabbitMQ.
                reply(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                let entries = self.shared.take_all();
                self.settle(entries, Settle::recovered(ctx.vhost.compat));
            }
            basic::AMQPMethod::RecoverAsync(r) => {
                if !r.requeue {
                    return Err(AmqpError::not_implemented("requeue=false"));
                }
                let entries = self.shared.take_all();
                self.settle(entries, Settle::recovered(ctx.vhost.compat));
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }

    /// basic.get on `q`: get-ok, get-empty, or (the head is being read back from the store) a wait, after
    /// which the connection calls this again.
    pub fn get(&self, ctx: &mut Ctx, q: Arc<Queue>, no_ack: bool) {
        let id = self.id();
        match q.get(&self.as_consumer_channel(), no_ack) {
            Got::Delivered => {}
            Got::Empty => {
                self.shared.stats.get_empty.bump(1);
                reply(
                    ctx,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                )
            }
            Got::Wait(rx) => {
                *ctx.pending = Some(Pending {
                    wait: Wait::Loaded(rx),
                    channel: id,
                    then: Then::Get { queue: q, no_ack },
                })
            }
        }
    }

    /// basic.reject / basic.nack; `counted` false for a requeue that is not a failed delivery (4.3's nack).
    /// In a transaction the journal records the settlement at commit, when it happens.
    fn reject(
        &mut self,
        entries: Vec<Unacked>,
        requeue: bool,
        counted: bool,
        kind: crate::journal::Kind,
    ) {
        let how = Settle::reject_or_requeue(requeue, counted);
        match &mut self.tx {
            Some(ops) => {
                self.shared
                    .mode
                    .uncommitted_acks
                    .fetch_add(entries.len() as u32, Ordering::Relaxed);
                ops.push(TxOp::Reject { entries, how, kind })
            }
            None => {
                self.shared.journal_settled(&entries, kind, requeue);
                self.settle(entries, how)
            }
        }
    }

    fn consume(&mut self, ctx: &mut Ctx, c: basic::Consume) -> AmqpResult<()> {
        let id = self.id();
        let qname = self.queue_name(c.queue.as_str())?;
        if qname == reply_to::PSEUDO_QUEUE {
            return self.reply_consume(ctx, c);
        }
        ctx.check(crate::broker::Access::Read, "queue", &qname)?;
        let q = ctx.vhost.get_queue(&qname)?;
        q.check_access(ctx.conn.id)?;
        if q.queue_type == QueueType::Quorum && self.shared.global_prefetch() > 0 {
            return Err(AmqpError::not_implemented(format!(
                "queue '{}' in vhost '{}' does not support global qos",
                qname, ctx.vhost.name
            )));
        }
        let priority = match fields::get(&c.arguments, "x-priority") {
            None => 0,
            Some(v) => fields::as_int(v).ok_or_else(|| {
                AmqpError::precondition_failed(format!(
                    "invalid arg 'x-priority' for queue '{}' in vhost '{}': \"expected integer, got {}\"",
                    qname,
                    ctx.vhost.name,
                    fields::type_name(v)
                ))
            })? as i32,
        };
        // RabbitMQ's other consumer-argument checks: a boolean failover flag, and stream offsets only on
        // streams.
        // RabbitMQ 4.x knows no failover flag any more and ignores it.
        let compat4 = ctx.vhost.compat.is_4();
        if let Some(v) = fields::get(&c.arguments, "x-cancel-on-ha-failover").filter(|_| !compat4) {
            if fields::as_bool(v).is_none() {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid arg 'x-cancel-on-ha-failover' for queue '{}' in vhost '{}': {{unacceptable_type,{}}}",
                    qname,
                    ctx.vhost.name,
                    fields::type_name(v)
                )));
            }
        }
        if q.queue_type == QueueType::Classic
            && fields::get(&c.arguments, "x-stream-offset").is_some()
        {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg 'x-stream-offset' for queue '{}' in vhost '{}' of queue type rabbit_classic_queue",
                qname, ctx.vhost.name
            )));
        }
        // A consumer's own timeout is RabbitMQ 4.3's, for quorum queues only.
        let timeout = match fields::get(&c.arguments, "x-consumer-timeout") {
            Some(v) if compat4 => Some(crate::queue::args::consumer_timeout_arg(
                &qname,
                &ctx.vhost.name,
                q.queue_type,
                v,
            )?),
            _ => None,
        };
        let tag = self.consumer_tag(c.consumer_tag.as_str())?;
        let consumer = Arc::new(Consumer {
            tag: Arc::from(tag.as_str()),
            channel: self.as_consumer_channel(),
            queue: q.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            priority,
            prefetch: self.consumer_prefetch,
            unacked: AtomicU32::new(0),
            arguments: c.arguments.clone(),
            timeout,
        });
        let nowait = c.nowait;
        let conn = ctx.conn.clone();
        // Registered on the channel first so that a queue deletion racing with us still finds it to cancel.
        self.shared.add_consumer(consumer.clone());
        let added = q.add_consumer(consumer.clone(), || {
            // consume-ok must reach the client before the first delivery, which add_consumer may make at once.
            if !nowait {
                conn.outbound.send(|b| {
                    protocol::write_method(
                        b,
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                            consumer_tag: tag.as_str().into(),
                        })),
                    )
                });
            }
        });
        if let Err(e) = added {
            self.shared.remove_consumer(&consumer.tag);
            return Err(e);
        }
        Ok(())
    }

    /// Apply acks, requeues or discards to the queues the deliveries came from.
    pub fn settle(&self, entries: Vec<Unacked>, how: Settle) {
        if entries.is_empty() {
            return;
        }
        let count = entries.len() as u64;
        let groups = crate::channel::deliveries::by_queue(entries);
        if let Settle::Ack = how {
            self.shared.stats.ack.bump(count);
        }
        for (q, msgs) in groups {
            match how {
                Settle::Ack => q.acked(&msgs),
                Settle::Discard => q.discard(msgs),
                Settle::Requeue => q.requeue(msgs),
                Settle::Return => q.requeue_uncounted(msgs),
            }
        }
        // A channel-wide prefetch may have held back other queues' consumers on this channel.
        if self.shared.global_prefetch() > 0 {
            for q in self.shared.consumed_queues() {
                q.dispatch();
            }
        }
    }
}

/// Take a consumer off its queue; an auto-delete queue that lost its last consumer is deleted.
pub(super) fn release_consumer(ctx: &Ctx, consumer: &Arc<Consumer>) {
    release(ctx.broker, consumer);
}

/// `release_consumer` without a method context (channel and connection cleanup).
pub fn release(broker: &crate::broker::Broker, consumer: &Arc<Consumer>) {
    let q = &consumer.queue;
    if q.remove_consumer(consumer) {
        broker.execute_internal(Command::DeleteQueue {
            vhost: q.vhost.to_string(),
            name: q.name.to_string(),
            if_unused: false,
            if_empty: false,
            cause: DeleteCause::AutoDelete,
        });
    }
}
