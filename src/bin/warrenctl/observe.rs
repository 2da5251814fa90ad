//! The verbs that steer and watch a broker under test: `advance_clock` (a virtual clock), `trace_on` /
//! `trace_off` (RabbitMQ's firehose), `journal`, `journal_on` and `journal_off` (Warren's message journal).

use crate::error::{exit, CtlError};
use crate::App;

/// Advance a virtual broker clock; prints the broker time afterwards (Unix ms).
pub fn advance_clock(app: &App, ms: u64) -> Result<(), CtlError> {
    app.banner(&format!("Advancing the broker clock by {ms} ms ..."));
    let body = serde_json::json!({ "ms": ms }).to_string();
    let answer = app
        .client
        .post("warren/clock/advance", body)
        .map_err(|e| app.fail(e))?;
    let now = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("now").and_then(serde_json::Value::as_u64));
    match now {
        Some(now) => {
            crate::out(&format!("{now}\n"));
            Ok(())
        }
        None => Err(CtlError::failed(
            exit::SOFTWARE,
            format!("unexpected answer from the broker: {answer}"),
        )),
    }
}

/// rabbitmqctl trace_on / trace_off: the vhost's `tracing` flag. A vhost PUT also sets its description and
/// tags (left out, they are cleared), so the current ones are sent back.
pub fn trace(app: &App, on: bool) -> Result<(), CtlError> {
    let vh = &app.vhost;
    app.banner(&format!(
        "{} tracing for vhost \"{vh}\" ...",
        if on { "Starting" } else { "Stopping" }
    ));
    let path = format!("vhosts/{}", crate::http::seg(vh));
    let current = app.client.get(&path).map_err(|e| app.fail(e))?;
    let mut body = serde_json::json!({ "tracing": on });
    for k in ["description", "tags"] {
        if let Some(v) = current.get(k) {
            body[k] = v.clone();
        }
    }
    app.client.put(&path, &body).map_err(|e| app.fail(e))?;
    app.info(&format!(
        "Trace {} for vhost {vh}",
        if on { "enabled" } else { "disabled" }
    ));
    Ok(())
}

/// Switch the message journal on or off, for the selected vhost or every one.
pub fn journal_switch(app: &App, on: bool, all: bool) -> Result<(), CtlError> {
    let mut body = serde_json::json!({ "enabled": on });
    if !all {
        body["vhost"] = serde_json::json!(app.vhost);
    }
    app.client
        .put("warren/journal", &body)
        .map_err(|e| app.fail(e))?;
    app.info(&format!(
        "Journal {} for {}",
        if on { "on" } else { "off" },
        if all {
            "every vhost".to_string()
        } else {
            format!("vhost {}", app.vhost)
        }
    ));
    Ok(())
}

/// One journal event as a line: time, event, where, and the event's own fields.
fn event_line(e: &serde_json::Value) -> String {
    let s = |k: &str| e.get(k).and_then(serde_json::Value::as_str);
    let time = e
        .get("time")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let (secs, ms) = (time / 1000, time % 1000);
    let mut line = format!(
        "{:02}:{:02}:{:02}.{ms:03} {}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        s("event").unwrap_or("?")
    );
    for (label, key) in [
        ("vhost", "vhost"),
        ("queue", "queue"),
        ("exchange", "exchange"),
        ("rk", "routing_key"),
        ("message_id", "message_id"),
        ("correlation_id", "correlation_id"),
    ] {
        if let Some(v) = s(key) {
            line.push_str(&format!(" {label}={v:?}"));
        }
    }
    const SHOWN: [&str; 10] = [
        "seq",
        "time",
        "event",
        "vhost",
        "queue",
        "exchange",
        "routing_key",
        "message_id",
        "correlation_id",
        "properties",
    ];
    if let Some(o) = e.as_object() {
        for (k, v) in o {
            if !SHOWN.contains(&k.as_str()) && !v.is_null() {
                line.push_str(&format!(" {k}={v}"));
            }
        }
    }
    line
}

/// List journal events (optionally waiting for a first match).
pub fn journal(app: &App, a: &crate::cli::JournalArgs) -> Result<(), CtlError> {
    let mut q: Vec<(String, String)> = Vec::new();
    if !a.all_vhosts {
        q.push(("vhost".into(), app.vhost.clone()));
    }
    for (k, v) in [
        ("message_id", &a.message_id),
        ("correlation_id", &a.correlation_id),
        ("queue", &a.queue),
        ("exchange", &a.exchange),
        ("event", &a.event),
    ] {
        if let Some(v) = v {
            q.push((k.into(), v.clone()));
        }
    }
    if let Some(n) = a.limit {
        q.push(("limit".into(), n.to_string()));
    }
    if let Some(w) = a.wait {
        q.push(("wait_ms".into(), w.to_string()));
    }
    let query: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::http::seg(v)))
        .collect();
    let path = format!("warren/journal?{}", query.join("&"));
    let answer = match app.client.get(&path) {
        Ok(v) => v,
        Err(e) if e.status() == Some(408) => {
            return Err(CtlError::failed(
                1,
                "no matching journal event came within the wait".to_string(),
            ));
        }
        Err(e) => return Err(app.fail(e)),
    };
    let events = answer
        .get("events")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    if app.json {
        crate::out(&format!("{}\n", serde_json::Value::Array(events)));
        return Ok(());
    }
    app.banner(&format!("Journal events ({}):", events.len()));
    for e in &events {
        crate::out(&format!("{}\n", event_line(e)));
    }
    Ok(())
}
