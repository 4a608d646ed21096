//! The contract between h3fleet and a shared store of TLS sessions.
//!
//! A backend is a dumb, shared key-value store with per-key expiry. All the
//! policy (what to store, when to trust it, when to delete it) lives in
//! [`PersistableSessionCache`](crate::cache::PersistableSessionCache); a backend
//! only has to be correct, concurrent and quick.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cache::pool::PoolTake;

/// A shared store for TLS session tickets and ECH configs.
///
/// One value of a type implementing this trait is shared, as
/// `Arc<dyn SessionCacheBackend>`, by every connection of every
/// [`PersistableSessionCache`](crate::cache::PersistableSessionCache) that uses
/// it, so the trait is object safe and every method takes `&self`.
///
/// # Contract
///
/// - **Concurrency.** Every method may be called from many tasks at once; an
///   implementation must be safe for that (a connection pool or a
///   multiplexed connection, never a connection behind a lock held across a
///   network round trip).
/// - **A miss is `Ok(None)`**, never an error. An error means the store could
///   not answer; the caller then proceeds with a full TLS handshake.
/// - **Expiry.** Every value is written with a time to live, and a value is
///   never returned after its TTL has passed. Stores without native expiry
///   must record the deadline and check it on read.
/// - **Values are secrets.** A session lets its holder resume a TLS session
///   with the server. Keep the store private to the fleet, and never log
///   values.
/// - **Speed.** `get` runs before a handshake on a local miss, so the caller
///   bounds it with a timeout (5 s by default); pick a store whose p99 is a
///   few milliseconds.
///
/// [`MemoryBackend`](crate::cache::MemoryBackend) is the reference
/// implementation.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use h3fleet::cache::{MemoryBackend, SessionCacheBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), h3fleet::cache::BackendError> {
/// let backend = MemoryBackend::new();
/// backend.put_ech_config("h3fleet:ech:default:example.com:443", b"\x00\x01", Duration::from_secs(60)).await?;
/// let config = backend.get_ech_config("h3fleet:ech:default:example.com:443").await?;
/// assert_eq!(config.as_deref(), Some(&b"\x00\x01"[..]));
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait SessionCacheBackend: Send + Sync + 'static {
    /// Returns the session stored under `key`, or `Ok(None)` when there is
    /// none or it has expired.
    ///
    /// A stored value that cannot be parsed is an error of kind
    /// [`BackendErrorKind::Decode`]; the cache then deletes the key.
    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError>;

    /// Stores `session` under `key` for `ttl`, replacing any earlier value.
    ///
    /// A `ttl` below one millisecond is rejected with
    /// [`BackendErrorKind::InvalidInput`].
    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError>;

    /// Removes the session stored under `key`. Deleting a missing key is not
    /// an error.
    async fn delete(&self, key: &str) -> Result<(), BackendError>;

    /// Returns the ECHConfigList stored under `key`, or `Ok(None)`.
    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError>;

    /// Stores the raw ECHConfigList bytes `config` under `key` for `ttl`.
    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError>;

    /// Removes the session under `key` only if it is still `expected`, in one
    /// step, and says whether it did. The cache uses it for refused, expired
    /// and corrupt entries, so it never deletes a fresh ticket another replica
    /// wrote in the meantime.
    ///
    /// The default reads, compares and deletes in separate calls, which a
    /// concurrent write can slip between; the built-in backends do it
    /// atomically (a Lua script on Redis, one conditional `DELETE` on SQLite,
    /// `mg`/`md` with a CAS value on memcached, one lock in memory).
    async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
        let matches = match (self.get(key).await, expected) {
            (Ok(Some(stored)), StoredSession::Ticket(ticket)) => stored.ticket == ticket,
            (Err(e), StoredSession::Unreadable) if e.is_decode() => true,
            (Err(e), _) if !e.is_decode() => return Err(e),
            _ => false,
        };
        if matches {
            self.delete(key).await?;
        }
        Ok(matches)
    }

    /// Removes the ECH config under `key` only if it is still `expected`,
    /// in one step; true if it did. The default removes nothing (configs
    /// expire with their TTL); the built-in backends implement it.
    async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
        let _ = (key, expected);
        Ok(false)
    }

    /// Adds `session` to the ticket pool under `key` (a
    /// [`KeyFormat::pool`](crate::cache::KeyFormat::pool) key), to expire
    /// after `ttl`, keeping the newest `max` live tickets.
    ///
    /// The default keeps a pool of one: it is [`put`](Self::put). The
    /// built-in backends keep `max`, each ticket with its own expiry.
    async fn pool_add(
        &self,
        key: &str,
        session: &TlsSessionState,
        ttl: Duration,
        max: NonZeroUsize,
    ) -> Result<(), BackendError> {
        let _ = max;
        self.put(key, session, ttl).await
    }

    /// Takes the newest live ticket from the pool under `key`: it is
    /// removed, and no other caller, in this process or any other, is given
    /// it. `Ok(None)` when the pool is empty.
    ///
    /// The built-in backends take atomically (a Lua script on Redis and
    /// Redis Cluster, one `DELETE ... RETURNING` on SQLite, gets and CAS on
    /// memcached, one lock in memory). The default reads the pool of one
    /// and removes it with [`delete_if`](Self::delete_if): a ticket is
    /// handed out only if that delete removed it, so the default is as
    /// atomic as this backend's `delete_if` (whose own default is not).
    async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
        let Some(session) = self.get(key).await? else {
            return Ok(None);
        };
        let taken = self
            .delete_if(key, StoredSession::Ticket(&session.ticket))
            .await?;
        Ok(taken.then_some(PoolTake { session, left: None }))
    }

    /// The live tickets in the pool under `key`, oldest first, without
    /// taking any (for inspection: `h3fleet cache show`).
    async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
        Ok(self.get(key).await?.into_iter().collect())
    }

    /// Removes the whole pool under `key`. The default is
    /// [`delete`](Self::delete), right for stores that keep a pool under its
    /// key like any value.
    async fn pool_delete(&self, key: &str) -> Result<(), BackendError> {
        self.delete(key).await
    }

    /// The keys that start with `prefix`, for inspection (`h3fleet cache
    /// ls`): at most `limit` of them. Backends that cannot list (memcached,
    /// and the default) answer [`BackendErrorKind::Unsupported`].
    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let _ = (prefix, limit);
        Err(BackendError::new(
            self.name(),
            BackendErrorKind::Unsupported,
            "this backend cannot list its keys",
        ))
    }

    /// A short name for logs and errors raised about this backend by its
    /// callers (a timeout, say). Defaults to `"custom"`.
    fn name(&self) -> &'static str {
        "custom"
    }
}

impl fmt::Debug for dyn SessionCacheBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionCacheBackend({})", self.name())
    }
}

/// Which stored session [`SessionCacheBackend::delete_if`] may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredSession<'a> {
    /// The session whose `ticket` field is this (base64, as stored).
    Ticket(&'a str),
    /// A value that is not a session h3fleet would read: not JSON, JSON
    /// without a string `ticket`, or longer than [`MAX_VALUE_LEN`].
    Unreadable,
}

/// One stored TLS session, as every backend holds it.
///
/// Its JSON form is exactly
/// `{"ticket": <base64>, "state": <base64>, "created_at": <RFC 3339>}`,
/// the shape of the reference design, so other tools can read it.
///
/// - `ticket` is standard base64 of the raw ticket the server sent. It is
///   kept for observability and de-duplication (two replicas writing the same
///   ticket is harmless).
/// - `state` is standard base64 of an [`Envelope`](crate::cache::Envelope):
///   everything needed to resume, in a versioned binary form.
/// - `created_at` is when the entry was written.
///
/// `Debug` prints lengths, never the secrets themselves.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSessionState {
    /// Standard base64 of the raw session ticket.
    pub ticket: String,
    /// Standard base64 of the versioned session envelope.
    pub state: String,
    /// When the entry was written.
    pub created_at: DateTime<Utc>,
}

impl TlsSessionState {
    /// The JSON text stored by string-valued backends (Redis, SQLite).
    ///
    /// # Errors
    ///
    /// Fails only if serialisation fails, which for this type it cannot in
    /// practice; the error is still reported rather than unwrapped.
    pub fn to_json(&self) -> Result<String, BackendError> {
        serde_json::to_string(self).map_err(|e| {
            BackendError::new("json", BackendErrorKind::Encode, "cannot serialise a session").with_source(e)
        })
    }

    /// Parses the JSON text written by [`to_json`](Self::to_json).
    ///
    /// # Errors
    ///
    /// A value that is not that JSON shape is a
    /// [`BackendErrorKind::Decode`] error naming `backend`.
    /// A value longer than [`MAX_VALUE_LEN`] is refused before parsing. The
    /// error never quotes the value (it may hold secrets).
    pub fn from_json(backend: &'static str, json: &[u8]) -> Result<Self, BackendError> {
        if json.len() > MAX_VALUE_LEN {
            return Err(BackendError::new(
                backend,
                BackendErrorKind::Decode,
                format!("stored value is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
        serde_json::from_slice(json).map_err(|e| {
            BackendError::new(
                backend,
                BackendErrorKind::Decode,
                format!(
                    "stored session is not valid JSON ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            )
        })
    }
}

impl fmt::Debug for TlsSessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSessionState")
            .field("ticket", &format_args!("<{} base64 chars>", self.ticket.len()))
            .field("state", &format_args!("<{} base64 chars>", self.state.len()))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Called with `(operation, key, error)` whenever a backend call fails.
///
/// The callback is advisory: failures already degrade to a full handshake.
/// Wire it into logs or metrics with `operation` as a label; the labels are
/// these: `get`, `put`,
/// `put_serialize`, `delete`, `decode`, `get_ech`, `put_ech`, `delete_ech`,
/// and under [`TicketReuse::SingleUse`](crate::cache::TicketReuse)
/// `pool_add` and `pool_take`.
///
/// It runs on the task that saw the failure, so it should be quick and must
/// not block.
pub type ErrorCallback = Arc<dyn Fn(&str, &str, &BackendError) + Send + Sync>;

/// What went wrong in a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The store could not be reached, or the connection broke.
    Connect,
    /// The store answered with an error, or the local database failed.
    Io,
    /// The call took longer than allowed.
    Timeout,
    /// A stored value could not be parsed.
    Decode,
    /// A value could not be serialised for storage.
    Encode,
    /// The caller passed something the store cannot take (a zero TTL, say).
    InvalidInput,
    /// A backend URI that is not one of the accepted forms.
    InvalidUri,
    /// The backend cannot do this (memcached cannot list its keys).
    Unsupported,
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "cannot connect",
            Self::Io => "operation failed",
            Self::Timeout => "timed out",
            Self::Decode => "cannot decode stored value",
            Self::Encode => "cannot encode value",
            Self::InvalidInput => "invalid input",
            Self::InvalidUri => "invalid backend URI",
            Self::Unsupported => "not supported",
        })
    }
}

/// An error from a [`SessionCacheBackend`]: which backend, what kind of
/// failure, what it was doing, and the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {kind}: {message}")]
pub struct BackendError {
    backend: &'static str,
    kind: BackendErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackendError {
    /// A new error from the backend named `backend` (e.g. `"redis"`).
    pub fn new(backend: &'static str, kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self {
            backend,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The name of the backend that failed (`memory`, `sqlite`, `redis`, ...).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// True when a stored value could not be parsed (the key is then deleted).
    pub fn is_decode(&self) -> bool {
        self.kind == BackendErrorKind::Decode
    }

    /// True when the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == BackendErrorKind::Timeout
    }
}

/// Rejects TTLs the stores cannot express (below one millisecond).
/// The longest stored value h3fleet reads, in bytes: a session's JSON
/// (the largest ticket TLS allows and the largest sealed envelope, in
/// base64) or an ECH config fits well within it. Built-in backends read at
/// most this many bytes plus one, so a hostile store can make a replica
/// miss, never allocate without bound.
pub const MAX_VALUE_LEN: usize = 256 * 1024;

pub(crate) fn check_ttl(backend: &'static str, ttl: Duration) -> Result<u64, BackendError> {
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Err(BackendError::new(
            backend,
            BackendErrorKind::InvalidInput,
            "a TTL must be at least one millisecond",
        ));
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TlsSessionState {
        TlsSessionState {
            ticket: "AQID".into(),
            state: "BAUG".into(),
            created_at: DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn json_has_exactly_the_reference_fields() {
        let json = sample().to_json().unwrap();
        assert_eq!(
            json,
            r#"{"ticket":"AQID","state":"BAUG","created_at":"2026-11-28T10:00:00Z"}"#
        );
    }

    #[test]
    fn json_round_trips_and_ignores_unknown_fields() {
        let parsed = TlsSessionState::from_json(
            "test",
            br#"{"ticket":"AQID","state":"BAUG","created_at":"2026-11-28T10:00:00+00:00","extra":1}"#,
        );
        assert_eq!(parsed.ok(), Some(sample()));
    }

    #[test]
    fn malformed_json_is_a_decode_error_naming_the_backend() {
        let err = TlsSessionState::from_json("redis", b"{\"ticket\":").err();
        assert!(err.as_ref().is_some_and(BackendError::is_decode));
        assert!(err.is_some_and(|e| e.to_string().starts_with("redis backend:")));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("AQID") && !text.contains("BAUG"));
    }

    /// A custom backend that implements only the required methods, on a
    /// memory backend: the default pool methods keep a pool of one.
    struct Minimal(crate::cache::MemoryBackend);

    #[async_trait]
    impl SessionCacheBackend for Minimal {
        async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, s: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
            self.0.put(key, s, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<(), BackendError> {
            self.0.delete(key).await
        }
        async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
            self.0.get_ech_config(key).await
        }
        async fn put_ech_config(&self, key: &str, c: &[u8], ttl: Duration) -> Result<(), BackendError> {
            self.0.put_ech_config(key, c, ttl).await
        }
    }

    #[tokio::test]
    async fn the_default_pool_holds_one_ticket_and_gives_it_once() {
        let b = Minimal(crate::cache::MemoryBackend::new());
        let max = NonZeroUsize::new(8).unwrap();
        let long = Duration::from_secs(60);
        let mut newer = sample();
        newer.ticket = "BQYH".into();
        b.pool_add("p", &sample(), long, max).await.unwrap();
        b.pool_add("p", &newer, long, max).await.unwrap();
        assert_eq!(b.pool_peek("p").await.unwrap(), vec![newer.clone()]);
        let taken = b.pool_take("p").await.unwrap().unwrap();
        assert_eq!((taken.session, taken.left), (newer, None));
        assert_eq!(b.pool_take("p").await.unwrap(), None);
        let listing = b.list_keys("", 10).await.unwrap_err();
        assert_eq!(listing.kind(), BackendErrorKind::Unsupported);
    }

    #[test]
    fn zero_ttl_is_rejected() {
        assert!(check_ttl("x", Duration::ZERO).is_err());
        assert_eq!(check_ttl("x", Duration::from_secs(2)).ok(), Some(2000));
    }
}
