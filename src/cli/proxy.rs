//! `h3fleet proxy`: the local proxy that performs other programs'
//! requests with the fleet's session cache, until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use h3fleet::proxy::{LocalProxy, ProxyRecord};

use super::session_args::{seconds_arg, SessionArgs};
use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Where to listen. Only loopback unless `--auth` is set.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The most client connections served at once; others wait.
    #[arg(long = "max-connections", value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// The longest one request may take upstream, in seconds.
    #[arg(long = "request-timeout", value_name = "SECONDS")]
    request_timeout: Option<f64>,
    /// A session for requests that carry `X-H3fleet-Session: ID`, its
    /// tickets kept under the session identifier IDENT (default: ID).
    /// Repeatable.
    #[arg(long = "session", value_name = "ID[=IDENT]")]
    sessions: Vec<String>,
    /// Require `Proxy-Authorization: Basic` with `USER:PASSWORD` (better
    /// from the environment: argv is visible to every local user).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "H3FLEET_PROXY_AUTH",
        hide_env_values = true
    )]
    auth: Option<String>,
    /// Ports `CONNECT` refuses (comma-separated; default 25,465,587,23).
    #[arg(long = "deny-ports", value_name = "LIST", value_delimiter = ',')]
    deny_ports: Option<Vec<u16>>,
    #[command(flatten)]
    session: SessionArgs,
}

pub(crate) async fn run(args: ProxyArgs) -> Result<(), CliError> {
    let mut builder = LocalProxy::builder()
        .listen(args.listen)
        .max_connections(args.max_connections)
        .session_builder(args.session.builder()?)
        .on_request(Arc::new(print_record));
    if let Some(secs) = args.request_timeout {
        builder = builder.request_timeout(seconds_arg("--request-timeout", secs)?);
    }
    if let Some(auth) = &args.auth {
        let (user, password) = auth.split_once(':').ok_or("--auth: expected USER:PASSWORD")?;
        builder = builder.basic_auth(user, password);
    }
    if let Some(ports) = &args.deny_ports {
        builder = builder.denied_ports(ports.iter().copied());
    }
    let proxy = builder.start().await?;
    for spec in &args.sessions {
        let (id, ident) = spec.split_once('=').unwrap_or((spec, spec));
        let session = args
            .session
            .builder()?
            .redirect(h3fleet::redirect::Policy::none())
            .build()?;
        proxy.register_session(id, session.clone())?;
        if ident != id {
            session.set_session_identifier(ident);
        }
    }
    print_line(&serde_json::json!({ "listen": proxy.addr().to_string() }).to_string());
    super::serve::stopped().await?;
    let complete = proxy.shutdown().await;
    if !complete {
        tracing::warn!("proxy shutdown: some requests or ticket writes were cut short");
    }
    Ok(())
}

fn print_record(record: &ProxyRecord) {
    if let Ok(line) = serde_json::to_string(record) {
        print_line(&line);
    }
}

/// One line on stdout, flushed (a pipe reads each as it comes).
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
