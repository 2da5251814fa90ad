//! Command-line grammar: the global options (where the broker is, output shaping) and one clap
//! subcommand per rabbitmqctl / rabbitmq-diagnostics verb, with rabbitmqctl's argument syntax and
//! usage lines. Also turns clap's parse errors into rabbitmqctl's validation messages.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "warrenctl",
    version,
    about = "rabbitmqctl-compatible command line tool that talks to a broker's management HTTP API",
    override_usage = "warrenctl [--url <url>] [--username <user>] [--password <pass>] [--timeout <timeout>] [--quiet] <command> [<command options>]",
    disable_help_subcommand = false
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted anywhere on the command line, before or after the verb. Their ids are
/// distinct from the verbs' positional names (`add_user <username> <password>`,
/// `add_vhost <vhost>`): a global with the same id would swallow the positional's value.
#[derive(Args, Debug)]
pub struct Global {
    /// Management API base URL
    #[arg(
        long,
        global = true,
        env = "WARREN_MGMT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub url: String,
    /// Management API user
    #[arg(
        id = "api_username",
        long = "username",
        global = true,
        env = "WARREN_USER",
        default_value = "guest"
    )]
    pub username: String,
    /// Management API password
    #[arg(
        id = "api_password",
        long = "password",
        global = true,
        env = "WARREN_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    pub password: String,
    /// Suppress informational messages
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Suppress informational messages and table header row
    #[arg(short, long, global = true)]
    pub silent: bool,
    /// Operation timeout in seconds
    #[arg(short, long, global = true, value_name = "seconds")]
    pub timeout: Option<u64>,
    /// Virtual host to use for commands scoped to a virtual host
    #[arg(
        id = "vhost_option",
        short = 'p',
        long = "vhost",
        global = true,
        default_value = "/"
    )]
    pub vhost: String,
    /// Alternative result formatter: json or table
    #[arg(long, global = true, value_parser = ["json", "table"])]
    pub formatter: Option<String>,
    /// Do not print the table header row
    #[arg(long, global = true)]
    pub no_table_headers: bool,
    /// Accepted for rabbitmqctl compatibility; has no effect
    #[arg(short, long, global = true, hide = true)]
    pub longnames: bool,
}

/// Optional column arguments of a `list_*` verb (space or comma separated).
#[derive(Args, Debug)]
pub struct Columns {
    /// Columns to show
    #[arg(value_name = "column")]
    pub columns: Vec<String>,
}

// Verbs are snake_case like rabbitmqctl's; `rename_all` reaches the variants' own flags too, so
// multi-word flags spell their kebab-case names out.
#[derive(Subcommand, Debug)]
#[command(rename_all = "snake_case")]
pub enum Command {
    /// Lists queues and their properties
    #[command(
        override_usage = "warrenctl [--quiet] list_queues [--vhost <vhost>] [--online] [--offline] [--local] [--no-table-headers] [<column>, ...] [--timeout <timeout>]"
    )]
    ListQueues {
        #[command(flatten)]
        columns: Columns,
        /// Accepted for compatibility (single-node view)
        #[arg(long)]
        online: bool,
        /// Accepted for compatibility (single-node view)
        #[arg(long)]
        offline: bool,
        /// Accepted for compatibility (single-node view)
        #[arg(long)]
        local: bool,
    },
    /// Lists exchanges
    #[command(
        override_usage = "warrenctl [--quiet] list_exchanges [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"
    )]
    ListExchanges(Columns),
    /// Lists all bindings on a vhost
    #[command(
        override_usage = "warrenctl [--quiet] list_bindings [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"
    )]
    ListBindings(Columns),
    /// Lists AMQP 0.9.1 connections for the node
    #[command(
        override_usage = "warrenctl [--quiet] list_connections [--no-table-headers] [<column> ...] [--timeout <timeout>]"
    )]
    ListConnections(Columns),
    /// Lists all channels in the node
    #[command(
        override_usage = "warrenctl [--quiet] list_channels [--no-table-headers] [<column> ...]"
    )]
    ListChannels(Columns),
    /// Lists all consumers for a vhost
    #[command(
        override_usage = "warrenctl [--quiet] list_consumers [--vhost <vhost>] [--no-table-headers] [<column> ...] [--timeout <timeout>]"
    )]
    ListConsumers(Columns),
    /// List user names and tags
    #[command(
        override_usage = "warrenctl [--quiet] list_users [--no-table-headers] [--timeout <timeout>]"
    )]
    ListUsers,
    /// Lists virtual hosts
    #[command(
        override_usage = "warrenctl [--quiet] list_vhosts [--no-table-headers] [<column> ...] [--timeout <timeout>]"
    )]
    ListVhosts(Columns),
    /// Lists user permissions in a virtual host
    #[command(
        override_usage = "warrenctl [--quiet] list_permissions [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]"
    )]
    ListPermissions,
    /// Lists all policies in a virtual host
    #[command(
        override_usage = "warrenctl [--quiet] list_policies [--vhost <vhost>] [--no-table-headers] [--timeout <timeout>]"
    )]
    ListPolicies,
    /// Creates a virtual host
    #[command(
        override_usage = "warrenctl [--quiet] add_vhost <vhost> [--description <description> --tags \"<tag1>,<tag2>,<...>\" --default-queue-type <quorum|classic|stream>]"
    )]
    AddVhost {
        vhost: String,
        /// Virtual host description
        #[arg(long)]
        description: Option<String>,
        /// Comma separated list of tags
        #[arg(long)]
        tags: Option<String>,
        /// Queue type to use if no type is explicitly provided by the client
        #[arg(long = "default-queue-type")]
        default_queue_type: Option<String>,
    },
    /// Deletes a virtual host
    #[command(override_usage = "warrenctl [--quiet] delete_vhost <vhost>")]
    DeleteVhost { vhost: String },
    /// Creates a new user. The user will have no permissions for any virtual hosts by default
    #[command(override_usage = "warrenctl [--quiet] add_user <username> <password>")]
    AddUser {
        username: String,
        /// Read from standard input when omitted; a blank string disables password login
        #[arg(allow_hyphen_values = true)]
        password: Option<String>,
    },
    /// Removes a user
    #[command(override_usage = "warrenctl [--quiet] delete_user <username>")]
    DeleteUser { username: String },
    /// Changes the user password
    #[command(override_usage = "warrenctl [--quiet] change_password <username> <password>")]
    ChangePassword {
        username: String,
        /// Read from standard input when omitted
        #[arg(allow_hyphen_values = true)]
        password: Option<String>,
    },
    /// Sets user tags
    #[command(override_usage = "warrenctl [--quiet] set_user_tags <username> <tag> [...]")]
    SetUserTags { username: String, tags: Vec<String> },
    /// Sets user permissions for a vhost
    #[command(
        override_usage = "warrenctl [--quiet] set_permissions [--vhost <vhost>] <username> <conf> <write> <read>"
    )]
    SetPermissions {
        username: String,
        #[arg(allow_hyphen_values = true)]
        conf: String,
        #[arg(allow_hyphen_values = true)]
        write: String,
        #[arg(allow_hyphen_values = true)]
        read: String,
    },
    /// Revokes user permissions for a vhost
    #[command(
        override_usage = "warrenctl [--quiet] clear_permissions [--vhost <vhost>] <username>"
    )]
    ClearPermissions { username: String },
    /// Sets or updates a policy
    #[command(
        override_usage = "warrenctl [--quiet] set_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>"
    )]
    SetPolicy(PolicyArgs),
    /// Clears (removes) a policy
    #[command(override_usage = "warrenctl [--quiet] clear_policy [--vhost <vhost>] <name>")]
    ClearPolicy { name: String },
    /// Sets an operator policy that overrides a subset of arguments in user policies
    #[command(
        override_usage = "warrenctl [--quiet] set_operator_policy [--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>"
    )]
    SetOperatorPolicy(PolicyArgs),
    /// Clears an operator policy
    #[command(
        override_usage = "warrenctl [--quiet] clear_operator_policy [--vhost <vhost>] <name>"
    )]
    ClearOperatorPolicy { name: String },
    /// Purges a queue (removes all messages in it)
    #[command(
        override_usage = "warrenctl [--quiet] purge_queue [--vhost <vhost>] <queue> [--timeout <timeout>]"
    )]
    PurgeQueue { queue: String },
    /// Deletes a queue
    #[command(
        override_usage = "warrenctl [--quiet] delete_queue [--vhost <vhost>] <queue_name> [--if-empty|-e] [--if-unused|-u] [--timeout <timeout>]"
    )]
    DeleteQueue {
        queue: String,
        /// Delete the queue only if it is empty (has no messages ready for delivery)
        #[arg(short = 'e', long = "if-empty")]
        if_empty: bool,
        /// Delete the queue only if it has no consumers
        #[arg(short = 'u', long = "if-unused")]
        if_unused: bool,
    },
    /// Instructs the broker to close a connection (name as shown by list_connections name, or pid)
    #[command(
        override_usage = "warrenctl [--quiet] close_connection <connection name> <explanation>"
    )]
    CloseConnection {
        connection: String,
        explanation: String,
    },
    /// Exports definitions in JSON
    #[command(
        override_usage = "warrenctl [--quiet] export_definitions <file_path | \"-\"> [--format <json>] [--timeout <timeout>]"
    )]
    ExportDefinitions {
        #[arg(allow_hyphen_values = true)]
        file: String,
        /// Output format (only json)
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Imports definitions in JSON
    #[command(
        override_usage = "warrenctl [--quiet] import_definitions [<file_path | \"-\">] [--format <json>] [--timeout <timeout>]"
    )]
    ImportDefinitions {
        /// File to read; standard input when omitted or "-"
        #[arg(allow_hyphen_values = true)]
        file: Option<String>,
        /// Input format (only json)
        #[arg(long, default_value = "json")]
        format: String,
        /// Accepted for compatibility; the management API always imports
        #[arg(long = "skip-if-unchanged")]
        skip_if_unchanged: bool,
    },
    /// Displays status of a node
    #[command(override_usage = "warrenctl [--quiet] status [--unit <unit>] [--timeout <timeout>]")]
    Status {
        /// Byte multiple to use: bytes, mb, gb
        #[arg(long, default_value = "gb", value_parser = ["bytes", "b", "kb", "mb", "gb", "tb"])]
        unit: String,
    },
    /// Waits for the broker to start (its management API to answer)
    #[command(override_usage = "warrenctl [--quiet] await_startup [--timeout <timeout>]")]
    AwaitStartup,
    /// Checks that the node's management API is up and accepts the credentials
    #[command(override_usage = "warrenctl [--quiet] ping [--timeout <timeout>]")]
    Ping,
    /// Health check that exits with a non-zero code if the broker is not running
    #[command(override_usage = "warrenctl [--quiet] check_running [--timeout <timeout>]")]
    CheckRunning,
    /// Health check that exits with a non-zero code if the target node reports any local alarms
    #[command(override_usage = "warrenctl [--quiet] check_local_alarms [--timeout <timeout>]")]
    CheckLocalAlarms,
    /// Basic TCP connectivity health check for each listener's port on the target node
    #[command(
        override_usage = "warrenctl [--quiet] check_port_connectivity [--timeout <timeout>]"
    )]
    CheckPortConnectivity,
    /// Health check that checks if all vhosts are running in the target node
    #[command(override_usage = "warrenctl [--quiet] check_virtual_hosts [--timeout <timeout>]")]
    CheckVirtualHosts,
    /// Moves a virtual broker clock forward (a broker started with --clock virtual), firing everything due
    #[command(override_usage = "warrenctl [--quiet] advance_clock <duration>")]
    AdvanceClock {
        /// How far: milliseconds, or a number with a unit (250ms, 90s, 5m, 1h, 2d)
        #[arg(value_parser = parse_duration_ms)]
        duration: u64,
    },
    /// Starts the firehose tracer of a virtual host (copies to amq.rabbitmq.trace)
    #[command(override_usage = "warrenctl [--quiet] trace_on [--vhost <vhost>]")]
    TraceOn,
    /// Stops the firehose tracer of a virtual host
    #[command(override_usage = "warrenctl [--quiet] trace_off [--vhost <vhost>]")]
    TraceOff,
    /// Lists message journal events (what happened to which message, and why)
    #[command(
        override_usage = "warrenctl [--quiet] journal [--message-id <id>] [--correlation-id <id>] [--queue <q>] [--exchange <x>] [--event <event>] [--limit <n>] [--wait <duration>] [--all-vhosts]"
    )]
    Journal(JournalArgs),
    /// Switches the message journal on (for --vhost, or with --all-vhosts for every vhost)
    #[command(override_usage = "warrenctl [--quiet] journal_on [--vhost <vhost> | --all-vhosts]")]
    JournalOn {
        #[arg(long = "all-vhosts")]
        all_vhosts: bool,
    },
    /// Switches the message journal off (for --vhost, or with --all-vhosts everywhere)
    #[command(override_usage = "warrenctl [--quiet] journal_off [--vhost <vhost> | --all-vhosts]")]
    JournalOff {
        #[arg(long = "all-vhosts")]
        all_vhosts: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct JournalArgs {
    #[arg(long)]
    pub message_id: Option<String>,
    #[arg(long)]
    pub correlation_id: Option<String>,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub exchange: Option<String>,
    /// published, routed, unroutable, returned, confirmed, delivered, acked, nacked, rejected, requeued,
    /// expired, dead-lettered or dropped
    #[arg(long)]
    pub event: Option<String>,
    #[arg(long)]
    pub limit: Option<u64>,
    /// Wait up to this long for a first matching event (exit code 1 if none comes)
    #[arg(long, value_parser = parse_duration_ms)]
    pub wait: Option<u64>,
    /// Events of every vhost, not only --vhost's
    #[arg(long)]
    pub all_vhosts: bool,
}

/// "90s", "5m", "1h", "2d", "250ms" or plain milliseconds, as milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration '{s}'"))?;
    let per = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration unit in '{s}' (ms, s, m, h or d)")),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Policy name (identifier)
    pub name: String,
    /// Regular expression that selects queues and/or exchanges
    #[arg(allow_hyphen_values = true)]
    pub pattern: String,
    /// Policy definition (arguments). Must be a valid JSON document
    pub definition: String,
    /// Policy priority
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// What the policy applies to: queues, exchanges or all
    #[arg(long, default_value = "all")]
    pub apply_to: String,
}

/// Parse the command line (program name first): the verb as typed and the parsed options.
pub fn parse(args: &[std::ffi::OsString]) -> Result<(String, Cli), clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let verb = matches.subcommand_name().unwrap_or_default().to_string();
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((verb, cli))
}

/// The usage line of a verb (or the tool), as `help` shows it.
pub fn usage_of(verb: Option<&str>) -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let text = match verb.and_then(|v| cmd.find_subcommand_mut(v)) {
        Some(sub) => sub.render_usage().to_string(),
        None => cmd.render_usage().to_string(),
    };
    text.trim_start_matches("Usage: ").trim().to_string()
}

/// What to print for a clap parse failure: `(stdout text, stderr text, exit code)`.
pub fn parse_failure(err: &clap::Error, args: &[String]) -> (String, String, u8) {
    let verb = args.iter().find(|a| is_verb(a)).map(String::as_str);
    let given = format!(
        "Arguments given:\n\t{}\n\nUsage\n\n{}",
        args.join(" "),
        usage_of(verb)
    );
    let arg = context(err, ContextKind::InvalidArg);
    let value = context(err, ContextKind::InvalidValue);
    let option = arg.split(' ').next().unwrap_or_default().to_string();
    let validation = |m: String| {
        (
            String::new(),
            format!("Error (argument validation): {m}\n{given}"),
            64,
        )
    };
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => (err.to_string(), String::new(), 0),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            (String::new(), err.to_string(), 64)
        }
        ErrorKind::InvalidSubcommand => {
            let name = context(err, ContextKind::InvalidSubcommand);
            (
                String::new(),
                format!(
                    "\nCommand '{name}' not found. \n\nUsage\n\n{}",
                    usage_of(None)
                ),
                64,
            )
        }
        ErrorKind::MissingRequiredArgument => validation("not enough arguments.".to_string()),
        ErrorKind::UnknownArgument if option.starts_with('-') => {
            validation(format!("Invalid options for this command:\n{option} : "))
        }
        ErrorKind::UnknownArgument | ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues => {
            validation("too many arguments.".to_string())
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => validation(format!(
            "Invalid options for this command:\n{option} : {value}"
        )),
        _ => {
            let text = err.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            validation(first)
        }
    }
}

fn context(err: &clap::Error, kind: ContextKind) -> String {
    match err.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(","),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn is_verb(s: &str) -> bool {
    use clap::CommandFactory;
    Cli::command().get_subcommands().any(|c| c.get_name() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn try_parse(v: &[&str]) -> Result<(String, Cli), clap::Error> {
        let full: Vec<std::ffi::OsString> = std::iter::once("warrenctl")
            .chain(v.iter().copied())
            .map(Into::into)
            .collect();
        parse(&full)
    }

    fn fail(v: &[&str]) -> (String, String, u8) {
        match try_parse(v) {
            Ok(c) => (format!("parsed: {c:?}"), String::new(), 0),
            Err(e) => parse_failure(&e, &args(v)),
        }
    }

    #[test]
    fn globals_after_the_verb() {
        let Ok((verb, cli)) = try_parse(&["list_queues", "-p", "v1", "-q", "name", "messages"])
        else {
            panic!("parse")
        };
        assert_eq!(cli.global.vhost, "v1");
        assert!(cli.global.quiet);
        assert_eq!(verb, "list_queues");
        let Command::ListQueues { columns, .. } = cli.command else {
            panic!("list_queues")
        };
        assert_eq!(columns.columns, vec!["name", "messages"]);
    }

    #[test]
    fn positionals_do_not_clash_with_globals() {
        let Ok((_, cli)) = try_parse(&["add_user", "--username", "admin", "u3", "pw3", "-p", "v1"])
        else {
            panic!("parse")
        };
        assert_eq!(
            (cli.global.username.as_str(), cli.global.vhost.as_str()),
            ("admin", "v1")
        );
        assert!(
            matches!(cli.command, Command::AddUser { ref username, password: Some(ref p) } if username == "u3" && p == "pw3")
        );
        let Ok((_, cli)) = try_parse(&["add_vhost", "v9"]) else {
            panic!("parse")
        };
        assert_eq!(cli.global.vhost, "/");
        assert!(matches!(cli.command, Command::AddVhost { ref vhost, .. } if vhost == "v9"));
    }

    #[test]
    fn verb_names_are_snake_case() {
        let Ok((verb, _)) = try_parse(&["check_port_connectivity"]) else {
            panic!("parse")
        };
        assert_eq!(verb, "check_port_connectivity");
        let Ok((verb, cli)) = try_parse(&["export_definitions", "-"]) else {
            panic!("parse")
        };
        assert_eq!(verb, "export_definitions");
        assert!(matches!(cli.command, Command::ExportDefinitions { ref file, .. } if file == "-"));
        let Ok((_, cli)) = try_parse(&["add_vhost", "v", "--default-queue-type", "quorum"]) else {
            panic!("parse")
        };
        assert!(
            matches!(cli.command, Command::AddVhost { default_queue_type: Some(ref q), .. } if q == "quorum")
        );
        let Ok((_, cli)) = try_parse(&["delete_queue", "q", "--if-empty", "-u"]) else {
            panic!("parse")
        };
        assert!(matches!(
            cli.command,
            Command::DeleteQueue {
                if_empty: true,
                if_unused: true,
                ..
            }
        ));
    }

    #[test]
    fn validation_messages() {
        let (_, err, code) = fail(&["add_vhost"]);
        assert_eq!(code, 64);
        assert!(err.starts_with("Error (argument validation): not enough arguments.\nArguments given:\n\tadd_vhost\n"), "{err}");
        assert!(err.contains("add_vhost <vhost>"), "{err}");
        let (_, err, code) = fail(&["ping", "extra"]);
        assert_eq!(
            (code, err.lines().next()),
            (64, Some("Error (argument validation): too many arguments."))
        );
        let (_, err, code) = fail(&["list_queues", "--bogus"]);
        assert_eq!(code, 64);
        assert!(
            err.starts_with(
                "Error (argument validation): Invalid options for this command:\n--bogus : \n"
            ),
            "{err}"
        );
        let (_, err, _) = fail(&["set_policy", "p", "x", "{}", "--priority", "abc"]);
        assert!(err.starts_with("Error (argument validation): Invalid options for this command:\n--priority : abc\n"), "{err}");
        let (_, err, code) = fail(&["frobnicate"]);
        assert_eq!(code, 64);
        assert!(
            err.starts_with("\nCommand 'frobnicate' not found. \n"),
            "{err}"
        );
    }
}
