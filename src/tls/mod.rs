//! BoringSSL: contexts, certificates and session export shared by the QUIC
//! layer and the TCP connector. The private `ffi` module holds every
//! raw call; [`TlsError`] is what callers see when TLS set-up fails.

mod client;
pub(crate) mod early_data;
#[cfg(feature = "server")]
mod ech_keys;
mod ech_rejection;
pub(crate) mod ffi;
mod identity;
mod keylog;
pub(crate) mod resume;
mod roots;
#[cfg(feature = "server")]
pub(crate) mod server;
mod tcp;
#[cfg(feature = "server")]
mod tcp_server;
pub(crate) mod tickets;

pub(crate) use client::ClientSettings;
#[cfg(feature = "server")]
pub use ech_keys::EchKeys;
pub(crate) use ech_rejection::EchRejection;
pub use identity::Identity;
pub(crate) use keylog::KeyLog;
pub(crate) use tcp::TcpClientConfig;
pub(crate) use tcp::{ConnectOptions, EchOffer};
#[cfg(feature = "server")]
pub(crate) use tcp_server::ServerTls;
#[cfg(feature = "server")]
pub use tcp_server::{TcpServerConfig, TcpServerConfigBuilder};
pub use tickets::TicketSink;

pub(crate) use roots::load_roots;

use std::fmt;

use boring::error::ErrorStack;

/// A TLS set-up or handshake failure, with what h3fleet was doing and what
/// BoringSSL said.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {context}{}", detail(.stack))]
pub struct TlsError {
    context: String,
    stack: Option<ErrorStack>,
}

fn detail(stack: &Option<ErrorStack>) -> String {
    match stack {
        Some(s) if !s.errors().is_empty() => format!(" ({s})"),
        _ => String::new(),
    }
}

impl TlsError {
    pub(crate) fn new(context: impl fmt::Display) -> Self {
        Self {
            context: context.to_string(),
            stack: None,
        }
    }

    pub(crate) fn boring(context: impl fmt::Display, stack: ErrorStack) -> Self {
        Self {
            context: context.to_string(),
            stack: Some(stack),
        }
    }
}

/// Collects ALPN protocol names given in any byte-string form.
pub(crate) fn alpn_list<I, P>(protocols: I) -> Vec<Vec<u8>>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    protocols.into_iter().map(|p| p.as_ref().to_vec()).collect()
}

/// Encodes ALPN protocol names in the TLS wire form (length-prefixed).
pub(crate) fn alpn_wire(protocols: &[Vec<u8>]) -> Result<Vec<u8>, TlsError> {
    let mut wire = Vec::new();
    for p in protocols {
        let len = u8::try_from(p.len())
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| TlsError::new("an ALPN protocol name must be 1 to 255 bytes"))?;
        wire.push(len);
        wire.extend_from_slice(p);
    }
    Ok(wire)
}
