//! Field-table helpers: RabbitMQ's names for value types, the value formatting used in its error texts, and
//! the comparisons it applies (integer types compare as one class for equivalence checks; headers-exchange
//! matching compares by value as Erlang's `==` does).

use amq_protocol::types::{AMQPValue, FieldTable};

/// RabbitMQ's name for a field value's type, as it appears in 406 texts.
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// The integer value of any integer-typed field.
pub fn as_int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => *n as i64,
        AMQPValue::ShortShortUInt(n) => *n as i64,
        AMQPValue::ShortInt(n) => *n as i64,
        AMQPValue::ShortUInt(n) => *n as i64,
        AMQPValue::LongInt(n) => *n as i64,
        AMQPValue::LongUInt(n) => *n as i64,
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

pub fn as_str(v: &AMQPValue) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        _ => None,
    }
}

pub fn as_bool(v: &AMQPValue) -> Option<bool> {
    match v {
        AMQPValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// A value as RabbitMQ prints it inside quotes in error texts.
pub fn display(v: &AMQPValue) -> String {
    if let Some(n) = as_int(v) {
        return n.to_string();
    }
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            as_str(v).unwrap_or_default().into_owned()
        }
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        AMQPValue::Timestamp(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

/// Type class used by equivalence checks: all integer widths are one class.
fn class(v: &AMQPValue) -> &'static str {
    if as_int(v).is_some() {
        "int"
    } else {
        type_name(v)
    }
}

/// Equality for argument equivalence: same type class and same value.
pub fn equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    if class(a) != class(b) {
        return false;
    }
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (as_str(a), as_str(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn as_number(v: &AMQPValue) -> Option<f64> {
    if let Some(n) = as_int(v) {
        return Some(n as f64);
    }
    match v {
        AMQPValue::Float(f) => Some(*f as f64),
        AMQPValue::Double(f) => Some(*f),
        // RabbitMQ decodes a timestamp to a plain integer, so it compares as one.
        AMQPValue::Timestamp(t) => Some(*t as f64),
        _ => None,
    }
}

/// The bytes of a string-like value (long string, short string, byte array: all binaries in RabbitMQ).
fn as_binary(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

/// Erlang `==` on decoded header values: numbers compare by value across widths, strings by bytes.
pub fn erlang_eq(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => match (as_binary(a), as_binary(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a == b,
            _ => false,
        },
        _ => false,
    }
}

pub fn get<'a>(t: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    t.inner().get(key)
}

/// How a received value compares to the current one, in RabbitMQ's equivalence error wording.
pub fn describe_arg(v: Option<&AMQPValue>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => format!("the value '{}' of type '{}'", display(v), type_name(v)),
    }
}

/// Convert a JSON value (definitions files, management API) to a field value the way RabbitMQ does:
/// integers become signed 64-bit, other numbers doubles, strings long strings, objects tables.
pub fn from_json(v: &serde_json::Value) -> AMQPValue {
    use serde_json::Value;
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        Value::Array(a) => {
            AMQPValue::FieldArray(a.iter().map(from_json).collect::<Vec<_>>().into())
        }
        Value::Object(_) => AMQPValue::FieldTable(table_from_json(v)),
    }
}

/// A JSON object as a field table (anything else gives an empty table).
pub fn table_from_json(v: &serde_json::Value) -> FieldTable {
    let mut t = FieldTable::default();
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            if let Ok(key) = amq_protocol::types::ShortString::try_new(k.as_str()) {
                t.insert(key, from_json(v));
            }
        }
    }
    t
}

/// A field value as the management API and definitions show it: numbers as numbers, strings (and byte
/// arrays that are valid UTF-8) as strings, tables as objects, arrays as arrays, void as null.
pub fn to_json(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Value::from(*f as f64),
        AMQPValue::Double(f) => Value::from(*f),
        AMQPValue::DecimalValue(d) => Value::from(d.value as f64 / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(to_json).collect()),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// A field table as a JSON object.
pub fn table_to_json(t: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
            .collect(),
    )
}

/// `t` in its wire encoding (length prefix included); `None` only for a table no decoder produced.
pub fn encode_table(t: &FieldTable) -> Option<Box<[u8]>> {
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    amq_protocol::types::generation::gen_field_table(t)(ctx)
        .ok()
        .map(|ctx| ctx.into_inner().0.into_boxed_slice())
}

/// A field table kept in its wire encoding, for tables held long and read rarely (a connection's client
/// properties): parsed, a client's dozen properties with their capabilities took ~1.5 KB; encoded, a
/// fifth of that.
#[derive(Debug, Clone, Default)]
pub struct EncodedTable(Box<[u8]>);

impl EncodedTable {
    pub fn new(t: &FieldTable) -> EncodedTable {
        EncodedTable(encode_table(t).unwrap_or_default())
    }

    pub fn table(&self) -> FieldTable {
        amq_protocol::types::parsing::parse_field_table(&self.0[..])
            .map(|(_, t)| t)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_table_reads_back_as_it_was() {
        let mut caps = FieldTable::default();
        caps.insert("basic.nack".into(), AMQPValue::Boolean(true));
        let mut t = FieldTable::default();
        t.insert("product".into(), AMQPValue::LongString("pika".into()));
        t.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        t.insert("n".into(), AMQPValue::LongLongInt(-3));
        let e = EncodedTable::new(&t);
        assert_eq!(e.table(), t);
        assert_eq!(EncodedTable::default().table(), FieldTable::default());
    }

    #[test]
    fn integer_widths_are_equivalent() {
        assert!(equivalent(
            &AMQPValue::ShortInt(5),
            &AMQPValue::LongLongInt(5)
        ));
        assert!(!equivalent(&AMQPValue::LongInt(5), &AMQPValue::LongInt(6)));
        assert!(!equivalent(
            &AMQPValue::LongInt(5),
            &AMQPValue::LongString("5".into())
        ));
    }

    #[test]
    fn erlang_equality() {
        assert!(erlang_eq(
            &AMQPValue::LongInt(1),
            &AMQPValue::LongLongInt(1)
        ));
        assert!(erlang_eq(&AMQPValue::LongInt(1), &AMQPValue::Double(1.0)));
        assert!(!erlang_eq(
            &AMQPValue::LongString("1".into()),
            &AMQPValue::LongInt(1)
        ));
        assert!(erlang_eq(
            &AMQPValue::LongString("a".into()),
            &AMQPValue::ShortString("a".into())
        ));
    }

    #[test]
    fn describe() {
        assert_eq!(
            describe_arg(Some(&AMQPValue::LongInt(1000))),
            "the value '1000' of type 'signedint'"
        );
        assert_eq!(describe_arg(None), "none");
    }
}
