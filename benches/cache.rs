//! Cache micro-benchmarks: key formatting, the envelope and JSON encodings,
//! backend round trips (memory, SQLite, a local `redis-server`), and
//! `PersistableSessionCache` lookups.
//!
//! Run with `cargo bench --bench cache`; `redis-server` must be installed
//! (`make bench` installs it).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use h3fleet::cache::{
    backend_from_uri, BreakerConfig, CacheKeys, CacheOptions, CachedSession, CircuitBreaker, KeyFormat,
    MemoryBackend, PersistableSessionCache, Protocol, SessionCacheBackend, TlsSessionState,
};
use support::sessions::session;

/// A session of a typical serialised size (BoringSSL's, with the peer's
/// certificate chain, is 1.5 to 3 KB).
fn typical_session() -> CachedSession {
    let mut s = session(Protocol::H3, &[7; 200], 1_800_000_000, 7200);
    s.envelope.session = vec![0x42; 2048];
    s
}

fn keys(c: &mut Criterion) {
    let fmt = KeyFormat::default();
    c.bench_function("key/session_with_identifier", |b| {
        b.iter(|| {
            fmt.session(
                black_box(Some("tenant:7")),
                "default",
                Protocol::H3,
                black_box("Example.com"),
                443,
            )
        })
    });
    c.bench_function("key/ipv6_session", |b| {
        b.iter(|| fmt.session(None, "default", Protocol::H3, black_box("2001:db8::1"), 443))
    });
    let key = fmt.session(Some("tenant:7"), "default", Protocol::H3, "example.com", 443);
    c.bench_function("key/parse", |b| b.iter(|| fmt.parse(black_box(&key)).unwrap()));
}

fn encodings(c: &mut Criterion) {
    let s = typical_session();
    let bytes = s.envelope.encode().unwrap();
    c.bench_function("envelope/encode_2k", |b| {
        b.iter(|| black_box(&s.envelope).encode().unwrap())
    });
    c.bench_function("envelope/decode_2k", |b| {
        b.iter(|| h3fleet::cache::Envelope::decode(black_box(&bytes)).unwrap())
    });
    let state = s.to_state(chrono::Utc::now()).unwrap();
    let json = state.to_json().unwrap();
    c.bench_function("json/encode", |b| b.iter(|| black_box(&state).to_json().unwrap()));
    c.bench_function("json/decode", |b| {
        b.iter(|| TlsSessionState::from_json("bench", black_box(json.as_bytes())).unwrap())
    });
    c.bench_function("stored_form/session_to_state", |b| {
        b.iter(|| black_box(&s).to_state(chrono::Utc::now()).unwrap())
    });
    c.bench_function("stored_form/state_to_session", |b| {
        b.iter(|| CachedSession::from_state(black_box(&state), Protocol::H3).unwrap())
    });
    // Sealing a stored session (AES-256-GCM, bound to key and ticket), and
    // opening it: the target is under 2 µs each.
    let ring = CacheKeys::parse(&CacheKeys::generate_line().unwrap()).unwrap();
    let context = b"session\0h3fleet:sessions:default:h3:example.com:443";
    let sealed = ring.seal(context, &bytes).unwrap();
    c.bench_function("seal/seal_2k", |b| {
        b.iter(|| ring.seal(black_box(context), black_box(&bytes)).unwrap())
    });
    c.bench_function("seal/open_2k", |b| {
        b.iter(|| ring.open(black_box(context), black_box(&sealed)).unwrap())
    });
}

fn backends(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redis = support::redis::RedisServer::start();
    let stores: Vec<(&str, Arc<dyn SessionCacheBackend>)> = vec![
        ("memory", Arc::new(MemoryBackend::new())),
        (
            "sqlite",
            backend_from_uri(&format!("sqlite:{}", dir.path().join("b.db").display())).unwrap(),
        ),
        ("redis", backend_from_uri(&redis.uri()).unwrap()),
    ];
    let state = typical_session().to_state(chrono::Utc::now()).unwrap();
    let key = "h3fleet:sessions:default:h3:bench.example:443";
    let mut group = c.benchmark_group("backend");
    for (name, backend) in &stores {
        rt.block_on(backend.put(key, &state, Duration::from_secs(600)))
            .unwrap();
        group.bench_with_input(BenchmarkId::new("get", name), backend, |b, backend| {
            b.to_async(&rt)
                .iter(|| async { backend.get(key).await.unwrap().unwrap() })
        });
        group.bench_with_input(BenchmarkId::new("put", name), backend, |b, backend| {
            b.to_async(&rt)
                .iter(|| async { backend.put(key, &state, Duration::from_secs(600)).await.unwrap() })
        });
    }
    group.finish();
}

fn persistable(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let fresh = support::sessions::fresh(Protocol::H3, &[9; 200]);
    let _in_runtime = rt.enter();
    let cache = PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
    cache.put("warm.example", 443, fresh.clone());
    assert!(rt.block_on(cache.flush(Duration::from_secs(5))));
    c.bench_function("persistable/local_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { cache.get("warm.example", 443).await.unwrap() })
    });
    // The same hit on a cache managed by a circuit breaker: the breaker is
    // never on the request path, so this should match the plain hit.
    let breaker = CircuitBreaker::new(Arc::clone(&backend), BreakerConfig::default(), None);
    let managed = PersistableSessionCache::new();
    breaker.manage(&managed, "default", Protocol::H3);
    managed.put("warm.example", 443, fresh.clone());
    assert!(rt.block_on(managed.flush(Duration::from_secs(5))));
    c.bench_function("persistable/local_hit_behind_breaker", |b| {
        b.to_async(&rt)
            .iter(|| async { managed.get("warm.example", 443).await.unwrap() })
    });
    c.bench_function("persistable/cold_backend_hit_memory", |b| {
        b.to_async(&rt).iter(|| async {
            // A new cache each time: the lookup misses locally and decodes
            // the stored entry, as a freshly started replica does.
            let cold =
                PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
            cold.get("warm.example", 443).await.unwrap()
        })
    });
    // The same with cache keys: the stored entry is sealed and opened.
    let options = CacheOptions {
        cache_keys: Some(CacheKeys::parse(&CacheKeys::generate_line().unwrap()).unwrap()),
        ..CacheOptions::default()
    };
    let sealed_backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let keyed = || {
        let cache = PersistableSessionCache::with_options(options.clone());
        cache.set_backend(Some(Arc::clone(&sealed_backend)), "default", Protocol::H3, None);
        cache
    };
    let writer = keyed();
    writer.put("warm.example", 443, fresh.clone());
    assert!(rt.block_on(writer.flush(Duration::from_secs(5))));
    c.bench_function("persistable/cold_backend_hit_memory_sealed", |b| {
        b.to_async(&rt)
            .iter(|| async { keyed().get("warm.example", 443).await.unwrap() })
    });
}

criterion_group!(benches, keys, encodings, backends, persistable);
criterion_main!(benches);
