//! Policies and operator policies: per-vhost rules that set queue and exchange behaviour by name pattern.
//! Only the highest-priority matching policy applies to an object; an operator policy is merged on top with the
//! stricter value winning. How a policy combines with the object's own x-arguments follows RabbitMQ: the lower
//! value wins for TTLs and lengths, the argument wins for dead-lettering and overflow.

use crate::queue::args::{Overflow, QueueConfig, QueueType};
use serde_json::Value;

pub use crate::config::{ApplyTo, PolicyDef};

#[derive(Debug, Clone)]
pub struct Policy {
    pub def: PolicyDef,
    regex: regex_lite::Regex,
}

impl Policy {
    pub fn new(def: PolicyDef) -> Result<Policy, String> {
        let regex = regex_lite::Regex::new(&def.pattern).map_err(|e| {
            format!(
                "invalid pattern '{}' in policy '{}': {e}",
                def.pattern, def.name
            )
        })?;
        for (k, v) in &def.definition {
            validate_key(k, v).map_err(|e| format!("policy '{}': {e}", def.name))?;
        }
        Ok(Policy { def, regex })
    }

    pub fn name(&self) -> &str {
        &self.def.name
    }

    fn applies(&self, name: &str, to_queue: bool) -> bool {
        let kind_ok = match self.def.apply_to {
            ApplyTo::All => true,
            ApplyTo::Queues => to_queue,
            ApplyTo::Exchanges => !to_queue,
        };
        kind_ok && self.regex.is_match(name)
    }

    fn int(&self, key: &str) -> Option<u64> {
        self.def.definition.get(key).and_then(Value::as_u64)
    }

    fn string(&self, key: &str) -> Option<String> {
        self.def
            .definition
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

fn validate_key(k: &str, v: &Value) -> Result<(), String> {
    let int_keys = [
        "message-ttl",
        "expires",
        "max-length",
        "max-length-bytes",
        "delivery-limit",
        "consumer-timeout",
    ];
    let str_keys = [
        "dead-letter-exchange",
        "dead-letter-routing-key",
        "alternate-exchange",
    ];
    if int_keys.contains(&k) && v.as_u64().is_none() {
        return Err(format!("{k} must be a non-negative integer"));
    }
    if str_keys.contains(&k) && !v.is_string() {
        return Err(format!("{k} must be a string"));
    }
    // Exchange names and routing keys are short strings: longer ones could never be written out.
    if str_keys.contains(&k)
        && v.as_str()
            .is_some_and(|s| s.len() > crate::queue::args::SHORT_STR_MAX)
    {
        return Err(format!("{k} must be at most 255 bytes"));
    }
    if k == "overflow"
        && !matches!(
            v.as_str(),
            Some("drop-head" | "reject-publish" | "reject-publish-dlx")
        )
    {
        return Err("overflow must be drop-head, reject-publish or reject-publish-dlx".into());
    }
    if k == "expires" && v.as_u64() == Some(0) {
        return Err("expires must be positive".into());
    }
    Ok(())
}

/// The policy that applies to an object: the highest priority among those that match (the first on a tie).
pub fn select<'a>(policies: &'a [Policy], name: &str, to_queue: bool) -> Option<&'a Policy> {
    let mut best: Option<&Policy> = None;
    for p in policies.iter().filter(|p| p.applies(name, to_queue)) {
        if best.is_none_or(|b| p.def.priority > b.def.priority) {
            best = Some(p);
        }
    }
    best
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// A queue's effective configuration: its arguments, then its policy, then an operator policy.
pub fn queue_config(
    args: QueueConfig,
    policy: Option<&Policy>,
    operator: Option<&Policy>,
) -> QueueConfig {
    let mut c = args;
    if let Some(p) = policy {
        c.message_ttl = min_opt(c.message_ttl, p.int("message-ttl"));
        c.expires = min_opt(c.expires, p.int("expires"));
        c.max_length = min_opt(c.max_length, p.int("max-length"));
        c.max_length_bytes = min_opt(c.max_length_bytes, p.int("max-length-bytes"));
        c.consumer_timeout = min_opt(c.consumer_timeout, p.int("consumer-timeout"));
        if c.dead_letter_exchange.is_none() {
            c.dead_letter_exchange = p.string("dead-letter-exchange");
        }
        if c.dead_letter_routing_key.is_none() {
            c.dead_letter_routing_key = p.string("dead-letter-routing-key");
        }
        if !c.overflow_set {
            c.overflow = match p.string("overflow").as_deref() {
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => c.overflow,
            };
        }
        if c.queue_type == QueueType::Quorum {
            c.delivery_limit = min_opt(c.delivery_limit, p.int("delivery-limit"));
        }
    }
    if let Some(op) = operator {
        c.message_ttl = min_opt(c.message_ttl, op.int("message-ttl"));
        c.expires = min_opt(c.expires, op.int("expires"));
        c.max_length = min_opt(c.max_length, op.int("max-length"));
        c.max_length_bytes = min_opt(c.max_length_bytes, op.int("max-length-bytes"));
        if c.queue_type == QueueType::Quorum {
            c.delivery_limit = min_opt(c.delivery_limit, op.int("delivery-limit"));
        }
    }
    c
}

/// An exchange's alternate exchange: its argument, else its policy's.
pub fn alternate_exchange(arg: Option<String>, policy: Option<&Policy>) -> Option<String> {
    arg.or_else(|| policy.and_then(|p| p.string("alternate-exchange")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, pattern: &str, priority: i64, def: Value) -> Policy {
        Policy::new(PolicyDef {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to: ApplyTo::Queues,
            priority,
            definition: def.as_object().unwrap().clone(),
        })
        .unwrap()
    }

    #[test]
    fn highest_priority_wins_and_args_combine() {
        let ps = vec![
            policy("low", "^q", 0, serde_json::json!({"message-ttl": 100})),
            policy(
                "high",
                "^q\\.",
                5,
                serde_json::json!({"message-ttl": 5000, "dead-letter-exchange": "p-dlx"}),
            ),
        ];
        let p = select(&ps, "q.a", true).unwrap();
        assert_eq!(p.name(), "high");
        assert!(select(&ps, "x", true).is_none());
        let args = QueueConfig {
            message_ttl: Some(1000),
            dead_letter_exchange: Some("arg-dlx".into()),
            ..Default::default()
        };
        let c = queue_config(args, Some(p), None);
        assert_eq!(c.message_ttl, Some(1000));
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("arg-dlx"));
        let op = policy("op", ".*", 0, serde_json::json!({"message-ttl": 10}));
        assert_eq!(
            queue_config(QueueConfig::default(), Some(p), Some(&op)).message_ttl,
            Some(10)
        );
    }

    #[test]
    fn bad_definitions_are_refused() {
        let r = Policy::new(PolicyDef {
            vhost: "/".into(),
            name: "p".into(),
            pattern: "(".into(),
            apply_to: ApplyTo::All,
            priority: 0,
            definition: serde_json::Map::new(),
        });
        assert!(r.is_err());
    }
}
