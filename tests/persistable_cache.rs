//! `PersistableSessionCache` against real backends: what it does when the
//! backend fails, hangs or holds garbage, how it namespaces, evicts, expires,
//! invalidates, and how many backend calls it makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use h3fleet::cache::{
    CacheOptions, Clock, ManualClock, MemoryBackend, PersistableSessionCache, Protocol, RedisBackend,
    RedisOptions, SessionCacheBackend, TicketReuse, TicketSource,
};
use support::recording::RecordingBackend;
use support::redis::RedisServer;
use support::sessions::{fresh, recording_callback, session, state};

const HOST: &str = "origin.example";
const FLUSH: Duration = Duration::from_secs(5);

fn cache_on(backend: Arc<dyn SessionCacheBackend>, options: CacheOptions) -> PersistableSessionCache {
    let cache = PersistableSessionCache::with_options(options);
    cache.set_backend(Some(backend), "default", Protocol::H3, None);
    cache
}

fn key() -> String {
    format!("h3fleet:sessions:default:h3:{HOST}:443")
}

#[tokio::test]
async fn session_put_by_one_cache_is_found_by_another_through_the_backend() {
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let writer = PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
    let reader = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, None);
    let won = fresh(Protocol::H3, b"ticket-1");
    writer.put(HOST, 443, won.clone());
    assert!(writer.flush(FLUSH).await);
    let hit = reader
        .get(HOST, 443)
        .await
        .expect("the reader finds the writer's ticket");
    assert_eq!(hit.session, won);
    assert_eq!(hit.source, TicketSource::Backend);
    let again = reader.get(HOST, 443).await.unwrap();
    assert_eq!(
        again.source,
        TicketSource::Local,
        "the second lookup is served from memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_a_miss_and_reported_as_get_and_put() {
    let mut redis = RedisServer::start();
    let backend = Arc::new(RedisBackend::new(&redis.uri()).unwrap());
    redis.kill();
    let (on_error, seen) = recording_callback();
    let cache = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    cache.put("other.example", 443, fresh(Protocol::H3, b"t"));
    assert!(cache.flush(FLUSH).await);
    let ops: Vec<String> = seen.lock().unwrap().iter().map(|(op, ..)| op.clone()).collect();
    assert_eq!(ops, ["get", "put"]);
    assert!(
        seen.lock().unwrap()[0].2.starts_with("redis backend:"),
        "{:?}",
        seen.lock().unwrap()
    );
    assert!(
        cache.get("other.example", 443).await.is_some(),
        "the put still reached local memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_backend_is_bounded_by_the_get_timeout() {
    let hole = support::BlackHole::start();
    let slow = RedisOptions {
        connect_timeout: Duration::from_secs(30),
        response_timeout: Duration::from_secs(30),
        ..RedisOptions::default()
    };
    let backend =
        Arc::new(RedisBackend::with_options(&format!("redis://127.0.0.1:{}/", hole.port()), slow).unwrap());
    let (on_error, seen) = recording_callback();
    let options = CacheOptions {
        get_timeout: Duration::from_millis(300),
        ..CacheOptions::default()
    };
    let cache = cache_on(backend, options);
    cache.set_error_callback(Some(on_error));
    let started = Instant::now();
    assert!(cache.get(HOST, 443).await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up before the timeout: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "waited {waited:?}, far past the 300 ms timeout"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "get");
    assert!(seen[0].2.contains("timed out"), "{}", seen[0].2);
}

#[tokio::test]
async fn configured_get_timeout_is_capped_at_five_seconds() {
    let options = CacheOptions {
        get_timeout: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::new()));
    recording.hold_gets();
    let cache = cache_on(recording.clone(), options);
    // Paused time jumps ahead whenever the runtime idles, so the elapsed
    // virtual time is exactly how long the cache chose to wait.
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    assert!(cache.get(HOST, 443).await.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "waited {waited:?} instead of the 5 s cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_json_is_deleted_and_reported_once_as_decode() {
    let redis = RedisServer::start();
    let _: () = redis::cmd("SET")
        .arg(key())
        .arg("{not json")
        .query(&mut redis.client())
        .unwrap();
    let (on_error, seen) = recording_callback();
    let backend = Arc::new(RedisBackend::new(&redis.uri()).unwrap());
    let cache = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    assert!(cache.flush(FLUSH).await);
    assert!(cache.get(HOST, 443).await.is_none());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(key())
        .query(&mut redis.client())
        .unwrap();
    assert_eq!(exists, 0, "the corrupt value was deleted");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "reported once: {seen:?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("decode", key().as_str())
    );
}

#[tokio::test]
async fn corrupt_envelope_is_deleted_and_reported_once() {
    let memory = Arc::new(MemoryBackend::new());
    memory
        .put(&key(), &state("dA==", "SDNGUwEBAwE="), Duration::from_secs(60))
        .await
        .unwrap();
    let recording = RecordingBackend::new(memory.clone());
    let (on_error, seen) = recording_callback();
    let cache = cache_on(recording.clone(), CacheOptions::default());
    cache.set_error_callback(Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    assert!(cache.flush(FLUSH).await);
    assert!(cache.get(HOST, 443).await.is_none());
    assert_eq!(recording.deletes(), 1);
    assert!(memory.get(&key()).await.unwrap().is_none());
    let ops: Vec<String> = seen.lock().unwrap().iter().map(|(op, ..)| op.clone()).collect();
    assert_eq!(ops, ["decode"]);
}

#[tokio::test]
async fn entry_of_another_envelope_version_is_a_miss_left_in_place() {
    let memory = Arc::new(MemoryBackend::new());
    let future_version = {
        use base64::Engine as _;
        let mut bytes = fresh(Protocol::H3, b"t").envelope.encode().unwrap();
        bytes[4] = 3;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    memory
        .put(&key(), &state("dA==", &future_version), Duration::from_secs(60))
        .await
        .unwrap();
    let (on_error, seen) = recording_callback();
    let cache = cache_on(memory.clone(), CacheOptions::default());
    cache.set_error_callback(Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    assert!(cache.flush(FLUSH).await);
    assert!(
        memory.get(&key()).await.unwrap().is_some(),
        "a newer replica may still use it"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn session_of_another_protocol_is_never_offered() {
    let memory: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let h2 = fresh(Protocol::H2, b"h2-ticket")
        .to_state(chrono::Utc::now())
        .unwrap();
    memory.put(&key(), &h2, Duration::from_secs(60)).await.unwrap();
    let (on_error, seen) = recording_callback();
    let cache = PersistableSessionCache::with_backend(memory, "default", Protocol::H3, Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    assert_eq!(seen.lock().unwrap()[0].0, "decode");
}

#[tokio::test]
async fn identifiers_never_see_each_others_sessions() {
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let alice = PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
    alice.set_session_identifier("alice");
    let bob = PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
    bob.set_session_identifier("bob");
    alice.put(HOST, 443, fresh(Protocol::H3, b"alice-ticket"));
    assert!(alice.flush(FLUSH).await);
    assert!(bob.get(HOST, 443).await.is_none(), "bob saw alice's session");
    let alice_key = format!("h3fleet:sessions:alice:default:h3:{HOST}:443");
    assert!(backend.get(&alice_key).await.unwrap().is_some());
    // The same cache switching identifier loses sight of its local entries too.
    alice.set_session_identifier("bob");
    assert!(
        alice.get(HOST, 443).await.is_none(),
        "local entries leaked across identifiers"
    );
    alice.set_session_identifier("alice");
    assert_eq!(
        alice.get(HOST, 443).await.unwrap().session.ticket,
        b"alice-ticket"
    );
}

#[tokio::test]
async fn local_lru_evicts_the_least_recently_used_at_32() {
    let cache = PersistableSessionCache::new();
    for i in 0..32 {
        cache.put(
            &format!("h{i}.example"),
            443,
            fresh(Protocol::H3, format!("t{i}").as_bytes()),
        );
    }
    assert!(
        cache.get("h0.example", 443).await.is_some(),
        "touch h0 so h1 is the oldest"
    );
    cache.put("h32.example", 443, fresh(Protocol::H3, b"t32"));
    assert_eq!(cache.local_len(), 32);
    assert!(
        cache.get("h1.example", 443).await.is_none(),
        "h1 should have been evicted"
    );
    assert!(cache.get("h0.example", 443).await.is_some());
    assert!(cache.get("h32.example", 443).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_lookups_share_one_backend_get() {
    let memory: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let stored = fresh(Protocol::H3, b"shared")
        .to_state(chrono::Utc::now())
        .unwrap();
    memory
        .put(&key(), &stored, Duration::from_secs(60))
        .await
        .unwrap();
    let recording = RecordingBackend::new(memory);
    recording.hold_gets();
    let cache = cache_on(recording.clone(), CacheOptions::default());
    let lookups: Vec<_> = (0..16)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(HOST, 443).await })
        })
        .collect();
    // Let every lookup reach the cache before the backend answers.
    while recording.gets() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    recording.release_gets();
    for lookup in lookups {
        let hit = lookup.await.unwrap().expect("every waiter gets the session");
        assert_eq!(hit.session.ticket, b"shared");
    }
    assert_eq!(
        recording.gets(),
        1,
        "16 concurrent cold lookups made more than one backend get"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_never_waits_for_the_backend_and_flush_does() {
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::new()));
    recording.hold_puts();
    let cache = cache_on(recording.clone(), CacheOptions::default());
    let started = Instant::now();
    cache.put(HOST, 443, fresh(Protocol::H3, b"t"));
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(
        !cache.flush(Duration::from_millis(100)).await,
        "flush reported done while a put was held"
    );
    recording.release_puts();
    assert!(cache.flush(FLUSH).await);
    assert!(recording.get(&key()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_all_see_the_writes_finish() {
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::new()));
    recording.hold_puts();
    let cache = cache_on(recording.clone(), CacheOptions::default());
    cache.put(HOST, 443, fresh(Protocol::H3, b"t"));
    let flushes: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.flush(FLUSH).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    recording.release_puts();
    for flush in flushes {
        assert!(
            flush.await.unwrap(),
            "a concurrent flush gave up although the write finished"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_from_a_thread_outside_the_runtime_still_reaches_the_backend() {
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let cache = cache_on(Arc::clone(&backend), CacheOptions::default());
    let from_thread = cache.clone();
    std::thread::spawn(move || from_thread.put(HOST, 443, fresh(Protocol::H3, b"foreign-thread")))
        .join()
        .unwrap();
    assert!(cache.flush(FLUSH).await);
    assert!(backend.get(&key()).await.unwrap().is_some());
}

#[tokio::test]
async fn backend_ttl_is_the_remaining_lifetime_capped_at_24_hours() {
    let clock = ManualClock::starting_now();
    let now = clock.unix_secs();
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::with_clock(clock.clone())));
    let options = CacheOptions {
        clock: clock.clone(),
        ..CacheOptions::default()
    };
    let cache = cache_on(recording.clone(), options);
    cache.put(
        "a.example",
        443,
        session(Protocol::H3, b"week", now, 7 * 24 * 3600),
    );
    cache.put("b.example", 443, session(Protocol::H3, b"hour", now - 600, 3600));
    assert!(cache.flush(FLUSH).await);
    let ttls = recording.put_ttls.lock().unwrap().clone();
    assert_eq!(ttls, [Duration::from_secs(24 * 3600), Duration::from_secs(3000)]);
}

#[tokio::test]
async fn expired_session_is_a_miss_and_is_deleted_from_the_backend() {
    let clock = ManualClock::starting_now();
    let now = clock.unix_secs();
    // The backend's own clock does not move: only the cache sees expiry.
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::new()));
    let options = || CacheOptions {
        clock: clock.clone(),
        ..CacheOptions::default()
    };
    let writer = cache_on(recording.clone(), options());
    writer.put(HOST, 443, session(Protocol::H3, b"short", now, 10));
    assert!(writer.flush(FLUSH).await);
    clock.advance(Duration::from_secs(11));
    let reader = cache_on(recording.clone(), options());
    assert!(
        reader.get(HOST, 443).await.is_none(),
        "expired backend entry was offered"
    );
    assert!(reader.flush(FLUSH).await);
    assert_eq!(recording.deletes(), 1);
    assert!(recording.get(&key()).await.unwrap().is_none());
    assert!(
        writer.get(HOST, 443).await.is_none(),
        "expired local entry was offered"
    );
}

#[tokio::test]
async fn refused_ticket_is_deleted_unless_already_replaced() {
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let cache = cache_on(Arc::clone(&backend), CacheOptions::default());
    cache.put(HOST, 443, fresh(Protocol::H3, b"refused"));
    assert!(cache.flush(FLUSH).await);
    cache.invalidate(HOST, 443, b"refused");
    assert!(cache.flush(FLUSH).await);
    assert!(
        backend.get(&key()).await.unwrap().is_none(),
        "the refused ticket stayed in the backend"
    );
    assert!(
        cache.get(HOST, 443).await.is_none(),
        "the refused ticket stayed in memory"
    );

    // Another replica stored a newer ticket before we invalidated ours.
    cache.put(HOST, 443, fresh(Protocol::H3, b"old"));
    assert!(cache.flush(FLUSH).await);
    let other = cache_on(Arc::clone(&backend), CacheOptions::default());
    other.put(HOST, 443, fresh(Protocol::H3, b"newer"));
    assert!(other.flush(FLUSH).await);
    cache.invalidate(HOST, 443, b"old");
    assert!(cache.flush(FLUSH).await);
    let kept = backend
        .get(&key())
        .await
        .unwrap()
        .expect("the newer ticket was deleted");
    assert_eq!(kept.ticket, "bmV3ZXI=");
}

#[tokio::test]
async fn detaching_the_backend_keeps_local_sessions_and_stops_backend_calls() {
    let recording = RecordingBackend::new(Arc::new(MemoryBackend::new()));
    let cache = cache_on(recording.clone(), CacheOptions::default());
    cache.put(HOST, 443, fresh(Protocol::H3, b"kept"));
    assert!(cache.flush(FLUSH).await);
    cache.set_backend(None, "default", Protocol::H3, None);
    assert!(!cache.has_backend());
    assert!(cache.get(HOST, 443).await.is_some());
    assert!(cache.get("cold.example", 443).await.is_none());
    cache.put("new.example", 443, fresh(Protocol::H3, b"local-only"));
    assert!(cache.flush(FLUSH).await);
    assert_eq!(
        (recording.gets(), recording.puts()),
        (0, 1),
        "backend used while detached"
    );
    cache.set_backend(Some(recording.clone()), "default", Protocol::H3, None);
    assert!(cache.get("cold.example", 443).await.is_none());
    assert_eq!(recording.gets(), 1, "reattached backend is asked again");
}

#[tokio::test]
async fn panicking_error_callback_is_contained() {
    let mut redis = RedisServer::start();
    let backend = Arc::new(RedisBackend::new(&redis.uri()).unwrap());
    redis.kill();
    let cache = PersistableSessionCache::with_backend(
        backend,
        "default",
        Protocol::H3,
        Some(Arc::new(|_: &str, _: &str, _: &h3fleet::cache::BackendError| {
            panic!("callback bug")
        })),
    );
    assert!(cache.get(HOST, 443).await.is_none());
}

#[test]
fn cache_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<PersistableSessionCache>();
}

fn single_use() -> CacheOptions {
    CacheOptions {
        ticket_reuse: TicketReuse::single_use(),
        ..CacheOptions::default()
    }
}

fn pool_key() -> String {
    format!("h3fleet:pool:default:h3:{HOST}:443")
}

#[tokio::test]
async fn single_use_caches_hand_each_ticket_out_once_and_keep_none_locally() {
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let (writer, reader) = (
        cache_on(Arc::clone(&backend), single_use()),
        cache_on(backend, single_use()),
    );
    for t in [b"ticket-1", b"ticket-2"] {
        writer.put(HOST, 443, fresh(Protocol::H3, t));
    }
    assert!(writer.flush(FLUSH).await);
    assert_eq!(
        writer.local_pool_len(HOST, 443),
        0,
        "with a backend a ticket lives there only"
    );
    let first = reader.get(HOST, 443).await.unwrap();
    assert_eq!(
        (first.session.ticket.as_slice(), first.pool_left),
        (&b"ticket-2"[..], Some(1))
    );
    let second = writer.get(HOST, 443).await.unwrap();
    assert_eq!(second.session.ticket, b"ticket-1");
    assert!(
        reader.get(HOST, 443).await.is_none(),
        "the pool is dry: a full handshake"
    );
}

#[tokio::test]
async fn without_a_backend_single_use_tickets_come_from_this_process_once() {
    let cache = PersistableSessionCache::with_options(single_use());
    cache.put(HOST, 443, fresh(Protocol::H3, b"only"));
    assert_eq!(cache.local_pool_len(HOST, 443), 1);
    let hit = cache.get(HOST, 443).await.unwrap();
    assert_eq!((hit.source, hit.pool_left), (TicketSource::Local, Some(0)));
    assert!(cache.get(HOST, 443).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pool_is_a_reported_miss_never_a_panic() {
    let redis = RedisServer::start();
    let mut conn = redis.client();
    // The pool key holds a string, then a member that is not a session.
    let _: () = redis::cmd("SET")
        .arg(pool_key())
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let (on_error, seen) = recording_callback();
    let backend = Arc::new(RedisBackend::new(&redis.uri()).unwrap());
    let cache = cache_on(backend, single_use());
    cache.set_error_callback(Some(on_error));
    assert!(cache.get(HOST, 443).await.is_none());
    let _: () = redis::cmd("DEL").arg(pool_key()).query(&mut conn).unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(pool_key())
        .arg(i64::MAX)
        .arg("{not json")
        .query(&mut conn)
        .unwrap();
    assert!(cache.get(HOST, 443).await.is_none());
    let memory = Arc::new(MemoryBackend::new());
    let garbage = state("dA==", "bm90IGFuIGVudmVsb3Bl");
    memory
        .pool_add(
            &pool_key(),
            &garbage,
            Duration::from_secs(60),
            std::num::NonZeroUsize::MIN,
        )
        .await
        .unwrap();
    let on_memory = cache_on(memory, single_use());
    on_memory.set_error_callback(cache_callback(&seen));
    assert!(on_memory.get(HOST, 443).await.is_none());
    let ops: Vec<String> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    assert_eq!(
        ops,
        ["pool_take", "decode", "decode"],
        "{:?}",
        seen.lock().unwrap()
    );
}

/// A callback that records into `seen`, like `recording_callback`'s.
fn cache_callback(seen: &support::sessions::Seen) -> Option<h3fleet::cache::ErrorCallback> {
    let seen = Arc::clone(seen);
    Some(Arc::new(
        move |op: &str, key: &str, e: &h3fleet::cache::BackendError| {
            seen.lock()
                .unwrap()
                .push((op.to_owned(), key.to_owned(), e.to_string()));
        },
    ))
}
