//! HTTP connections under a [`Session`](crate::Session): HTTP/3 over quinn
//! (with the 0-RTT request path) and the per-origin connection pool.

pub(crate) mod h3;
pub(crate) mod pool;
pub(crate) mod select;
pub(crate) mod tcp;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// A request ready to go on the wire, kept whole so it can be sent again
/// after a 0-RTT rejection or a `425 Too Early`.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRequest {
    pub(crate) method: Method,
    /// Absolute `https://` URI (no fragment).
    pub(crate) uri: http::Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Whether this request may ride in 0-RTT early data.
    pub(crate) early_data_ok: bool,
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
}

/// Methods whose requests a server may see twice without harm (RFC 9110
/// §9.2.2), and so may be sent as replayable early data when they carry no
/// body.
pub(crate) fn is_replay_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a connection offered of ECH, and where its config came from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EchOffered {
    pub(crate) source: Option<crate::ech::EchSource>,
    pub(crate) config: bool,
    pub(crate) grease: bool,
}

impl EchOffered {
    /// The outcome, given whether the server accepted ECH.
    pub(crate) fn status(self, accepted: bool) -> crate::ech::EchStatus {
        use crate::ech::EchStatus;
        match (self.config, accepted, self.grease) {
            (true, true, _) => EchStatus::Accepted,
            (true, false, _) => EchStatus::Rejected,
            (false, _, true) => EchStatus::Grease,
            (false, _, false) => EchStatus::Off,
        }
    }
}

/// What happened to early data on a request's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyData {
    /// The request did not go as early data (no ticket allowing it, a
    /// request that is not replay-safe, a reused connection, or the policy).
    NotAttempted,
    /// The request went in 0-RTT and the server took it.
    Accepted,
    /// The request went in 0-RTT, the server refused the early data, and
    /// the request was sent again after the handshake.
    Rejected,
}

impl EarlyData {
    /// `not_attempted`, `accepted` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAttempted => "not_attempted",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

/// An open connection of either kind, as the pool holds it.
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    H3(Arc<h3::H3Connection>),
    Tcp(Arc<tcp::TcpConnection>),
}

impl Conn {
    /// The connection can carry a request now.
    pub(crate) fn is_usable(&self) -> bool {
        match self {
            Self::H3(c) => c.is_open(),
            Self::Tcp(c) => c.is_open(),
        }
    }

    /// What the handshake did (for TCP with early data, complete once the
    /// first response has been read).
    pub(crate) fn handshake(&self) -> h3::Handshake {
        match self {
            Self::H3(c) => c.handshake.clone(),
            Self::Tcp(c) => c.handshake(),
        }
    }

    pub(crate) fn tickets(&self) -> &Arc<h3::Tickets> {
        match self {
            Self::H3(c) => &c.tickets,
            Self::Tcp(c) => &c.tickets,
        }
    }

    /// The protocol the connection speaks.
    pub(crate) fn protocol(&self) -> crate::cache::Protocol {
        match self {
            Self::H3(_) => crate::cache::Protocol::H3,
            Self::Tcp(c) if c.http == tcp::TcpHttp::H2 => crate::cache::Protocol::H2,
            Self::Tcp(_) => crate::cache::Protocol::H1,
        }
    }

    /// A request sent now would not wait behind another exchange (only an
    /// HTTP/1.1 connection can be busy).
    pub(crate) fn is_idle(&self) -> bool {
        match self {
            Self::H3(c) => c.is_open(),
            Self::Tcp(c) => c.is_idle(),
        }
    }

    /// Closes an HTTP/3 connection cleanly; a TCP one closes when dropped.
    pub(crate) fn close(&self) {
        if let Self::H3(c) = self {
            c.close();
        }
    }
}
