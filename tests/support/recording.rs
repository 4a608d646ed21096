//! [`RecordingBackend`]: a real backend with every call counted, and gates
//! that hold `get` or `put` calls until the test lets them through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use h3fleet::cache::{BackendError, SessionCacheBackend, TlsSessionState};
use tokio::sync::watch;

/// Calls counted per operation.
#[derive(Debug, Default)]
pub struct Counts {
    pub get: AtomicUsize,
    pub put: AtomicUsize,
    pub delete: AtomicUsize,
    pub get_ech: AtomicUsize,
    pub put_ech: AtomicUsize,
}

/// Wraps a real backend; counts calls; optionally holds gets or puts.
pub struct RecordingBackend {
    inner: Arc<dyn SessionCacheBackend>,
    pub counts: Counts,
    /// Every TTL passed to `put`.
    pub put_ttls: Mutex<Vec<Duration>>,
    get_open: watch::Sender<bool>,
    put_open: watch::Sender<bool>,
}

impl RecordingBackend {
    pub fn new(inner: Arc<dyn SessionCacheBackend>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            counts: Counts::default(),
            put_ttls: Mutex::new(Vec::new()),
            get_open: watch::channel(true).0,
            put_open: watch::channel(true).0,
        })
    }

    /// Holds every `get` until [`release_gets`](Self::release_gets).
    pub fn hold_gets(&self) {
        self.get_open.send_replace(false);
    }

    pub fn release_gets(&self) {
        self.get_open.send_replace(true);
    }

    /// Holds every `put` until [`release_puts`](Self::release_puts).
    pub fn hold_puts(&self) {
        self.put_open.send_replace(false);
    }

    pub fn release_puts(&self) {
        self.put_open.send_replace(true);
    }

    pub fn gets(&self) -> usize {
        self.counts.get.load(Ordering::SeqCst)
    }

    pub fn puts(&self) -> usize {
        self.counts.put.load(Ordering::SeqCst)
    }

    pub fn deletes(&self) -> usize {
        self.counts.delete.load(Ordering::SeqCst)
    }
}

async fn pass(gate: &watch::Sender<bool>) {
    let mut rx = gate.subscribe();
    let _ = rx.wait_for(|open| *open).await;
}

#[async_trait]
impl SessionCacheBackend for RecordingBackend {
    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
        self.counts.get.fetch_add(1, Ordering::SeqCst);
        pass(&self.get_open).await;
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
        self.counts.put.fetch_add(1, Ordering::SeqCst);
        self.put_ttls.lock().unwrap().push(ttl);
        pass(&self.put_open).await;
        self.inner.put(key, session, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.counts.delete.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }

    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.counts.get_ech.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ech_config(key).await
    }

    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError> {
        self.counts.put_ech.fetch_add(1, Ordering::SeqCst);
        self.inner.put_ech_config(key, config, ttl).await
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
