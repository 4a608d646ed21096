//! The fleet-wide TLS session cache.
//!
//! ```text
//! TLS layer ──get(host, port)──► PersistableSessionCache ──local miss──► SessionCacheBackend
//!           ◄──CacheHit────────   (LRU, one per protocol)  ◄─TlsSessionState─ (SQLite, Redis, ...)
//!           ──put(session)─────►  LRU now, backend on a background task ───►
//! ```
//!
//! - [`SessionCacheBackend`] is the contract a store implements; a miss is
//!   `Ok(None)` and every value carries a TTL. [`MemoryBackend`],
//!   [`SqliteBackend`] (the embedded default), [`RedisBackend`],
//!   [`RedisClusterBackend`] and [`MemcachedBackend`] implement it; [`backend_from_uri`] picks one
//!   from a string.
//! - [`PersistableSessionCache`] holds the policy: local LRU, bounded and
//!   single-flight backend reads, background writes, invalidation.
//! - [`KeyFormat`] and [`Envelope`] define what is stored, and where, so
//!   every replica agrees.

mod attachment;
mod backend;
mod breaker;
mod clock;
mod entry;
mod envelope;
mod inspect;
mod key;
#[cfg(feature = "memcached")]
mod link_tls;
#[cfg(feature = "memcached")]
mod memcached;
mod memory;
mod persistable;
mod pool;
mod private;
mod protocols;
#[cfg(feature = "redis")]
mod redis;
mod seal;
#[cfg(feature = "sqlite")]
mod sqlite;
mod uri;

pub(crate) use attachment::{report, BackgroundCalls, SingleFlight};
pub use backend::{
    BackendError, BackendErrorKind, ErrorCallback, SessionCacheBackend, StoredSession, TlsSessionState,
    MAX_VALUE_LEN,
};
pub use breaker::{BreakerConfig, CircuitBreaker};
pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::{CachedSession, EntryError, Sharing};
pub use envelope::{Envelope, EnvelopeError};
#[allow(unused_imports)]
pub(crate) use envelope::{
    ENGINE_BORINGSSL, ENVELOPE_VERSION, MAX_ENVELOPE_LEN, MAX_SESSION_LEN, MAX_TICKET_LIFETIME_SECS,
    MAX_TRANSPORT_PARAMS_LEN,
};
pub use inspect::{ech_sealed_with, summarize_session, EnvelopeSummary, SessionSummary};
pub use key::{KeyError, KeyFormat, ParsedKey, Protocol, DEFAULT_KEY_PREFIX};
#[cfg(feature = "memcached")]
pub use memcached::MemcachedBackend;
pub use memory::MemoryBackend;
pub(crate) use persistable::{bounded, Operation};
pub use persistable::{
    CacheHit, CacheOptions, PersistableSessionCache, TicketSource, MAX_GET_TIMEOUT,
    TLS_SESSION_CACHE_MAX_SIZE, TLS_SESSION_MAX_AGE,
};
pub use pool::{PoolItem, PoolItems, PoolTake, TicketReuse, TicketReuseError, DEFAULT_POOL_SIZE};
pub(crate) use protocols::TicketCaches;
#[cfg(feature = "redis-cluster")]
pub use redis::RedisClusterBackend;
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisOptions};
pub(crate) use seal::{ech_context, Sealing};
pub use seal::{CacheKeys, CacheKeysError, SealError};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteBackend;
pub use uri::{backend_from_uri, redact_uri, ACCEPTED_BACKEND_URIS};
