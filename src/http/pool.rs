//! Open connections, reused for many requests until they close or sit
//! idle too long: one per origin (and session identifier) for HTTP/3 and
//! HTTP/2, which carry many requests at once; for HTTP/1.1, which carries
//! one at a time, as many as `max_per_key`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Conn;
use crate::cache::Protocol;

/// Which connections may be shared: same identifier, host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) protocol: Protocol,
    pub(crate) identifier: Option<String>,
    pub(crate) host: String,
    pub(crate) port: u16,
}

struct Entry {
    conn: Conn,
    last_used: Instant,
}

/// The connection pool of a session.
pub(crate) struct Pool {
    idle_timeout: Duration,
    /// The most connections kept per key (0: none is reused).
    max_per_key: usize,
    entries: Mutex<HashMap<PoolKey, Vec<Entry>>>,
    /// Connections being opened: later requests to the same origin wait for
    /// them instead of opening their own (one handshake, one ticket used).
    connecting: Mutex<HashMap<PoolKey, watch::Receiver<Option<Conn>>>>,
}

/// What a request without an open connection does.
pub(crate) enum Opening<'a> {
    /// Open the connection; others wait on it until the guard is dropped.
    Lead(OpenGuard<'a>),
    /// Wait for the connection another request is opening.
    Follow(watch::Receiver<Option<Conn>>),
}

/// Held by the request opening a connection. Publishing hands the
/// connection to the pool and to waiting requests; dropping it without
/// publishing (a failure) lets them open their own.
pub(crate) struct OpenGuard<'a> {
    pool: &'a Pool,
    key: PoolKey,
    done: watch::Sender<Option<Conn>>,
}

impl OpenGuard<'_> {
    pub(crate) fn publish(self, conn: Conn) {
        self.pool.insert(self.key.clone(), conn.clone());
        // (`insert` files it under the protocol it turned out to speak.)
        self.done.send_replace(Some(conn));
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        crate::sync::lock(&self.pool.connecting).remove(&self.key);
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_per_key", &self.max_per_key)
            .field("open", &self.len())
            .finish()
    }
}

impl Pool {
    pub(crate) fn new(idle_timeout: Duration, max_per_key: usize) -> Self {
        Self {
            idle_timeout,
            max_per_key,
            entries: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to open a connection for `key` or wait for one being opened.
    pub(crate) fn opening(&self, key: &PoolKey) -> Opening<'_> {
        let mut connecting = crate::sync::lock(&self.connecting);
        if let Some(rx) = connecting.get(key) {
            return Opening::Follow(rx.clone());
        }
        let (done, rx) = watch::channel(None);
        connecting.insert(key.clone(), rx);
        Opening::Lead(OpenGuard {
            pool: self,
            key: key.clone(),
            done,
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Entry>>> {
        crate::sync::lock(&self.entries)
    }

    /// An open connection for `key` that can take a request now (taken for
    /// it, if HTTP/1.1), if one is
    /// open and has not been idle too long. Closed and idle connections
    /// found on the way are dropped (closing them once no response still
    /// reads from them).
    pub(crate) fn checkout(&self, key: &PoolKey) -> Option<Conn> {
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|_, list| {
            list.retain(|e| e.conn.is_usable() && now.duration_since(e.last_used) < self.idle_timeout);
            !list.is_empty()
        });
        let entry = entries.get_mut(key)?.iter_mut().find(|e| e.conn.try_claim())?;
        entry.last_used = now;
        Some(entry.conn.clone())
    }

    /// Keeps `conn` for `key`, under the protocol it speaks: beside the
    /// others for HTTP/1.1 while there are fewer than the limit, else in
    /// place of the one before it.
    pub(crate) fn insert(&self, key: PoolKey, conn: Conn) {
        if self.max_per_key == 0 {
            return;
        }
        let protocol = conn.protocol();
        if let Conn::Tcp(tcp) = &conn {
            // Its first request is the opener's, about to be sent.
            if protocol == Protocol::H1 {
                tcp.claim_new();
            }
        }
        let key = PoolKey { protocol, ..key };
        let entry = Entry {
            conn,
            last_used: Instant::now(),
        };
        let mut entries = self.entries();
        let list = entries.entry(key).or_default();
        list.retain(|e| e.conn.is_usable());
        if protocol != Protocol::H1 {
            list.clear();
        }
        if list.len() < self.max_per_key {
            list.push(entry);
        }
    }

    /// Removes and returns every connection.
    pub(crate) fn drain(&self) -> Vec<Conn> {
        self.entries()
            .drain()
            .flat_map(|(_, list)| list.into_iter().map(|e| e.conn))
            .collect()
    }

    /// The number of connections held.
    pub(crate) fn len(&self) -> usize {
        self.entries().values().map(Vec::len).sum()
    }
}
