//! [`MemoryBackend`]: the reference backend, for tests and single processes.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::cache::backend::{check_ttl, BackendError, SessionCacheBackend, StoredSession, TlsSessionState};
use crate::cache::clock::{Clock, SystemClock};
use crate::cache::pool::{PoolItem, PoolItems, PoolTake};

const NAME: &str = "memory";
/// A sweep runs once the writes since the last one reach the number of
/// entries the last one left (and at least this many), so sweeping costs
/// O(1) per write, amortised.
const MIN_WRITES_BETWEEN_SWEEPS: usize = 64;
/// Longer TTLs are stored as this (a century), so deadlines never overflow.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A backend in this process's memory, with per-key expiry.
///
/// It shares nothing between processes, so it is for tests, for a single
/// long-lived process, and as the reference for what every backend must do:
/// an expired entry is never returned (a read removes it), and expired
/// entries are reclaimed by a sweep that runs as writes accumulate, so memory
/// stays bounded by the live entries.
///
/// ```
/// use std::sync::Arc;
/// use h3fleet::cache::{MemoryBackend, SessionCacheBackend};
///
/// let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
/// ```
#[derive(Debug)]
pub struct MemoryBackend {
    maps: Mutex<Maps>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Maps {
    sessions: HashMap<String, Expiring<TlsSessionState>>,
    ech: HashMap<String, Expiring<Vec<u8>>>,
    pools: HashMap<String, PoolItems>,
    writes_since_sweep: usize,
    len_after_sweep: usize,
}

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    expires_at: SystemTime,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty backend that reads time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            maps: Mutex::new(Maps::default()),
            clock,
        }
    }

    /// How many entries (sessions and ECH configs) are held, counting expired
    /// ones not yet reclaimed.
    pub fn len(&self) -> usize {
        let maps = self.lock();
        maps.sessions.len() + maps.ech.len() + maps.pools.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every operation is a single insert or remove), so poison is ignored.
        crate::sync::lock(&self.maps)
    }

    fn deadline(&self, ttl: Duration) -> Result<SystemTime, BackendError> {
        check_ttl(NAME, ttl)?;
        let now = self.clock.now();
        Ok(now.checked_add(ttl.min(MAX_TTL)).unwrap_or(now))
    }

    fn after_write(&self, maps: &mut Maps) {
        maps.writes_since_sweep += 1;
        if maps.writes_since_sweep >= maps.len_after_sweep.max(MIN_WRITES_BETWEEN_SWEEPS) {
            let now = self.clock.now();
            maps.sessions.retain(|_, e| e.expires_at > now);
            maps.ech.retain(|_, e| e.expires_at > now);
            let now_ms = unix_ms(now);
            maps.pools.retain(|_, p| p.live(now_ms).next().is_some());
            maps.writes_since_sweep = 0;
            maps.len_after_sweep = maps.sessions.len() + maps.ech.len() + maps.pools.len();
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Returns a clone of the live value under `key`, removing it if expired.
fn read_live<T: Clone>(map: &mut HashMap<String, Expiring<T>>, key: &str, now: SystemTime) -> Option<T> {
    match map.get(key) {
        Some(e) if e.expires_at > now => Some(e.value.clone()),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

#[async_trait]
impl SessionCacheBackend for MemoryBackend {
    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
        let now = self.clock.now();
        Ok(read_live(&mut self.lock().sessions, key, now))
    }

    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
        let expires_at = self.deadline(ttl)?;
        let mut maps = self.lock();
        maps.sessions.insert(
            key.to_owned(),
            Expiring {
                value: session.clone(),
                expires_at,
            },
        );
        self.after_write(&mut maps);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.lock().sessions.remove(key);
        Ok(())
    }

    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let now = self.clock.now();
        Ok(read_live(&mut self.lock().ech, key, now))
    }

    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let expires_at = self.deadline(ttl)?;
        let mut maps = self.lock();
        maps.ech.insert(
            key.to_owned(),
            Expiring {
                value: config.to_vec(),
                expires_at,
            },
        );
        self.after_write(&mut maps);
        Ok(())
    }

    async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
        let mut maps = self.lock();
        // Every value held here parsed, so none is `Unreadable`.
        let matches = matches!(
            (maps.sessions.get(key), expected),
            (Some(e), StoredSession::Ticket(t)) if e.value.ticket == t
        );
        if matches {
            maps.sessions.remove(key);
        }
        Ok(matches)
    }

    async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
        let mut maps = self.lock();
        let matches = maps.ech.get(key).is_some_and(|e| e.value == expected);
        if matches {
            maps.ech.remove(key);
        }
        Ok(matches)
    }

    async fn pool_add(
        &self,
        key: &str,
        session: &TlsSessionState,
        ttl: Duration,
        max: NonZeroUsize,
    ) -> Result<(), BackendError> {
        let expires_at = unix_ms(self.deadline(ttl)?);
        let item = PoolItem {
            session: session.clone(),
            expires_at,
        };
        let now = unix_ms(self.clock.now());
        let mut maps = self.lock();
        maps.pools.entry(key.to_owned()).or_default().add(item, now, max);
        self.after_write(&mut maps);
        Ok(())
    }

    async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
        let now = unix_ms(self.clock.now());
        let mut maps = self.lock();
        let Some(pool) = maps.pools.get_mut(key) else {
            return Ok(None);
        };
        let taken = pool.take(now);
        if pool.is_empty() {
            maps.pools.remove(key);
        }
        Ok(taken)
    }

    async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
        let now = unix_ms(self.clock.now());
        let maps = self.lock();
        let pool = maps.pools.get(key);
        Ok(pool
            .into_iter()
            .flat_map(|p| p.live(now))
            .map(|i| i.session.clone())
            .collect())
    }

    async fn pool_delete(&self, key: &str) -> Result<(), BackendError> {
        self.lock().pools.remove(key);
        Ok(())
    }

    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let maps = self.lock();
        let keys = maps
            .sessions
            .keys()
            .chain(maps.ech.keys())
            .chain(maps.pools.keys());
        let mut keys: Vec<String> = keys
            .filter(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::clock::ManualClock;

    fn state() -> TlsSessionState {
        TlsSessionState {
            ticket: "dA==".into(),
            state: "cw==".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[tokio::test]
    async fn expired_entries_are_hidden_without_sleeping() {
        let clock = ManualClock::starting_now();
        let backend = MemoryBackend::with_clock(clock.clone());
        backend.put("k", &state(), Duration::from_secs(10)).await.unwrap();
        clock.advance(Duration::from_secs(9));
        assert!(backend.get("k").await.unwrap().is_some());
        clock.advance(Duration::from_secs(1));
        assert!(backend.get("k").await.unwrap().is_none());
        assert!(backend.is_empty(), "the read removed the expired entry");
    }

    #[tokio::test]
    async fn expired_entries_are_reclaimed_by_later_writes() {
        let clock = ManualClock::starting_now();
        let backend = MemoryBackend::with_clock(clock.clone());
        for i in 0..100 {
            backend
                .put(&format!("old{i}"), &state(), Duration::from_secs(1))
                .await
                .unwrap();
        }
        clock.advance(Duration::from_secs(2));
        for i in 0..200 {
            backend
                .put_ech_config(&format!("new{i}"), b"x", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert!(backend.len() < 300, "expired entries were swept");
        assert!(backend.len() >= 200, "live entries were kept");
    }
}
