//! RabbitMQ's management routes: which paths exist, which methods each allows, and which handler serves
//! each (path, method) pair.

use super::auth::Caller;
use super::reply::{self, Result};
use super::{
    bindings, clock, conns, defs, exchanges, journal, overview, params, queues, users, vhosts, Api,
    Req,
};

/// A matched path with its (decoded) parameters.
#[derive(Debug, Clone)]
pub enum Route {
    Overview,
    ClusterName,
    Nodes,
    Node(String),
    Extensions,
    Whoami,
    Auth,
    Vhosts,
    Vhost(String),
    VhostPermissions(String),
    VhostTopicPermissions(String),
    VhostConnections(String),
    VhostChannels(String),
    VhostStart(String, String),
    Users,
    UsersWithoutPermissions,
    UsersBulkDelete,
    User(String),
    UserPermissions(String),
    UserTopicPermissions(String),
    Permissions,
    Permission(String, String),
    TopicPermissions,
    TopicPermission(String, String, Option<String>),
    Exchanges(Option<String>),
    Exchange(String, String),
    ExchangeBindings(String, String, bool),
    ExchangePublish(String, String),
    Queues(Option<String>),
    Queue(String, String),
    QueueContents(String, String),
    QueueGet(String, String),
    QueueBindings(String, String),
    Bindings(Option<String>),
    BindingsBetween {
        vhost: String,
        source: String,
        to_exchange: bool,
        destination: String,
    },
    Binding {
        vhost: String,
        source: String,
        to_exchange: bool,
        destination: String,
        props: String,
    },
    Connections,
    Connection(String),
    ConnectionChannels(String),
    ConnectionsOfUser(String),
    Channels,
    Channel(String),
    Consumers(Option<String>),
    Policies(bool, Option<String>),
    Policy(bool, String, String),
    Parameters(Option<String>, Option<String>),
    Parameter(String, String, String),
    GlobalParameters,
    GlobalParameter(String),
    VhostLimits(Option<String>),
    VhostLimit(String, String),
    UserLimits(Option<String>),
    UserLimit(String, String),
    Definitions(Option<String>),
    Aliveness(String),
    Health(Vec<String>),
    /// Warren's own: the broker clock (GET), and advancing a virtual one (POST .../advance).
    Clock,
    ClockAdvance,
    /// Warren's own: wait until nothing is in flight.
    Idle,
    /// Warren's own: the message journal.
    Journal,
}

const GET: &[&str] = &["GET"];
const GET_PUT_DELETE: &[&str] = &["GET", "PUT", "DELETE"];
const GET_DELETE: &[&str] = &["GET", "DELETE"];
const PUT_DELETE: &[&str] = &["PUT", "DELETE"];
const GET_POST: &[&str] = &["GET", "POST"];
const POST: &[&str] = &["POST"];
const DELETE: &[&str] = &["DELETE"];
const GET_PUT: &[&str] = &["GET", "PUT"];

/// The route for `/api/<segs...>`, or None for a path RabbitMQ does not have.
pub fn parse(segs: &[String]) -> Option<Route> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let o = |x: &str| x.to_string();
    let x = |name: &str| {
        if name == "amq.default" {
            String::new()
        } else {
            name.to_string()
        }
    };
    Some(match s.as_slice() {
        ["overview"] => Route::Overview,
        ["cluster-name"] => Route::ClusterName,
        ["nodes"] => Route::Nodes,
        ["nodes", n] => Route::Node(o(n)),
        ["extensions"] => Route::Extensions,
        ["whoami"] => Route::Whoami,
        ["auth"] => Route::Auth,
        ["vhosts"] => Route::Vhosts,
        ["vhosts", v] => Route::Vhost(o(v)),
        ["vhosts", v, "permissions"] => Route::VhostPermissions(o(v)),
        ["vhosts", v, "topic-permissions"] => Route::VhostTopicPermissions(o(v)),
        ["vhosts", v, "connections"] => Route::VhostConnections(o(v)),
        ["vhosts", v, "channels"] => Route::VhostChannels(o(v)),
        ["vhosts", v, "start", n] => Route::VhostStart(o(v), o(n)),
        ["users"] => Route::Users,
        ["users", "without-permissions"] => Route::UsersWithoutPermissions,
        ["users", "bulk-delete"] => Route::UsersBulkDelete,
        ["users", u] => Route::User(o(u)),
        ["users", u, "permissions"] => Route::UserPermissions(o(u)),
        ["users", u, "topic-permissions"] => Route::UserTopicPermissions(o(u)),
        ["permissions"] => Route::Permissions,
        ["permissions", v, u] => Route::Permission(o(v), o(u)),
        ["topic-permissions"] => Route::TopicPermissions,
        ["topic-permissions", v, u] => Route::TopicPermission(o(v), o(u), None),
        ["topic-permissions", v, u, e] => Route::TopicPermission(o(v), o(u), Some(o(e))),
        ["exchanges"] => Route::Exchanges(None),
        ["exchanges", v] => Route::Exchanges(Some(o(v))),
        ["exchanges", v, n] => Route::Exchange(o(v), x(n)),
        ["exchanges", v, n, "bindings", "source"] => Route::ExchangeBindings(o(v), x(n), true),
        ["exchanges", v, n, "bindings", "destination"] => {
            Route::ExchangeBindings(o(v), x(n), false)
        }
        ["exchanges", v, n, "publish"] => Route::ExchangePublish(o(v), x(n)),
        ["queues"] => Route::Queues(None),
        ["queues", v] => Route::Queues(Some(o(v))),
        ["queues", v, q] => Route::Queue(o(v), o(q)),
        ["queues", v, q, "contents"] => Route::QueueContents(o(v), o(q)),
        ["queues", v, q, "get"] => Route::QueueGet(o(v), o(q)),
        ["queues", v, q, "bindings"] => Route::QueueBindings(o(v), o(q)),
        ["bindings"] => Route::Bindings(None),
        ["bindings", v] => Route::Bindings(Some(o(v))),
        ["bindings", v, "e", src, kind @ ("q" | "e"), dst] => Route::BindingsBetween {
            vhost: o(v),
            source: x(src),
            to_exchange: *kind == "e",
            destination: o(dst),
        },
        ["bindings", v, "e", src, kind @ ("q" | "e"), dst, props] => Route::Binding {
            vhost: o(v),
            source: x(src),
            to_exchange: *kind == "e",
            destination: o(dst),
            props: o(props),
        },
        ["connections"] => Route::Connections,
        ["connections", "username", u] => Route::ConnectionsOfUser(o(u)),
        ["connections", n] => Route::Connection(o(n)),
        ["connections", n, "channels"] => Route::ConnectionChannels(o(n)),
        ["channels"] => Route::Channels,
        ["channels", n] => Route::Channel(o(n)),
        ["consumers"] => Route::Consumers(None),
        ["consumers", v] => Route::Consumers(Some(o(v))),
        ["policies"] => Route::Policies(false, None),
        ["policies", v] => Route::Policies(false, Some(o(v))),
        ["policies", v, n] => Route::Policy(false, o(v), o(n)),
        ["operator-policies"] => Route::Policies(true, None),
        ["operator-policies", v] => Route::Policies(true, Some(o(v))),
        ["operator-policies", v, n] => Route::Policy(true, o(v), o(n)),
        ["parameters"] => Route::Parameters(None, None),
        ["parameters", c] => Route::Parameters(Some(o(c)), None),
        ["parameters", c, v] => Route::Parameters(Some(o(c)), Some(o(v))),
        ["parameters", c, v, n] => Route::Parameter(o(c), o(v), o(n)),
        ["global-parameters"] => Route::GlobalParameters,
        ["global-parameters", n] => Route::GlobalParameter(o(n)),
        ["vhost-limits"] => Route::VhostLimits(None),
        ["vhost-limits", v] => Route::VhostLimits(Some(o(v))),
        ["vhost-limits", v, n] => Route::VhostLimit(o(v), o(n)),
        ["user-limits"] => Route::UserLimits(None),
        ["user-limits", u] => Route::UserLimits(Some(o(u))),
        ["user-limits", u, n] => Route::UserLimit(o(u), o(n)),
        ["definitions"] => Route::Definitions(None),
        ["definitions", v] => Route::Definitions(Some(o(v))),
        ["aliveness-test", v] => Route::Aliveness(o(v)),
        ["health", "checks", rest @ ..] if !rest.is_empty() => {
            Route::Health(rest.iter().map(|s| s.to_string()).collect())
        }
        ["healthchecks", "node"] => Route::Health(vec!["node".into()]),
        ["warren", "clock"] => Route::Clock,
        ["warren", "clock", "advance"] => Route::ClockAdvance,
        ["warren", "idle"] => Route::Idle,
        ["warren", "journal"] => Route::Journal,
        _ => return None,
    })
}

impl Route {
    /// The methods the resource allows (besides HEAD and OPTIONS).
    pub fn allowed(&self) -> &'static [&'static str] {
        use Route::*;
        match self {
            ClusterName => GET_PUT,
            Journal => GET_PUT_DELETE,
            Vhost(_) | User(_) | Permission(..) | Exchange(..) | Queue(..) | Policy(..)
            | Parameter(..) | GlobalParameter(_) => GET_PUT_DELETE,
            TopicPermission(_, _, None) => GET_PUT_DELETE,
            TopicPermission(_, _, Some(_)) => GET_DELETE,
            VhostStart(..) | UsersBulkDelete | ExchangePublish(..) | QueueGet(..)
            | ClockAdvance => POST,
            QueueContents(..) => DELETE,
            BindingsBetween { .. } | Definitions(_) => GET_POST,
            Binding { .. } | Connection(_) => GET_DELETE,
            VhostLimit(..) | UserLimit(..) => PUT_DELETE,
            _ => GET,
        }
    }

    /// Resources that need no credentials.
    pub fn public(&self) -> bool {
        matches!(self, Route::Auth)
    }
}

pub async fn dispatch(api: &Api, c: &Caller, r: &Req, route: Route) -> Result {
    use Route::*;
    let m = r.method.as_str();
    match (route, m) {
        (Overview, _) => overview::overview(api, c, r),
        (ClusterName, "GET") => overview::cluster_name(api),
        (ClusterName, _) => overview::set_cluster_name(api, c, r).await,
        (Nodes, _) => overview::nodes(api, c, r),
        (Node(n), _) => overview::node(api, c, r, &n),
        (Extensions, _) => Ok(reply::Reply::json(
            &serde_json::json!([{"javascript": "dispatcher.js"}]),
        )),
        (Whoami, _) => overview::whoami(c),
        (Auth, _) => Ok(reply::Reply::json(&serde_json::json!({
            "enable_uaa": false, "uaa_client_id": "", "uaa_location": ""
        }))),
        (Vhosts, _) => vhosts::list(api, c, r),
        (Vhost(v), "GET") => vhosts::get(api, c, r, &v),
        (Vhost(v), "PUT") => vhosts::put(api, c, r, &v).await,
        (Vhost(v), _) => vhosts::delete(api, c, &v).await,
        (VhostPermissions(v), _) => users::vhost_permissions(api, c, &v),
        (VhostTopicPermissions(v), _) => users::vhost_topic_permissions(api, c, &v),
        (VhostConnections(v), _) => conns::connections(api, c, r, Some(&v)),
        (VhostChannels(v), _) => conns::channels(api, c, r, Some(&v)),
        (VhostStart(v, node), _) => vhosts::start(api, c, &v, &node),
        (Users, _) => users::list(api, c, false),
        (UsersWithoutPermissions, _) => users::list(api, c, true),
        (UsersBulkDelete, _) => users::bulk_delete(api, c, r).await,
        (User(u), "GET") => users::get(api, c, &u),
        (User(u), "PUT") => users::put(api, c, r, &u).await,
        (User(u), _) => users::delete(api, c, &u).await,
        (UserPermissions(u), _) => users::user_permissions(api, c, &u),
        (UserTopicPermissions(u), _) => users::user_topic_permissions(api, c, &u),
        (Permissions, _) => users::permissions(api, c),
        (Permission(v, u), "GET") => users::get_permission(api, c, &v, &u),
        (Permission(v, u), "PUT") => users::put_permission(api, c, r, &v, &u).await,
        (Permission(v, u), _) => users::delete_permission(api, c, &v, &u).await,
        (TopicPermissions, _) => users::topic_permissions(api, c),
        (TopicPermission(v, u, _), "GET") => users::get_topic_permission(api, c, &v, &u),
        (TopicPermission(v, u, _), "PUT") => users::put_topic_permission(api, c, r, &v, &u).await,
        (TopicPermission(v, u, x), _) => {
            users::delete_topic_permission(api, c, &v, &u, x.as_deref()).await
        }
        (Exchanges(v), _) => exchanges::list(api, c, r, v.as_deref()),
        (Exchange(v, x), "GET") => exchanges::get(api, c, r, &v, &x),
        (Exchange(v, x), "PUT") => exchanges::put(api, c, r, &v, &x).await,
        (Exchange(v, x), _) => exchanges::delete(api, c, r, &v, &x).await,
        (ExchangeBindings(v, x, source), _) => bindings::of_exchange(api, c, &v, &x, source),
        (ExchangePublish(v, x), _) => exchanges::publish(api, c, r, &v, &x).await,
        (Queues(v), _) => queues::list(api, c, r, v.as_deref()),
        (Queue(v, q), "GET") => queues::get(api, c, r, &v, &q),
        (Queue(v, q), "PUT") => queues::put(api, c, r, &v, &q).await,
        (Queue(v, q), _) => queues::delete(api, c, r, &v, &q).await,
        (QueueContents(v, q), _) => queues::purge(api, c, &v, &q),
        (QueueGet(v, q), _) => queues::get_messages(api, c, r, &v, &q).await,
        (QueueBindings(v, q), _) => bindings::of_queue(api, c, &v, &q),
        (Bindings(v), _) => bindings::list(api, c, v.as_deref()),
        (
            BindingsBetween {
                vhost,
                source,
                to_exchange,
                destination,
            },
            "GET",
        ) => bindings::between(api, c, &vhost, &source, to_exchange, &destination),
        (
            BindingsBetween {
                vhost,
                source,
                to_exchange,
                destination,
            },
            _,
        ) => bindings::create(api, c, r, &vhost, &source, to_exchange, &destination).await,
        (
            Binding {
                vhost,
                source,
                to_exchange,
                destination,
                props,
            },
            m,
        ) => {
            let b = bindings::BindingPath {
                vhost: &vhost,
                source: &source,
                to_exchange,
                destination: &destination,
                props: &props,
            };
            if m == "GET" {
                bindings::get(api, c, &b)
            } else {
                bindings::delete(api, c, &b).await
            }
        }
        (Connections, _) => conns::connections(api, c, r, None),
        (Connection(n), "GET") => conns::connection(api, c, r, &n),
        (Connection(n), _) => conns::close(api, c, r, &n),
        (ConnectionChannels(n), _) => conns::connection_channels(api, c, r, &n),
        (ConnectionsOfUser(u), _) => conns::connections_of_user(api, c, r, &u),
        (Channels, _) => conns::channels(api, c, r, None),
        (Channel(n), _) => conns::channel(api, c, r, &n),
        (Consumers(v), _) => conns::consumers(api, c, v.as_deref()),
        (Policies(op, v), _) => params::policies(api, c, op, v.as_deref()),
        (Policy(op, v, n), "GET") => params::get_policy(api, c, op, &v, &n),
        (Policy(op, v, n), "PUT") => params::put_policy(api, c, r, op, &v, &n).await,
        (Policy(op, v, n), _) => params::delete_policy(api, c, op, &v, &n).await,
        (Clock, _) => clock::get(api, c),
        (ClockAdvance, _) => clock::advance(api, c, r),
        (Idle, _) => clock::idle(api, c, r).await,
        (Journal, "GET") => journal::get(api, c, r).await,
        (Journal, "PUT") => journal::put(api, c, r),
        (Journal, _) => journal::delete(api, c),
        (Parameters(comp, v), _) => params::parameters(api, c, comp.as_deref(), v.as_deref()),
        (Parameter(comp, v, n), "GET") => params::get_parameter(api, c, &comp, &v, &n),
        (Parameter(comp, v, n), "PUT") => params::put_parameter(api, c, r, &comp, &v, &n).await,
        (Parameter(comp, v, n), _) => params::delete_parameter(api, c, &comp, &v, &n).await,
        (GlobalParameters, _) => params::global_parameters(api, c),
        (GlobalParameter(n), "GET") => params::get_global(api, c, &n),
        (GlobalParameter(n), "PUT") => params::put_global(api, c, r, &n).await,
        (GlobalParameter(n), _) => params::delete_global(api, c, &n).await,
        (VhostLimits(v), _) => params::vhost_limits(api, c, v.as_deref()),
        (VhostLimit(v, n), "PUT") => params::put_vhost_limit(api, c, r, &v, &n).await,
        (VhostLimit(v, n), _) => params::delete_vhost_limit(api, c, &v, &n).await,
        (UserLimits(u), _) => params::user_limits(api, c, u.as_deref()),
        (UserLimit(u, n), "PUT") => params::put_user_limit(api, c, r, &u, &n).await,
        (UserLimit(u, n), _) => params::delete_user_limit(api, c, &u, &n).await,
        (Definitions(v), "GET") => defs::export(api, c, r, v.as_deref()),
        (Definitions(v), _) => defs::import(api, c, r, v.as_deref()).await,
        (Aliveness(v), _) => defs::aliveness(api, c, &v).await,
        (Health(path), _) => defs::health(api, c, &path),
    }
}
