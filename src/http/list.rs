//! RabbitMQ's list machinery: default order (vhost, then name), `sort` / `sort_reverse` on any dotted field,
//! `name` filtering (case-insensitive substring, or a regex with `use_regex=true`) and pagination (`page`,
//! `page_size`; only when `page` is given) with its error bodies, and `columns` to trim objects.

use super::reply::{self, Reply, Result};
use super::Req;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The largest page RabbitMQ serves.
const MAX_PAGE_SIZE: u64 = 500;

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// RabbitMQ's ordering of values: numbers before strings, missing as 0.
fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let key = |v: Option<&Value>| -> (u8, f64, String) {
        match v {
            None | Some(Value::Null) => (0, 0.0, String::new()),
            Some(Value::Number(n)) => (0, n.as_f64().unwrap_or(0.0), String::new()),
            Some(Value::Bool(b)) => (1, f64::from(u8::from(*b)), String::new()),
            Some(Value::String(s)) => (2, 0.0, s.clone()),
            Some(other) => (3, 0.0, other.to_string()),
        }
    };
    let (a, b) = (key(a), key(b));
    a.0.cmp(&b.0)
        .then(a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal))
        .then_with(|| a.2.cmp(&b.2))
}

fn default_order(a: &Value, b: &Value) -> Ordering {
    cmp_values(a.get("vhost"), b.get("vhost"))
        .then_with(|| cmp_values(a.get("name"), b.get("name")))
}

/// Keep only `columns` (dotted paths select inside nested objects).
pub fn trim(v: Value, columns: &[String]) -> Value {
    let Value::Object(obj) = v else { return v };
    let mut out = Map::new();
    for c in columns {
        match c.split_once('.') {
            None => {
                if let Some(x) = obj.get(c.as_str()) {
                    out.insert(c.clone(), x.clone());
                }
            }
            Some((head, rest)) => match obj.get(head) {
                Some(inner @ Value::Object(_)) => {
                    let sub = trim(inner.clone(), &[rest.to_string()]);
                    match out.get_mut(head) {
                        Some(Value::Object(existing)) => {
                            if let Value::Object(m) = sub {
                                existing.extend(m);
                            }
                        }
                        _ => {
                            if sub.as_object().is_some_and(|m| !m.is_empty()) {
                                out.insert(head.to_string(), sub);
                            }
                        }
                    }
                }
                Some(x) => {
                    out.insert(head.to_string(), x.clone());
                }
                None => {}
            },
        }
    }
    Value::Object(out)
}

/// The `columns` query parameter, if any.
pub fn columns(r: &Req) -> Option<Vec<String>> {
    r.q("columns").map(|c| {
        c.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// Apply `columns` to a single object.
pub fn single(v: Value, r: &Req) -> Reply {
    match columns(r) {
        Some(cols) => Reply::json(&trim(v, &cols)),
        None => Reply::json(&v),
    }
}

/// Sort, filter, paginate and trim `items` as RabbitMQ does for queues, exchanges, vhosts, connections
/// and channels.
pub fn reply(mut items: Vec<Value>, r: &Req) -> Result {
    items.sort_by(default_order);
    if let Some(key) = r.q("sort").filter(|k| !k.is_empty()) {
        items.sort_by(|a, b| {
            cmp_values(field(a, key), field(b, key)).then_with(|| default_order(a, b))
        });
    }
    match r.q("sort_reverse") {
        None | Some("false") => {}
        Some("true") => items.reverse(),
        Some(_) => return Err(Reply::status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
    let cols = columns(r);
    let Some(page) = r.q("page") else {
        let items: Vec<Value> = match &cols {
            Some(c) => items.into_iter().map(|v| trim(v, c)).collect(),
            None => items,
        };
        return Ok(Reply::json(&Value::Array(items)));
    };
    let invalid = || reply::bad_request("Pagination parameters are invalid");
    let page: i64 = page.parse().map_err(|_| invalid())?;
    let page_size: Option<i64> = match r.q("page_size") {
        Some(s) => Some(s.parse().map_err(|_| invalid())?),
        None => None,
    };
    let size = page_size.unwrap_or(100);
    if page < 1 || size < 1 || size as u64 > MAX_PAGE_SIZE {
        let size_text = page_size.map_or("undefined".to_string(), |s| s.to_string());
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {size_text}"),
        ));
    }
    let total = items.len();
    if let Some(name) = r.q("name").filter(|n| !n.is_empty()) {
        if r.flag("use_regex") {
            let re = regex_lite::Regex::new(&format!("(?i){name}")).map_err(|_| invalid())?;
            items.retain(|v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| re.is_match(n))
            });
        } else {
            let needle = name.to_lowercase();
            items.retain(|v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.to_lowercase().contains(&needle))
            });
        }
    }
    let filtered = items.len();
    let (page, size) = (page as usize, size as usize);
    let page_count = filtered.div_ceil(size);
    if (page - 1) * size >= filtered && !(page == 1 && filtered == 0) {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "page_out_of_range",
            format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        ));
    }
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|v| match &cols {
            Some(c) => trim(v, c),
            None => v,
        })
        .collect();
    Ok(Reply::json(&serde_json::json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": page_items,
        "page": page,
        "page_count": page_count,
        "page_size": size,
        "total_count": total,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trims_dotted_columns() {
        let v = json!({"name": "q", "message_stats": {"publish": 3, "ack": 1}, "x": 1});
        assert_eq!(
            trim(v, &["name".into(), "message_stats.publish".into()]),
            json!({"name": "q", "message_stats": {"publish": 3}})
        );
    }

    #[test]
    fn numbers_sort_before_strings_and_missing_is_zero() {
        let mut v = [json!({"a": "x"}), json!({"a": 5}), json!({})];
        v.sort_by(|x, y| cmp_values(x.get("a"), y.get("a")));
        assert_eq!(v[0], json!({}));
        assert_eq!(v[2], json!({"a": "x"}));
    }
}
