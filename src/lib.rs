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
//! ## What it does
//!
//! [`Session`] is the client: a reqwest-style builder, HTTP/3 (quinn + h3 on
//! h3fleet's BoringSSL crypto layer), HTTP/2 and HTTP/1.1 (hyper on
//! BoringSSL), chosen per origin by [`HttpProtocol::Auto`] (Alt-Svc, DNS
//! HTTPS records, a QUIC/TCP race) or forced. Before a new connection it
//! asks the session cache for a ticket (this process's memory, then the
//! shared backend); with one that allows early data, a replay-safe first
//! request leaves in 0-RTT (QUIC) or TLS 1.3 early data (TCP), and a refused
//! early request or a `425 Too Early` is sent again transparently.
//! Encrypted Client Hello uses configs from the builder, the caches or the
//! origin's DNS HTTPS record. [`Response::tls`] says what happened.
//!
//! The store is not trusted: a stored session is a resumption secret, and
//! a resumed TLS 1.3 connection checks no certificate. With fleet keys
//! ([`cache::CacheKeys`], [`SessionBuilder::cache_keys`]) every value is
//! sealed and bound to its key, so a value the fleet did not write does not
//! open; links to Redis and memcached can use TLS; only TLS 1.3 sessions
//! leave the process; a stored session's certificate chain is verified
//! again before it is offered; ECH configs are shared only once proven.
//!
//! For servers that accept a 0-RTT ticket only once (anti-replay),
//! [`SessionBuilder::ticket_reuse`] with [`cache::TicketReuse::single_use`]
//! gives every connection a ticket of its own from a fleet-wide pool, taken
//! atomically in every built-in backend.
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
//! ## A request's way through the modules
//!
//! It goes down once and never climbs back: `session` decides, `http`
//! connects and exchanges, `quic`/`tls` speak TLS, `cache`/`ech` remember.
//!
//! 1. [`RequestBuilder::send`] checks the URL and headers and decides
//!    whether the request is replay-safe (only then may it go early).
//! 2. [`Session`] plans it (which protocols; a pooled connection or a new
//!    one; one opener per origin while others wait).
//! 3. The `http` layer turns the origin into one dial description
//!    (addresses, the ECH offer, the ticket to offer) for HTTP/3 or TCP, or
//!    races the two; the ECH retry and the `425` resend live there once.
//! 4. [`quic`] (quinn's crypto layer on BoringSSL) or the TCP connector in
//!    [`tls`] runs the handshake; new tickets go to the [`cache`], the
//!    backend write in the background.
//! 5. [`Response`] reads the body and carries [`TlsInfo`].
//!
//! Underneath: the [`cache`] module holds the backend contract
//! ([`cache::SessionCacheBackend`]), the backends (in-memory, SQLite, Redis,
//! Redis Cluster, Memcached), the key formats, the versioned session
//! envelope, and [`cache::PersistableSessionCache`], a local LRU in front of
//! a backend with bounded, single-flight reads and background writes. The
//! [`ech`] module validates ECHConfigLists and finds them in DNS.
//!
//! Above the session sits [`proxy`] (the second way in, after a [`Session`]
//! in Rust): a local HTTP proxy that performs the requests of clients in
//! any language with a session, so they share the fleet's tickets too.
//!
//! "Session" names three things here: the HTTP client ([`Session`]),
//! BoringSSL's per-connection TLS state, and a resumable TLS session (a
//! ticket, what [`cache::PersistableSessionCache`] stores); the session
//! identifier belongs to the last.
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
//! | `memcached` | [`cache::MemcachedBackend`] (its own text-protocol client) |
//! | `server` | [`server::H3Origin`], h3fleet's own origin (tests, benchmarks, `serve`), on rustls or BoringSSL, and the server-side TLS types (`quic::QuicServerConfig`, `tls::TcpServerConfig`, `tls::EchKeys`) |
//! | `local-proxy` | [`proxy::LocalProxy`], the local HTTP proxy that performs other languages' requests with a [`Session`] (`h3fleet proxy`) |
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
mod expiring;
mod http;
mod preset;
#[cfg(feature = "local-proxy")]
pub mod proxy;
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
pub use http::body::{Body, REPLAY_LIMIT};
pub use http::egress::{NoProxy, Proxy};
pub use http::{EarlyData, HttpProtocol};
pub use preset::UnknownPresetError;
pub use preset::{Preset, DEFAULT_PRESET, KNOWN_PRESETS};
/// Redirect policies ([`SessionBuilder::redirect`]) and the hops a
/// response went through ([`Response::redirects`]), as in reqwest.
pub mod redirect {
    pub use crate::session::redirect::{Hop, Policy};
}
pub use session::{
    EarlyDataPolicy, IntoUrl, RequestBuilder, Response, ResponseFuture, Session, SessionBuilder, TlsInfo,
};
