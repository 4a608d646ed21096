//! `h3fleet serve`: a local HTTP/3 origin with tickets and 0-RTT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use h3fleet::server::{rustls_quic_config, H3Origin, RequestRecord, SelfSigned};

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The UDP address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Where to write the self-signed certificate (PEM) clients must trust
    /// (default: a file in the temporary directory, named after the port).
    #[arg(long, value_name = "PEM")]
    cert_out: Option<PathBuf>,
    /// A DNS name (or IP literal) for the certificate. Repeatable; default
    /// `localhost`.
    #[arg(long = "name", value_name = "DNSNAME")]
    names: Vec<String>,
}

/// A started origin and the certificate file clients must trust.
pub(crate) struct Started {
    pub(crate) origin: H3Origin,
    pub(crate) cert: PathBuf,
}

/// Starts an origin on quinn's rustls server with a fresh self-signed
/// certificate for `names`, written to `cert_out` (or a temporary file).
pub(crate) fn start(
    listen: SocketAddr,
    names: &[String],
    cert_out: Option<&Path>,
) -> Result<Started, CliError> {
    let names = if names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        names.to_vec()
    };
    let cert = SelfSigned::generate(&names)?;
    let origin = H3Origin::bind(
        listen,
        rustls_quic_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())?,
    )?;
    let addr = origin.local_addr().ok_or("the origin has no local address")?;
    let path = match cert_out {
        Some(path) => path.to_owned(),
        None => std::env::temp_dir().join(format!("h3fleet-serve-{}.pem", addr.port())),
    };
    std::fs::write(&path, cert.cert_pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Started { origin, cert: path })
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    let Started { origin, cert } = start(args.listen, &args.names, args.cert_out.as_deref())?;
    let addr = origin.local_addr().ok_or("the origin has no local address")?;
    println!(
        "{}",
        serde_json::json!({ "listen": addr.to_string(), "cert": cert.display().to_string() })
    );
    std::io::stdout().flush()?;
    origin.set_request_log(Some(Arc::new(|record: &RequestRecord| {
        if let Ok(line) = serde_json::to_string(record) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    })));
    stopped().await?;
    origin.close();
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() -> Result<(), CliError> {
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
