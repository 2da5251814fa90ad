//! Queue x-arguments: which ones take part in equivalence checks, and their validation on declare with
//! RabbitMQ's 406 texts.

use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use amq_protocol::types::{AMQPValue, FieldTable};

/// The arguments RabbitMQ compares when a classic queue is redeclared; any other argument is ignored.
pub const EQUIVALENCE_KEYS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];

const MAX_EXPIRY: i64 = 315_360_000_000;

/// The longest AMQP short string, in bytes.
pub const SHORT_STR_MAX: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// RabbitMQ's module name for the type, used in its error texts.
    pub fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
            QueueType::Stream => "rabbit_stream_queue",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// The behaviour a queue's arguments select, decoded once at declare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueConfig {
    pub queue_type: QueueType,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// Deliveries allowed before a message is dead-lettered (quorum x-delivery-limit, or Warren's
    /// x-warren-delivery-limit on classic queues).
    pub delivery_limit: Option<u64>,
    pub message_ttl: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// Whether x-overflow was given (an argument beats a policy's overflow).
    pub overflow_set: bool,
    pub expires: Option<u64>,
    /// How long a delivery from this queue may stay unacknowledged (`x-consumer-timeout`, policy
    /// `consumer-timeout`), in milliseconds; `None` leaves it to the broker's `consumer_timeout`.
    pub consumer_timeout: Option<u64>,
}

/// RabbitMQ 4.x's quorum queues dead-letter (or drop) a message after 20 failed deliveries by default.
const DEFAULT_DELIVERY_LIMIT_4: u64 = 20;

impl QueueConfig {
    /// The defaults of the RabbitMQ line the broker behaves as, where the arguments and policies set none.
    pub fn with_defaults(mut self, compat: crate::config::Compat) -> QueueConfig {
        if compat.is_4() && self.queue_type == QueueType::Quorum && self.delivery_limit.is_none() {
            self.delivery_limit = Some(DEFAULT_DELIVERY_LIMIT_4);
        }
        self
    }

    /// Decode validated arguments.
    pub fn from_args(args: &FieldTable) -> QueueConfig {
        let int = |k: &str| {
            fields::get(args, k)
                .and_then(fields::as_int)
                .filter(|n| *n >= 0)
                .map(|n| n as u64)
        };
        let string = |k: &str| {
            fields::get(args, k)
                .and_then(fields::as_str)
                .map(|s| s.into_owned())
        };
        let queue_type = match string("x-queue-type").as_deref() {
            Some("quorum") => QueueType::Quorum,
            Some("stream") => QueueType::Stream,
            _ => QueueType::Classic,
        };
        let delivery_limit = match queue_type {
            QueueType::Quorum => int("x-delivery-limit"),
            _ => int("x-warren-delivery-limit"),
        };
        QueueConfig {
            queue_type,
            max_priority: int("x-max-priority").map(|p| p.min(255) as u8),
            single_active_consumer: fields::get(args, "x-single-active-consumer")
                .and_then(fields::as_bool)
                .unwrap_or(false),
            delivery_limit,
            message_ttl: int("x-message-ttl"),
            dead_letter_exchange: string("x-dead-letter-exchange"),
            dead_letter_routing_key: string("x-dead-letter-routing-key"),
            max_length: int("x-max-length"),
            max_length_bytes: int("x-max-length-bytes"),
            overflow_set: fields::get(args, "x-overflow").is_some(),
            overflow: match string("x-overflow").as_deref() {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => Overflow::DropHead,
            },
            expires: int("x-expires"),
            consumer_timeout: int("x-consumer-timeout"),
        }
    }
}

fn invalid(key: &str, queue: &str, vhost: &str, why: String) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {why}"
    ))
}

fn expect_int(key: &str, queue: &str, vhost: &str, v: &AMQPValue) -> AmqpResult<i64> {
    fields::as_int(v).ok_or_else(|| {
        invalid(
            key,
            queue,
            vhost,
            format!("\"expected integer, got {}\"", fields::type_name(v)),
        )
    })
}

/// An integer argument within RabbitMQ's bounds, with its error terms for the rest.
fn bounded_int(
    key: &str,
    queue: &str,
    vhost: &str,
    v: &AMQPValue,
    zero_ok: bool,
    max: Option<i64>,
) -> AmqpResult<i64> {
    let n = expect_int(key, queue, vhost, v)?;
    let why = if n < 0 {
        format!("{{value_negative,{n}}}")
    } else if n == 0 && !zero_ok {
        "{value_zero,0}".to_string()
    } else if max.is_some_and(|m| n > m) {
        format!("{{value_too_large,{n}}}")
    } else {
        return Ok(n);
    };
    Err(invalid(key, queue, vhost, why))
}

/// A basic.consume `x-consumer-timeout` under RabbitMQ 4.3: refused on classic queues (which have no
/// consumer timeout there), otherwise a non-negative integer of milliseconds.
pub fn consumer_timeout_arg(
    queue: &str,
    vhost: &str,
    qtype: QueueType,
    v: &AMQPValue,
) -> AmqpResult<u64> {
    let key = "x-consumer-timeout";
    if qtype == QueueType::Classic {
        return Err(AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type rabbit_classic_queue"
        )));
    }
    Ok(bounded_int(key, queue, vhost, v, true, None)? as u64)
}

/// RabbitMQ 4.x's text for a deprecated feature it no longer permits (the reply cuts it at 255 bytes).
pub fn deprecated_feature(name: &str) -> String {
    format!(
        "Feature `{name}` is deprecated.\nBy default, this feature is not permitted anymore.\nThe feature will be \
         removed from a future major RabbitMQ version, regardless of the configuration; actual version to be \
         determined.\nTo continue using this feature when it is not permitted by default, set the following \
         parameter in your configuration:\n    \"deprecated_features.permit.{name} = true\""
    )
}

/// What RabbitMQ 4.3 refuses beyond 3.13's checks: classic queue version 1, arguments only other queue
/// types know on a classic queue, and the queue-master locator (a deprecated feature, 541).
pub fn validate_4(queue: &str, vhost: &str, args: &FieldTable, qtype: QueueType) -> AmqpResult<()> {
    if qtype != QueueType::Classic {
        return Ok(());
    }
    for (k, v) in args.inner() {
        let key = k.as_str();
        match key {
            "x-queue-version" if fields::as_int(v) != Some(2) => {
                let why = format!("\"unsupported queue version '{}'\"", fields::display(v));
                return Err(invalid(key, queue, vhost, why));
            }
            "x-consumer-timeout"
            | "x-dead-letter-strategy"
            | "x-max-in-memory-length"
            | "x-max-in-memory-bytes"
            | "x-quorum-initial-group-size"
            | "x-initial-cluster-size"
            | "x-stream-max-segment-size-bytes"
            | "x-stream-filter-size-bytes" => {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type rabbit_classic_queue"
                )));
            }
            "x-queue-master-locator" => {
                return Err(AmqpError::internal_error(deprecated_feature(
                    "queue_master_locator",
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The order in which RabbitMQ checks queue arguments (`rabbit_amqqueue:declare_args/0`).
const CHECK_ORDER: [&str; 19] = [
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

pub fn validate(queue: &str, vhost: &str, args: &FieldTable) -> AmqpResult<()> {
    let qtype = fields::get(args, "x-queue-type")
        .and_then(fields::as_str)
        .map(|s| s.into_owned());
    let qtype = qtype.as_deref().unwrap_or("classic");
    let type_name = match qtype {
        "classic" => "rabbit_classic_queue",
        "quorum" => "rabbit_quorum_queue",
        "stream" => "rabbit_stream_queue",
        other => {
            return Err(invalid(
                "x-queue-type",
                queue,
                vhost,
                format!("\"unsupported queue type '{other}'\""),
            ));
        }
    };
    let wrong_type = |key: &str| {
        AmqpError::precondition_failed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type {type_name}"
        ))
    };
    // One argument at a time in RabbitMQ's order of checks, so that of several bad ones the same is named.
    let mut ordered: Vec<(&str, &AMQPValue)> =
        args.inner().iter().map(|(k, v)| (k.as_str(), v)).collect();
    ordered.sort_by_key(|(k, _)| {
        CHECK_ORDER
            .iter()
            .position(|o| o == k)
            .unwrap_or(usize::MAX)
    });
    let unacceptable = |key: &str, v: &AMQPValue| {
        invalid(
            key,
            queue,
            vhost,
            format!("{{unacceptable_type,{}}}", fields::type_name(v)),
        )
    };
    for (key, v) in ordered {
        match key {
            "x-dead-letter-routing-key" | "x-overflow" | "x-queue-mode" | "x-queue-type"
                if fields::as_str(v).is_none() =>
            {
                return Err(unacceptable(key, v));
            }
            "x-queue-version" | "x-quorum-initial-group-size" if fields::as_int(v).is_none() => {
                let why = format!("\"expected integer, got {}\"", fields::type_name(v));
                return Err(invalid(key, queue, vhost, why));
            }
            "x-queue-leader-locator" | "x-max-in-memory-length" | "x-max-in-memory-bytes"
                if qtype == "classic" =>
            {
                return Err(wrong_type(key));
            }
            "x-max-priority" | "x-queue-mode" | "x-queue-version" if qtype == "quorum" => {
                return Err(wrong_type(key));
            }
            "x-message-ttl" | "x-max-priority" | "x-dead-letter-exchange" if qtype == "stream" => {
                return Err(wrong_type(key));
            }
            "x-delivery-limit" | "x-max-age" if qtype == "classic" => return Err(wrong_type(key)),
            "x-delivery-limit"
            | "x-warren-delivery-limit"
            | "x-max-length"
            | "x-max-length-bytes"
            | "x-consumer-timeout" => {
                bounded_int(key, queue, vhost, v, true, None)?;
            }
            "x-message-ttl" => {
                bounded_int(key, queue, vhost, v, true, Some(MAX_EXPIRY))?;
            }
            "x-expires" => {
                bounded_int(key, queue, vhost, v, false, Some(MAX_EXPIRY))?;
            }
            "x-max-priority" => {
                let n = bounded_int(key, queue, vhost, v, true, None)?;
                if n > 255 {
                    return Err(invalid(
                        key,
                        queue,
                        vhost,
                        format!("{{max_value_exceeded,{n}}}"),
                    ));
                }
            }
            "x-overflow" => {
                let ok = fields::as_str(v).is_some_and(|s| {
                    matches!(
                        s.as_ref(),
                        "drop-head" | "reject-publish" | "reject-publish-dlx"
                    )
                });
                if !ok {
                    return Err(invalid(key, queue, vhost, "invalid_overflow".to_string()));
                }
            }
            "x-queue-mode" => match fields::as_str(v) {
                Some(s) if s == "default" || s == "lazy" => {}
                _ => {
                    let why = format!("\"unsupported queue mode '{}'\"", fields::display(v));
                    return Err(invalid(key, queue, vhost, why));
                }
            },
            "x-queue-version" => match fields::as_int(v) {
                Some(1) | Some(2) => {}
                _ => {
                    let why = format!("\"unsupported queue version '{}'\"", fields::display(v));
                    return Err(invalid(key, queue, vhost, why));
                }
            },
            "x-dead-letter-exchange" if fields::as_str(v).is_none() => {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid type '{}' for arg '{key}' in queue '{queue}' in vhost '{vhost}'",
                    fields::type_name(v)
                )));
            }
            // Both end up in short strings the broker writes (the exchange and routing key of a
            // dead-lettered message's deliveries): refuse what would not fit rather than cut it later.
            // RabbitMQ 3.10 accepts them and then fails the delivery with 541.
            "x-dead-letter-exchange" | "x-dead-letter-routing-key"
                if fields::as_str(v).is_some_and(|s| s.len() > SHORT_STR_MAX) =>
            {
                let n = fields::as_str(v).map_or(0, |s| s.len());
                return Err(invalid(
                    key,
                    queue,
                    vhost,
                    format!("{{value_too_long,{n}}}"),
                ));
            }
            "x-dead-letter-routing-key"
                if fields::get(args, "x-dead-letter-exchange").is_none() =>
            {
                let why = "routing_key_but_no_dlx_defined".to_string();
                return Err(invalid(key, queue, vhost, why));
            }
            "x-single-active-consumer" if fields::as_bool(v).is_none() => {
                let why = format!("{{unacceptable_type,{}}}", fields::type_name(v));
                return Err(invalid(key, queue, vhost, why));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(k: &str, v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(k.into(), v);
        t
    }

    #[test]
    fn texts() {
        let e = validate(
            "Q",
            "/",
            &args("x-message-ttl", AMQPValue::LongString("x".into())),
        )
        .unwrap_err();
        assert_eq!(e.text, "invalid arg 'x-message-ttl' for queue 'Q' in vhost '/': \"expected integer, got longstr\"");
        let e = validate("Q", "/", &args("x-expires", AMQPValue::LongInt(0))).unwrap_err();
        assert_eq!(
            e.text,
            "invalid arg 'x-expires' for queue 'Q' in vhost '/': {value_zero,0}"
        );
        let e = validate("Q", "/", &args("x-max-priority", AMQPValue::LongInt(256))).unwrap_err();
        assert_eq!(
            e.text,
            "invalid arg 'x-max-priority' for queue 'Q' in vhost '/': {max_value_exceeded,256}"
        );
        assert!(validate("Q", "/", &args("x-message-ttl", AMQPValue::LongInt(0))).is_ok());
        assert!(validate("Q", "/", &args("foo", AMQPValue::LongInt(0))).is_ok());
    }
}
