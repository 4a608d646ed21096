//! `EchCache`: ECH configs per origin, in memory with expiry, shared
//! through the session backend under the same key prefix, read timeout,
//! single flight and tracked background writes as the ticket caches.

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

/// ECH configs by origin: local memory, then the backend, then DNS.
pub(crate) struct EchCache {
    local: ExpiringMap<(String, u16), Vec<u8>>,
    backend: RwLock<Option<Arc<dyn SessionCacheBackend>>>,
    on_error: RwLock<Option<ErrorCallback>>,
    keys: KeyFormat,
    sealing: Sealing,
    preset: String,
    get_timeout: Duration,
    write_timeout: Duration,
    flights: SingleFlight<Option<Vec<u8>>>,
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

    fn local_get(&self, host: &str, port: u16) -> Option<Vec<u8>> {
        self.local.get(&(host.to_owned(), port))
    }

    fn local_put(&self, host: &str, port: u16, list: Vec<u8>, ttl: Duration) {
        self.local.insert((host.to_owned(), port), list, clamp(ttl));
    }

    /// The config for `host:port` and where it came from: memory, the
    /// backend, or `dns()` (the origin's HTTPS record: its ECHConfigList and
    /// TTL), in that order. A config from DNS is validated, kept and written
    /// to the backend in the background. `None`: no usable config.
    pub(crate) async fn find<F, Fut>(&self, host: &str, port: u16, dns: F) -> Option<(Vec<u8>, EchSource)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<(Vec<u8>, Duration)>>,
    {
        if let Some(list) = self.local_get(host, port) {
            return Some((list, EchSource::Local));
        }
        if let Some(list) = self.read_backend(host, port).await {
            self.local_put(host, port, list.clone(), MIN_TTL);
            return Some((list, EchSource::Backend));
        }
        let (list, ttl) = dns().await?;
        if let Err(e) = validate_ech_config_list(&list) {
            tracing::warn!(host, error = %e, "the ECH config in DNS is unusable; going on without it");
            return None;
        }
        self.store(host, port, list.clone(), ttl);
        Some((list, EchSource::Dns))
    }

    /// A valid config for `host:port` from the backend, read once however
    /// many connections want it at the same moment.
    async fn read_backend(&self, host: &str, port: u16) -> Option<Vec<u8>> {
        let backend = self.backend()?;
        let key = self.keys.ech(&self.preset, host, port);
        let lookup = async {
            let call = backend.get_ech_config(&key);
            match bounded("get_ech", self.get_timeout, backend.name(), call).await {
                Ok(Some(stored)) => {
                    let opened = self.sealing.open(&ech_context(&key), stored);
                    match opened.map_err(|e| e.to_string()).and_then(|list| {
                        validate_ech_config_list(&list).map_err(|e| e.to_string())?;
                        Ok(list)
                    }) {
                        Ok(list) => Some(list),
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

    /// Keeps `list` for `host:port` locally and writes it to the backend in
    /// the background, with `ttl` clamped to [60 s, 24 h].
    pub(crate) fn store(&self, host: &str, port: u16, list: Vec<u8>, ttl: Duration) {
        let ttl = clamp(ttl);
        self.local_put(host, port, list.clone(), ttl);
        let Some(backend) = self.backend() else {
            return;
        };
        let key = self.keys.ech(&self.preset, host, port);
        let list = match self.sealing.seal(&ech_context(&key), list) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot seal the ECH config; not sharing it");
                return;
            }
        };
        let (on_error, timeout, task_key) = (read(&self.on_error).clone(), self.write_timeout, key.clone());
        let name = backend.name();
        let put = async move {
            let put = backend.put_ech_config(&task_key, &list, ttl);
            bounded("put_ech", timeout, backend.name(), put).await
        };
        self.calls.spawn(name, put, move |e| {
            report(on_error.as_ref(), Operation::PutEch, &key, &e);
        });
    }

    /// Waits up to `timeout` for background writes. True if none is left.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        self.calls.flush(timeout).await
    }
}
