//! queue.declare, bind, unbind, purge and delete.

use super::{clean_name, generated_name, Ctx};
use crate::broker::command::BindingArgs;
use crate::broker::vhost::queues::check_queue_name;
use crate::broker::{Command, DeleteCause, Outcome};
use crate::channel::{reply_to, Channel};
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use amq_protocol::protocol::{queue, AMQPClass};
use std::sync::Arc;

impl Channel {
    pub fn queue_method(&mut self, ctx: &mut Ctx, m: queue::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        let conn_id = ctx.conn.id;
        let actor = ctx.actor(id);
        match m {
            queue::AMQPMethod::Declare(d) => {
                let requested = clean_name(d.queue.as_str());
                let declare_ok = |name: &str, message_count, consumer_count| {
                    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: name.into(),
                        message_count,
                        consumer_count,
                    }))
                };
                let reply_name = requested.starts_with(reply_to::PREFIX);
                if d.passive && (reply_name || requested == reply_to::PSEUDO_QUEUE) {
                    // The pseudo-queue and live reply names look like a queue with one consumer.
                    if reply_name && ctx.vhost.reply_target(&requested).is_none() {
                        return Err(AmqpError::not_found(format!(
                            "no queue '{}' in vhost '{}'",
                            requested, ctx.vhost.name
                        )));
                    }
                    if !d.nowait {
                        super::reply(ctx, id, declare_ok(&requested, 0, 1));
                    }
                    return Ok(());
                }
                if d.passive {
                    if requested.is_empty() {
                        return Err(AmqpError::not_found("no previously declared queue"));
                    }
                    super::passive_access(ctx, "queue", &requested)?;
                    let (_, messages, consumers) = ctx.vhost.check_queue(&requested, conn_id)?;
                    self.last_queue = Some(requested.clone());
                    if !d.nowait {
                        super::reply(ctx, id, declare_ok(&requested, messages, consumers));
                    }
                    return Ok(());
                }
                let generated = requested.is_empty();
                let name = if generated {
                    let qtype = fields::get(&d.arguments, "x-queue-type").and_then(fields::as_str);
                    if let Some(t) = qtype.filter(|t| t == "quorum" || t == "stream") {
                        return Err(AmqpError::precondition_failed(format!(
                            "Cannot declare a server-named queue for type rabbit_{t}_queue"
                        )));
                    }
                    generated_name("amq.gen-")
                } else {
                    check_queue_name(&requested)?;
                    requested
                };
                let done = ctx.broker.execute(
                    Command::DeclareQueue {
                        vhost: ctx.vhost.name.to_string(),
                        name: name.clone(),
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: d.arguments,
                    },
                    &actor,
                )?;
                let Outcome::Queue {
                    queue: q,
                    messages,
                    consumers,
                } = &done.outcome
                else {
                    return Err(AmqpError::internal_error("queue.declare had no queue"));
                };
                if q.exclusive_owner == Some(conn_id)
                    && !ctx.exclusive_queues.iter().any(|x| Arc::ptr_eq(x, q))
                {
                    ctx.exclusive_queues.push(q.clone());
                }
                let ok = (!d.nowait).then(|| declare_ok(&name, *messages, *consumers));
                self.last_queue = Some(name);
                ctx.answer(id, done, ok, Vec::new(), (50, 10));
            }
            queue::AMQPMethod::Bind(b) => {
                let qname = self.queue_name(b.queue.as_str())?;
                refuse_reply_binding(ctx, &qname)?;
                let routing_key =
                    if b.queue.as_str().is_empty() && b.routing_key.as_str().is_empty() {
                        qname.clone()
                    } else {
                        b.routing_key.to_string()
                    };
                let args = queue_binding(ctx, &b.exchange, qname, routing_key, b.arguments);
                let ok = (!b.nowait).then_some(AMQPClass::Queue(queue::AMQPMethod::BindOk(
                    queue::BindOk {},
                )));
                ctx.run(id, Command::Bind(args), ok, (50, 20))?;
            }
            queue::AMQPMethod::Unbind(b) => {
                let qname = self.queue_name(b.queue.as_str())?;
                refuse_reply_binding(ctx, &qname)?;
                let args = queue_binding(
                    ctx,
                    &b.exchange,
                    qname,
                    b.routing_key.to_string(),
                    b.arguments,
                );
                let ok = AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}));
                ctx.run(id, Command::Unbind(args), Some(ok), (50, 50))?;
            }
            queue::AMQPMethod::Purge(p) => {
                let qname = self.queue_name(p.queue.as_str())?;
                ctx.check(crate::broker::Access::Read, "queue", &qname)?;
                let q = ctx.vhost.get_queue(&qname)?;
                q.check_access(conn_id)?;
                let n = q.purge();
                if !p.nowait {
                    super::reply(
                        ctx,
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    );
                }
            }
            queue::AMQPMethod::Delete(d) => {
                let qname = self.queue_name(d.queue.as_str())?;
                let mut done = ctx.broker.execute(
                    Command::DeleteQueue {
                        vhost: ctx.vhost.name.to_string(),
                        name: qname,
                        if_unused: d.if_unused,
                        if_empty: d.if_empty,
                        cause: DeleteCause::Client,
                    },
                    &actor,
                )?;
                ctx.exclusive_queues.retain(|q| !q.is_deleted());
                let (n, cancelled) = match &mut done.outcome {
                    Outcome::QueueDeleted {
                        messages,
                        cancelled_here,
                    } => (*messages, std::mem::take(cancelled_here)),
                    _ => (0, Vec::new()),
                };
                let ok = (!d.nowait).then_some(AMQPClass::Queue(queue::AMQPMethod::DeleteOk(
                    queue::DeleteOk { message_count: n },
                )));
                ctx.answer(id, done, ok, cancelled, (50, 40));
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }
}

/// A queue binding's command arguments.
fn queue_binding(
    ctx: &Ctx,
    exchange: &amq_protocol::types::ShortString,
    queue: String,
    routing_key: String,
    arguments: amq_protocol::types::FieldTable,
) -> BindingArgs {
    BindingArgs {
        vhost: ctx.vhost.name.to_string(),
        source: clean_name(exchange.as_str()),
        destination: queue,
        to_exchange: false,
        routing_key,
        arguments,
    }
}

/// RabbitMQ 4.3 refuses to bind a direct reply-to name (3.x accepted it, to no effect).
fn refuse_reply_binding(ctx: &Ctx, queue: &str) -> AmqpResult<()> {
    if ctx.vhost.compat.is_4() && queue.starts_with("amq.rabbitmq.reply-to.") {
        return Err(AmqpError::access_refused(
            "cannot bind or unbind to a volatile (direct reply-to) queue",
        ));
    }
    Ok(())
}
