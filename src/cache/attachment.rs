//! What the ticket caches and the ECH cache share in how they use a
//! backend: background calls that a closing session can wait for, one way
//! of reporting a failure to the error callback, and single flight for
//! reads.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::backend::{BackendError, BackendErrorKind, ErrorCallback};
use super::persistable::Operation;
use crate::sync::lock;

/// Logs a backend failure and hands it to the error callback. A panicking
/// callback is contained: observability must not take the request down.
pub(crate) fn report(on_error: Option<&ErrorCallback>, op: Operation, key: &str, err: &BackendError) {
    tracing::warn!(operation = op.as_str(), key, error = %err, "cache backend call failed");
    if let Some(cb) = on_error {
        if catch_unwind(AssertUnwindSafe(|| cb(op.as_str(), key, err))).is_err() {
            tracing::error!(operation = op.as_str(), "the cache error callback panicked");
        }
    }
}

/// The background backend calls of one cache: each runs on the current
/// Tokio runtime (or the one the cache was made on) and is counted until
/// it ends, so [`flush`](Self::flush) can wait for them.
#[derive(Debug)]
pub(crate) struct BackgroundCalls {
    pending: Arc<Pending>,
    /// The runtime the cache was made on, for calls from threads outside
    /// any runtime (a TLS callback on a foreign thread, say).
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for BackgroundCalls {
    fn default() -> Self {
        Self {
            pending: Arc::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl BackgroundCalls {
    /// Runs `call` in the background; its error goes to `on_fail`. With no
    /// runtime to run it on, `on_fail` hears that at once (never a panic).
    pub(crate) fn spawn<F, E>(&self, backend: &'static str, call: F, on_fail: E)
    where
        F: Future<Output = Result<(), BackendError>> + Send + 'static,
        E: FnOnce(BackendError) + Send + 'static,
    {
        let current = tokio::runtime::Handle::try_current().ok();
        let Some(runtime) = current.or_else(|| self.runtime.clone()) else {
            let msg = "no Tokio runtime to run the backend call on";
            return on_fail(BackendError::new(backend, BackendErrorKind::Io, msg));
        };
        let guard = PendingGuard::new(Arc::clone(&self.pending));
        runtime.spawn(async move {
            let _guard = guard;
            if let Err(e) = call.await {
                on_fail(e);
            }
        });
    }

    /// Waits up to `timeout` for the calls still running. True if none is
    /// left.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let pending = &self.pending;
        let drained = async {
            loop {
                // Register for the wake-up before checking, so a call that
                // finishes in between is not missed.
                let notified = pending.idle.notified();
                if pending.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }
}

/// Counts background calls; `flush` waits for the count to reach zero.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

/// One background call in flight; dropping it (when the call ends, or when
/// the runtime drops the task) lowers the count and wakes `flush`.
struct PendingGuard(Arc<Pending>);

impl PendingGuard {
    fn new(pending: Arc<Pending>) -> Self {
        pending.count.fetch_add(1, Ordering::SeqCst);
        Self(pending)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Concurrent reads of one key share one backend call: the first caller
/// (the leader) makes it, the others wait for its result.
pub(crate) struct SingleFlight<V> {
    flights: Mutex<HashMap<String, Flight<V>>>,
    next: AtomicU64,
}

struct Flight<V> {
    id: u64,
    done: watch::Receiver<Option<V>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }
}

impl<V: Clone> SingleFlight<V> {
    /// `work`'s result for `key`, run once however many callers want it.
    /// A follower waits at most `wait` (the leader is bounded by the same
    /// limit); `None` if the leader gave up or was cancelled.
    pub(crate) async fn run<F>(&self, key: &str, wait: Duration, work: F) -> Option<V>
    where
        F: Future<Output = V>,
    {
        let joined = {
            let mut flights = lock(&self.flights);
            match flights.get(key) {
                Some(flight) => Err(flight.done.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let id = self.next.fetch_add(1, Ordering::Relaxed);
                    flights.insert(key.to_owned(), Flight { id, done: rx });
                    Ok(FlightGuard {
                        flights: &self.flights,
                        key,
                        id,
                        tx,
                    })
                }
            }
        };
        match joined {
            Ok(guard) => {
                let found = work.await;
                guard.tx.send_replace(Some(found.clone()));
                Some(found)
            }
            Err(mut done) => match tokio::time::timeout(wait, done.wait_for(Option::is_some)).await {
                Ok(Ok(result)) => result.clone(),
                _ => None,
            },
        }
    }
}

/// Removes the flight from the map when the leader finishes or is
/// cancelled; dropping `tx` then wakes any follower still waiting.
struct FlightGuard<'a, V> {
    flights: &'a Mutex<HashMap<String, Flight<V>>>,
    key: &'a str,
    id: u64,
    tx: watch::Sender<Option<V>>,
}

impl<V> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        let mut flights = lock(self.flights);
        if flights.get(self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn concurrent_callers_share_one_call() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (flight, calls) = (Arc::clone(&flight), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                flight
                    .run("k", Duration::from_secs(5), async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.ok().flatten(), Some(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_leader_lets_the_next_caller_lead() {
        let flight = SingleFlight::<u32>::default();
        let leader = flight.run("k", Duration::from_secs(1), std::future::pending());
        let _ = tokio::time::timeout(Duration::from_millis(10), leader).await;
        let again = flight.run("k", Duration::from_secs(1), async { 3 }).await;
        assert_eq!(again, Some(3));
    }

    #[tokio::test]
    async fn flush_waits_for_background_calls() {
        let calls = BackgroundCalls::default();
        let done = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&done);
        calls.spawn(
            "test",
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
            |_| {},
        );
        assert!(calls.flush(Duration::from_secs(2)).await);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_runtime_is_reported_not_a_panic() {
        let calls = BackgroundCalls::default();
        let heard = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&heard);
        calls.spawn("test", async { Ok(()) }, move |e| {
            assert_eq!(e.kind(), BackendErrorKind::Io);
            h.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(heard.load(Ordering::SeqCst), 1);
    }
}
