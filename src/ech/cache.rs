//! `EchCache`: ECH configs per origin, in memory with expiry, shared
//! through the session backend.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{validate_ech_config_list, EchSource};
use crate::cache::{bounded, BackendError, ErrorCallback, KeyFormat, SessionCacheBackend};

/// Bounds on how long a config is kept (DESIGN.md §5).
pub(crate) const MIN_TTL: Duration = Duration::from_secs(60);
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a backend read may delay a connection.
const GET_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest a background write may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Configs in memory: by `(host, port)`, the list and when it expires.
type LocalConfigs = HashMap<(String, u16), (Vec<u8>, Instant)>;

/// ECH configs by origin: local memory, then the backend, then DNS.
pub(crate) struct EchCache {
    local: Mutex<LocalConfigs>,
    backend: std::sync::RwLock<Option<Arc<dyn SessionCacheBackend>>>,
    keys: KeyFormat,
    preset: String,
    on_error: std::sync::RwLock<Option<ErrorCallback>>,
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
    pub(crate) fn new(
        backend: Option<Arc<dyn SessionCacheBackend>>,
        preset: &str,
        on_error: Option<ErrorCallback>,
    ) -> Self {
        Self {
            local: Mutex::new(HashMap::new()),
            backend: std::sync::RwLock::new(backend),
            keys: KeyFormat::default(),
            preset: preset.to_owned(),
            on_error: std::sync::RwLock::new(on_error),
        }
    }

    /// Attaches or (with `None`) detaches the backend; local configs stay.
    pub(crate) fn set_backend(&self, backend: Option<Arc<dyn SessionCacheBackend>>) {
        *self.backend.write().unwrap_or_else(PoisonError::into_inner) = backend;
    }

    /// Replaces the error callback.
    pub(crate) fn set_error_callback(&self, on_error: Option<ErrorCallback>) {
        *self.on_error.write().unwrap_or_else(PoisonError::into_inner) = on_error;
    }

    fn on_error(&self) -> Option<ErrorCallback> {
        self.on_error
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn backend(&self) -> Option<Arc<dyn SessionCacheBackend>> {
        self.backend
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn report(&self, op: &str, key: &str, err: &BackendError) {
        tracing::warn!(operation = op, key, error = %err, "ECH config backend call failed");
        if let Some(cb) = &self.on_error() {
            if catch_unwind(AssertUnwindSafe(|| cb(op, key, err))).is_err() {
                tracing::error!(operation = op, "the error callback panicked");
            }
        }
    }

    fn local_get(&self, host: &str, port: u16) -> Option<Vec<u8>> {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (host.to_owned(), port);
        match local.get(&key) {
            Some((list, until)) if *until > Instant::now() => Some(list.clone()),
            Some(_) => {
                local.remove(&key);
                None
            }
            None => None,
        }
    }

    fn local_put(&self, host: &str, port: u16, list: Vec<u8>, ttl: Duration) {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((host.to_owned(), port), (list, Instant::now() + clamp(ttl)));
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
        let key = self.keys.ech(&self.preset, host, port);
        if let Some(backend) = self.backend() {
            match bounded(
                "get_ech",
                GET_TIMEOUT,
                backend.name(),
                backend.get_ech_config(&key),
            )
            .await
            {
                Ok(Some(list)) => match validate_ech_config_list(&list) {
                    Ok(_) => {
                        self.local_put(host, port, list.clone(), MIN_TTL);
                        return Some((list, EchSource::Backend));
                    }
                    Err(e) => tracing::warn!(key, error = %e, "stored ECH config unusable; asking DNS"),
                },
                Ok(None) => {}
                Err(e) => self.report("get_ech", &key, &e),
            }
        }
        let (list, ttl) = dns().await?;
        if let Err(e) = validate_ech_config_list(&list) {
            tracing::warn!(host, error = %e, "the ECH config in DNS is unusable; going on without it");
            return None;
        }
        self.store(host, port, list.clone(), ttl);
        Some((list, EchSource::Dns))
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
        let on_error = self.on_error();
        tokio::spawn(async move {
            let put = backend.put_ech_config(&key, &list, ttl);
            if let Err(e) = bounded("put_ech", PUT_TIMEOUT, backend.name(), put).await {
                tracing::warn!(key, error = %e, "ECH config backend write failed");
                if let Some(cb) = on_error {
                    let _ = catch_unwind(AssertUnwindSafe(|| cb("put_ech", &key, &e)));
                }
            }
        });
    }
}
