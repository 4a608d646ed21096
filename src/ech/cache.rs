//! `EchCache`: ECH configs per origin, in memory with expiry, shared
//! through the session backend under the same key prefix, read timeout,
//! single flight and tracked background writes as the ticket caches.
//!
//! A config reaches the backend only once proven: one from an
//! (unauthenticated) DNS answer, or from a server's retry configs, is kept
//! in this process until a handshake with it had ECH accepted
//! ([`EchCache::proven`]). A config that fails is dropped here and, if the
//! backend still holds the value it was read as, there too
//! ([`EchCache::failed`]): one spoofed answer cannot break a host for the
//! fleet.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{validate_ech_config_list, EchSource};
use crate::cache::{
    bounded, ech_context, report, BackgroundCalls, CacheOptions, ErrorCallback, KeyFormat, Operation,
    Sealing, SessionCacheBackend, SingleFlight, MAX_GET_TIMEOUT,
};
use crate::expiring::ExpiringMap;
use crate::sync::{read, write};

/// Bounds on how long a config is kept (a DNS TTL is clamped to them).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(60);
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The most origins whose configs are kept in memory.
const MAX_LOCAL: usize = 4096;

/// A config held in memory, and what the backend knows of it.
#[derive(Clone)]
struct Entry {
    list: Vec<u8>,
    /// The exact bytes the backend holds for it (as read, or as written by
    /// this process), for a compare-and-delete.
    stored: Option<Vec<u8>>,
    /// Not in the backend yet: written there, for this long, once proven.
    share_ttl: Option<Duration>,
}

/// ECH configs by origin: local memory, then the backend, then DNS.
pub(crate) struct EchCache {
    local: ExpiringMap<(String, u16), Entry>,
    backend: RwLock<Option<Arc<dyn SessionCacheBackend>>>,
    on_error: RwLock<Option<ErrorCallback>>,
    keys: KeyFormat,
    sealing: Sealing,
    preset: String,
    get_timeout: Duration,
    write_timeout: Duration,
    flights: SingleFlight<Option<(Vec<u8>, Vec<u8>)>>,
    calls: BackgroundCalls,
}

impl std::fmt::Debug for EchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchCache")
            .field("backend", &self.backend().map(|b| b.name()))
            .field("preset", &self.preset)
            .finish_non_exhaustive()
    }
}

/// Local entries are keyed like backend keys: `Example.COM.` is
/// `example.com`.
fn canonical_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn clamp(ttl: Duration) -> Duration {
    ttl.clamp(MIN_TTL, MAX_TTL)
}

impl EchCache {
    /// A cache for `preset` with the ticket caches' key format and
    /// timeouts; attach a backend with [`set_backend`](Self::set_backend).
    pub(crate) fn new(preset: &str, options: &CacheOptions) -> Self {
        Self {
            local: ExpiringMap::new(MAX_LOCAL),
            backend: RwLock::new(None),
            on_error: RwLock::new(None),
            keys: options.keys.clone(),
            sealing: options.sealing(),
            preset: preset.to_owned(),
            get_timeout: options.get_timeout.min(MAX_GET_TIMEOUT),
            write_timeout: options.write_timeout,
            flights: SingleFlight::default(),
            calls: BackgroundCalls::default(),
        }
    }

    /// Attaches or (with `None`) detaches the backend; local configs stay.
    pub(crate) fn set_backend(&self, backend: Option<Arc<dyn SessionCacheBackend>>) {
        *write(&self.backend) = backend;
    }

    /// Replaces the error callback.
    pub(crate) fn set_error_callback(&self, on_error: Option<ErrorCallback>) {
        *write(&self.on_error) = on_error;
    }

    fn backend(&self) -> Option<Arc<dyn SessionCacheBackend>> {
        read(&self.backend).clone()
    }

    fn local_get(&self, host: &str, port: u16) -> Option<Entry> {
        self.local.get(&(canonical_host(host), port))
    }

    fn local_put(&self, host: &str, port: u16, entry: Entry, ttl: Duration) {
        self.local.insert((canonical_host(host), port), entry, clamp(ttl));
    }

    /// The config for `host:port` and where it came from: memory, the
    /// backend, or `dns()` (the origin's HTTPS record: its ECHConfigList and
    /// TTL), in that order. A config from DNS is validated and kept here;
    /// it goes to the backend only once [`proven`](Self::proven). `None`:
    /// no usable config.
    pub(crate) async fn find<F, Fut>(&self, host: &str, port: u16, dns: F) -> Option<(Vec<u8>, EchSource)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<(Vec<u8>, Duration)>>,
    {
        if let Some(entry) = self.local_get(host, port) {
            return Some((entry.list, EchSource::Local));
        }
        if let Some((list, stored)) = self.read_backend(host, port).await {
            let entry = Entry {
                list: list.clone(),
                stored: Some(stored),
                share_ttl: None,
            };
            self.local_put(host, port, entry, MIN_TTL);
            return Some((list, EchSource::Backend));
        }
        let (list, ttl) = dns().await?;
        if let Err(e) = validate_ech_config_list(&list) {
            tracing::warn!(host, error = %e, "the ECH config in DNS is unusable; going on without it");
            return None;
        }
        self.keep_unproven(host, port, list.clone(), ttl);
        Some((list, EchSource::Dns))
    }

    /// Keeps `list` for `host:port` in this process (TTL clamped to
    /// [60 s, 24 h]) until a handshake proves it.
    pub(crate) fn keep_unproven(&self, host: &str, port: u16, list: Vec<u8>, ttl: Duration) {
        let entry = Entry {
            list,
            stored: None,
            share_ttl: Some(clamp(ttl)),
        };
        self.local_put(host, port, entry, ttl);
    }

    /// A handshake with `list` had ECH accepted: if it is the unproven
    /// config held for `host:port`, it is written to the backend now.
    pub(crate) fn proven(&self, host: &str, port: u16, list: &[u8]) {
        let Some(entry) = self.local_get(host, port).filter(|e| e.list == list) else {
            return;
        };
        let Some(ttl) = entry.share_ttl else { return };
        let Some(backend) = self.backend() else { return };
        let key = self.keys.ech(&self.preset, host, port);
        let sealed = match self.sealing.seal(&ech_context(&key), entry.list.clone()) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot seal the ECH config; not sharing it");
                return;
            }
        };
        let shared = Entry {
            stored: Some(sealed.clone()),
            share_ttl: None,
            ..entry
        };
        self.local_put(host, port, shared, ttl);
        let (on_error, timeout, task_key) = (read(&self.on_error).clone(), self.write_timeout, key.clone());
        let name = backend.name();
        let put = async move {
            let put = backend.put_ech_config(&task_key, &sealed, ttl);
            bounded("put_ech", timeout, backend.name(), put).await
        };
        self.calls.spawn(name, put, move |e| {
            report(on_error.as_ref(), Operation::PutEch, &key, &e);
        });
    }

    /// A connection that offered `list` for `host:port` failed because of
    /// it: it is dropped here, and from the backend if the backend still
    /// holds the value it was read (or written) as.
    pub(crate) fn failed(&self, host: &str, port: u16, list: &[u8]) {
        let Some(entry) = self.local_get(host, port).filter(|e| e.list == list) else {
            return;
        };
        tracing::warn!(host, port, "dropping an ECH config that failed");
        self.local.remove(&(canonical_host(host), port));
        let (Some(stored), Some(backend)) = (entry.stored, self.backend()) else {
            return;
        };
        let key = self.keys.ech(&self.preset, host, port);
        let (on_error, timeout, task_key) = (read(&self.on_error).clone(), self.write_timeout, key.clone());
        let name = backend.name();
        let delete = async move {
            let delete = backend.delete_ech_config_if(&task_key, &stored);
            bounded("delete_ech", timeout, backend.name(), delete)
                .await
                .map(drop)
        };
        self.calls.spawn(name, delete, move |e| {
            report(on_error.as_ref(), Operation::DeleteEch, &key, &e);
        });
    }

    /// A valid config for `host:port` from the backend, read once however
    /// many connections want it at the same moment.
    async fn read_backend(&self, host: &str, port: u16) -> Option<(Vec<u8>, Vec<u8>)> {
        let backend = self.backend()?;
        let key = self.keys.ech(&self.preset, host, port);
        let lookup = async {
            let call = backend.get_ech_config(&key);
            match bounded("get_ech", self.get_timeout, backend.name(), call).await {
                Ok(Some(stored)) => {
                    let opened = self.sealing.open(&ech_context(&key), stored.clone());
                    match opened.map_err(|e| e.to_string()).and_then(|list| {
                        validate_ech_config_list(&list).map_err(|e| e.to_string())?;
                        Ok(list)
                    }) {
                        Ok(list) => Some((list, stored)),
                        Err(error) => {
                            tracing::warn!(key, error, "stored ECH config unusable; asking DNS");
                            None
                        }
                    }
                }
                Ok(None) => None,
                Err(e) => {
                    report(read(&self.on_error).as_ref(), Operation::GetEch, &key, &e);
                    None
                }
            }
        };
        self.flights.run(&key, self.get_timeout, lookup).await.flatten()
    }

    /// Waits up to `timeout` for background writes. True if none is left.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        self.calls.flush(timeout).await
    }
}
