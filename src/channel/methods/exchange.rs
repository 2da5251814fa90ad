//! exchange.declare, delete, bind and unbind.

use super::{clean_name, Ctx};
use crate::broker::command::BindingArgs;
use crate::broker::Command;
use crate::channel::Channel;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::protocol::{exchange, AMQPClass};
use amq_protocol::types::{FieldTable, ShortString};

impl Channel {
    pub fn exchange_method(&mut self, ctx: &mut Ctx, m: exchange::AMQPMethod) -> AmqpResult<()> {
        let id = self.id();
        match m {
            exchange::AMQPMethod::Declare(d) => {
                let name = clean_name(d.exchange.as_str());
                let ok = (!d.nowait).then_some(AMQPClass::Exchange(
                    exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
                ));
                if d.passive {
                    super::passive_access(ctx, "exchange", &name)?;
                    ctx.vhost.check_exchange(&name)?;
                    if let Some(ok) = ok {
                        super::reply(ctx, id, ok);
                    }
                    return Ok(());
                }
                let cmd = Command::DeclareExchange {
                    vhost: ctx.vhost.name.to_string(),
                    name,
                    kind: d.kind.to_string(),
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: d.arguments,
                };
                ctx.run(id, cmd, ok, (40, 10))?;
            }
            exchange::AMQPMethod::Delete(d) => {
                let cmd = Command::DeleteExchange {
                    vhost: ctx.vhost.name.to_string(),
                    name: clean_name(d.exchange.as_str()),
                    if_unused: d.if_unused,
                };
                let ok = (!d.nowait).then_some(AMQPClass::Exchange(
                    exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
                ));
                ctx.run(id, cmd, ok, (40, 20))?;
            }
            exchange::AMQPMethod::Bind(b) => {
                let args =
                    exchange_binding(ctx, &b.source, &b.destination, &b.routing_key, b.arguments);
                let ok = (!b.nowait).then_some(AMQPClass::Exchange(exchange::AMQPMethod::BindOk(
                    exchange::BindOk {},
                )));
                ctx.run(id, Command::Bind(args), ok, (40, 30))?;
            }
            exchange::AMQPMethod::Unbind(b) => {
                let args =
                    exchange_binding(ctx, &b.source, &b.destination, &b.routing_key, b.arguments);
                let ok = (!b.nowait).then_some(AMQPClass::Exchange(
                    exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
                ));
                ctx.run(id, Command::Unbind(args), ok, (40, 40))?;
            }
            _ => return Err(AmqpError::command_invalid("unimplemented method")),
        }
        Ok(())
    }
}

/// An exchange-to-exchange binding's command arguments.
fn exchange_binding(
    ctx: &Ctx,
    source: &ShortString,
    destination: &ShortString,
    routing_key: &ShortString,
    arguments: FieldTable,
) -> BindingArgs {
    BindingArgs {
        vhost: ctx.vhost.name.to_string(),
        source: clean_name(source.as_str()),
        destination: clean_name(destination.as_str()),
        to_exchange: true,
        routing_key: routing_key.to_string(),
        arguments,
    }
}
