//! Connecting and exchanging, below a [`Session`](crate::Session).
//!
//! - [`connect`]: one description of a dial for both HTTP/3 and TCP
//!   (resolving the target, choosing ECH, the ticket to offer), the h3 and
//!   TCP dials, the retry after an ECH rejection and the resend after
//!   `425 Too Early`, each written once.
//! - [`eyeballs`]: TCP to the first of a name's addresses to answer.
//! - [`race`]: QUIC against TCP for an origin whose protocol is not known.
//! - [`select`]: what the session has learned of each origin's protocols
//!   (Alt-Svc, DNS HTTPS records, races) and the plan for a request.
//! - [`h3`] (h3 over quinn) and [`tcp`] (hyper over BoringSSL): one
//!   connection each; [`conn`] what they share; [`pool`] the open ones.

pub(crate) mod body;
pub(crate) mod conn;
pub(crate) mod connect;
pub(crate) mod ech_offer;
pub(crate) mod egress;
pub(crate) mod eyeballs;
pub(crate) mod h3;
pub(crate) mod pool;
pub(crate) mod race;
pub(crate) mod select;
pub(crate) mod tcp;

use http::{HeaderMap, Method};

pub use conn::EarlyData;
pub(crate) use conn::{Conn, ResponseBody};

use crate::cache::Protocol;
use crate::replay::ReplaySafe;

/// Which HTTP versions a session speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpProtocol {
    /// HTTP/3 where the origin is known to speak it (a cached `Alt-Svc`, a
    /// race QUIC won), else a race in which QUIC gets a short head start
    /// over TCP (HTTP/2, or HTTP/1.1 if the server has no HTTP/2). What won
    /// is remembered per origin for a while. A QUIC attempt that fails or
    /// stalls falls back to TCP within the same request.
    #[default]
    Auto,
    /// HTTP/3 over QUIC only.
    Http3,
    /// HTTP/2 over TLS over TCP only (ALPN `h2`; a server without HTTP/2 is
    /// spoken to in HTTP/1.1).
    Http2,
    /// HTTP/1.1 over TLS over TCP only.
    Http1,
}

impl HttpProtocol {
    /// The ticket caches a TCP connection may resume from, in order.
    pub(crate) fn tcp_protocols(self) -> &'static [Protocol] {
        match self {
            Self::Http1 => &[Protocol::H1],
            Self::Http2 => &[Protocol::H2],
            Self::Auto | Self::Http3 => &[Protocol::H2, Protocol::H1],
        }
    }

    /// The mode that carries a request of `version`; `None` for a version
    /// h3fleet does not speak (HTTP/1.0, HTTP/0.9).
    pub(crate) fn for_version(version: http::Version) -> Option<Self> {
        match version {
            http::Version::HTTP_3 => Some(Self::Http3),
            http::Version::HTTP_2 => Some(Self::Http2),
            http::Version::HTTP_11 => Some(Self::Http1),
            _ => None,
        }
    }

    /// The ALPN protocols offered on TCP, most preferred first.
    pub(crate) fn tcp_alpn(self) -> &'static [&'static [u8]] {
        match self {
            Self::Http1 => &[b"http/1.1"],
            Self::Http2 => &[b"h2"],
            Self::Auto | Self::Http3 => &[b"h2", b"http/1.1"],
        }
    }
}

/// A request ready to go on the wire, kept so it can be sent again after a
/// 0-RTT rejection or a `425 Too Early` (a streamed body only while what
/// was read of it is still kept: [`body`]).
#[derive(Debug, Clone)]
pub(crate) struct PreparedRequest {
    pub(crate) method: Method,
    /// Absolute `https://` URI (no fragment).
    pub(crate) uri: http::Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: body::RequestBody,
    /// Present when this request may ride in 0-RTT early data.
    pub(crate) replay_safe: Option<ReplaySafe>,
    /// The protocol this request must go over, if not the session's
    /// ([`RequestBuilder::version`](crate::RequestBuilder::version)).
    pub(crate) protocol: Option<HttpProtocol>,
}

impl PreparedRequest {
    pub(crate) fn head(&self) -> Result<http::Request<()>, http::Error> {
        let mut request = http::Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(())?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }

    /// The same request, never sent early (it goes after the handshake).
    pub(crate) fn after_handshake(&self) -> Self {
        Self {
            replay_safe: None,
            ..self.clone()
        }
    }
}
