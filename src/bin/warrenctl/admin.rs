//! Verbs that change the broker: virtual hosts, users and their tags and passwords, permissions,
//! (operator) policies, purging and deleting queues, closing connections. Each prints
//! rabbitmqctl's banner and maps the management API's answers onto rabbitmqctl's messages and
//! exit codes; where the API's semantics differ (PUT is create-or-update, DELETE of something
//! absent is 404) it reads first so the outcome matches rabbitmqctl's.

use crate::cli::PolicyArgs;
use crate::error::{exit, CtlError};
use crate::http::{seg, ApiError};
use crate::App;
use serde_json::{json, Map, Value};
use std::io::BufRead;

pub fn add_vhost(
    app: &App,
    vhost: &str,
    description: Option<String>,
    tags: Option<String>,
    default_queue_type: Option<String>,
) -> Result<(), CtlError> {
    if vhost.is_empty() {
        return Err(CtlError::BadArgument(
            "vhost cannot be an empty string".into(),
        ));
    }
    app.banner(&format!("Adding vhost \"{vhost}\" ..."));
    // rabbitmqctl leaves an existing vhost as it is; a PUT would update its metadata.
    if app.get_opt(&format!("vhosts/{}", seg(vhost)))?.is_some() {
        return Ok(());
    }
    let mut body = Map::new();
    if let Some(d) = description {
        body.insert("description".into(), Value::String(d));
    }
    if let Some(t) = tags {
        body.insert("tags".into(), Value::String(t));
    }
    if let Some(q) = default_queue_type {
        // 3.10 reads `defaultqueuetype`, later versions `default_queue_type`; each ignores the other.
        body.insert("defaultqueuetype".into(), Value::String(q.clone()));
        body.insert("default_queue_type".into(), Value::String(q));
    }
    app.client
        .put(&format!("vhosts/{}", seg(vhost)), &Value::Object(body))
        .map_err(|e| app.fail(e))
}

pub fn delete_vhost(app: &App, vhost: &str) -> Result<(), CtlError> {
    app.banner(&format!("Deleting vhost \"{vhost}\" ..."));
    match app.client.delete(&format!("vhosts/{}", seg(vhost)), &[]) {
        Err(e) if e.is_not_found() => Err(CtlError::no_vhost(vhost)),
        other => other.map_err(|e| app.fail(e)),
    }
}

/// The password argument, or a line from standard input when it was omitted.
fn password_or_stdin(app: &App, password: Option<String>) -> Result<String, CtlError> {
    if let Some(p) = password {
        return Ok(p);
    }
    app.info("Password: ");
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
        _ => Err(CtlError::failed(
            exit::DATAERR,
            "Password is not provided via argument or stdin",
        )),
    }
}

fn no_user(user: &str) -> CtlError {
    CtlError::failed(exit::NOUSER, format!("User \"{user}\" does not exist"))
}

/// GET a user, with rabbitmqctl's "does not exist" error.
fn existing_user(app: &App, user: &str) -> Result<Value, CtlError> {
    app.get_opt(&format!("users/{}", seg(user)))?
        .ok_or_else(|| no_user(user))
}

/// A user's tags as the comma-separated string PUT accepts (the API gives a list, or a string before 3.9).
fn tags_text(user: &Value) -> String {
    match user.get("tags") {
        Some(Value::Array(xs)) => xs
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn add_user(app: &App, user: &str, password: Option<String>) -> Result<(), CtlError> {
    if user.is_empty() {
        return Err(CtlError::BadArgument(
            "user cannot be an empty string".into(),
        ));
    }
    app.banner(&format!("Adding user \"{user}\" ..."));
    let password = password_or_stdin(app, password)?;
    // PUT would silently update an existing user; rabbitmqctl refuses.
    if app.get_opt(&format!("users/{}", seg(user)))?.is_some() {
        return Err(CtlError::failed(
            exit::SOFTWARE,
            format!("User \"{user}\" already exists"),
        ));
    }
    let body = if password.is_empty() {
        // A blank password disables password login, as with rabbitmqctl.
        json!({"password_hash": "", "tags": ""})
    } else {
        json!({"password": password, "tags": ""})
    };
    app.client
        .put(&format!("users/{}", seg(user)), &body)
        .map_err(|e| app.fail(e))?;
    app.info(
        "Done. Don't forget to grant the user permissions to some virtual hosts! See 'warrenctl help set_permissions' to learn more.",
    );
    Ok(())
}

pub fn delete_user(app: &App, user: &str) -> Result<(), CtlError> {
    app.banner(&format!("Deleting user \"{user}\" ..."));
    match app.client.delete(&format!("users/{}", seg(user)), &[]) {
        Err(e) if e.is_not_found() => Err(no_user(user)),
        other => other.map_err(|e| app.fail(e)),
    }
}

pub fn change_password(app: &App, user: &str, password: Option<String>) -> Result<(), CtlError> {
    app.banner(&format!("Changing password for user \"{user}\" ..."));
    let password = password_or_stdin(app, password)?;
    let current = existing_user(app, user)?;
    // PUT replaces the whole user: keep its tags (mandatory).
    let body = json!({"password": password, "tags": tags_text(&current)});
    put_user(app, user, body, &current)
}

pub fn set_user_tags(app: &App, user: &str, tags: &[String]) -> Result<(), CtlError> {
    app.banner(&format!(
        "Setting tags for user \"{user}\" to [{}] ...",
        tags.join(", ")
    ));
    let current = existing_user(app, user)?;
    // A PUT without a password would clear it: send the stored hash back.
    let mut body = json!({
        "password_hash": current.get("password_hash").cloned().unwrap_or(Value::from("")),
        "tags": tags.join(","),
    });
    if let Some(algo) = current.get("hashing_algorithm").filter(|a| a.is_string()) {
        body["hashing_algorithm"] = algo.clone();
    }
    put_user(app, user, body, &current)
}

/// PUT an existing user back; PUT replaces the whole user, so its limits are carried over.
fn put_user(app: &App, user: &str, mut body: Value, current: &Value) -> Result<(), CtlError> {
    if let Some(limits) = current
        .get("limits")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        body["limits"] = limits.clone();
    }
    app.client
        .put(&format!("users/{}", seg(user)), &body)
        .map_err(|e| app.fail(e))
}

/// Which of user / vhost is missing, as rabbitmqctl reports it (user checked first).
fn missing_user_or_vhost(app: &App, user: &str) -> Result<Option<CtlError>, CtlError> {
    if app.get_opt(&format!("users/{}", seg(user)))?.is_none() {
        return Ok(Some(CtlError::failed(
            exit::NOUSER,
            format!("User {user} does not exist"),
        )));
    }
    if app
        .get_opt(&format!("vhosts/{}", seg(&app.vhost)))?
        .is_none()
    {
        let vhost = &app.vhost;
        return Ok(Some(CtlError::failed(
            exit::UNAVAILABLE,
            format!("Virtual host {vhost} does not exist"),
        )));
    }
    Ok(None)
}

pub fn set_permissions(
    app: &App,
    user: &str,
    [conf, write, read]: [String; 3],
) -> Result<(), CtlError> {
    app.banner(&format!(
        "Setting permissions for user \"{user}\" in vhost \"{}\" ...",
        app.vhost
    ));
    let path = format!("permissions/{}/{}", seg(&app.vhost), seg(user));
    let body = json!({"configure": conf, "write": write, "read": read});
    match app.client.put(&path, &body) {
        Ok(()) => Ok(()),
        Err(
            e @ ApiError::Status {
                status: 400 | 404, ..
            },
        ) => match missing_user_or_vhost(app, user)? {
            Some(missing) => Err(missing),
            None => Err(app.fail(e)),
        },
        Err(e) => Err(app.fail(e)),
    }
}

pub fn clear_permissions(app: &App, user: &str) -> Result<(), CtlError> {
    app.banner(&format!(
        "Clearing permissions for user \"{user}\" in vhost \"{}\" ...",
        app.vhost
    ));
    let path = format!("permissions/{}/{}", seg(&app.vhost), seg(user));
    match app.client.delete(&path, &[]) {
        Ok(()) => Ok(()),
        // Nothing to clear is success for rabbitmqctl, unless the user or vhost is missing.
        Err(e) if e.is_not_found() => match missing_user_or_vhost(app, user)? {
            Some(missing) => Err(missing),
            None => Ok(()),
        },
        Err(e) => Err(app.fail(e)),
    }
}

/// User policies or operator policies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyKind {
    User,
    Operator,
}

impl PolicyKind {
    fn path(self, vhost: &str, name: &str) -> String {
        let base = match self {
            PolicyKind::User => "policies",
            PolicyKind::Operator => "operator-policies",
        };
        format!("{base}/{}/{}", seg(vhost), seg(name))
    }
}

pub fn set_policy(app: &App, kind: PolicyKind, p: &PolicyArgs) -> Result<(), CtlError> {
    let what = match kind {
        PolicyKind::User => "policy",
        PolicyKind::Operator => "operator policy override",
    };
    app.banner(&format!(
        "Setting {what} \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{}\" ...",
        p.name, p.pattern, p.definition, p.priority, app.vhost
    ));
    let definition: Value = serde_json::from_str(&p.definition).map_err(|e| {
        CtlError::failed(
            exit::UNAVAILABLE,
            format!("JSON decoding error. Reason: {e}"),
        )
    })?;
    let body = json!({
        "pattern": p.pattern,
        "definition": definition,
        "priority": p.priority,
        "apply-to": p.apply_to,
    });
    match app.client.put(&kind.path(&app.vhost, &p.name), &body) {
        Err(e) if e.is_not_found() => Err(CtlError::no_vhost(&app.vhost)),
        other => other.map_err(|e| app.fail(e)),
    }
}

pub fn clear_policy(app: &App, kind: PolicyKind, name: &str) -> Result<(), CtlError> {
    let what = match kind {
        PolicyKind::User => "policy",
        PolicyKind::Operator => "operator policy",
    };
    app.banner(&format!(
        "Clearing {what} \"{name}\" on vhost \"{}\" ...",
        app.vhost
    ));
    match app.client.delete(&kind.path(&app.vhost, name), &[]) {
        Err(e) if e.is_not_found() => Err(CtlError::failed(
            exit::UNAVAILABLE,
            "Parameter does not exist",
        )),
        other => other.map_err(|e| app.fail(e)),
    }
}

pub fn purge_queue(app: &App, queue: &str) -> Result<(), CtlError> {
    app.banner(&format!(
        "Purging queue '{queue}' in vhost '{}' ...",
        app.vhost
    ));
    let path = format!("queues/{}/{}/contents", seg(&app.vhost), seg(queue));
    match app.client.delete(&path, &[]) {
        Err(e) if e.is_not_found() => Err(CtlError::failed(exit::UNAVAILABLE, "not_found")),
        other => other.map_err(|e| app.fail(e)),
    }
}

/// The `delete_queue` banner's condition suffix.
fn delete_conditions(if_empty: bool, if_unused: bool) -> &'static str {
    match (if_empty, if_unused) {
        (false, false) => "",
        (true, false) => "if queue is empty ",
        (false, true) => "if queue is unused ",
        (true, true) => "if queue is empty and if queue is unused ",
    }
}

pub fn delete_queue(
    app: &App,
    queue: &str,
    if_empty: bool,
    if_unused: bool,
) -> Result<(), CtlError> {
    let cond = delete_conditions(if_empty, if_unused);
    app.banner(&format!(
        "Deleting queue '{queue}' on vhost '{}' {cond}...",
        app.vhost
    ));
    let path = format!("queues/{}/{}", seg(&app.vhost), seg(queue));
    let not_found = || CtlError::failed(exit::USAGE, "Queue not found");
    // The API's DELETE does not report the message count rabbitmqctl prints: read it first.
    let ready = app
        .get_opt(&path)?
        .ok_or_else(not_found)?
        .get("messages_ready")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut query = Vec::new();
    if if_empty {
        query.push("if-empty=true");
    }
    if if_unused {
        query.push("if-unused=true");
    }
    let full = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    match app.client.delete(&full, &[]) {
        Ok(()) => {
            crate::out(&format!(
                "Queue was successfully deleted with {ready} ready messages\n"
            ));
            Ok(())
        }
        Err(e) if e.is_not_found() => Err(not_found()),
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) if reason.contains("in use") => Err(CtlError::failed(exit::USAGE, "Queue is in use")),
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) if reason.contains("not empty") => {
            Err(CtlError::failed(exit::USAGE, "Queue is not empty"))
        }
        Err(e) => Err(app.fail(e)),
    }
}

pub fn close_connection(app: &App, connection: &str, explanation: &str) -> Result<(), CtlError> {
    app.banner(&format!(
        "Closing connection {connection}, reason: {explanation}..."
    ));
    // The reason travels in the X-Reason header, which must be visible ASCII.
    if explanation.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(CtlError::BadArgument(
            "the explanation must be printable ASCII (it is sent as an HTTP header)".into(),
        ));
    }
    let path = format!("connections/{}", seg(connection));
    match app.client.delete(&path, &[("X-Reason", explanation)]) {
        Err(e) if e.is_not_found() => Err(CtlError::failed(
            exit::UNAVAILABLE,
            format!("Connection {connection} not found (see: warrenctl list_connections name)"),
        )),
        other => other.map_err(|e| app.fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_queue_banner_conditions() {
        assert_eq!(delete_conditions(false, false), "");
        assert_eq!(
            delete_conditions(true, true),
            "if queue is empty and if queue is unused "
        );
    }

    #[test]
    fn tags_from_either_shape() {
        assert_eq!(
            tags_text(&json!({"tags": ["management", "policymaker"]})),
            "management,policymaker"
        );
        assert_eq!(
            tags_text(&json!({"tags": "administrator"})),
            "administrator"
        );
        assert_eq!(tags_text(&json!({})), "");
    }
}
