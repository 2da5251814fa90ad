//! Value rendering: how one cell of a `list_*` result is printed by rabbitmqctl's default table
//! formatter and by `--formatter json`, and how whole result sets are framed (header line, the
//! streaming `[` / `,{…}` / `]` JSON framing). Pure functions over `serde_json::Value`, no I/O
//! beyond the `Write` they are handed.
//!
//! rabbitmqctl prints Erlang terms; the management API gives their JSON projection. The mapping
//! back (observed against RabbitMQ 3.10.8):
//! * AMQP tables (`arguments`, `client_properties`): table `[{"k",v},…]` with strings quoted, nested
//!   tables as `[{"k","v"}]`; JSON `[["k","type",v],…]` with the AMQP field type inferred from the
//!   JSON value (the API does not carry it).
//! * lists of names (user/vhost tags, quorum `members`): table `[a, b]`, JSON `["a","b"]`.
//! * `cluster_state`: table `[{node, running}]`, JSON `{"node":"running"}`.
//! * absent / `null` values (`undefined` in Erlang): empty string in both.

use serde_json::{Map, Value};
use std::io::{self, Write};

/// One rendered cell: knows its table text and its JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Plain scalar (string, number, bool) or absent (`Null` → empty).
    Scalar(Value),
    /// An AMQP field table (object in the API).
    Table(Map<String, Value>),
    /// A list of bare names: tags, nodes.
    Names(Vec<String>),
    /// Name → state pairs (`cluster_state`).
    Pairs(Vec<(String, String)>),
    /// JSON text shown verbatim in the table and as a JSON string (policy definitions).
    JsonText(String),
    /// An integer tuple: protocol version `{0,9,1}`.
    Tuple(Vec<i64>),
    /// An IP address: text in the table, an octet list in JSON (rabbitmqctl's inet tuple).
    Ip(String),
}

impl Cell {
    /// Cell for a possibly missing API field.
    pub fn of(v: Option<&Value>) -> Cell {
        Cell::Scalar(v.cloned().unwrap_or(Value::Null))
    }

    /// The table formatter's text for this cell.
    pub fn table_text(&self) -> String {
        match self {
            Cell::Scalar(v) => scalar_text(v),
            Cell::Table(m) => table_term(m),
            Cell::Names(ns) => format!("[{}]", ns.join(", ")),
            Cell::Pairs(ps) => {
                let inner: Vec<String> = ps.iter().map(|(k, v)| format!("{{{k}, {v}}}")).collect();
                format!("[{}]", inner.join(", "))
            }
            Cell::JsonText(t) => t.clone(),
            Cell::Tuple(xs) => {
                let inner: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                format!("{{{}}}", inner.join(","))
            }
            Cell::Ip(s) => s.clone(),
        }
    }

    /// The JSON formatter's text for this cell (text, not a `Value`: key order matters and
    /// serde_json's map would sort it).
    pub fn json_text(&self) -> String {
        match self {
            Cell::Scalar(Value::Null) => "\"\"".to_string(),
            Cell::Scalar(v) => v.to_string(),
            Cell::Table(m) => typed_table(m),
            Cell::Names(ns) => Value::from(ns.clone()).to_string(),
            Cell::Pairs(ps) => {
                let inner: Vec<String> = ps
                    .iter()
                    .map(|(k, v)| {
                        format!("{}:{}", Value::from(k.as_str()), Value::from(v.as_str()))
                    })
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Cell::JsonText(t) => Value::from(t.as_str()).to_string(),
            Cell::Tuple(xs) => Value::from(xs.clone()).to_string(),
            Cell::Ip(s) => ip_json(s).to_string(),
        }
    }
}

/// Scalars as the table formatter prints them: strings raw, `undefined` empty.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => term_value(v),
    }
}

/// An AMQP table as rabbitmqctl prints it: `[{"x-max-length",1000},{"x-queue-mode","lazy"}]`.
pub fn table_term(m: &Map<String, Value>) -> String {
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{{{},{}}}", quoted(k), term_value(v)))
        .collect();
    format!("[{}]", inner.join(","))
}

/// A value inside a table term: strings quoted, arrays `[…]`, nested tables as tables.
fn term_value(v: &Value) -> String {
    match v {
        Value::Null => "undefined".to_string(),
        Value::String(s) => quoted(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(xs) => {
            let inner: Vec<String> = xs.iter().map(term_value).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(m) => table_term(m),
    }
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The AMQP field type rabbitmqctl reports for a value; the API drops it, so it is inferred.
pub fn amqp_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "void",
        Value::Bool(_) => "bool",
        Value::String(_) => "longstr",
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => "signedint",
            Some(_) => "long",
            None if n.is_u64() => "long",
            None => "double",
        },
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    }
}

/// An AMQP table in rabbitmqctl's JSON shape: `[["k","type",v],…]`.
pub fn typed_table(m: &Map<String, Value>) -> String {
    let inner: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            format!(
                "[{},\"{}\",{}]",
                Value::from(k.as_str()),
                amqp_type(v),
                typed_value(v)
            )
        })
        .collect();
    format!("[{}]", inner.join(","))
}

/// Values nested in a typed table: tables recurse, arrays become `{"type":value,…}` objects (in
/// element order) the way rabbitmqctl's JSON encoder turns the Erlang `[{type, value}]` list into an object.
fn typed_value(v: &Value) -> String {
    match v {
        Value::Object(m) => typed_table(m),
        Value::Array(xs) => {
            let inner: Vec<String> = xs
                .iter()
                .map(|x| format!("\"{}\":{}", amqp_type(x), typed_value(x)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        other => other.to_string(),
    }
}

/// `127.0.0.1` → `[127,0,0,1]`; IPv6 → eight 16-bit groups; anything else stays a string.
pub fn ip_json(s: &str) -> Value {
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            Value::Array(a.octets().iter().map(|o| Value::from(*o)).collect())
        }
        Ok(std::net::IpAddr::V6(a)) => {
            Value::Array(a.segments().iter().map(|o| Value::from(*o)).collect())
        }
        Err(_) => Value::String(s.to_string()),
    }
}

/// `"AMQP 0-9-1"` → `{0,9,1}`; other protocol strings are kept as text.
pub fn protocol_cell(v: Option<&Value>) -> Cell {
    let Some(Value::String(s)) = v else {
        return Cell::of(v);
    };
    let version = s.strip_prefix("AMQP ").unwrap_or(s);
    let parts: Option<Vec<i64>> = version.split(['-', '.']).map(|p| p.parse().ok()).collect();
    match parts {
        Some(xs) if xs.len() >= 2 => Cell::Tuple(xs),
        _ => Cell::Scalar(Value::String(s.clone())),
    }
}

/// A JSON array of strings as a name list (missing → empty cell).
pub fn names_cell(v: Option<&Value>) -> Cell {
    match v {
        Some(Value::Array(xs)) => Cell::Names(xs.iter().map(scalar_text).collect()),
        // The API may give tags as a comma-separated string (older versions).
        Some(Value::String(s)) => Cell::Names(
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        other => Cell::of(other),
    }
}

/// A JSON object of AMQP fields (missing → `[]` as rabbitmqctl shows an empty table).
pub fn table_cell(v: Option<&Value>) -> Cell {
    match v {
        Some(Value::Object(m)) => Cell::Table(m.clone()),
        // Empty tables are sometimes serialised as `[]` by the Erlang JSON encoder.
        Some(Value::Array(xs)) if xs.is_empty() => Cell::Table(Map::new()),
        None | Some(Value::Null) => Cell::Table(Map::new()),
        Some(other) => Cell::Scalar(other.clone()),
    }
}

/// How a result set is framed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    /// rabbitmqctl streams these (queues, exchanges, …): nothing at all when empty, `[\n]` in JSON.
    Stream,
    /// rabbitmqctl returns these as one list (users, vhosts, permissions, policies): an empty line
    /// when empty, `[]` in JSON.
    List,
}

/// Output options that shape a table.
#[derive(Debug, Clone, Copy)]
pub struct TableOpts {
    pub json: bool,
    pub headers: bool,
    pub framing: Framing,
}

/// Write rows (cells in column order) the way rabbitmqctl's table or JSON formatter does.
pub fn write_rows(
    out: &mut dyn Write,
    columns: &[String],
    rows: &[Vec<Cell>],
    opts: TableOpts,
) -> io::Result<()> {
    if opts.json {
        if rows.is_empty() {
            return match opts.framing {
                Framing::Stream => out.write_all(b"[\n]\n"),
                Framing::List => out.write_all(b"[]\n"),
            };
        }
        out.write_all(b"[\n")?;
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(json_row(columns, row).as_bytes())?;
            out.write_all(b"\n")?;
        }
        return out.write_all(b"]\n");
    }
    if rows.is_empty() {
        return match opts.framing {
            Framing::Stream => Ok(()),
            Framing::List => out.write_all(b"\n"),
        };
    }
    if opts.headers {
        writeln!(out, "{}", columns.join("\t"))?;
    }
    for row in rows {
        let texts: Vec<String> = row.iter().map(Cell::table_text).collect();
        writeln!(out, "{}", texts.join("\t"))?;
    }
    Ok(())
}

/// One JSON object with keys in column order (serde_json's map would sort them).
pub fn json_row(columns: &[String], row: &[Cell]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(row)
        .map(|(c, cell)| format!("{}:{}", Value::String(c.clone()), cell.json_text()))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Float text the way Erlang prints rounded figures: `0.0`, `56.04`, `10.1105`.
pub fn erl_float(x: f64, decimals: i32) -> String {
    let scale = 10f64.powi(decimals);
    let r = (x * scale).round() / scale;
    let s = format!("{r}");
    if s.contains('.') || s.contains('e') || !r.is_finite() {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test fixture is an object"),
        }
    }

    #[test]
    fn arguments_table_text_matches_rabbitmqctl() {
        // Captured: GET /api/queues/%2F/q1 arguments, and rabbitmqctl's rendering of the same queue.
        let args = obj(
            json!({"x-bool":true,"x-dead-letter-exchange":"ex1","x-list":[1,"a"],
            "x-max-length":1000,"x-message-ttl":600000,"x-queue-mode":"lazy","x-tab":{"k":"v"}}),
        );
        assert_eq!(
            Cell::Table(args).table_text(),
            r#"[{"x-bool",true},{"x-dead-letter-exchange","ex1"},{"x-list",[1,"a"]},{"x-max-length",1000},{"x-message-ttl",600000},{"x-queue-mode","lazy"},{"x-tab",[{"k","v"}]}]"#
        );
        assert_eq!(table_cell(None).table_text(), "[]");
        assert_eq!(table_cell(Some(&json!([]))).table_text(), "[]");
    }

    #[test]
    fn arguments_json_is_typed_triples() {
        let args = obj(
            json!({"x-bool":true,"x-list":[1,"a"],"x-max-length":1000,"x-tab":{"k":"v"},
            "x-big":5000000000i64,"x-f":1.5}),
        );
        assert_eq!(
            Cell::Table(args).json_text(),
            r#"[["x-big","long",5000000000],["x-bool","bool",true],["x-f","double",1.5],["x-list","array",{"signedint":1,"longstr":"a"}],["x-max-length","signedint",1000],["x-tab","table",[["k","longstr","v"]]]]"#
        );
        assert_eq!(table_cell(None).json_text(), "[]");
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        let args = obj(json!({"a\"b": "c\\d"}));
        assert_eq!(Cell::Table(args).table_text(), r#"[{"a\"b","c\\d"}]"#);
    }

    #[test]
    fn names_pairs_and_scalars() {
        assert_eq!(
            names_cell(Some(&json!(["management", "policymaker"]))).table_text(),
            "[management, policymaker]"
        );
        assert_eq!(names_cell(Some(&json!([]))).table_text(), "[]");
        assert_eq!(
            names_cell(Some(&json!("a, b,,c"))).json_text(),
            r#"["a","b","c"]"#
        );
        let cs = Cell::Pairs(vec![("ref5681@localhost".into(), "running".into())]);
        assert_eq!(cs.table_text(), "[{ref5681@localhost, running}]");
        assert_eq!(cs.json_text(), r#"{"ref5681@localhost":"running"}"#);
        assert_eq!(Cell::of(None).table_text(), "");
        assert_eq!(Cell::of(Some(&Value::Null)).json_text(), r#""""#);
        assert_eq!(Cell::of(Some(&json!(1.0))).table_text(), "1.0");
        assert_eq!(Cell::of(Some(&json!(0))).table_text(), "0");
        assert_eq!(Cell::of(Some(&json!(false))).table_text(), "false");
    }

    #[test]
    fn protocol_and_ip() {
        let p = protocol_cell(Some(&json!("AMQP 0-9-1")));
        assert_eq!(p.table_text(), "{0,9,1}");
        assert_eq!(p.json_text(), "[0,9,1]");
        assert_eq!(protocol_cell(Some(&json!("MQTT"))).table_text(), "MQTT");
        let ip = Cell::Ip("127.0.0.1".into());
        assert_eq!(ip.table_text(), "127.0.0.1");
        assert_eq!(ip.json_text(), "[127,0,0,1]");
        assert_eq!(ip_json("::1"), json!([0, 0, 0, 0, 0, 0, 0, 1]));
    }

    fn render(rows: &[Vec<Cell>], json: bool, headers: bool, framing: Framing) -> String {
        let cols = vec!["name".to_string(), "messages".to_string()];
        let mut out = Vec::new();
        write_rows(
            &mut out,
            &cols,
            rows,
            TableOpts {
                json,
                headers,
                framing,
            },
        )
        .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn framing_matches_rabbitmqctl() {
        let rows = vec![
            vec![Cell::of(Some(&json!("q3"))), Cell::of(Some(&json!(0)))],
            vec![Cell::of(Some(&json!("q\tx"))), Cell::of(Some(&json!(6)))],
        ];
        assert_eq!(
            render(&rows, false, true, Framing::Stream),
            "name\tmessages\nq3\t0\nq\tx\t6\n"
        );
        assert_eq!(
            render(&rows, false, false, Framing::Stream),
            "q3\t0\nq\tx\t6\n"
        );
        assert_eq!(
            render(&rows, true, true, Framing::Stream),
            "[\n{\"name\":\"q3\",\"messages\":0}\n,{\"name\":\"q\\tx\",\"messages\":6}\n]\n"
        );
        assert_eq!(render(&[], false, true, Framing::Stream), "");
        assert_eq!(render(&[], false, true, Framing::List), "\n");
        assert_eq!(render(&[], true, true, Framing::Stream), "[\n]\n");
        assert_eq!(render(&[], true, true, Framing::List), "[]\n");
    }

    #[test]
    fn json_row_keeps_column_order() {
        let cols = vec!["z".to_string(), "a".to_string()];
        let row = vec![Cell::of(Some(&json!(1))), Cell::Names(vec!["x".into()])];
        assert_eq!(json_row(&cols, &row), r#"{"z":1,"a":["x"]}"#);
    }

    #[test]
    fn erlang_style_floats() {
        assert_eq!(erl_float(0.0, 4), "0.0");
        assert_eq!(erl_float(0.13751, 4), "0.1375");
        assert_eq!(erl_float(56.0449, 2), "56.04");
        assert_eq!(erl_float(2.0, 2), "2.0");
    }
}
