//! The management API client: one blocking `ureq` agent, HTTP Basic credentials, percent-encoding
//! of path segments, and the translation of transport failures and non-2xx answers into
//! [`ApiError`]. Knows nothing about commands or output.

use base64::Engine as _;
use serde_json::Value;
use std::time::Duration;

/// Why a management API call did not produce a 2xx answer.
#[derive(Debug)]
pub enum ApiError {
    /// No HTTP conversation: connection refused, DNS failure, TLS failure, bad URL.
    Unreachable(String),
    /// The call did not finish within the timeout.
    Timeout,
    /// The server answered with a non-2xx status; `error`/`reason` from its JSON body when present.
    Status {
        status: u16,
        error: String,
        reason: String,
        body: String,
    },
    /// A 2xx answer whose body was not the JSON expected.
    BadBody(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A connection to one broker's management API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
    user: String,
}

/// Percent-encode one path segment the way the management API expects (`/` → `%2F`).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(url: &str, user: &str, password: &str, timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent("warrenctl")
            .build();
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Client {
            agent: config.into(),
            base: url.trim_end_matches('/').to_string(),
            auth: format!("Basic {creds}"),
            user: user.to_string(),
        }
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/{}", self.base, path)
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let resp = self
            .agent
            .get(&self.url(path))
            .header("Authorization", &self.auth)
            .header("Accept", "application/json")
            .call();
        let body = finish(resp)?;
        serde_json::from_str(&body).map_err(|e| ApiError::BadBody(format!("GET /api/{path}: {e}")))
    }

    /// PUT a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> Result<(), ApiError> {
        self.send(self.agent.put(&self.url(path)), body.to_string())
            .map(drop)
    }

    /// POST a body (already serialised JSON text).
    pub fn post(&self, path: &str, body: String) -> Result<String, ApiError> {
        self.send(self.agent.post(&self.url(path)), body)
    }

    /// Send a JSON body. Writes accept anything: some resources (e.g. DELETE …/contents) offer no
    /// JSON and answer 406 to `Accept: application/json`.
    fn send(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
        body: String,
    ) -> Result<String, ApiError> {
        let resp = req
            .header("Authorization", &self.auth)
            .header("Accept", "*/*")
            .header("Content-Type", "application/json")
            .send(body);
        finish(resp)
    }

    /// DELETE, with optional extra headers (e.g. `X-Reason`).
    pub fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Result<(), ApiError> {
        let mut req = self
            .agent
            .delete(&self.url(path))
            .header("Authorization", &self.auth)
            .header("Accept", "*/*");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        finish(req.call()).map(drop)
    }
}

/// Turn a ureq outcome into the body text of a 2xx answer or an [`ApiError`].
fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, ApiError> {
    let mut resp = resp.map_err(transport_error)?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .map_err(transport_error)?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let (error, reason) = error_fields(&body, status);
    Err(ApiError::Status {
        status,
        error,
        reason,
        body,
    })
}

/// The `error` / `reason` of a management API error body; Erlang char lists are turned into text.
pub fn error_fields(body: &str, status: u16) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).map(erlang_text);
    let error = field("error").unwrap_or_else(|| format!("HTTP {status}"));
    let reason = field("reason").unwrap_or_else(|| body.trim().to_string());
    (error, reason)
}

/// A reason as text: strings as they are, Erlang char lists (also nested ones) decoded, other
/// terms as compact JSON.
fn erlang_text(v: &Value) -> String {
    match decode_char_lists(v) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Arrays of printable code points are Erlang strings that the API's encoder left as lists.
fn decode_char_lists(v: &Value) -> Value {
    match v {
        Value::Array(xs) => {
            let printable = |x: &Value| {
                x.as_u64()
                    .and_then(|c| u32::try_from(c).ok())
                    .and_then(char::from_u32)
                    .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
            };
            let chars: Option<String> = xs.iter().map(printable).collect();
            match chars {
                Some(s) if !s.is_empty() => Value::String(s),
                _ => Value::Array(xs.iter().map(decode_char_lists).collect()),
            }
        }
        other => other.clone(),
    }
}

fn transport_error(e: ureq::Error) -> ApiError {
    match e {
        ureq::Error::Timeout(_) => ApiError::Timeout,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => ApiError::Timeout,
        other => ApiError::Unreachable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("q with space\ttab"), "q%20with%20space%09tab");
        assert_eq!(seg("a.b-c_d~"), "a.b-c_d~");
        assert_eq!(seg("ü"), "%C3%BC");
    }

    #[test]
    fn error_bodies() {
        let (e, r) = error_fields(r#"{"error":"Object Not Found","reason":"Not Found"}"#, 404);
        assert_eq!((e.as_str(), r.as_str()), ("Object Not Found", "Not Found"));
        // 3.10 reports some errors as Erlang char lists.
        let (e, r) = error_fields(
            r#"{"error":[69,114,114],"reason":"invalid_queue_type"}"#,
            500,
        );
        assert_eq!((e.as_str(), r.as_str()), ("Err", "invalid_queue_type"));
        let (e, r) = error_fields(
            r#"{"error":"bad_request","reason":["no_such_user","nobody"]}"#,
            400,
        );
        assert_eq!(
            (e.as_str(), r.as_str()),
            ("bad_request", r#"["no_such_user","nobody"]"#)
        );
        let (_, r) = error_fields(
            r#"{"error":"bad_request","reason":["invalid_regexp",[40],[[109,105,115,115,105,110,103,32,41],1]]}"#,
            400,
        );
        assert_eq!(r, r#"["invalid_regexp","(",["missing )",1]]"#);
        let (e, r) = error_fields("", 500);
        assert_eq!((e.as_str(), r.as_str()), ("HTTP 500", ""));
    }
}
