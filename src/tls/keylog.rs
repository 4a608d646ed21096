//! `SSLKEYLOGFILE`: the NSS key log format Wireshark reads, written for
//! QUIC and TCP connections alike when a session asks for it.
//!
//! The file holds every connection's traffic secrets: whoever reads it
//! decrypts the captured traffic. It is opened for appending, created
//! private to the user, and only when the session opts in
//! ([`SessionBuilder::tls_sslkeylogfile`](crate::SessionBuilder::tls_sslkeylogfile))
//! and the variable is set, as with curl and reqwest.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::TlsError;

/// An open key log, shared by every context of a session.
#[derive(Debug, Clone)]
pub(crate) struct KeyLog(Arc<Mutex<std::fs::File>>);

impl KeyLog {
    /// The file named by `SSLKEYLOGFILE`, or `None` when it is unset.
    pub(crate) fn from_env() -> Result<Option<Self>, TlsError> {
        match std::env::var_os("SSLKEYLOGFILE") {
            Some(path) if !path.is_empty() => Self::open(Path::new(&path)).map(Some),
            _ => Ok(None),
        }
    }

    fn open(path: &Path) -> Result<Self, TlsError> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(|e| TlsError::new(format!("SSLKEYLOGFILE {}: {e}", path.display())))?;
        Ok(Self(Arc::new(Mutex::new(file))))
    }

    /// Writes one line BoringSSL hands over (a write failure is logged,
    /// never fatal to the connection; the line itself never is).
    fn write(&self, line: &str) {
        let mut file = crate::sync::lock(&self.0);
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(error = %e, "cannot write to SSLKEYLOGFILE");
        }
    }

    /// Makes `ctx` log its connections' secrets here.
    pub(crate) fn attach(&self, ctx: &mut boring::ssl::SslContextBuilder) {
        let log = self.clone();
        ctx.set_keylog_callback(move |_, line| log.write(line));
    }
}
