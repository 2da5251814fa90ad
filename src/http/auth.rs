//! Who is calling and what they may see: HTTP Basic authentication against the broker's users, and
//! RabbitMQ's management tags — `administrator` (everything), `monitoring` (every vhost's objects, node
//! facts), `policymaker` (policies and parameters of its vhosts), `management` (its own vhosts). A user
//! without any of them is refused. Failures are 401 with RabbitMQ's bodies (it never answers 403).

use super::reply::{self, Result};
use super::Req;
use crate::broker::{Broker, User};
use axum::http::header;
use base64::Engine;

const TAGS: [&str; 4] = ["administrator", "monitoring", "policymaker", "management"];

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Option<User>,
    admin: bool,
    monitor: bool,
    policymaker: bool,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            user: None,
            admin: false,
            monitor: false,
            policymaker: false,
        }
    }

    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.name.as_str())
    }

    /// Sees every vhost's objects (administrator or monitoring).
    pub fn is_monitor(&self) -> bool {
        self.admin || self.monitor
    }

    pub fn require_admin(&self) -> Result<()> {
        if self.admin {
            Ok(())
        } else {
            Err(reply::not_authorised("Not administrator user"))
        }
    }

    pub fn require_monitor(&self) -> Result<()> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(reply::not_authorised("Not monitor user"))
        }
    }

    /// Whether the caller may see `vhost`'s objects.
    pub fn sees(&self, broker: &Broker, vhost: &str) -> bool {
        self.is_monitor() || broker.can_access(self.name(), vhost)
    }

    pub fn require_vhost(&self, broker: &Broker, vhost: &str) -> Result<()> {
        if self.sees(broker, vhost) {
            Ok(())
        } else {
            Err(reply::not_authorised(
                "User not authorised to access virtual host",
            ))
        }
    }

    /// Policies and parameters: administrators, or policymakers with access to the vhost.
    pub fn require_policymaker(&self, broker: &Broker, vhost: &str) -> Result<()> {
        if self.admin || (self.policymaker && broker.can_access(self.name(), vhost)) {
            Ok(())
        } else {
            Err(reply::not_authorised(
                "User not authorised to access object",
            ))
        }
    }
}

/// Check the request's Basic credentials and the user's management tags.
pub fn authenticate(broker: &Broker, r: &Req) -> Result<Caller> {
    let Some(auth) = r
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(reply::no_credentials());
    };
    let Some(b64) = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
    else {
        return Err(reply::no_credentials());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((name, pass)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
        return Err(reply::login_failed());
    };
    let Some(user) = broker.authenticate(name, pass) else {
        return Err(reply::login_failed());
    };
    if broker.config.loopback_users.iter().any(|u| u == name) && !r.peer.ip().is_loopback() {
        return Err(reply::not_authorised("User can only log in via localhost"));
    }
    if !TAGS.iter().any(|t| user.has_tag(t)) {
        return Err(reply::not_authorised("Not management user"));
    }
    Ok(Caller {
        admin: user.has_tag("administrator"),
        monitor: user.has_tag("monitoring"),
        policymaker: user.has_tag("policymaker"),
        user: Some(user),
    })
}
