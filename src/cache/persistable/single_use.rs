//! [`TicketReuse::SingleUse`](crate::cache::TicketReuse): every ticket is
//! offered once.
//!
//! A ticket goes to exactly one place, so it can be handed out once: to the
//! backend's pool when a backend is attached and the ticket may leave the
//! process, else to this process's own pool. Were it kept in both, this
//! process and another replica could each offer it.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::backend::{BackendError, BackendErrorKind, SessionCacheBackend, TlsSessionState};
use crate::cache::entry::{CachedSession, EntryError, Sharing};
use crate::cache::key::canonical_origin;

use super::{
    bounded, report, Attachment, CacheHit, LocalKey, Operation, PersistableSessionCache, TicketSource,
};

impl PersistableSessionCache {
    /// Takes a ticket for `host:port`: from this process's pool, else from
    /// the backend's. An empty pool is a miss (a full handshake).
    pub(super) async fn take_as(&self, a: Attachment, host: &str, port: u16) -> Option<CacheHit> {
        let local_key = LocalKey {
            identifier: a.identifier.clone(),
            origin: canonical_origin(host, port),
        };
        if let Some((session, left)) = self.local_take(&local_key) {
            crate::telemetry::pool_take("local");
            return Some(CacheHit {
                session,
                source: TicketSource::Local,
                pool_left: Some(left),
            });
        }
        let Some(backend) = a.backend.clone() else {
            crate::telemetry::pool_take("empty");
            return None;
        };
        let key = self.pool_key(&a, host, port);
        let take = bounded(
            "pool_take",
            self.get_timeout(),
            backend.name(),
            backend.pool_take(&key),
        );
        let taken = match take.await {
            Ok(Some(taken)) => taken,
            Ok(None) => {
                crate::telemetry::pool_take("empty");
                return None;
            }
            Err(e) => {
                let op = if e.is_decode() {
                    Operation::Decode
                } else {
                    Operation::PoolTake
                };
                report(&a, op, &key, &e);
                return None;
            }
        };
        crate::telemetry::pool_take("backend");
        let session = self.open_taken(&a, &backend, &key, &taken.session)?;
        Some(CacheHit {
            session,
            source: TicketSource::Backend,
            pool_left: taken.left,
        })
    }

    /// The session in a ticket taken from the backend's pool, if it opens
    /// and is live; else `None`, reported unless it is another version's.
    fn open_taken(
        &self,
        a: &Attachment,
        backend: &Arc<dyn SessionCacheBackend>,
        key: &str,
        state: &TlsSessionState,
    ) -> Option<CachedSession> {
        match CachedSession::open_state(state, a.protocol, &self.inner.sealing, key) {
            Ok(session) if self.remaining_life(&session.envelope).is_some() => Some(session),
            Ok(_) => None,
            Err(e) if e.is_foreign() => {
                tracing::debug!(key, error = %e, "pooled ticket is from another version; dropped");
                None
            }
            Err(e) => {
                let what = match e {
                    EntryError::Seal(_) => "pooled ticket does not open with the cache keys",
                    _ => "pooled ticket is corrupt",
                };
                let err = BackendError::new(backend.name(), BackendErrorKind::Decode, what).with_source(e);
                report(a, Operation::Decode, key, &err);
                None
            }
        }
    }

    /// Pools a ticket the server just issued: in the backend (on a
    /// background task) when one is attached and the ticket may leave the
    /// process, else in this process.
    pub(super) fn pool_as(
        &self,
        a: &Attachment,
        host: &str,
        port: u16,
        session: CachedSession,
        sharing: Sharing,
        (ttl, per_key): (Duration, NonZeroUsize),
    ) {
        let Some(backend) = a.backend.clone().filter(|_| sharing == Sharing::Fleet) else {
            let local_key = LocalKey {
                identifier: a.identifier.clone(),
                origin: canonical_origin(host, port),
            };
            return self.local_pool_add(local_key, session, per_key);
        };
        let key = self.pool_key(a, host, port);
        let Some(state) = self.stored_form(a, &backend, &key, &session) else {
            return;
        };
        let (timeout, task_key) = (self.inner.options.write_timeout, key.clone());
        self.spawn(a, &key, Operation::PoolAdd, async move {
            let add = backend.pool_add(&task_key, &state, ttl, per_key);
            bounded("pool_add", timeout, backend.name(), add).await
        });
    }

    /// The number of tickets this process's pool holds for `host:port`
    /// under the current identifier (live or not yet found expired).
    pub fn local_pool_len(&self, host: &str, port: u16) -> usize {
        let local_key = LocalKey {
            identifier: self.attachment().identifier,
            origin: canonical_origin(host, port),
        };
        let pools = crate::sync::lock(&self.inner.pools);
        pools.peek(&local_key).map_or(0, std::collections::VecDeque::len)
    }

    fn local_pool_add(&self, key: LocalKey, session: CachedSession, per_key: NonZeroUsize) {
        let mut pools = crate::sync::lock(&self.inner.pools);
        let pool = pools.get_or_insert_mut(key, Default::default);
        pool.retain(|s| s.ticket != session.ticket && self.remaining_life(&s.envelope).is_some());
        pool.push_back(session);
        while pool.len() > per_key.get() {
            pool.pop_front();
        }
    }

    /// The newest live ticket of this process's pool for `key`, removed,
    /// and how many are left.
    fn local_take(&self, key: &LocalKey) -> Option<(CachedSession, usize)> {
        let mut pools = crate::sync::lock(&self.inner.pools);
        let pool = pools.get_mut(key)?;
        while let Some(session) = pool.pop_back() {
            if self.remaining_life(&session.envelope).is_some() {
                return Some((session, pool.len()));
            }
        }
        None
    }

    fn pool_key(&self, a: &Attachment, host: &str, port: u16) -> String {
        self.inner
            .options
            .keys
            .pool(a.identifier.as_deref(), &a.preset, a.protocol, host, port)
    }
}
