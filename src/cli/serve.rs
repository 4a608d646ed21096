//! `h3fleet serve`: a local origin with tickets and 0-RTT: HTTP/3 on UDP and
//! HTTP/2 + HTTP/1.1 on TCP, on the same port; plain HTTP/1.1 on another
//! if asked.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use h3fleet::quic::QuicServerConfig;
use h3fleet::server::{rustls_quic_config, H3Origin, RequestLog, RequestRecord, SelfSigned, TcpOrigin};
use h3fleet::tls::{EchKeys, TcpServerConfig};

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on, UDP (HTTP/3) and TCP (HTTP/2, HTTP/1.1)
    /// alike (port 0 picks a port free on both).
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Serve HTTP/2 and HTTP/1.1 on TCP only (no UDP listener, no Alt-Svc).
    #[arg(long, conflicts_with = "no_tcp")]
    no_http3: bool,
    /// Serve HTTP/3 only (no TCP listener).
    #[arg(long)]
    no_tcp: bool,
    /// Accept Encrypted Client Hello on QUIC and TCP: generates ECH keys for
    /// the public name `--ech-public-name`, added to the certificate. HTTP/3
    /// then runs on h3fleet's BoringSSL server instead of rustls.
    #[arg(long)]
    ech: bool,
    /// The public name the outer ClientHello carries (never an inner name).
    #[arg(
        long,
        value_name = "DNSNAME",
        default_value = "public.h3fleet.test",
        requires = "ech"
    )]
    ech_public_name: String,
    /// Where to write the ECHConfigList (raw bytes, as published in a DNS
    /// HTTPS record's `ech` parameter).
    #[arg(long, value_name = "FILE", requires = "ech")]
    ech_config_out: Option<PathBuf>,
    /// Where to write the self-signed certificate (PEM) clients must trust
    /// (default: a file in the temporary directory, named after the port).
    #[arg(long, value_name = "PEM")]
    cert_out: Option<PathBuf>,
    /// A DNS name (or IP literal) for the certificate. Repeatable; default
    /// `localhost`.
    #[arg(long = "name", value_name = "DNSNAME")]
    names: Vec<String>,
    /// Also serve the same paths in plain HTTP/1.1 (no TLS) on this
    /// address, for `http://` URLs (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
}

/// Which listeners to start, and with what.
#[derive(Debug, Clone)]
pub(crate) struct Listeners {
    pub(crate) http3: bool,
    pub(crate) tcp: bool,
    /// Accept ECH with keys for this public name.
    pub(crate) ech_public_name: Option<String>,
    /// HTTP/3 on h3fleet's BoringSSL server even without ECH (stateless
    /// tickets a fleet can each use many times) instead of rustls (whose
    /// 0-RTT tickets are single-use).
    pub(crate) boring_quic: bool,
    /// Plain HTTP/1.1 on this address too.
    pub(crate) plain: Option<SocketAddr>,
}

impl Listeners {
    /// HTTP/3 and TCP, no ECH, HTTP/3 on rustls, no plain HTTP.
    pub(crate) fn both() -> Self {
        Self {
            http3: true,
            tcp: true,
            ech_public_name: None,
            boring_quic: false,
            plain: None,
        }
    }
}

/// A started origin and the certificate file clients must trust.
pub(crate) struct Started {
    pub(crate) h3: Option<H3Origin>,
    pub(crate) tcp: Option<TcpOrigin>,
    /// Plain HTTP/1.1, if asked for.
    pub(crate) plain: Option<TcpOrigin>,
    pub(crate) addr: SocketAddr,
    pub(crate) cert: PathBuf,
    /// With ECH: the ECHConfigList clients need.
    pub(crate) ech_config_list: Option<Vec<u8>>,
}

impl Started {
    /// Hands every request either side answers to `log`.
    pub(crate) fn set_request_log(&self, log: RequestLog) {
        if let Some(h3) = &self.h3 {
            h3.set_request_log(Some(Arc::clone(&log)));
        }
        for tcp in self.tcp.iter().chain(&self.plain) {
            tcp.set_request_log(Some(Arc::clone(&log)));
        }
    }

    pub(crate) fn close(&self) {
        if let Some(h3) = &self.h3 {
            h3.close();
        }
        for tcp in self.tcp.iter().chain(&self.plain) {
            tcp.close();
        }
    }
}

/// How many times a port picked for UDP is tried for TCP before giving up.
const SAME_PORT_TRIES: usize = 20;

/// The TLS side of an origin: its certificate and the ECH keys, if any.
struct OriginTls {
    cert: SelfSigned,
    ech: Option<Arc<EchKeys>>,
    tcp: TcpServerConfig,
    /// HTTP/3 on h3fleet's BoringSSL server (rustls has no server-side ECH).
    boring_quic: bool,
}

impl OriginTls {
    fn new(names: &[String], listeners: &Listeners) -> Result<Self, CliError> {
        let mut names = if names.is_empty() {
            vec!["localhost".to_owned()]
        } else {
            names.to_vec()
        };
        // After an ECH rejection the client authenticates the public name.
        if let Some(public) = &listeners.ech_public_name {
            names.push(public.clone());
        }
        let cert = SelfSigned::generate(&names)?;
        let ech = listeners
            .ech_public_name
            .as_deref()
            .map(EchKeys::generate)
            .transpose()?
            .map(Arc::new);
        let mut tcp = TcpServerConfig::builder(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes());
        if let Some(keys) = &ech {
            tcp = tcp.ech_keys(Arc::clone(keys));
        }
        let boring_quic = ech.is_some() || listeners.boring_quic;
        Ok(Self {
            tcp: tcp.build()?,
            cert,
            ech,
            boring_quic,
        })
    }

    fn quic(&self) -> Result<Arc<dyn quinn::crypto::ServerConfig>, CliError> {
        let (cert, key) = (self.cert.cert_pem.as_bytes(), self.cert.key_pem.as_bytes());
        if !self.boring_quic {
            return Ok(rustls_quic_config(cert, key)?);
        }
        let mut quic = QuicServerConfig::builder(cert, key);
        if let Some(keys) = &self.ech {
            quic = quic.ech_keys(Arc::clone(keys));
        }
        Ok(Arc::new(quic.build()?))
    }
}

/// Binds HTTP/3 and TCP on one port (trying other ports when the one
/// picked for UDP is taken on TCP).
fn bind(
    listen: SocketAddr,
    tls: &OriginTls,
    listeners: &Listeners,
) -> Result<(Option<H3Origin>, Option<TcpOrigin>, SocketAddr), CliError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let h3 = if listeners.http3 {
            Some(H3Origin::bind(listen, tls.quic()?)?)
        } else {
            None
        };
        let addr = match &h3 {
            Some(h3) => h3.local_addr().ok_or("the origin has no local address")?,
            None => listen,
        };
        if !listeners.tcp {
            return Ok((h3, None, addr));
        }
        match TcpOrigin::bind(addr, tls.tcp.clone()) {
            Ok(tcp) => {
                let addr = tcp.local_addr();
                tcp.set_alt_svc(h3.as_ref().map(|_| addr.port()));
                return Ok((h3, Some(tcp), addr));
            }
            // The port picked for UDP is taken on TCP: pick another.
            Err(_) if listen.port() == 0 && h3.is_some() && tries < SAME_PORT_TRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts an origin with a fresh self-signed certificate for `names`,
/// written to `cert_out` (or a temporary file): HTTP/3 on quinn's rustls
/// server and HTTP/2 + HTTP/1.1 on BoringSSL, on one port, the TCP side
/// advertising the HTTP/3 one with `Alt-Svc`.
pub(crate) fn start(
    listen: SocketAddr,
    names: &[String],
    cert_out: Option<&Path>,
    listeners: &Listeners,
) -> Result<Started, CliError> {
    let tls = OriginTls::new(names, listeners)?;
    let (h3, tcp, addr) = bind(listen, &tls, listeners)?;
    let path = match cert_out {
        Some(path) => path.to_owned(),
        None => std::env::temp_dir().join(format!("h3fleet-serve-{}.pem", addr.port())),
    };
    std::fs::write(&path, tls.cert.cert_pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let plain = listeners.plain.map(TcpOrigin::bind_plain).transpose()?;
    Ok(Started {
        h3,
        tcp,
        plain,
        addr,
        cert: path,
        ech_config_list: tls.ech.map(|keys| keys.config_list().to_vec()),
    })
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let listeners = Listeners {
        http3: !args.no_http3,
        tcp: !args.no_tcp,
        ech_public_name: args.ech.then(|| args.ech_public_name.clone()),
        boring_quic: false,
        plain: args.http_listen,
    };
    let started = start(args.listen, &args.names, args.cert_out.as_deref(), &listeners)?;
    if let (Some(path), Some(list)) = (&args.ech_config_out, &started.ech_config_list) {
        std::fs::write(path, list).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "{}",
        serde_json::json!({
            "listen": started.addr.to_string(),
            "cert": started.cert.display().to_string(),
            "http3": listeners.http3,
            "tcp": listeners.tcp,
            "ech_public_name": listeners.ech_public_name,
            "http_listen": started.plain.as_ref().map(|p| p.local_addr().to_string()),
        })
    );
    std::io::stdout().flush()?;
    started.set_request_log(Arc::new(|record: &RequestRecord| {
        if let Ok(line) = serde_json::to_string(record) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }));
    stopped().await?;
    started.close();
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stopped() -> Result<(), CliError> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
