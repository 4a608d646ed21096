//! h3fleet's own origin server, for tests, benchmarks and (later)
//! `h3fleet serve`: HTTP/3 on BoringSSL with session tickets, 0-RTT,
//! 0.5-RTT answers and optional ECH.
//!
//! It reports in every response whether the request arrived as early data
//! (`x-early-data: 1`), which is how clients and tests can see that 0-RTT
//! really carried the request.

mod h3;

pub use self::h3::{H3Origin, OriginStats};

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
}
