//! The error a request or a session set-up can end with.

use std::time::Duration;

use crate::dns::DnsError;
use crate::tls::TlsError;

/// A boxed error from a lower layer (h3, quinn), kept as the source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request failed, or a [`Session`](crate::Session) could not be
/// built. Each message says what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be requested.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No preset has this name.
    #[error(transparent)]
    UnknownPreset(#[from] crate::preset::UnknownPresetError),
    /// A header name or value is not valid HTTP.
    #[error("invalid header: {0}")]
    Header(String),
    /// A builder setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The host name could not be resolved.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The TLS configuration could not be built (e.g. unreadable root
    /// certificates).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// No local UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The TCP connection could not be made.
    #[error("cannot connect to {origin} ({addr}) over TCP: {source}")]
    Tcp {
        /// `host:port`.
        origin: String,
        /// The address tried.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The QUIC connection could not be started.
    #[error("cannot connect to {origin} ({addr}): {source}")]
    Connect {
        /// `host:port`.
        origin: String,
        /// The address tried.
        addr: std::net::SocketAddr,
        /// quinn's reason.
        source: quinn::ConnectError,
    },
    /// The QUIC connection failed (handshake refused, certificate not
    /// trusted, peer unreachable, ...).
    #[error("connection to {origin} failed: {source}")]
    Connection {
        /// `host:port`.
        origin: String,
        /// quinn's reason.
        source: quinn::ConnectionError,
    },
    /// The HTTP/3 exchange failed.
    #[error("HTTP/3 request to {origin} failed: {source}")]
    Http {
        /// `host:port`.
        origin: String,
        /// h3's reason.
        source: BoxError,
    },
    /// ECH is required and no usable config was found for the host.
    #[error("ECH is required but {host} has none ({reason}); check its DNS HTTPS record or use --ech auto")]
    Ech {
        /// The host.
        host: String,
        /// Why there is no config.
        reason: String,
    },
    /// A time limit passed.
    #[error("{what} took longer than {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
}

impl Error {
    /// True when the failure came from a time limit.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
            || matches!(
                self,
                Self::Connection {
                    source: quinn::ConnectionError::TimedOut,
                    ..
                }
            )
    }
}
