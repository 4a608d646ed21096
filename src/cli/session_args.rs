//! The options shared by the commands that make a session (`get`,
//! `proxy`): the fleet cache, TLS, connecting and protocol choice.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use h3fleet::cache::{backend_from_uri, ErrorCallback, TicketReuse};
use h3fleet::ech::EchPolicy;
use h3fleet::{HttpProtocol, Session, SessionBuilder};

use super::{write_out, CliError};

/// How a session is made: `get`'s flags of the same names, as curl's.
#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// Session-cache backend URI, or `none` for memory only (default: the
    /// embedded SQLite file under the user's cache directory). Prefer the
    /// environment for a URI with a password: argv is visible to every
    /// local user.
    #[arg(
        help_heading = "Fleet cache",
        long,
        env = "H3FLEET_CACHE",
        hide_env_values = true
    )]
    pub(crate) cache: Option<String>,
    /// Seal the cache's values with the keys in FILE (lines `ID BASE64KEY`,
    /// the first seals; `h3fleet cache keygen` makes one).
    #[arg(
        help_heading = "Fleet cache",
        long,
        value_name = "FILE",
        env = "H3FLEET_CACHE_KEYS_FILE"
    )]
    pub(crate) cache_keys: Option<PathBuf>,
    /// Client profile; its name is part of every cache key.
    #[arg(help_heading = "Fleet cache", long, default_value = h3fleet::DEFAULT_PRESET)]
    pub(crate) preset: String,
    /// Session identifier: tickets are shared only between equal identifiers.
    #[arg(help_heading = "Fleet cache", long)]
    pub(crate) id: Option<String>,
    /// Trust only the roots in this PEM file (instead of the system's).
    #[arg(help_heading = "TLS", long)]
    pub(crate) cacert: Vec<PathBuf>,
    /// Client certificate (PEM) for servers that ask for one, as curl's
    /// `--cert`; its private key too, unless `--key` gives it. Its sessions
    /// are cached apart from those of other certificates.
    #[arg(help_heading = "TLS", short = 'E', long, value_name = "PEM")]
    pub(crate) cert: Option<PathBuf>,
    /// The private key of `--cert` (PEM).
    #[arg(help_heading = "TLS", long, value_name = "PEM", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Accept any certificate, verifying none (curl's `-k`). The fleet's
    /// cache is then not used at all: nothing is read from it or written.
    #[arg(help_heading = "TLS", short = 'k', long)]
    pub(crate) insecure: bool,
    /// Go through this proxy, as curl's `-x`: `http://` (CONNECT),
    /// `https://` (CONNECT inside TLS, verified with `--cacert`'s roots),
    /// `socks5://` or `socks5h://` (HTTP/3 too, over its UDP relay), with
    /// `user:password@` if it asks. Without it, `HTTPS_PROXY` or
    /// `ALL_PROXY`, as curl. Its tickets are cached apart from other exits'.
    #[arg(help_heading = "Connection", short = 'x', long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Hosts to reach directly despite the proxy, as curl's `--noproxy`:
    /// comma-separated names (each also covering its subdomains), IP
    /// addresses or ranges, or `*`. Replaces `NO_PROXY`.
    #[arg(help_heading = "Connection", long, value_name = "LIST")]
    pub(crate) noproxy: Option<String>,
    /// Connect to ADDR for HOST:PORT (like curl). Repeatable.
    #[arg(help_heading = "Connection", long, value_name = "HOST:PORT:ADDR")]
    pub(crate) resolve: Vec<String>,
    /// Look names up at this DNS server (ADDR or ADDR:PORT).
    #[arg(help_heading = "Connection", long, value_name = "ADDR")]
    pub(crate) dns: Option<String>,
    /// The longest connecting may take, in seconds.
    #[arg(help_heading = "Connection", long = "connect-timeout", value_name = "SECONDS")]
    pub(crate) connect_timeout: Option<f64>,
    /// Connect from this local IP address (curl's `--interface`, an
    /// address only).
    #[arg(help_heading = "Connection", long, value_name = "ADDR")]
    pub(crate) interface: Option<IpAddr>,
    /// TCP keepalive idle time, in seconds (curl's default 60).
    #[arg(help_heading = "Connection", long = "keepalive-time", value_name = "SECONDS", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keepalive_time: u64,
    /// No TCP keepalive probes.
    #[arg(help_heading = "Connection", long = "no-keepalive")]
    pub(crate) no_keepalive: bool,
    /// HTTP/3, falling back to TCP if QUIC does not answer (as curl's).
    #[arg(help_heading = "Protocol", long, group = "version")]
    pub(crate) http3: bool,
    /// HTTP/3 over QUIC only.
    #[arg(help_heading = "Protocol", long = "http3-only", group = "version")]
    pub(crate) http3_only: bool,
    /// HTTP/2 over TLS over TCP only.
    #[arg(help_heading = "Protocol", long, group = "version")]
    pub(crate) http2: bool,
    /// HTTP/1.1 over TLS over TCP only (`--http1` also works).
    #[arg(
        help_heading = "Protocol",
        long = "http1.1",
        alias = "http1",
        group = "version"
    )]
    pub(crate) http1: bool,
    /// Encrypted Client Hello: `auto` (ECH when the origin publishes a
    /// config, else GREASE), `require` (fail without a config) or `off`.
    #[arg(help_heading = "TLS", long, value_name = "POLICY", default_value = "auto", value_parser = ["auto", "require", "off"])]
    pub(crate) ech: String,
    /// `shared` (every connection offers the origin's one ticket) or
    /// `single-use` (each takes a ticket of its own from the fleet's pool,
    /// for servers that accept a 0-RTT ticket once).
    #[arg(help_heading = "Fleet cache", long, value_name = "POLICY", default_value = "shared", value_parser = ["shared", "single-use"])]
    pub(crate) ticket_reuse: String,
}

impl SessionArgs {
    /// A session builder with every one of these options applied.
    pub(crate) fn builder(&self) -> Result<SessionBuilder, CliError> {
        let mut builder = Session::builder().preset(&self.preset);
        builder = builder.protocol(if self.http3_only {
            HttpProtocol::Http3
        } else if self.http2 {
            HttpProtocol::Http2
        } else if self.http1 {
            HttpProtocol::Http1
        } else {
            HttpProtocol::Auto
        });
        builder = builder.ech(match self.ech.as_str() {
            "require" => EchPolicy::Require,
            "off" => EchPolicy::Off,
            _ => EchPolicy::Auto,
        });
        builder = builder.ticket_reuse(
            self.ticket_reuse
                .parse::<TicketReuse>()
                .map_err(|e| format!("--ticket-reuse: {e}"))?,
        );
        builder = self.connection(builder)?;
        builder = self
            .with_cache(builder)?
            .danger_accept_invalid_certs(self.insecure);
        if let Some(cert) = &self.cert {
            builder = builder.identity(identity(cert, self.key.as_deref())?);
        }
        if !self.cacert.is_empty() {
            builder = builder.system_roots(false);
            for path in &self.cacert {
                let pem = std::fs::read(path).map_err(|e| format!("--cacert {}: {e}", path.display()))?;
                builder = builder.add_root_certificate_pem(pem);
            }
        }
        Ok(builder)
    }

    /// The proxy of `-x`, else the environment's (`HTTPS_PROXY`,
    /// `ALL_PROXY`), as curl; `--noproxy` replaces `NO_PROXY`.
    fn proxy(&self) -> Result<Option<h3fleet::Proxy>, CliError> {
        let proxy = match &self.proxy {
            Some(url) => Some(h3fleet::Proxy::all(url)?.no_proxy(h3fleet::NoProxy::from_env())),
            None => h3fleet::Proxy::from_env(),
        };
        Ok(match (&self.noproxy, proxy) {
            (Some(list), Some(proxy)) => Some(proxy.no_proxy(h3fleet::NoProxy::from_string(list))),
            (_, proxy) => proxy,
        })
    }

    /// Where and how connections go: `--resolve`, `--dns`, the proxy,
    /// `--interface`, keepalive and the connect timeout.
    fn connection(&self, mut builder: SessionBuilder) -> Result<SessionBuilder, CliError> {
        for spec in &self.resolve {
            builder = builder.resolve_spec(spec);
        }
        if let Some(dns) = &self.dns {
            builder = builder.dns_server(parse_dns(dns)?);
        }
        if let Some(proxy) = self.proxy()? {
            builder = builder.proxy(proxy);
        }
        builder = builder.local_address(self.interface);
        builder =
            builder.tcp_keepalive((!self.no_keepalive).then(|| Duration::from_secs(self.keepalive_time)));
        if let Some(secs) = self.connect_timeout {
            builder = builder.connect_timeout(seconds_arg("--connect-timeout", secs)?);
        }
        Ok(builder)
    }

    /// The backend, keys and identifier `--cache`, `--cache-keys` and
    /// `--id` ask for.
    fn with_cache(&self, mut builder: SessionBuilder) -> Result<SessionBuilder, CliError> {
        let uri = self.cache.clone().unwrap_or_else(super::default_cache_uri);
        // Under -k the session would refuse the backend anyway: say nothing.
        if uri != "none" && !self.insecure {
            let on_error: ErrorCallback =
                Arc::new(|op, key, e| tracing::warn!("session cache {op} of {key} failed: {e}"));
            builder = builder.session_cache(backend_from_uri(&uri)?, Some(on_error));
        }
        if let Some(keys) = super::cache_keys(self.cache_keys.as_deref())? {
            builder = builder.cache_keys(keys);
        }
        if let Some(id) = &self.id {
            builder = builder.session_identifier(id);
        }
        Ok(builder)
    }
}

/// `--dns ADDR[:PORT]` (port 53 unless given).
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

/// The client certificate of `--cert`, with its key from `--key` or from
/// the same file.
fn identity(cert: &Path, key: Option<&Path>) -> Result<h3fleet::tls::Identity, CliError> {
    let problem = |flag: &str, path: &Path, e: &dyn std::fmt::Display| {
        write_out::CertProblem(format!("{flag} {}: {e}", path.display()))
    };
    let mut pem = std::fs::read(cert).map_err(|e| problem("--cert", cert, &e))?;
    if let Some(key) = key {
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| problem("--key", key, &e))?);
    }
    Ok(h3fleet::tls::Identity::from_pem(&pem).map_err(|e| problem("--cert", cert, &e))?)
}

/// A duration flag given in seconds.
pub(crate) fn seconds_arg(flag: &str, secs: f64) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{flag} {secs}: expected seconds, 0 or more").into())
}
