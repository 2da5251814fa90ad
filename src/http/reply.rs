//! Responses as RabbitMQ's management plugin sends them: compact JSON with its headers (cache-control,
//! content-security-policy, vary), its error bodies (`{"error":…,"reason":…}`), 401 rather than 403, and
//! empty bodies for 201/204.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

const CSP: &str = "script-src 'self' 'unsafe-eval' 'unsafe-inline'; object-src 'self'";
pub const REALM: &str = "Basic realm=\"RabbitMQ Management\"";

/// Which `vary` header a resource sends: most name `accept`; a few (limits, topic permissions, operator
/// policies, purge) do not; responses made before content negotiation vary on origin only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vary {
    Accept,
    NoAccept,
    Origin,
}

impl Vary {
    fn value(self) -> &'static str {
        match self {
            Vary::Accept => "accept, accept-encoding, origin",
            Vary::NoAccept => "accept-encoding, origin",
            Vary::Origin => "origin",
        }
    }
}

/// A response under construction.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Vec<u8>>,
    pub vary: Vary,
    pub headers: Vec<(header::HeaderName, String)>,
    /// Sent with `cache-control: no-cache` (JSON answers to GET and to POSTs that return JSON).
    pub no_cache: bool,
}

pub type Result<T = Reply> = std::result::Result<T, Reply>;

impl Reply {
    /// 200 with a JSON body.
    pub fn json(v: &Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body: Some(serde_json::to_vec(v).unwrap_or_default()),
            vary: Vary::Accept,
            headers: Vec::new(),
            no_cache: true,
        }
    }

    pub fn status(status: StatusCode) -> Reply {
        Reply {
            status,
            body: None,
            vary: Vary::Accept,
            headers: Vec::new(),
            no_cache: false,
        }
    }

    /// 201 (created) or 204 (it existed).
    pub fn created(created: bool) -> Reply {
        Self::status(if created {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        })
    }

    pub fn no_content() -> Reply {
        Self::status(StatusCode::NO_CONTENT)
    }

    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    pub fn vary(mut self, vary: Vary) -> Reply {
        self.vary = vary;
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// An error body with RabbitMQ's two keys.
    pub fn error(status: StatusCode, error: impl Into<Value>, reason: impl Into<Value>) -> Reply {
        let body = json!({"error": error.into(), "reason": reason.into()});
        Reply {
            status,
            body: Some(serde_json::to_vec(&body).unwrap_or_default()),
            vary: Vary::Accept,
            headers: Vec::new(),
            no_cache: true,
        }
    }

    pub fn into_response(self, head: bool) -> Response<Body> {
        let mut b = Response::builder().status(self.status);
        let h = b.headers_mut();
        if let Some(h) = h {
            if self.no_cache && self.body.is_some() {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            }
            if self.body.is_some() {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(header::VARY, HeaderValue::from_static(self.vary.value()));
            h.insert(header::SERVER, HeaderValue::from_static("Warren"));
            for (k, v) in &self.headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(k.clone(), v);
                }
            }
        }
        let body = match (head, self.body) {
            (false, Some(b)) => Body::from(b),
            _ => Body::empty(),
        };
        b.body(body)
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

/// 404 for a missing object or an unknown path.
pub fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
}

/// 404 for a PUT into a vhost that does not exist.
pub fn vhost_not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "not_found", "vhost_not_found")
}

pub fn bad_request(reason: impl Into<Value>) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "bad_request", reason)
}

/// 401 for an authenticated user without the rights (RabbitMQ never answers 403).
pub fn not_authorised(reason: &str) -> Reply {
    Reply::error(StatusCode::UNAUTHORIZED, "not_authorised", reason)
}

/// 401 for a request without credentials.
pub fn no_credentials() -> Reply {
    Reply::status(StatusCode::UNAUTHORIZED)
        .vary(Vary::Origin)
        .header(header::WWW_AUTHENTICATE, REALM)
}

/// 401 for wrong credentials.
pub fn login_failed() -> Reply {
    Reply::error(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
        .vary(Vary::Origin)
        .header(header::WWW_AUTHENTICATE, REALM)
}

/// A broker error from a command, as the management plugin reports an AMQP error: 403 becomes 401
/// "Access refused.", a missing object 404, anything else 400 with the reply text without its code name.
pub fn from_amqp(e: &crate::error::AmqpError) -> Reply {
    use crate::error::ReplyCode;
    match e.code {
        ReplyCode::AccessRefused => not_authorised("Access refused."),
        ReplyCode::NotFound => Reply::error(StatusCode::NOT_FOUND, "not_found", e.text.as_str()),
        ReplyCode::InternalError => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.text.as_str(),
        ),
        _ => bad_request(e.text.as_str()),
    }
}

/// The key-missing error RabbitMQ gives for required body keys, e.g. "[{key_missing,read}]".
pub fn keys_missing(keys: &[&str]) -> Reply {
    let inner: Vec<String> = keys
        .iter()
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    bad_request(format!("[{}]", inner.join(",")))
}

/// Which of `keys` a JSON body lacks, as RabbitMQ's key-missing error.
pub fn require(body: &Value, keys: &[&str]) -> Result<()> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| body.get(*k).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(keys_missing(&missing))
    }
}
