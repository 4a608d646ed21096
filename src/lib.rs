//! # h3fleet
//!
//! An HTTP client for fleets. Many replicas of a service talk to the same
//! hosts, and each normally pays a full TLS handshake on its first request to
//! every host. h3fleet keeps TLS session tickets (and ECH configs) in a
//! backend the whole fleet shares, so a ticket won by any replica lets every
//! other replica resume, and send its first idempotent request as 0-RTT
//! early data.
//!
//! ## How data flows
//!
//! ```text
//! request ─► Session ─► protocol (h3 | h2 | h1) ─► connection pool ─ miss ─► new connection
//!                                                        │
//!           ticket: PersistableSessionCache[protocol] ◄──┤  (local LRU, then the backend)
//!           ECH:    EchCache                          ◄──┘  (local, backend, DNS HTTPS record)
//!                                                        ▼
//!                                 BoringSSL handshake (QUIC via quinn, or TLS over TCP)
//!                                   new tickets ─► local LRU now, backend put in the background
//! ```
//!
//! ## What is built so far
//!
//! [`Session`] is the HTTP/3 client: a reqwest-style builder, one QUIC
//! connection per origin, and the fleet path. Before a new connection it asks
//! the session cache for a ticket (this process's memory, then the shared
//! backend); with one that allows early data, a replay-safe first request
//! leaves in 0-RTT with the ClientHello, and a refused 0-RTT or a
//! `425 Too Early` is sent again transparently. [`Response::tls`] says what
//! happened. With [`SessionBuilder::http2_only`] or
//! [`SessionBuilder::http1_only`] it speaks HTTP/2 or HTTP/1.1 over TLS over
//! TCP instead (BoringSSL and hyper), with their own ticket caches.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use h3fleet::{cache::backend_from_uri, EarlyData, Session};
//!
//! let session = Session::builder()
//!     .session_cache(backend_from_uri("redis://10.0.0.5:6379")?, None)
//!     .build()?;
//! let response = session.get("https://example.com/").send().await?;
//! if response.tls().early_data == EarlyData::Accepted {
//!     println!("another replica's ticket saved us a round trip");
//! }
//! session.close().await; // keeps tickets still on their way
//! # Ok(()) }
//! ```
//!
//! Underneath: the [`cache`] module holds the backend contract
//! ([`cache::SessionCacheBackend`]), the backends (in-memory, SQLite, Redis,
//! Redis Cluster), the key formats, the versioned session envelope, and
//! [`cache::PersistableSessionCache`], a local LRU in front of a backend with
//! bounded, single-flight reads and background writes. The [`quic`] module is
//! quinn's crypto layer on BoringSSL, whose client sessions can be exported
//! and imported by another process. TCP early data, automatic protocol
//! selection and DNS-driven ECH come next.
//!
//! ## The cache on its own
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use h3fleet::cache::{backend_from_uri, PersistableSessionCache, Protocol, TicketSource};
//! # use h3fleet::cache::{CachedSession, Envelope};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("cache.db");
//! // Every replica points at the same backend (here a SQLite file; in a fleet,
//! // `redis://...` or `redis+cluster://...`).
//! let backend = backend_from_uri(&format!("sqlite:{}", path.display()))?;
//!
//! // Replica A finishes a full handshake and stores the ticket it was given.
//! let replica_a = PersistableSessionCache::with_backend(backend.clone(), "default", Protocol::H3, None);
//! # let issued_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! # let ticket = CachedSession { ticket: vec![1; 32], envelope: Envelope {
//! #     protocol: Protocol::H3, session: vec![2; 64], lifetime_secs: 7200, issued_at,
//! #     alpn: b"h3".to_vec(), early_data: true, ech: false, transport_params: vec![3; 8] } };
//! replica_a.put("example.com", 443, ticket);
//! replica_a.flush(Duration::from_secs(5)).await; // a short-lived process waits for its writes
//!
//! // Replica B starts cold and finds it: no full handshake for B.
//! let replica_b = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, None);
//! let hit = replica_b.get("example.com", 443).await.expect("shared ticket");
//! assert_eq!(hit.source, TicketSource::Backend);
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//!
//! All on by default.
//!
//! | feature | adds |
//! |---|---|
//! | `sqlite` | [`cache::SqliteBackend`], the embedded default (bundled SQLite) |
//! | `redis` | [`cache::RedisBackend`] |
//! | `redis-cluster` | [`cache::RedisClusterBackend`] |
//! | `server` | [`server::H3Origin`], h3fleet's own HTTP/3 origin (tests, benchmarks, `serve`), on rustls or BoringSSL |
//! | `cli` | the `h3fleet` command-line tool |
//!
//! BoringSSL (through `boring-sys`) is always built: it needs `cmake`, a C
//! compiler and `libclang` at build time, and no OpenSSL may be linked into
//! the same binary.
#![deny(unsafe_code)]

pub mod cache;
mod dns;
pub mod ech;
mod error;
mod http;
mod preset;
pub mod quic;
mod replay;
#[cfg(feature = "server")]
pub mod server;
mod session;
mod sync;
pub mod telemetry;
pub mod tls;

pub use dns::DnsError;
pub use error::{Error, QuicError};
pub use http::{EarlyData, HttpProtocol};
pub use preset::UnknownPresetError;
pub use preset::{Preset, DEFAULT_PRESET, KNOWN_PRESETS};
pub use session::{EarlyDataPolicy, RequestBuilder, Response, Session, SessionBuilder, TlsInfo};
