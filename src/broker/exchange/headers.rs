//! Headers exchange matching: x-match all / any / all-with-x / any-with-x over the binding's arguments, values
//! compared as Erlang's `==` does, and a void binding value testing presence only.

use crate::error::{AmqpError, AmqpResult};
use crate::protocol::fields;
use amq_protocol::types::{AMQPValue, FieldTable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

/// Read and validate the binding's x-match argument, with RabbitMQ's 406 texts.
pub fn parse_x_match(args: &FieldTable) -> AmqpResult<XMatch> {
    match fields::get(args, "x-match") {
        None => Ok(XMatch::All),
        Some(v) => match fields::as_str(v) {
            Some(s) => match s.as_ref() {
                "all" => Ok(XMatch::All),
                "any" => Ok(XMatch::Any),
                "all-with-x" => Ok(XMatch::AllWithX),
                "any-with-x" => Ok(XMatch::AnyWithX),
                other => Err(AmqpError::precondition_failed(format!(
                    "Invalid x-match field value <<\"{other}\">>; expected all, any, all-with-x, or any-with-x"
                ))),
            },
            None => Err(AmqpError::precondition_failed(format!(
                "Invalid x-match field type {} (value {}); expected longstr",
                fields::type_name(v),
                fields::display(v)
            ))),
        },
    }
}

/// Every binding whose arguments match the message's headers.
pub fn route<'a>(
    bindings: impl Iterator<Item = &'a super::Bound>,
    headers: Option<&FieldTable>,
    out: &mut impl FnMut(&super::Destination),
) {
    for b in bindings {
        if matches(&b.binding.arguments, b.xmatch, headers) {
            out(&b.binding.destination);
        }
    }
}

/// Does a message with `headers` match a binding with `args`? Linear in the binding's arguments (each a
/// map lookup in the headers): polynomial in what a client can send, whatever it declares.
pub fn matches(args: &FieldTable, kind: XMatch, headers: Option<&FieldTable>) -> bool {
    let with_x = matches!(kind, XMatch::AllWithX | XMatch::AnyWithX);
    let all = matches!(kind, XMatch::All | XMatch::AllWithX);
    let mut any_matched = false;
    for (k, pv) in args.inner() {
        let key = k.as_str();
        if key == "x-match" || (!with_x && key.starts_with("x-")) {
            continue;
        }
        let hit = match headers.and_then(|h| h.inner().get(key)) {
            None => false,
            Some(dv) => matches!(pv, AMQPValue::Void) || fields::erlang_eq(pv, dv),
        };
        if all && !hit {
            return false;
        }
        if !all && hit {
            return true;
        }
        any_matched |= hit;
    }
    all || any_matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn all_and_any() {
        let b = table(&[
            ("a", AMQPValue::LongInt(1)),
            ("b", AMQPValue::LongString("x".into())),
        ]);
        let h = table(&[
            ("a", AMQPValue::LongLongInt(1)),
            ("b", AMQPValue::LongString("x".into())),
        ]);
        assert!(matches(&b, XMatch::All, Some(&h)));
        let h2 = table(&[("a", AMQPValue::LongInt(1))]);
        assert!(!matches(&b, XMatch::All, Some(&h2)));
        assert!(matches(&b, XMatch::Any, Some(&h2)));
        assert!(!matches(&b, XMatch::Any, None));
    }

    #[test]
    fn empty_binding_and_x_keys() {
        let b = table(&[("x-match", AMQPValue::LongString("all".into()))]);
        assert!(matches(&b, XMatch::All, None));
        assert!(!matches(&b, XMatch::Any, None));
        let bx = table(&[("x-foo", AMQPValue::LongInt(1))]);
        let h = table(&[("x-foo", AMQPValue::LongInt(2))]);
        assert!(matches(&bx, XMatch::All, Some(&h)));
        assert!(!matches(&bx, XMatch::AllWithX, Some(&h)));
    }

    #[test]
    fn void_is_presence_and_strings_differ_from_ints() {
        let b = table(&[("k", AMQPValue::Void)]);
        assert!(matches(
            &b,
            XMatch::All,
            Some(&table(&[("k", AMQPValue::LongInt(9))]))
        ));
        let b = table(&[("k", AMQPValue::LongString("1".into()))]);
        assert!(!matches(
            &b,
            XMatch::All,
            Some(&table(&[("k", AMQPValue::LongInt(1))]))
        ));
    }

    #[test]
    fn x_match_validation_texts() {
        let bad = table(&[("x-match", AMQPValue::LongString("foo".into()))]);
        assert_eq!(
            parse_x_match(&bad).unwrap_err().text,
            "Invalid x-match field value <<\"foo\">>; expected all, any, all-with-x, or any-with-x"
        );
    }
}
