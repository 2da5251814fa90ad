//! Failures of a warrenctl command, their exit codes (rabbitmqctl's sysexits-based set) and the
//! text printed on stderr for each, plus the generic mapping of management API errors.

use crate::http::ApiError;

/// rabbitmqctl's exit codes (`RabbitMQ.CLI.Core.ExitCodes`).
pub mod exit {
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const NOUSER: u8 = 67;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const TEMPFAIL: u8 = 75;
}

/// Why a command failed.
#[derive(Debug)]
pub enum CtlError {
    /// Argument validation (exit 64): printed with "Arguments given" and the usage line.
    Usage(String),
    /// A bad argument value (exit 65), e.g. an empty user name or a missing file.
    BadArgument(String),
    /// `Error:` on one line, the message on the next (rabbitmqctl's usual failure shape).
    Failed { code: u8, message: String },
    /// A bare message line (rabbitmqctl prints e.g. "Virtual host 'x' does not exist" this way).
    Plain { code: u8, message: String },
    /// The management API could not be reached at all.
    Unreachable { url: String, detail: String },
    /// The operation timed out.
    Timeout {
        verb: String,
        url: String,
        millis: u128,
    },
    /// Already reported (e.g. a failed health check wrote its own JSON); just exit with the code.
    Silent(u8),
}

impl CtlError {
    pub fn failed(code: u8, message: impl Into<String>) -> CtlError {
        CtlError::Failed {
            code,
            message: message.into(),
        }
    }

    pub fn plain(code: u8, message: impl Into<String>) -> CtlError {
        CtlError::Plain {
            code,
            message: message.into(),
        }
    }

    pub fn no_vhost(vhost: &str) -> CtlError {
        CtlError::plain(
            exit::DATAERR,
            format!("Virtual host '{vhost}' does not exist"),
        )
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => exit::USAGE,
            CtlError::BadArgument(_) => exit::DATAERR,
            CtlError::Failed { code, .. }
            | CtlError::Plain { code, .. }
            | CtlError::Silent(code) => *code,
            CtlError::Unreachable { .. } => exit::UNAVAILABLE,
            CtlError::Timeout { .. } => exit::TEMPFAIL,
        }
    }

    /// The stderr text, without the usage part that main adds for validation errors.
    pub fn message(&self) -> String {
        match self {
            CtlError::Usage(m) => format!("Error (argument validation): {m}"),
            CtlError::BadArgument(m) => format!("Error (argument validation): Bad argument: {m}"),
            CtlError::Failed { message, .. } => format!("Error:\n{message}"),
            CtlError::Plain { message, .. } => message.clone(),
            CtlError::Unreachable { url, detail } => unreachable_text(url, detail),
            CtlError::Timeout { verb, url, millis } => {
                format!(
                    "Error: operation {verb} on node {url} timed out. Timeout value used: {millis}"
                )
            }
            CtlError::Silent(_) => String::new(),
        }
    }

    pub fn is_validation(&self) -> bool {
        matches!(self, CtlError::Usage(_) | CtlError::BadArgument(_))
    }
}

fn unreachable_text(url: &str, detail: &str) -> String {
    format!(
        "Error: unable to perform an operation on node '{url}'. Please see diagnostics information and suggestions below.\n\
         \n\
         Most common reasons for this are:\n\
         \n \
         * Target node is unreachable (e.g. due to hostname resolution, TCP connection or firewall issues)\n \
         * The management HTTP API is not enabled on the node, or listens on another port (see --url)\n \
         * Target node is not running\n\
         \n\
         DIAGNOSTICS\n\
         ===========\n\
         \n\
         attempted to contact: {url}\n\
         \n  \
         * {detail}\n"
    )
}

/// Context for turning an [`ApiError`] into a [`CtlError`].
pub struct Ctx<'a> {
    pub verb: &'a str,
    pub url: &'a str,
    pub user: &'a str,
    pub timeout_ms: u128,
}

/// The generic mapping of API failures; commands handle the statuses they expect first.
pub fn api_failure(e: ApiError, ctx: &Ctx<'_>) -> CtlError {
    match e {
        ApiError::Unreachable(detail) => CtlError::Unreachable {
            url: ctx.url.to_string(),
            detail,
        },
        ApiError::Timeout => CtlError::Timeout {
            verb: ctx.verb.to_string(),
            url: ctx.url.to_string(),
            millis: ctx.timeout_ms,
        },
        ApiError::Status {
            status: 401,
            error,
            reason,
            ..
        } if error == "not_authorized" || reason.is_empty() => {
            let why = if reason.is_empty() {
                "no credentials accepted".to_string()
            } else {
                reason
            };
            CtlError::Unreachable {
                url: ctx.url.to_string(),
                detail: format!(
                    "the management API refused the credentials of user '{}' (HTTP 401: {why}); see --username/--password",
                    ctx.user
                ),
            }
        }
        ApiError::Status {
            status: 401,
            reason,
            ..
        } => CtlError::failed(
            exit::UNAVAILABLE,
            format!("user '{}' is not allowed to do this: {reason}", ctx.user),
        ),
        ApiError::Status {
            status,
            error,
            reason,
            ..
        } => {
            let text = unescape_html(&reason);
            if text.trim().is_empty() && error.starts_with("HTTP ") {
                CtlError::failed(exit::UNAVAILABLE, error)
            } else if text.trim().is_empty() {
                CtlError::failed(exit::UNAVAILABLE, format!("{error} (HTTP {status})"))
            } else {
                CtlError::failed(exit::UNAVAILABLE, text)
            }
        }
        ApiError::BadBody(m) => CtlError::failed(
            exit::SOFTWARE,
            format!("unexpected answer from the management API: {m}"),
        ),
    }
}

/// `/api/policies` HTML-escapes its validation messages (`&lt;&lt;`); rabbitmqctl shows them raw.
pub fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, error: &str, reason: &str) -> ApiError {
        ApiError::Status {
            status,
            error: error.into(),
            reason: reason.into(),
            body: String::new(),
        }
    }

    fn ctx() -> Ctx<'static> {
        Ctx {
            verb: "list_queues",
            url: "http://127.0.0.1:1",
            user: "guest",
            timeout_ms: 60000,
        }
    }

    #[test]
    fn validation_failure_text_is_unescaped() {
        let e = status(400, "bad_request", "Validation failed\n\n[{&lt;&lt;\"bogus\"&gt;&gt;,1}] are not recognised policy settings\n");
        let c = api_failure(e, &ctx());
        assert_eq!(c.exit_code(), 69);
        assert_eq!(
            c.message(),
            "Error:\nValidation failed\n\n[{<<\"bogus\">>,1}] are not recognised policy settings\n"
        );
    }

    #[test]
    fn transport_failures() {
        let c = api_failure(ApiError::Unreachable("Connection refused".into()), &ctx());
        assert_eq!(c.exit_code(), 69);
        assert!(c
            .message()
            .contains("attempted to contact: http://127.0.0.1:1"));
        let c = api_failure(ApiError::Timeout, &ctx());
        assert_eq!(c.exit_code(), 75);
        assert_eq!(
            c.message(),
            "Error: operation list_queues on node http://127.0.0.1:1 timed out. Timeout value used: 60000"
        );
    }

    #[test]
    fn auth_failures() {
        let login = status(401, "not_authorized", "Login failed");
        let c = api_failure(login, &ctx());
        assert_eq!(c.exit_code(), 69);
        assert!(c
            .message()
            .contains("refused the credentials of user 'guest'"));
        let authz = status(401, "not_authorised", "Not administrator user");
        assert_eq!(
            api_failure(authz, &ctx()).message(),
            "Error:\nuser 'guest' is not allowed to do this: Not administrator user"
        );
    }
}
