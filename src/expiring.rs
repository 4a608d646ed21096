//! [`ExpiringMap`]: the crate's one map whose entries expire, bounded in
//! size so that a stream of distinct keys (origins a session contacts, hosts
//! a DNS server names) cannot grow it without limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Entries with a deadline each; at most `capacity` of them. A full map
/// first drops what has expired, then the entry closest to expiring.
#[derive(Debug)]
pub(crate) struct ExpiringMap<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> ExpiringMap<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The live value for `key`; an expired one is removed.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `ttl` (a `ttl` past the end of the clock is kept
    /// for as long as the clock goes).
    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(ttl)
            .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
            .unwrap_or(now);
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, (value, until));
    }

    pub(crate) fn remove(&self, key: &K) {
        lock(&self.entries).remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let map = ExpiringMap::new(4);
        map.insert("a", 1, Duration::ZERO);
        map.insert("b", 2, Duration::from_secs(60));
        assert_eq!(map.get(&"a"), None);
        assert_eq!(map.get(&"b"), Some(2));
    }

    #[test]
    fn a_full_map_drops_the_entry_closest_to_expiring() {
        let map = ExpiringMap::new(2);
        map.insert(1, (), Duration::from_secs(10));
        map.insert(2, (), Duration::from_secs(100));
        map.insert(3, (), Duration::from_secs(50));
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&1), None);
        assert!(map.get(&2).is_some() && map.get(&3).is_some());
    }

    #[test]
    fn huge_ttls_do_not_panic() {
        let map = ExpiringMap::new(2);
        map.insert("k", 1, Duration::MAX);
        assert_eq!(map.get(&"k"), Some(1));
    }
}
