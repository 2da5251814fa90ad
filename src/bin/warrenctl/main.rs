//! `warrenctl`: a rabbitmqctl / rabbitmq-diagnostics look-alike that drives a broker through the
//! RabbitMQ management HTTP API, so it works the same against Warren and against RabbitMQ.
//!
//! This file owns the process: parsing (via `cli`), the shared [`App`] context (API client, output
//! options, banner/print helpers), dispatch of each verb to its module, and turning a
//! [`CtlError`] into stderr text and rabbitmqctl's exit code.
//!
//! Modules: `cli` (grammar), `http` (API client), `error` (failures, exit codes), `format`
//! (cell/table/JSON rendering), `lists` (the `list_*` verbs), `admin` (vhosts, users,
//! permissions, policies, queues, connections), `node` (status, ping, health checks,
//! definitions), `observe` (virtual clock, firehose, message journal).

mod admin;
mod cli;
mod error;
mod format;
mod http;
mod lists;
mod node;
mod observe;

use cli::{Cli, Command};
use error::{api_failure, CtlError, Ctx};
use http::{ApiError, Client};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Default operation timeout, as rabbitmqctl's ("Timeout: 60.0 seconds").
const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Everything a verb needs: the API client and the output options.
pub struct App {
    pub client: Client,
    pub verb: String,
    pub vhost: String,
    pub quiet: bool,
    pub silent: bool,
    pub json: bool,
    pub headers: bool,
    pub timeout_secs: u64,
}

impl App {
    /// Print an informational banner line (suppressed by -q/-s and by the JSON formatter).
    pub fn banner(&self, text: &str) {
        if !self.quiet && !self.silent && !self.json {
            out(&format!("{text}\n"));
        }
    }

    /// Print a result message that -q suppresses (e.g. add_user's reminder).
    pub fn info(&self, text: &str) {
        if !self.quiet && !self.silent {
            out(&format!("{text}\n"));
        }
    }

    /// The generic translation of an API failure for this verb.
    pub fn fail(&self, e: ApiError) -> CtlError {
        let ctx = Ctx {
            verb: &self.verb,
            url: self.client.base(),
            user: self.client.user(),
            timeout_ms: u128::from(self.timeout_secs) * 1000,
        };
        api_failure(e, &ctx)
    }

    /// GET with the generic error mapping.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.client.get(path).map_err(|e| self.fail(e))
    }

    /// GET where 404 means "absent" rather than failure.
    pub fn get_opt(&self, path: &str) -> Result<Option<Value>, CtlError> {
        match self.client.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The node name the API reports (`/api/overview` `node`), for messages that name the node.
    pub fn node_name(&self) -> Result<String, CtlError> {
        let overview = self.get("overview")?;
        Ok(overview
            .get("node")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.client.base().to_string()))
    }
}

/// Write to stdout; a closed pipe (e.g. `| head`) is not an error worth a panic.
pub fn out(text: &str) {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(text.as_bytes()).and_then(|()| lock.flush());
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let given: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (verb, cli) = match cli::parse(&argv) {
        Ok(parsed) => parsed,
        Err(e) => {
            let (stdout, stderr, code) = cli::parse_failure(&e, &given);
            out(&stdout);
            if !stderr.is_empty() {
                eprintln!("{stderr}");
            }
            return ExitCode::from(code);
        }
    };
    let app = build_app(&verb, &cli);
    match run(&app, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.message();
            if e.is_validation() {
                eprintln!(
                    "{text}\nArguments given:\n\t{}\n\nUsage\n\n{}",
                    given.join(" "),
                    cli::usage_of(Some(&verb))
                );
            } else if !text.is_empty() {
                eprintln!("{text}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn build_app(verb: &str, cli: &Cli) -> App {
    let g = &cli.global;
    let default_timeout = match cli.command {
        Command::AwaitStartup => 300,
        _ => DEFAULT_TIMEOUT_SECS,
    };
    let timeout_secs = g.timeout.unwrap_or(default_timeout);
    // await_startup polls with short requests until its own deadline.
    let request_timeout = match cli.command {
        Command::AwaitStartup => timeout_secs.clamp(1, 5),
        _ => timeout_secs.max(1),
    };
    App {
        client: Client::new(
            &g.url,
            &g.username,
            &g.password,
            Duration::from_secs(request_timeout),
        ),
        verb: verb.to_string(),
        vhost: g.vhost.clone(),
        quiet: g.quiet,
        silent: g.silent,
        json: g.formatter.as_deref() == Some("json"),
        headers: !(g.no_table_headers || g.silent),
        timeout_secs,
    }
}

fn run(app: &App, command: Command) -> Result<(), CtlError> {
    use Command::*;
    match command {
        ListQueues { columns, .. } => lists::run(app, lists::Kind::Queues, &columns.columns),
        ListExchanges(c) => lists::run(app, lists::Kind::Exchanges, &c.columns),
        ListBindings(c) => lists::run(app, lists::Kind::Bindings, &c.columns),
        ListConnections(c) => lists::run(app, lists::Kind::Connections, &c.columns),
        ListChannels(c) => lists::run(app, lists::Kind::Channels, &c.columns),
        ListConsumers(c) => lists::run(app, lists::Kind::Consumers, &c.columns),
        ListUsers => lists::run(app, lists::Kind::Users, &[]),
        ListVhosts(c) => lists::run(app, lists::Kind::Vhosts, &c.columns),
        ListPermissions => lists::run(app, lists::Kind::Permissions, &[]),
        ListPolicies => lists::run(app, lists::Kind::Policies, &[]),
        AddVhost {
            vhost,
            description,
            tags,
            default_queue_type,
        } => admin::add_vhost(app, &vhost, description, tags, default_queue_type),
        DeleteVhost { vhost } => admin::delete_vhost(app, &vhost),
        AddUser { username, password } => admin::add_user(app, &username, password),
        DeleteUser { username } => admin::delete_user(app, &username),
        ChangePassword { username, password } => admin::change_password(app, &username, password),
        SetUserTags { username, tags } => admin::set_user_tags(app, &username, &tags),
        SetPermissions {
            username,
            conf,
            write,
            read,
        } => admin::set_permissions(app, &username, [conf, write, read]),
        ClearPermissions { username } => admin::clear_permissions(app, &username),
        SetPolicy(p) => admin::set_policy(app, admin::PolicyKind::User, &p),
        SetOperatorPolicy(p) => admin::set_policy(app, admin::PolicyKind::Operator, &p),
        ClearPolicy { name } => admin::clear_policy(app, admin::PolicyKind::User, &name),
        ClearOperatorPolicy { name } => {
            admin::clear_policy(app, admin::PolicyKind::Operator, &name)
        }
        PurgeQueue { queue } => admin::purge_queue(app, &queue),
        DeleteQueue {
            queue,
            if_empty,
            if_unused,
        } => admin::delete_queue(app, &queue, if_empty, if_unused),
        CloseConnection {
            connection,
            explanation,
        } => admin::close_connection(app, &connection, &explanation),
        ExportDefinitions { file, format } => node::export_definitions(app, &file, &format),
        ImportDefinitions { file, format, .. } => {
            node::import_definitions(app, file.as_deref(), &format)
        }
        Status { unit } => node::status(app, &unit),
        AwaitStartup => node::await_startup(app),
        Ping => node::ping(app),
        CheckRunning => node::check_running(app),
        CheckLocalAlarms => node::check_local_alarms(app),
        CheckPortConnectivity => node::check_port_connectivity(app),
        CheckVirtualHosts => node::check_virtual_hosts(app),
        AdvanceClock { duration } => observe::advance_clock(app, duration),
        TraceOn => observe::trace(app, true),
        TraceOff => observe::trace(app, false),
        Journal(j) => observe::journal(app, &j),
        JournalOn { all_vhosts } => observe::journal_switch(app, true, all_vhosts),
        JournalOff { all_vhosts } => observe::journal_switch(app, false, all_vhosts),
    }
}
