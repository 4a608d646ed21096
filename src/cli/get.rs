//! `h3fleet get`: one request, curl-style, through the shared session cache.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use h3fleet::cache::{backend_from_uri, ErrorCallback, TicketReuse};
use h3fleet::ech::{EchPolicy, EchSource};
use h3fleet::redirect::Policy;
use h3fleet::{HttpProtocol, Response, Session};

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The https:// URL to request.
    url: String,
    /// Session-cache backend URI, or `none` for memory only (default: the
    /// embedded SQLite file under the user's cache directory). Prefer the
    /// environment for a URI with a password: argv is visible to every
    /// local user.
    #[arg(long, env = "H3FLEET_CACHE", hide_env_values = true)]
    cache: Option<String>,
    /// Seal the cache's values with the keys in FILE (lines `ID BASE64KEY`,
    /// the first seals; `h3fleet cache keygen` makes one).
    #[arg(long, value_name = "FILE", env = "H3FLEET_CACHE_KEYS_FILE")]
    cache_keys: Option<PathBuf>,
    /// Client profile; its name is part of every cache key.
    #[arg(long, default_value = h3fleet::DEFAULT_PRESET)]
    preset: String,
    /// Session identifier: tickets are shared only between equal identifiers.
    #[arg(long)]
    id: Option<String>,
    /// Trust only the roots in this PEM file (instead of the system's).
    #[arg(long)]
    cacert: Vec<PathBuf>,
    /// Connect to ADDR for HOST:PORT (like curl). Repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    resolve: Vec<String>,
    /// Look names up at this DNS server (ADDR or ADDR:PORT).
    #[arg(long, value_name = "ADDR")]
    dns: Option<String>,
    /// The request method (default GET, or POST with -d).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// A request header, `Name: value`. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// The request body.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print one JSON line describing the exchange instead of the body.
    #[arg(long)]
    json: bool,
    /// Use HTTP/3 over QUIC only. (Default: HTTP/3 where the origin is
    /// known to speak it, else QUIC with a head start over TCP.)
    #[arg(long, group = "version")]
    http3: bool,
    /// Use HTTP/2 over TLS over TCP only.
    #[arg(long, group = "version")]
    http2: bool,
    /// Use HTTP/1.1 over TLS over TCP only.
    #[arg(long, group = "version")]
    http1: bool,
    /// Encrypted Client Hello: `auto` (ECH when the origin publishes a
    /// config, else GREASE), `require` (fail without a config) or `off`.
    #[arg(long, value_name = "POLICY", default_value = "auto", value_parser = ["auto", "require", "off"])]
    ech: String,
    /// `shared` (every connection offers the origin's one ticket) or
    /// `single-use` (each takes a ticket of its own from the fleet's pool,
    /// for servers that accept a 0-RTT ticket once).
    #[arg(long, value_name = "POLICY", default_value = "shared", value_parser = ["shared", "single-use"])]
    ticket_reuse: String,
    /// Follow redirects (as curl's `-L`; without it a redirect is the
    /// answer).
    #[arg(short = 'L', long = "location")]
    location: bool,
    /// With `-L`, the most redirects followed (curl's default 50).
    #[arg(long = "max-redirs", value_name = "NUM", default_value_t = 50)]
    max_redirs: usize,
}

/// What `--json` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct GetReport {
    pub(crate) url: String,
    pub(crate) status: u16,
    pub(crate) protocol: String,
    pub(crate) resumed: bool,
    pub(crate) early_data: String,
    pub(crate) ticket_source: String,
    /// `accepted`, `rejected`, `grease` or `off`.
    #[serde(default)]
    pub(crate) ech: String,
    /// `config`, `local`, `backend`, `dns` or `none`.
    #[serde(default)]
    pub(crate) ech_source: String,
    /// `shared` or `single-use`.
    #[serde(default)]
    pub(crate) ticket_reuse: String,
    /// Under `single-use`: the pool's size when the ticket was taken (it
    /// included; 0: empty), if known.
    #[serde(default)]
    pub(crate) ticket_pool_held: Option<usize>,
    /// The URL of the final response (after `-L`'s redirects).
    #[serde(default)]
    pub(crate) url_effective: String,
    /// How many redirects were followed.
    #[serde(default)]
    pub(crate) num_redirects: usize,
    pub(crate) handshake_ms: f64,
    pub(crate) total_ms: f64,
    pub(crate) body_bytes: u64,
}

fn parse_dns(spec: &str) -> Result<SocketAddr, CliError> {
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = spec
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("--dns {spec:?}: expected an IP address, optionally with :PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

fn session(args: &GetArgs) -> Result<Session, CliError> {
    let mut builder = Session::builder().preset(&args.preset);
    builder = builder.protocol(if args.http3 {
        HttpProtocol::Http3
    } else if args.http2 {
        HttpProtocol::Http2
    } else if args.http1 {
        HttpProtocol::Http1
    } else {
        HttpProtocol::Auto
    });
    builder = builder.ech(match args.ech.as_str() {
        "require" => EchPolicy::Require,
        "off" => EchPolicy::Off,
        _ => EchPolicy::Auto,
    });
    builder = builder.ticket_reuse(
        args.ticket_reuse
            .parse::<TicketReuse>()
            .map_err(|e| format!("--ticket-reuse: {e}"))?,
    );
    builder = builder.redirect(if args.location {
        Policy::limited(args.max_redirs)
    } else {
        Policy::none()
    });
    let uri = args.cache.clone().unwrap_or_else(super::default_cache_uri);
    if uri != "none" {
        let on_error: ErrorCallback =
            Arc::new(|op, key, e| tracing::warn!("session cache {op} of {key} failed: {e}"));
        builder = builder.session_cache(backend_from_uri(&uri)?, Some(on_error));
    }
    if let Some(keys) = super::cache_keys(args.cache_keys.as_deref())? {
        builder = builder.cache_keys(keys);
    }
    if let Some(id) = &args.id {
        builder = builder.session_identifier(id);
    }
    if !args.cacert.is_empty() {
        builder = builder.system_roots(false);
        for path in &args.cacert {
            let pem = std::fs::read(path).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
            builder = builder.add_root_certificate_pem(pem);
        }
    }
    for spec in &args.resolve {
        builder = builder.resolve_spec(spec);
    }
    if let Some(dns) = &args.dns {
        builder = builder.dns_server(parse_dns(dns)?);
    }
    Ok(builder.build()?)
}

pub(crate) async fn run(args: GetArgs) -> Result<(), CliError> {
    let session = session(&args)?;
    let method = match &args.method {
        Some(m) => http::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("-X {m:?} is not an HTTP method"))?,
        None if args.data.is_some() => http::Method::POST,
        None => http::Method::GET,
    };
    let mut request = session.request(method, &args.url);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("-H {header:?}: expected `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        request = request.body(data.clone().into_bytes());
    }
    let started = Instant::now();
    let outcome = exchange(request, &args).await;
    let total = started.elapsed();
    // Keep the tickets this run won, even when the request failed late.
    session.close().await;
    if args.json {
        print_report(&args, &outcome?, total)?;
        return Ok(());
    }
    let response_tls = &outcome?.tls;
    tracing::info!(
        resumed = response_tls.resumed,
        early_data = response_tls.early_data.as_str(),
        ticket_source = response_tls.ticket_source_str(),
        total_ms = millis(total),
        "done"
    );
    Ok(())
}

/// `--json`: one line describing the exchange.
fn print_report(args: &GetArgs, outcome: &Outcome, total: std::time::Duration) -> Result<(), CliError> {
    let response_tls = &outcome.tls;
    let report = GetReport {
        url: args.url.clone(),
        status: outcome.status,
        protocol: protocol_name(outcome.version).to_owned(),
        resumed: response_tls.resumed,
        early_data: response_tls.early_data.as_str().to_owned(),
        ticket_source: response_tls.ticket_source_str().to_owned(),
        ech: response_tls.ech.as_str().to_owned(),
        ech_source: response_tls
            .ech_source
            .map_or("none", EchSource::as_str)
            .to_owned(),
        ticket_reuse: response_tls.ticket_reuse.as_str().to_owned(),
        ticket_pool_held: response_tls.ticket_pool_held,
        url_effective: outcome.url_effective.clone(),
        num_redirects: outcome.num_redirects,
        handshake_ms: millis(response_tls.handshake_time),
        total_ms: millis(total),
        body_bytes: outcome.body_bytes,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Sends the request and writes the body where it belongs.
/// What `exchange` learnt of the response.
struct Outcome {
    tls: h3fleet::TlsInfo,
    status: u16,
    body_bytes: u64,
    version: http::Version,
    url_effective: String,
    num_redirects: usize,
}

async fn exchange(request: h3fleet::RequestBuilder, args: &GetArgs) -> Result<Outcome, CliError> {
    let mut response: Response = request.send().await?;
    let tls = response.tls().clone();
    let version = response.protocol();
    let status = response.status().as_u16();
    let (url_effective, num_redirects) = (response.url().to_string(), response.redirects().len());
    let mut sink: Box<dyn Write> = match (&args.output, args.json) {
        (Some(path), _) => {
            Box::new(std::fs::File::create(path).map_err(|e| format!("-o {}: {e}", path.display()))?)
        }
        (None, true) => Box::new(std::io::sink()),
        (None, false) => Box::new(std::io::stdout().lock()),
    };
    let mut body_bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        body_bytes += chunk.len() as u64;
        sink.write_all(&chunk)?;
    }
    sink.flush()?;
    Ok(Outcome {
        tls,
        status,
        body_bytes,
        version,
        url_effective,
        num_redirects,
    })
}

/// `h3`, `h2` or `http/1.1`, as ALPN names them.
fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        _ => "http/1.1",
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
