//! The `warren` binary: parse flags, set up logging, run the server until SIGINT/SIGTERM; SIGHUP re-reads the
//! TLS certificates. Signals are watched on a thread of their own, so a broker whose workers are all busy
//! still hears them; if a graceful stop then cannot finish in time, that thread ends the process.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use warren::Config;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "warren",
    version,
    about = "An AMQP 0-9-1 message broker compatible with RabbitMQ"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    bind: Option<String>,
    /// AMQP port (0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Directory for durable state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory; write nothing to disk.
    #[arg(long)]
    ephemeral: bool,
    /// TOML config file.
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// RabbitMQ-format definitions file applied at start.
    #[arg(long)]
    definitions: Option<PathBuf>,
    /// Management HTTP API port (default 15672; 0 picks a free port).
    #[arg(long)]
    management_port: Option<u16>,
    /// Prometheus metrics port (default 15692; 0 picks a free port).
    #[arg(long)]
    prometheus_port: Option<u16>,
    /// Log level or tracing filter (e.g. info, debug, warren=trace).
    #[arg(long, env = "WARREN_LOG_LEVEL")]
    log_level: Option<String>,
    /// "virtual": broker time moves only when a test advances it (POST /api/warren/clock/advance).
    #[arg(long, value_parser = ["real", "virtual"])]
    clock: Option<String>,
    /// Behave as RabbitMQ "3.13" (default) or "4.3" (its refusals and defaults).
    #[arg(long, env = "WARREN_COMPAT", value_parser = ["3.13", "4.3"])]
    compat: Option<String>,
    /// The message journal: "on" or "off" (default off; the last one given wins).
    #[arg(long, value_parser = ["on", "off"], overrides_with = "journal")]
    journal: Option<String>,
}

/// mimalloc returns freed memory to the OS lazily, from the allocation paths of the thread that owns it; memory
/// freed by other threads into an idle thread's pages (a drained backlog, the recovery's temporary maps)
/// would stay resident, and RSS drives the memory alarm. A periodic collect purges what is due.
async fn return_free_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        // SAFETY: mi_collect takes no pointers and may be called from any thread at any time.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// See `main`.
const PURGE_DELAY_MS: std::os::raw::c_long = 1;

fn main() -> ExitCode {
    // Freed memory goes back to the OS after a millisecond rather than after mimalloc v3's default second: a
    // publisher at 600k msg/s frees ~200 MB/s of messages it paged out, and the second showed as RSS swinging
    // by 40 MB over a thousand-queue backlog whose live heap stayed near 35 MB. Not at once either: memory
    // freed and allocated again within the millisecond (a 64 KiB body per message) was unmapped and faulted
    // back in, zeroed, every time, which halved the 64 KiB row (14k against 28k msg/s) and cost a
    // thousand-queue drain a tenth of its CPU in page faults. A millisecond holds ~200 KB of that churn.
    // mimalloc's own MIMALLOC_PURGE_DELAY, when given (so spelled: mimalloc's other spellings of it are
    // overridden), wins: it is how the trade is measured.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set takes no pointers and may be called at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warren: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok());
    if let Some(b) = cli.bind {
        config.bind = b;
    }
    if let Some(p) = cli.port {
        config.port = p;
    }
    if let Some(d) = cli.data_dir {
        config.data_dir = d;
    }
    if let Some(p) = cli.management_port {
        config.management.port = Some(p);
    }
    if let Some(p) = cli.prometheus_port {
        config.prometheus.port = Some(p);
    }
    if let Some(d) = cli.definitions {
        config.definitions = Some(d);
    }
    if cli.ephemeral {
        config.ephemeral = true;
    }
    if let Some(l) = cli.log_level {
        config.log_level = l;
    }
    if let Some(c) = cli.clock {
        config.clock = c;
    }
    if let Some(c) = cli.compat {
        config.compat = c;
    }
    if let Some(j) = cli.journal {
        config.journal = Some(j == "on");
    }
    if let Err(e) = config.validate() {
        eprintln!("warren: {e}");
        return ExitCode::from(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let server = match warren::Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("warren: {e}");
                return ExitCode::from(1);
            }
        };
        // Before the LISTENING lines: a harness that sees them may signal at once.
        let mut signals = match watch_signals() {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("warren: cannot watch signals: {e}");
                return ExitCode::from(1);
            }
        };
        // Machine-readable lines for harnesses that start Warren on port 0. A harness may close the pipe
        // after the line it wanted: a failed write must not take the broker down (println! would panic).
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "LISTENING port={}", server.port());
            if let Some(p) = server.tls_port() {
                let _ = writeln!(out, "LISTENING amqps port={p}");
            }
            if let Some(p) = server.management_port() {
                let _ = writeln!(out, "LISTENING management port={p}");
            }
            if let Some(p) = server.prometheus_port() {
                let _ = writeln!(out, "LISTENING prometheus port={p}");
            }
            let _ = out.flush();
        }
        tracing::info!("Server startup complete; 0 plugins started.");
        tokio::spawn(return_free_memory());
        while let Some(sig) = signals.recv().await {
            match sig {
                Signal::Reload => match server.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificates"),
                },
                Signal::Stop => break,
            }
        }
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Stop,
    Reload,
}

/// How long a graceful stop may take before the signal thread ends the process anyway. Nothing confirmed
/// is lost by that: confirms go out only once messages are on disk.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Watch SIGINT, SIGTERM and SIGHUP on a thread with its own small runtime: the main runtime's workers
/// drive its own I/O (and signal) events, so a broker whose workers were all stuck would never see a stop.
fn watch_signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Signal>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Handlers are installed here, before the thread starts, so a failure is reported instead of
    // looking like a stop request.
    let handlers = {
        let _in_rt = rt.enter();
        install_handlers()?
    };
    std::thread::Builder::new()
        .name("warren-signals".into())
        .spawn(move || rt.block_on(signal_loop(tx, handlers)))?;
    Ok(rx)
}

#[cfg(unix)]
type Handlers = [tokio::signal::unix::Signal; 3];
#[cfg(not(unix))]
type Handlers = ();

#[cfg(unix)]
fn install_handlers() -> std::io::Result<Handlers> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok([
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    ])
}

#[cfg(not(unix))]
fn install_handlers() -> std::io::Result<Handlers> {
    Ok(())
}

#[cfg(unix)]
async fn signal_loop(tx: tokio::sync::mpsc::UnboundedSender<Signal>, handlers: Handlers) {
    let [mut term, mut int, mut hup] = handlers;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = tx.send(Signal::Reload);
            }
        }
    }
    let _ = tx.send(Signal::Stop);
    // A second signal, or the grace period, ends the process even if the graceful stop is stuck.
    tokio::select! {
        _ = tokio::time::sleep(STOP_GRACE) => {
            tracing::warn!(grace_secs = STOP_GRACE.as_secs(), "graceful stop did not finish in time; exiting");
        }
        _ = term.recv() => tracing::warn!("second stop signal; exiting"),
        _ = int.recv() => tracing::warn!("second stop signal; exiting"),
    }
    std::process::exit(1);
}

#[cfg(not(unix))]
async fn signal_loop(tx: tokio::sync::mpsc::UnboundedSender<Signal>, _handlers: Handlers) {
    let _ = tokio::signal::ctrl_c().await;
    let _ = tx.send(Signal::Stop);
    tokio::time::sleep(STOP_GRACE).await;
    std::process::exit(1);
}
