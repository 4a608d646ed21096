//! QUIC's TLS on BoringSSL: quinn's crypto layer with sessions that can be
//! exported from one process and resumed, with 0-RTT, in another.
//!
//! quinn's own TLS (rustls) keeps client sessions opaque, so a ticket won by
//! one replica could never be used by another. This module implements
//! quinn's `crypto::ClientConfig`, `crypto::ServerConfig` and
//! `crypto::Session` on BoringSSL's QUIC API instead:
//!
//! - [`QuicClientConfig`]: verification, ALPN, session import before the
//!   ClientHello (with 0-RTT when the ticket allows it) and export of every
//!   ticket the server sends, as a [`CachedSession`](crate::cache::CachedSession)
//!   ready for the shared cache.
//! - `QuicServerConfig` (feature `server`): h3fleet's own origin, with
//!   tickets and 0-RTT.
//! - packet and header protection keys for QUIC v1 are derived here from
//!   BoringSSL's traffic secrets (`keys`); every raw BoringSSL call lives in
//!   `tls::ffi`.
//!
//! ```
//! use std::sync::Arc;
//! use h3fleet::quic::QuicClientConfig;
//!
//! let tls = QuicClientConfig::builder().alpn_protocols(["h3"]).build()?;
//! let on_ticket = Arc::new(|ticket: h3fleet::cache::CachedSession, sharing| {
//!     // QUIC is TLS 1.3 only: every ticket may be shared.
//!     assert_eq!(sharing, h3fleet::cache::Sharing::Fleet);
//!     println!("new ticket, {} s lifetime", ticket.envelope.lifetime_secs);
//! });
//! // Per connection: resume a stored session, export new ones.
//! let per_connection = tls.with_session(None).on_ticket(on_ticket);
//! // quinn::ClientConfig::new(Arc::new(per_connection))
//! # Ok::<(), h3fleet::tls::TlsError>(())
//! ```

mod config;
mod keys;
mod params;
#[cfg(feature = "server")]
mod server_config;
mod session;

pub use config::{QuicClientConfig, QuicClientConfigBuilder};
#[cfg(feature = "server")]
pub use server_config::{QuicServerConfig, QuicServerConfigBuilder};
pub use session::{EarlyDataStatus, HandshakeData};
