//! h3fleet's own origin server, for tests, benchmarks and `h3fleet serve`:
//! HTTP/3 with session tickets, 0-RTT and 0.5-RTT answers, on quinn's
//! standard rustls server ([`rustls_quic_config`], the default) or on
//! h3fleet's BoringSSL layer (which adds ECH).
//!
//! It reports in every response whether the request arrived as early data
//! (`x-early-data: 1`), which is how clients and tests can see that 0-RTT
//! really carried the request.

mod body;
mod compress;
mod h3;
mod relay;
mod respond;
mod tcp;
mod tls;

pub use self::compress::plain_body;
pub use self::h3::H3Origin;
pub use self::relay::{LatencyRelay, TcpLatencyRelay};
pub use self::respond::{OriginStats, RequestLog, RequestRecord};
pub use self::tcp::TcpOrigin;
pub use self::tls::{rustls_quic_config, SelfSigned};

/// Why the origin could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The certificate or key could not be made or used.
    #[error("certificate: {0}")]
    Certificate(String),
}
