//! Argument parsing and dispatch for the `h3fleet` command.

mod bench;
mod bench_plot;
mod cache_cmd;
mod cache_inspect;
mod demo;
mod get;
mod get_request;
mod proxy;
mod serve;
mod session_args;
mod verbose;
mod write_out;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// h3fleet: an HTTP client for fleets, whose replicas share TLS session
/// tickets and ECH configs through Redis, Redis Cluster, Memcached or SQLite.
#[derive(Debug, Parser)]
#[command(name = "h3fleet", version, about)]
struct Cli {
    /// Log more (-v: debug, -vv: trace; for `get`, -v prints what curl's
    /// -v does and -vv starts the debug log). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make one request (HTTP/3, HTTP/2 or HTTP/1.1) through the shared
    /// session cache.
    Get(Box<get::GetArgs>),
    /// Run a local HTTP proxy that performs other programs' requests
    /// (curl, Python, Node...) with the fleet's session cache: shared
    /// tickets, 0-RTT, ECH, HTTP/3.
    Proxy(Box<proxy::ProxyArgs>),
    /// Run a local origin (HTTP/3 on UDP, HTTP/2 and HTTP/1.1 on TCP) with
    /// session tickets and 0-RTT.
    Serve(serve::ServeArgs),
    /// Two replica processes, one origin, one shared cache: the second
    /// resumes the first one's ticket and sends its request in 0-RTT.
    Demo(demo::DemoArgs),
    /// Inspect and check a session-cache backend.
    #[command(subcommand)]
    Cache(cache_cmd::CacheCommand),
    /// Measure fleet-wide resumption and 0-RTT: replica processes against
    /// local origins behind a latency relay, once with a shared cache and
    /// once with local-only caches.
    Bench(bench::BenchArgs),
    /// One replica of `h3fleet bench` (started by it).
    #[command(hide = true)]
    BenchReplica(bench::ReplicaArgs),
}

/// Parses arguments, runs the command, and maps errors to exit codes
/// (curl's for `get`, else 1).
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    // `get -v` is curl's -v, not a log level: the log starts at -vv.
    let log_level = match &cli.command {
        Command::Get(_) => cli.verbose.saturating_sub(1),
        _ => cli.verbose,
    };
    init_tracing(log_level);
    let (curl_codes, quiet) = match &cli.command {
        Command::Get(args) => (true, args.quiet()),
        _ => (false, false),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Get(args) => get::run(*args, cli.verbose > 0).await,
            Command::Proxy(args) => proxy::run(*args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Cache(cmd) => cache_cmd::run(cmd).await,
            Command::Bench(args) => bench::run(args).await,
            Command::BenchReplica(args) => bench::replica(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !quiet {
                eprintln!("error: {e}");
                let mut source = e.source();
                while let Some(cause) = source {
                    eprintln!("  caused by: {cause}");
                    source = cause.source();
                }
            }
            // `get` exits with curl's codes; every other command with 1.
            ExitCode::from(if curl_codes {
                write_out::curl_exit_code(&*e)
            } else {
                1
            })
        }
    }
}

/// The error type of every command.
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "h3fleet=debug,info",
        _ => "h3fleet=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The keyring in the key file at `path`, if one is given.
pub(crate) fn cache_keys(
    path: Option<&std::path::Path>,
) -> Result<Option<h3fleet::cache::CacheKeys>, CliError> {
    match path {
        Some(path) => Ok(Some(h3fleet::cache::CacheKeys::from_file(path)?)),
        None => Ok(None),
    }
}

/// `sqlite:` on `$XDG_CACHE_HOME/h3fleet/cache.db`, else
/// `~/.cache/h3fleet/cache.db`, else `./h3fleet-cache.db`.
pub(crate) fn default_cache_uri() -> String {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .and_then(non_empty)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(non_empty)
                .map(|h| h.join(".cache"))
        });
    match dir {
        Some(dir) => format!("sqlite:{}", dir.join("h3fleet").join("cache.db").display()),
        None => "sqlite:h3fleet-cache.db".to_owned(),
    }
}
