//! The error a request or a session set-up can end with.
//!
//! [`Error`] says what failed in its variant and message; the predicates
//! (`is_connect`, `is_timeout`, `is_tls`, ...) say what a caller usually
//! branches on, as reqwest's do. QUIC failures are wrapped in
//! [`QuicError`], so quinn's types stay out of h3fleet's public face.

use std::time::Duration;

use crate::dns::DnsError;
use crate::tls::TlsError;

/// A boxed error from a lower layer (h3, hyper, quinn), kept as the source.
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
    /// The URL's scheme is not one the session requests: not `https://` or
    /// `http://`, or `http://` under
    /// [`https_only`](crate::SessionBuilder::https_only).
    #[error("{url:?}: {reason}")]
    Scheme {
        /// The URL as given.
        url: String,
        /// Why its scheme is refused.
        reason: &'static str,
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
    /// The TLS handshake over TCP failed (certificate not trusted, no
    /// common protocol version, the server's alert).
    #[error("TLS handshake with {origin} failed: {source}")]
    Handshake {
        /// `host:port`.
        origin: String,
        /// What BoringSSL said.
        source: TlsError,
    },
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
    #[error("cannot connect to {origin} ({addr}) over QUIC: {source}")]
    Connect {
        /// `host:port`.
        origin: String,
        /// The address tried.
        addr: std::net::SocketAddr,
        /// Why.
        source: QuicError,
    },
    /// The QUIC connection failed (handshake refused, certificate not
    /// trusted, peer unreachable, closed by the peer, ...).
    #[error("QUIC connection to {origin} failed: {source}")]
    Connection {
        /// `host:port`.
        origin: String,
        /// Why.
        source: QuicError,
    },
    /// The HTTP exchange failed on an open connection.
    #[error("{protocol} request to {origin} failed: {source}")]
    Http {
        /// `host:port`.
        origin: String,
        /// `HTTP/3`, `HTTP/2` or `HTTP/1.1`.
        protocol: &'static str,
        /// The HTTP library's reason.
        source: BoxError,
    },
    /// Reading a response body failed.
    #[error("reading the {protocol} response body from {origin} failed: {source}")]
    Body {
        /// `host:port`.
        origin: String,
        /// `HTTP/3`, `HTTP/2` or `HTTP/1.1`.
        protocol: &'static str,
        /// The HTTP library's or the connection's reason.
        source: BoxError,
    },
    /// ECH is required and no usable config was found for the host, or the
    /// server rejected ECH for good.
    #[error("ECH is required but {host} has none ({reason}); check its DNS HTTPS record or use --ech auto")]
    Ech {
        /// The host.
        host: String,
        /// Why there is no config.
        reason: String,
    },
    /// The server answered with a client or server error status, and the
    /// caller asked for that to be an error
    /// ([`Response::error_for_status`](crate::Response::error_for_status)).
    #[error("HTTP status {status} from {url}")]
    Status {
        /// The status the server sent.
        status: http::StatusCode,
        /// The URL that answered it.
        url: Box<url::Url>,
    },
    /// The response body is not what the caller asked to decode it as
    /// ([`Response::json`](crate::Response::json)), or its
    /// `Content-Encoding` (gzip, br, zstd, deflate) does not decode.
    #[error("cannot decode the response body from {url} ({what}): {source}")]
    Decode {
        /// The URL that sent the body.
        url: Box<url::Url>,
        /// `JSON`, or the content coding.
        what: String,
        /// What the decoder said.
        source: BoxError,
    },
    /// A request body or query could not be encoded (a value
    /// `serde_json` or `serde_urlencoded` refuses).
    #[error("cannot encode the request {what}: {source}")]
    Encode {
        /// `JSON body`, `form body` or `query`.
        what: &'static str,
        /// What the encoder said.
        source: BoxError,
    },
    /// A redirect could not be followed: too many, or a `Location` that is
    /// not a URL.
    #[error("redirect from {url}: {reason}")]
    Redirect {
        /// The URL that answered the redirect.
        url: Box<url::Url>,
        /// What was wrong.
        reason: String,
    },
    /// The egress proxy could not be reached, refused the credentials or
    /// refused the tunnel.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy, without its password.
        proxy: String,
        /// What went wrong.
        reason: String,
        /// The proxy's reply code (SOCKS5's, or CONNECT's HTTP status).
        reply: Option<u16>,
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
    /// True when the failure came from a time limit (h3fleet's own, or
    /// QUIC's idle timeout while connecting).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Timeout { .. } => true,
            Self::Connection { source, .. } => source.is_timeout(),
            _ => false,
        }
    }

    /// True when the egress proxy failed (unreachable, refused the
    /// credentials or the tunnel); [`proxy_reply`](Self::proxy_reply) has
    /// its code.
    pub fn is_proxy(&self) -> bool {
        matches!(self, Self::Proxy { .. })
    }

    /// The proxy's reply code, for a proxy that answered with a refusal.
    pub fn proxy_reply(&self) -> Option<u16> {
        match self {
            Self::Proxy { reply, .. } => *reply,
            _ => None,
        }
    }

    /// True when no connection could be made: TCP refused or unreachable,
    /// QUIC could not start or failed, the TLS handshake failed, no socket.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            Self::Tcp { .. }
                | Self::Connect { .. }
                | Self::Connection { .. }
                | Self::Handshake { .. }
                | Self::Socket(_)
        )
    }

    /// True when TLS failed: its set-up, a TCP handshake, or a QUIC
    /// handshake refused by either side's TLS (a certificate not trusted,
    /// an alert).
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Tls(_) | Self::Handshake { .. } => true,
            Self::Connection { source, .. } => source.is_tls(),
            _ => false,
        }
    }

    /// True when the host name could not be resolved.
    pub fn is_dns(&self) -> bool {
        matches!(self, Self::Dns(_))
    }

    /// True when Encrypted Client Hello failed for good (required but
    /// unavailable, or rejected even after the server's retry configs).
    pub fn is_ech(&self) -> bool {
        matches!(self, Self::Ech { .. })
    }

    /// True when reading a response body failed.
    pub fn is_body(&self) -> bool {
        matches!(self, Self::Body { .. })
    }

    /// True when an HTTP exchange failed on an open connection.
    pub fn is_request(&self) -> bool {
        matches!(self, Self::Http { .. })
    }

    /// True when the URL could not be requested (including for its scheme).
    pub fn is_url(&self) -> bool {
        matches!(self, Self::Url { .. } | Self::Scheme { .. })
    }

    /// True when a [`SessionBuilder`](crate::SessionBuilder) setting or a
    /// request header was invalid.
    pub fn is_builder(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::UnknownPreset(_) | Self::Tls(_) | Self::Header(_) | Self::Encode { .. }
        )
    }

    /// True for an error status turned into an error by
    /// [`Response::error_for_status`](crate::Response::error_for_status).
    pub fn is_status(&self) -> bool {
        matches!(self, Self::Status { .. })
    }

    /// True when a redirect could not be followed (too many hops, or a bad
    /// `Location`).
    pub fn is_redirect(&self) -> bool {
        matches!(self, Self::Redirect { .. })
    }

    /// True when a response body could not be decoded (as JSON).
    pub fn is_decode(&self) -> bool {
        matches!(self, Self::Decode { .. })
    }

    /// The status of a [`is_status`](Self::is_status) error.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The URL the error concerns, when it came from a response.
    pub fn url(&self) -> Option<&url::Url> {
        match self {
            Self::Status { url, .. } | Self::Decode { url, .. } | Self::Redirect { url, .. } => Some(url),
            _ => None,
        }
    }
}

/// Why a QUIC connection could not be started or failed.
#[derive(Debug)]
pub struct QuicError(Box<QuicErrorKind>);

#[derive(Debug)]
enum QuicErrorKind {
    Connect(quinn::ConnectError),
    Connection(quinn::ConnectionError),
}

impl QuicError {
    /// True when QUIC gave up waiting for the peer.
    pub fn is_timeout(&self) -> bool {
        matches!(
            *self.0,
            QuicErrorKind::Connection(quinn::ConnectionError::TimedOut)
        )
    }

    /// True when TLS ended the handshake (a crypto error code, RFC 9001
    /// §4.8: `0x0100` plus the TLS alert), on either side.
    pub fn is_tls(&self) -> bool {
        let code = match &*self.0 {
            QuicErrorKind::Connection(quinn::ConnectionError::TransportError(e)) => e.code,
            QuicErrorKind::Connection(quinn::ConnectionError::ConnectionClosed(c)) => c.error_code,
            _ => return false,
        };
        (0x100..0x200).contains(&u64::from(code))
    }
}

impl std::fmt::Display for QuicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            QuicErrorKind::Connect(e) => e.fmt(f),
            QuicErrorKind::Connection(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for QuicError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            QuicErrorKind::Connect(e) => Some(e),
            QuicErrorKind::Connection(e) => Some(e),
        }
    }
}

impl From<quinn::ConnectError> for QuicError {
    fn from(e: quinn::ConnectError) -> Self {
        Self(Box::new(QuicErrorKind::Connect(e)))
    }
}

impl From<quinn::ConnectionError> for QuicError {
    fn from(e: quinn::ConnectionError) -> Self {
        Self(Box::new(QuicErrorKind::Connection(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_small() {
        assert!(
            std::mem::size_of::<Error>() <= 72,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn predicates_say_what_failed() {
        let timeout = Error::Timeout {
            what: "connecting",
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_timeout() && !timeout.is_connect());
        let quic = Error::Connection {
            origin: "h:1".into(),
            source: quinn::ConnectionError::TimedOut.into(),
        };
        assert!(quic.is_timeout() && quic.is_connect() && !quic.is_tls());
        assert!(Error::Config("x".into()).is_builder());
        let http = Error::Http {
            origin: "h:1".into(),
            protocol: "HTTP/2",
            source: "reset".into(),
        };
        assert!(http.is_request() && http.to_string().starts_with("HTTP/2 request to h:1 failed"));
    }
}
