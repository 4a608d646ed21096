//! A circuit breaker in front of a shared backend.
//!
//! A backend that is down or slow costs every cold lookup its timeout, and
//! fills the error callback. The breaker counts backend errors over a
//! rolling window; past a threshold it *opens*: every cache it manages is
//! switched to local-only with `set_backend(None, ..)`, so lookups and
//! writes stop touching the backend at all, and a background probe asks the
//! backend for a key every so often. When a probe succeeds the breaker
//! *closes*: the caches get their backend back.
//!
//! The request path never consults the breaker: while closed the caches call
//! the backend as usual, while open they have none. Its cost is in the error
//! path only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{
    BackendError, BackendErrorKind, ErrorCallback, PersistableSessionCache, Protocol, SessionCacheBackend,
};

/// The key a probe reads unless told otherwise (a miss is a healthy
/// answer).
const PROBE_KEY: &str = "h3fleet:probe";

/// When a [`CircuitBreaker`] opens and how it probes.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Errors are counted over this rolling window. Default 10 s.
    pub window: Duration,
    /// This many errors within the window open the breaker. Default 5.
    pub threshold: usize,
    /// While open, the backend is probed this often. Default 1 s.
    pub probe_interval: Duration,
    /// A probe slower than this fails. Default 500 ms.
    pub probe_timeout: Duration,
    /// The key a probe reads. Default `None`: `{prefix}:probe` under the
    /// session's key prefix (`h3fleet:probe` for a breaker made directly).
    pub probe_key: Option<String>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            threshold: 5,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            probe_key: None,
        }
    }
}

/// Attaches (`Some`) or detaches (`None`) the backend of one managed cache.
type Attach = Box<dyn Fn(Option<Arc<dyn SessionCacheBackend>>) + Send + Sync>;

/// Switches the caches on one backend to local-only while the backend
/// fails, and back when it recovers (see the module documentation).
///
/// ```
/// use std::sync::Arc;
/// use h3fleet::cache::{BreakerConfig, CircuitBreaker, MemoryBackend, PersistableSessionCache, Protocol};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::new(Arc::new(MemoryBackend::new()), BreakerConfig::default(), None);
/// let cache = PersistableSessionCache::new();
/// breaker.manage(&cache, "default", Protocol::H3);
/// assert!(cache.has_backend());
/// assert!(!breaker.is_open());
/// # }
/// ```
pub struct CircuitBreaker {
    backend: Arc<dyn SessionCacheBackend>,
    config: BreakerConfig,
    on_error: Option<ErrorCallback>,
    errors: Mutex<VecDeque<Instant>>,
    open: AtomicBool,
    trips: AtomicU64,
    managed: Mutex<Vec<Attach>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("backend", &self.backend.name())
            .field("open", &self.is_open())
            .field("trips", &self.trips())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker for `backend`; `on_error` still hears every backend
    /// error (the breaker only listens in). Create it inside a Tokio runtime:
    /// the probe runs on it.
    pub fn new(
        backend: Arc<dyn SessionCacheBackend>,
        config: BreakerConfig,
        on_error: Option<ErrorCallback>,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            config,
            on_error,
            errors: Mutex::new(VecDeque::new()),
            open: AtomicBool::new(false),
            trips: AtomicU64::new(0),
            managed: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// The error callback to give whatever calls the backend: it counts the
    /// error, then passes it on to the callback given to [`new`](Self::new).
    pub fn error_callback(self: &Arc<Self>) -> ErrorCallback {
        let breaker: Weak<Self> = Arc::downgrade(self);
        let forward = self.on_error.clone();
        Arc::new(move |op: &str, key: &str, err: &BackendError| {
            // Only an unavailable backend counts: a corrupt or foreign value
            // is the value's fault, and is deleted.
            if let Some(breaker) = breaker.upgrade().filter(|_| is_unavailable(err)) {
                breaker.record_error();
            }
            if let Some(forward) = &forward {
                forward(op, key, err);
            }
        })
    }

    /// Attaches `cache` to the backend (with the breaker's error callback)
    /// and manages it from now on.
    pub fn manage(self: &Arc<Self>, cache: &PersistableSessionCache, preset: &str, protocol: Protocol) {
        let cache = cache.clone();
        let (preset, on_error) = (preset.to_owned(), self.error_callback());
        self.attach(Box::new(move |backend| {
            cache.set_backend(backend, preset.clone(), protocol, Some(on_error.clone()));
        }));
    }

    /// Manages anything else that uses the backend, through `attach`.
    pub(crate) fn attach(&self, attach: Attach) {
        attach((!self.is_open()).then(|| Arc::clone(&self.backend)));
        crate::sync::lock(&self.managed).push(attach);
    }

    /// True while the caches run local-only.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// How many times the breaker has opened.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::SeqCst)
    }

    fn record_error(self: &Arc<Self>) {
        if self.is_open() {
            return;
        }
        let now = Instant::now();
        let tripped = {
            let mut errors = crate::sync::lock(&self.errors);
            errors.push_back(now);
            while errors
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.config.window)
            {
                errors.pop_front();
            }
            errors.len() >= self.config.threshold
        };
        if tripped && !self.open.swap(true, Ordering::SeqCst) {
            self.trip();
        }
    }

    fn set_all(&self, backend: Option<Arc<dyn SessionCacheBackend>>) {
        for attach in crate::sync::lock(&self.managed).iter() {
            attach(backend.clone());
        }
    }

    fn trip(self: &Arc<Self>) {
        self.trips.fetch_add(1, Ordering::SeqCst);
        crate::telemetry::breaker(true, true);
        tracing::warn!(
            backend = self.backend.name(),
            threshold = self.config.threshold,
            window_ms = self.config.window.as_millis() as u64,
            "session cache backend failing; running on local caches until it recovers"
        );
        self.set_all(None);
        let Some(runtime) = self.runtime.clone() else {
            // No runtime to probe on: close again at once rather than stay open.
            self.close();
            return;
        };
        let breaker = Arc::downgrade(self);
        runtime.spawn(probe(breaker));
    }

    fn close(&self) {
        crate::sync::lock(&self.errors).clear();
        self.set_all(Some(Arc::clone(&self.backend)));
        self.open.store(false, Ordering::SeqCst);
        crate::telemetry::breaker(false, false);
    }
}

/// True for the errors of a backend that cannot be reached or does not
/// answer in time, the only ones the breaker counts.
fn is_unavailable(err: &BackendError) -> bool {
    matches!(
        err.kind(),
        BackendErrorKind::Connect | BackendErrorKind::Io | BackendErrorKind::Timeout
    )
}

/// Probes the backend until it answers (any answer but unavailability: a
/// corrupt value under the probe key is an answer), then closes the
/// breaker. Ends if the breaker is dropped.
async fn probe(breaker: Weak<CircuitBreaker>) {
    loop {
        let Some((interval, timeout, backend, key)) = breaker.upgrade().map(|b| {
            (
                b.config.probe_interval,
                b.config.probe_timeout,
                Arc::clone(&b.backend),
                b.config.probe_key.clone().unwrap_or_else(|| PROBE_KEY.to_owned()),
            )
        }) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let healthy = match tokio::time::timeout(timeout, backend.get(&key)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => !is_unavailable(&e),
            Err(_) => false,
        };
        if healthy {
            if let Some(breaker) = breaker.upgrade() {
                tracing::info!(
                    backend = backend.name(),
                    "session cache backend answers again; using it"
                );
                breaker.close();
            }
            return;
        }
    }
}
