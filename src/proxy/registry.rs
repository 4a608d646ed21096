//! The sessions a [`LocalProxy`](super::LocalProxy) performs requests with
//! (the default one and those registered by id), and its counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::LocalProxyError;
use crate::session::Session;
use crate::sync::lock;

/// The name of the default session in [`ProxyStats::sessions`] and in
/// [`ProxyRecord::session`](super::ProxyRecord::session).
pub const DEFAULT_SESSION: &str = "default";

/// What a running proxy has done so far ([`LocalProxy::stats`](super::LocalProxy::stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client connections open now (CONNECT tunnels included).
    pub active_connections: usize,
    /// The most client connections that were open at once.
    pub peak_connections: usize,
    /// Client connections accepted since the start.
    pub connections: u64,
    /// Requests answered (performed, refused or failed), tunnels included.
    pub requests: u64,
    /// Requests performed by each session: [`DEFAULT_SESSION`] and each
    /// registered id (one that was unregistered keeps its count).
    pub sessions: BTreeMap<String, u64>,
}

/// The sessions and counters shared by the accept loop and every handler.
#[derive(Debug)]
pub(super) struct Registry {
    default: Session,
    registered: Mutex<HashMap<String, Session>>,
    counts: Mutex<BTreeMap<String, u64>>,
    active: AtomicUsize,
    peak: AtomicUsize,
    connections: AtomicU64,
    requests: AtomicU64,
    /// Woken whenever a connection closes (shutdown waits on it).
    closed: Notify,
}

impl Registry {
    pub(super) fn new(default: Session) -> Self {
        Self {
            default,
            registered: Mutex::new(HashMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            closed: Notify::new(),
        }
    }

    pub(super) fn default_session(&self) -> &Session {
        &self.default
    }

    /// Adds `session` under `id`, setting its session identifier to `id`
    /// so its tickets are kept apart from every other id's.
    pub(super) fn register(&self, id: &str, session: Session) -> Result<(), LocalProxyError> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(LocalProxyError::SessionId(id.to_owned()));
        }
        let mut registered = lock(&self.registered);
        if registered.contains_key(id) {
            return Err(LocalProxyError::SessionRegistered(id.to_owned()));
        }
        session.set_session_identifier(id);
        registered.insert(id.to_owned(), session);
        Ok(())
    }

    pub(super) fn unregister(&self, id: &str) -> Option<Session> {
        lock(&self.registered).remove(id)
    }

    /// The session a request names (`None`: no such id), or the default.
    pub(super) fn pick(&self, id: Option<&str>) -> Option<(String, Session)> {
        match id {
            None => Some((DEFAULT_SESSION.to_owned(), self.default.clone())),
            Some(id) => lock(&self.registered).get(id).map(|s| (id.to_owned(), s.clone())),
        }
    }

    pub(super) fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.registered).keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(super) fn has(&self, id: &str) -> bool {
        lock(&self.registered).contains_key(id)
    }

    /// Every session, the default first (for closing them).
    pub(super) fn all_sessions(&self) -> Vec<Session> {
        let mut all = vec![self.default.clone()];
        all.extend(lock(&self.registered).values().cloned());
        all
    }

    pub(super) fn count_request(&self, session: Option<&str>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(session) = session {
            *lock(&self.counts).entry(session.to_owned()).or_insert(0) += 1;
        }
    }

    /// Counts a connection open until the returned guard drops.
    pub(super) fn open_connection(self: &Arc<Self>, accepted: bool) -> ConnectionGuard {
        if accepted {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        ConnectionGuard(Arc::clone(self))
    }

    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Waits until a connection closes (or returns at once if one closed
    /// since the last call).
    pub(super) async fn connection_closed(&self) {
        self.closed.notified().await;
    }

    pub(super) fn stats(&self) -> ProxyStats {
        ProxyStats {
            active_connections: self.active(),
            peak_connections: self.peak.load(Ordering::Acquire),
            connections: self.connections.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            sessions: lock(&self.counts).clone(),
        }
    }
}

/// One open client connection (or tunnel); counted until dropped.
#[derive(Debug)]
pub(super) struct ConnectionGuard(Arc<Registry>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_one();
    }
}
