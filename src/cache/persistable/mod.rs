//! [`PersistableSessionCache`]: a local LRU of sessions in front of a shared
//! backend, one per protocol.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, Utc};
use lru::LruCache;

mod single_use;

use std::collections::VecDeque;

use crate::cache::attachment::{BackgroundCalls, SingleFlight};
use crate::cache::pool::TicketReuse;
use crate::sync::{lock, read, write};

use crate::cache::backend::{
    BackendError, BackendErrorKind, ErrorCallback, SessionCacheBackend, StoredSession, TlsSessionState,
};
use crate::cache::clock::{Clock, SystemClock};
use crate::cache::entry::{CachedSession, EntryError, Sharing};
use crate::cache::envelope::Envelope;
use crate::cache::key::{canonical_origin, KeyFormat, Protocol};
use crate::cache::seal::{CacheKeys, Sealing};

/// Sessions kept in memory per cache, as in the reference
/// (`TLS_SESSION_CACHE_MAX_SIZE`).
pub const TLS_SESSION_CACHE_MAX_SIZE: usize = 32;
/// The longest a session is trusted, whatever lifetime the server granted
/// (`TLS_SESSION_MAX_AGE`).
pub const TLS_SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// The longest a backend `get` may delay a handshake; configured timeouts are
/// capped at this.
pub const MAX_GET_TIMEOUT: Duration = Duration::from_secs(5);

/// The operation labels passed to an [`ErrorCallback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub(crate) enum Operation {
    /// Reading a session failed or timed out.
    Get,
    /// Writing a session failed or timed out.
    Put,
    /// A session could not be turned into its stored form.
    PutSerialize,
    /// Deleting a session failed.
    Delete,
    /// A stored session was corrupt (it is then deleted).
    Decode,
    /// Reading an ECH config failed.
    GetEch,
    /// Writing an ECH config failed.
    PutEch,
    /// Deleting an ECH config that failed did not work.
    DeleteEch,
    /// Adding a ticket to a pool failed (single-use tickets).
    PoolAdd,
    /// Taking a ticket from a pool failed (single-use tickets).
    PoolTake,
}

impl Operation {
    /// The label: `get`, `put`, `put_serialize`, `delete`, `decode`,
    /// `get_ech`, `put_ech`, `delete_ech`, `pool_add` or `pool_take`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::PutSerialize => "put_serialize",
            Self::Delete => "delete",
            Self::Decode => "decode",
            Self::GetEch => "get_ech",
            Self::PutEch => "put_ech",
            Self::DeleteEch => "delete_ech",
            Self::PoolAdd => "pool_add",
            Self::PoolTake => "pool_take",
        }
    }
}

/// Where a session handed to the TLS layer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketSource {
    /// This process's own memory.
    Local,
    /// The shared backend: another replica (or an earlier run) won it.
    Backend,
}

/// A session found by [`PersistableSessionCache::get`].
#[derive(Debug, Clone)]
pub struct CacheHit {
    /// The session to offer.
    pub session: CachedSession,
    /// Where it was found.
    pub source: TicketSource,
    /// Under [`TicketReuse::SingleUse`]: the tickets left in the pool it
    /// was taken from, when the store can tell. `None` under `Shared`.
    pub pool_left: Option<usize>,
}

/// Tuning of a [`PersistableSessionCache`].
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Sessions kept in memory. Default 32.
    pub capacity: NonZeroUsize,
    /// The longest a backend `get` may delay a handshake. Default 5 s, and
    /// never more than [`MAX_GET_TIMEOUT`].
    pub get_timeout: Duration,
    /// The longest a background write or delete may take. Default 5 s.
    pub write_timeout: Duration,
    /// Sessions older than this are never offered. Default 24 h.
    pub max_age: Duration,
    /// Key prefix and format. Default prefix `h3fleet`.
    pub keys: KeyFormat,
    /// The time source. Default the system clock.
    pub clock: Arc<dyn Clock>,
    /// The fleet keys that seal every value written to the backend and
    /// must open every value read from it. Default none: values are stored
    /// as they are, and whoever can read the store can decrypt resumed
    /// connections' early data, and whoever can write it can send replicas
    /// to a server of their choosing. See [`CacheKeys`].
    pub cache_keys: Option<CacheKeys>,
    /// With [`cache_keys`](Self::cache_keys) set, still accept unsealed
    /// entries (those of builds without keys) during a migration. Default
    /// false. While true, anyone who can write the store can plant an
    /// unsealed entry, so the hole sealing closes is open again.
    pub accept_unsealed: bool,
    /// Whether every connection offers the origin's one shared ticket
    /// (the default) or takes a ticket of its own from a pool. See
    /// [`TicketReuse`].
    pub ticket_reuse: TicketReuse,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            capacity: NonZeroUsize::new(TLS_SESSION_CACHE_MAX_SIZE).unwrap_or(NonZeroUsize::MIN),
            get_timeout: MAX_GET_TIMEOUT,
            write_timeout: Duration::from_secs(5),
            max_age: TLS_SESSION_MAX_AGE,
            keys: KeyFormat::default(),
            clock: Arc::new(SystemClock),
            cache_keys: None,
            accept_unsealed: false,
            ticket_reuse: TicketReuse::Shared,
        }
    }
}

impl CacheOptions {
    pub(crate) fn sealing(&self) -> Sealing {
        Sealing::new(self.cache_keys.clone(), self.accept_unsealed)
    }
}

/// The TLS session cache of one protocol: a local LRU in front of an
/// optional shared [`SessionCacheBackend`].
///
/// The TLS layer calls [`get`](Self::get) before a handshake and
/// [`put`](Self::put) when the server sends a ticket. With a backend, a
/// ticket won by any replica can be resumed by every other one.
///
/// ## Behavior
///
/// - **Lookups** try the local LRU first. On a local miss they ask the
///   backend, bounded by [`CacheOptions::get_timeout`]; a timeout or error is
///   reported and is a miss (the caller does a full handshake). Concurrent
///   lookups of one key share one backend `get` (single flight). No lock is
///   held across a backend call.
/// - **Stores** update the LRU at once and write to the backend on a
///   background task: the handshake never waits for the backend. The TTL is
///   the ticket's remaining lifetime, capped at [`CacheOptions::max_age`].
///   [`flush`](Self::flush) waits for those writes, for short-lived processes.
///   Background calls run on the current Tokio runtime, or else on the one
///   the cache was created on; with neither, they are reported and skipped.
/// - **Deletes**: an entry that fails to decode, has expired, or whose
///   ticket the server refused ([`invalidate`](Self::invalidate)) is deleted
///   from the backend, unless a newer ticket has already replaced it. An
///   entry written by another h3fleet version or TLS engine is a miss and
///   is left alone, for the replicas that can use it.
/// - **Errors** reach the error callback with an operation label and are
///   logged with `tracing`; they never reach the request.
/// - **Identifiers** ([`set_session_identifier`](Self::set_session_identifier))
///   namespace both the backend keys and the local entries: a cache under
///   `alice` never sees a session stored under `bob`.
///
/// ## Security
///
/// Sharing a ticket lets every replica resume the same TLS session. That is
/// the point, but it also means connections from different replicas can be
/// linked by the server (RFC 8446 Appendix C.4 advises clients not to reuse
/// tickets for that reason). Use identifiers to keep apart traffic that must
/// not be linked, and keep the backend private: a stored session resumes a
/// connection to its server.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use h3fleet::cache::{MemoryBackend, PersistableSessionCache, Protocol};
///
/// let backend = Arc::new(MemoryBackend::new());
/// let cache = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, None);
/// cache.set_session_identifier("alice");
/// assert_eq!(cache.session_identifier().as_deref(), Some("alice"));
/// ```
#[derive(Clone)]
pub struct PersistableSessionCache {
    inner: Arc<Inner>,
}

struct Inner {
    options: CacheOptions,
    sealing: Sealing,
    local: Mutex<LruCache<LocalKey, CachedSession>>,
    /// Under `SingleUse` without a backend: each origin's pool, newest last.
    pools: Mutex<LruCache<LocalKey, VecDeque<CachedSession>>>,
    attachment: RwLock<Attachment>,
    flights: SingleFlight<Option<CachedSession>>,
    /// Background backend calls still running, for `flush`.
    calls: BackgroundCalls,
}

/// Local entries are namespaced by identifier, like backend keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LocalKey {
    identifier: Option<String>,
    origin: String,
}

/// What the cache is attached to; read as a snapshot by every call.
#[derive(Clone)]
struct Attachment {
    backend: Option<Arc<dyn SessionCacheBackend>>,
    preset: String,
    protocol: Protocol,
    on_error: Option<ErrorCallback>,
    identifier: Option<String>,
}

impl Default for PersistableSessionCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PersistableSessionCache {
    /// A local-only cache with default options (attach a backend with
    /// [`set_backend`](Self::set_backend)).
    pub fn new() -> Self {
        Self::with_options(CacheOptions::default())
    }

    /// A local-only cache with `options`.
    pub fn with_options(options: CacheOptions) -> Self {
        let capacity = options.capacity;
        Self {
            inner: Arc::new(Inner {
                sealing: options.sealing(),
                options,
                local: Mutex::new(LruCache::new(capacity)),
                pools: Mutex::new(LruCache::new(capacity)),
                attachment: RwLock::new(Attachment {
                    backend: None,
                    preset: "default".to_owned(),
                    protocol: Protocol::H3,
                    on_error: None,
                    identifier: None,
                }),
                flights: SingleFlight::default(),
                calls: BackgroundCalls::default(),
            }),
        }
    }

    /// A cache on `backend` for `preset` and `protocol`, with default options.
    pub fn with_backend(
        backend: Arc<dyn SessionCacheBackend>,
        preset: impl Into<String>,
        protocol: Protocol,
        on_error: Option<ErrorCallback>,
    ) -> Self {
        let cache = Self::new();
        cache.set_backend(Some(backend), preset, protocol, on_error);
        cache
    }

    /// Attaches, swaps or (with `None`) detaches the backend. Local entries
    /// are kept, so a circuit breaker can fall back to local-only and back
    /// without losing them; pass the same preset, protocol and callback to
    /// keep the keys the same.
    pub fn set_backend(
        &self,
        backend: Option<Arc<dyn SessionCacheBackend>>,
        preset: impl Into<String>,
        protocol: Protocol,
        on_error: Option<ErrorCallback>,
    ) {
        let mut a = write(&self.inner.attachment);
        a.backend = backend;
        a.preset = preset.into();
        a.protocol = protocol;
        a.on_error = on_error;
    }

    /// Namespaces this cache's keys under `id` (an empty `id` removes the
    /// namespace). Sessions stored under another identifier become invisible.
    pub fn set_session_identifier(&self, id: impl Into<String>) {
        let id = id.into();
        let mut a = write(&self.inner.attachment);
        a.identifier = (!id.is_empty()).then_some(id);
    }

    /// The current identifier, if any.
    pub fn session_identifier(&self) -> Option<String> {
        read(&self.inner.attachment).identifier.clone()
    }

    /// Replaces the error callback (`None` removes it).
    pub fn set_error_callback(&self, on_error: Option<ErrorCallback>) {
        write(&self.inner.attachment).on_error = on_error;
    }

    /// Whether connections share a ticket or take one each.
    pub fn ticket_reuse(&self) -> TicketReuse {
        self.inner.options.ticket_reuse
    }

    /// The protocol whose sessions this cache holds.
    pub fn protocol(&self) -> Protocol {
        read(&self.inner.attachment).protocol
    }

    /// True when a backend is attached.
    pub fn has_backend(&self) -> bool {
        self.attachment().backend.is_some()
    }

    /// The number of sessions held in memory.
    pub fn local_len(&self) -> usize {
        self.local().len()
    }

    /// The session to offer to `host:port`, from memory or the backend.
    pub async fn get(&self, host: &str, port: u16) -> Option<CacheHit> {
        self.get_as(self.attachment(), host, port).await
    }

    /// [`get`](Self::get) under `identifier`, whatever the current one is: a
    /// connection keeps the identifier it was opened under.
    pub(crate) async fn get_for(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
    ) -> Option<CacheHit> {
        self.get_as(self.attachment_for(identifier), host, port).await
    }

    async fn get_as(&self, a: Attachment, host: &str, port: u16) -> Option<CacheHit> {
        if let TicketReuse::SingleUse { .. } = self.inner.options.ticket_reuse {
            return self.take_as(a, host, port).await;
        }
        let local_key = LocalKey {
            identifier: a.identifier.clone(),
            origin: canonical_origin(host, port),
        };
        if let Some(session) = self.local_get(&local_key) {
            return Some(CacheHit {
                session,
                source: TicketSource::Local,
                pool_left: None,
            });
        }
        let backend = a.backend.clone()?;
        let key = self.key(&a, host, port);
        let session = self.single_flight(&key, &backend, &a).await?;
        self.local().put(local_key, session.clone());
        Some(CacheHit {
            session,
            source: TicketSource::Backend,
            pool_left: None,
        })
    }

    /// Stores a session the server just issued for `host:port`: in memory at
    /// once, in the backend on a background task. Sessions that are already
    /// expired are dropped.
    pub fn put(&self, host: &str, port: u16, session: CachedSession) {
        self.put_as(self.attachment(), host, port, session, Sharing::Fleet);
    }

    /// [`put`](Self::put) under `identifier`: a ticket that arrives after
    /// the identifier changed still goes to the one its connection used.
    /// [`Sharing::Local`] keeps it out of the backend.
    pub(crate) fn put_for(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        session: CachedSession,
        sharing: Sharing,
    ) {
        self.put_as(self.attachment_for(identifier), host, port, session, sharing);
    }

    fn put_as(&self, a: Attachment, host: &str, port: u16, session: CachedSession, sharing: Sharing) {
        let Some(ttl) = self.remaining_life(&session.envelope) else {
            tracing::debug!(host, port, "session already expired; not cached");
            return;
        };
        if let TicketReuse::SingleUse { per_key } = self.inner.options.ticket_reuse {
            return self.pool_as(&a, host, port, session, sharing, (ttl, per_key));
        }
        let local_key = LocalKey {
            identifier: a.identifier.clone(),
            origin: canonical_origin(host, port),
        };
        self.local().put(local_key, session.clone());
        let Some(backend) = a.backend.clone().filter(|_| sharing == Sharing::Fleet) else {
            return;
        };
        let key = self.key(&a, host, port);
        let Some(state) = self.stored_form(&a, &backend, &key, &session) else {
            return;
        };
        let (timeout, task_key) = (self.inner.options.write_timeout, key.clone());
        self.spawn(&a, &key, Operation::Put, async move {
            bounded(
                "put",
                timeout,
                backend.name(),
                backend.put(&task_key, &state, ttl),
            )
            .await
        });
    }

    /// The sealed stored form of `session` under `key`, or `None` (reported)
    /// if it cannot be stored there.
    fn stored_form(
        &self,
        a: &Attachment,
        backend: &Arc<dyn SessionCacheBackend>,
        key: &str,
        session: &CachedSession,
    ) -> Option<TlsSessionState> {
        if session.envelope.protocol != a.protocol {
            let msg = format!(
                "an {} session given to the {} cache",
                session.envelope.protocol, a.protocol
            );
            let err = BackendError::new(backend.name(), BackendErrorKind::Encode, msg);
            report(a, Operation::PutSerialize, key, &err);
            return None;
        }
        match session.seal_state(self.now(), &self.inner.sealing, key) {
            Ok(state) => Some(state),
            Err(e) => {
                let err = BackendError::new(backend.name(), BackendErrorKind::Encode, "invalid session")
                    .with_source(e);
                report(a, Operation::PutSerialize, key, &err);
                None
            }
        }
    }

    /// Forgets a session the server refused (we offered `refused_ticket` and
    /// the handshake was full): from memory, and from the backend unless a
    /// newer ticket has replaced it there.
    pub fn invalidate(&self, host: &str, port: u16, refused_ticket: &[u8]) {
        self.invalidate_as(self.attachment(), host, port, refused_ticket);
    }

    /// [`invalidate`](Self::invalidate) under `identifier`.
    pub(crate) fn invalidate_for(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        refused_ticket: &[u8],
    ) {
        self.invalidate_as(self.attachment_for(identifier), host, port, refused_ticket);
    }

    fn invalidate_as(&self, a: Attachment, host: &str, port: u16, refused_ticket: &[u8]) {
        if self.inner.options.ticket_reuse != TicketReuse::Shared {
            // The refused ticket was taken from its pool: no one else has it.
            return;
        }
        let local_key = LocalKey {
            identifier: a.identifier.clone(),
            origin: canonical_origin(host, port),
        };
        {
            let mut local = self.local();
            if local.peek(&local_key).is_some_and(|s| s.ticket == refused_ticket) {
                local.pop(&local_key);
            }
        }
        let key = self.key(&a, host, port);
        self.delete_in_background(&a, &key, Some(base64_of(refused_ticket)));
    }

    /// Waits up to `timeout` for background writes and deletes to finish.
    /// Returns true if none is left. Call it before a short-lived process
    /// exits, or tickets won in its last moments are lost to the fleet.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.inner.calls.flush(timeout).await
    }

    fn attachment(&self) -> Attachment {
        read(&self.inner.attachment).clone()
    }

    fn attachment_for(&self, identifier: Option<String>) -> Attachment {
        Attachment {
            identifier,
            ..self.attachment()
        }
    }

    fn local(&self) -> MutexGuard<'_, LruCache<LocalKey, CachedSession>> {
        // Each LRU operation is atomic under the lock, so poison is harmless.
        lock(&self.inner.local)
    }

    fn key(&self, a: &Attachment, host: &str, port: u16) -> String {
        self.inner
            .options
            .keys
            .session(a.identifier.as_deref(), &a.preset, a.protocol, host, port)
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from(self.inner.options.clock.now())
    }

    /// A live local entry; an expired one is dropped.
    fn local_get(&self, key: &LocalKey) -> Option<CachedSession> {
        let mut local = self.local();
        let session = local.get(key)?.clone();
        if self.remaining_life(&session.envelope).is_some() {
            return Some(session);
        }
        local.pop(key);
        None
    }

    /// How much longer a session may be offered, or `None` if never again.
    fn remaining_life(&self, envelope: &Envelope) -> Option<Duration> {
        let life = u64::from(envelope.lifetime_secs).min(self.inner.options.max_age.as_secs());
        let age = self
            .inner
            .options
            .clock
            .unix_secs()
            .saturating_sub(envelope.issued_at);
        (age < life).then(|| Duration::from_secs(life - age))
    }

    /// Runs the backend lookup for `key` once, however many callers want it.
    async fn single_flight(
        &self,
        key: &str,
        backend: &Arc<dyn SessionCacheBackend>,
        a: &Attachment,
    ) -> Option<CachedSession> {
        let lookup = self.lookup(key, backend, a);
        self.inner
            .flights
            .run(key, self.get_timeout(), lookup)
            .await
            .flatten()
    }

    fn get_timeout(&self) -> Duration {
        self.inner.options.get_timeout.min(MAX_GET_TIMEOUT)
    }

    /// One bounded backend `get`, with every failure reported and every bad
    /// entry deleted.
    async fn lookup(
        &self,
        key: &str,
        backend: &Arc<dyn SessionCacheBackend>,
        a: &Attachment,
    ) -> Option<CachedSession> {
        let state = match bounded("get", self.get_timeout(), backend.name(), backend.get(key)).await {
            Ok(state) => state?,
            Err(e) if e.is_decode() => {
                report(a, Operation::Decode, key, &e);
                self.delete_in_background(a, key, None);
                return None;
            }
            Err(e) => {
                report(a, Operation::Get, key, &e);
                return None;
            }
        };
        match CachedSession::open_state(&state, a.protocol, &self.inner.sealing, key) {
            Ok(session) => {
                let too_old = self.now().signed_duration_since(state.created_at)
                    > chrono::Duration::from_std(self.inner.options.max_age).unwrap_or(chrono::Duration::MAX);
                if too_old || self.remaining_life(&session.envelope).is_none() {
                    tracing::debug!(key, "stored session has expired; deleting it");
                    self.delete_in_background(a, key, Some(state.ticket.clone()));
                    return None;
                }
                Some(session)
            }
            Err(e) if e.is_foreign() => {
                tracing::debug!(key, error = %e, "stored session is from another version; ignoring it");
                None
            }
            Err(e) => {
                let what = match e {
                    EntryError::Seal(_) => "stored session does not open with the cache keys",
                    _ => "stored session is corrupt",
                };
                let err = BackendError::new(backend.name(), BackendErrorKind::Decode, what).with_source(e);
                report(a, Operation::Decode, key, &err);
                self.delete_in_background(a, key, Some(state.ticket.clone()));
                None
            }
        }
    }

    /// Deletes the entry under `key` if it is still the session with
    /// `ticket` (base64, as stored), or with `None` still a value that is no
    /// session: never a fresh ticket another replica has just written.
    fn delete_in_background(&self, a: &Attachment, key: &str, ticket: Option<String>) {
        let Some(backend) = a.backend.clone() else { return };
        let (timeout, key_owned) = (self.inner.options.write_timeout, key.to_owned());
        self.spawn(a, key, Operation::Delete, async move {
            let expected = match &ticket {
                Some(ticket) => StoredSession::Ticket(ticket),
                None => StoredSession::Unreadable,
            };
            let delete = backend.delete_if(&key_owned, expected);
            bounded("delete", timeout, backend.name(), delete).await.map(drop)
        });
    }

    /// Spawns a backend call on the cache's task tracker; its error is
    /// reported under `op`.
    fn spawn<F>(&self, a: &Attachment, key: &str, op: Operation, call: F)
    where
        F: std::future::Future<Output = Result<(), BackendError>> + Send + 'static,
    {
        let (a, key) = (a.clone(), key.to_owned());
        let name = a.backend.as_ref().map_or("backend", |b| b.name());
        self.inner
            .calls
            .spawn(name, call, move |e| report(&a, op, &key, &e));
    }
}

/// Runs a backend call `op` with a deadline (running out is a `Timeout`
/// error), in a span, recording its outcome and latency.
pub(crate) async fn bounded<T>(
    op: &'static str,
    timeout: Duration,
    backend: &'static str,
    call: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("backend", op, backend);
    let result = tokio::time::timeout(timeout, call)
        .instrument(span)
        .await
        .unwrap_or_else(|_| {
            Err(BackendError::new(
                backend,
                BackendErrorKind::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            ))
        });
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.kind() == BackendErrorKind::Timeout => "timeout",
        Err(_) => "error",
    };
    crate::telemetry::backend_op(op, outcome, started.elapsed());
    result
}

/// Reports a failure to the attachment's error callback.
fn report(a: &Attachment, op: Operation, key: &str, err: &BackendError) {
    super::attachment::report(a.on_error.as_ref(), op, key, err);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl fmt::Debug for PersistableSessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.attachment();
        f.debug_struct("PersistableSessionCache")
            .field("protocol", &a.protocol)
            .field("preset", &a.preset)
            .field("identifier", &a.identifier)
            .field("backend", &a.backend.as_ref().map(|b| b.name()))
            .field("local_len", &self.local_len())
            .finish()
    }
}
