//! A compromised store can make a replica miss, never crash it or make it
//! grow without bound: hostile memcached replies (a server that answers
//! what an attacker on the link would), and oversized values planted in a
//! real `redis-server` and SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use h3fleet::cache::{
    backend_from_uri, BackendErrorKind, MemcachedBackend, PersistableSessionCache, Protocol,
    SessionCacheBackend, TlsSessionState, MAX_VALUE_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A "memcached" that answers every request with `reply`, then keeps
/// streaming `tail` bytes of filler (as an attacker would) until the client
/// hangs up. Returns its address and a counter of bytes it managed to send.
async fn hostile_memcached(
    reply: &'static [u8],
    tail: usize,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                if stream.read(&mut request).await.unwrap_or(0) == 0 {
                    return;
                }
                if stream.write_all(reply).await.is_err() {
                    return;
                }
                let filler = vec![b'A'; 64 * 1024];
                let mut left = tail;
                while left > 0 {
                    let n = left.min(filler.len());
                    if stream.write_all(&filler[..n]).await.is_err() {
                        return;
                    }
                    counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    left -= n;
                }
            });
        }
    });
    (addr, sent)
}

async fn get_from(addr: &str) -> Result<Option<TlsSessionState>, h3fleet::cache::BackendError> {
    let backend = MemcachedBackend::new(addr);
    tokio::time::timeout(
        Duration::from_secs(5),
        backend.get("h3fleet:sessions:default:h3:a.example:443"),
    )
    .await
    .expect("the read did not end")
}

#[tokio::test]
async fn a_huge_memcached_length_is_refused_without_allocating_it() {
    for reply in [
        &b"VALUE k 0 1099511627776\r\n"[..],
        b"VALUE k 0 18446744073709551615\r\n",
        b"VALUE k 0 8589934592\r\n",
    ] {
        let reply: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
        let (addr, _) = hostile_memcached(reply, 0).await;
        let err = get_from(&addr).await.unwrap_err();
        assert_eq!(err.kind(), BackendErrorKind::Decode, "{err}");
    }
}

#[tokio::test]
async fn an_endless_memcached_line_is_cut_short() {
    // A reply line that never ends: 64 MiB of filler after "VALUE".
    let (addr, sent) = hostile_memcached(b"VALUE ", 64 * 1024 * 1024).await;
    let err = get_from(&addr).await.unwrap_err();
    assert!(err.to_string().contains("line"), "{err}");
    // The client stopped reading long before the attacker stopped writing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let written = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        written < 32 * 1024 * 1024,
        "the client read {written} bytes of one line"
    );
}

#[tokio::test]
async fn memcached_garbage_is_an_error_and_a_cache_miss() {
    for reply in [
        &b"HELLO\r\n"[..],
        b"VALUE k 0 abc\r\n",
        b"VALUE k 0 3\r\nabcXY",
        b"VALUE k 0 5\r\nnodln\r\nEND\r\n",
        b"\xff\xfe\r\n",
    ] {
        let reply: &'static [u8] = Box::leak(reply.to_vec().into_boxed_slice());
        let (addr, _) = hostile_memcached(reply, 0).await;
        assert!(
            get_from(&addr).await.is_err(),
            "{:?}",
            String::from_utf8_lossy(reply)
        );
        let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemcachedBackend::new(&addr));
        let cache = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, None);
        assert!(cache.get("a.example", 443).await.is_none());
    }
}

fn oversized() -> Vec<u8> {
    let mut value = br#"{"ticket":""#.to_vec();
    value.resize(MAX_VALUE_LEN * 8, b'A');
    value.extend_from_slice(br#"","state":"","created_at":"2026-01-01T00:00:00Z"}"#);
    value
}

#[tokio::test]
async fn an_oversized_redis_value_is_a_decode_error_read_only_in_part() {
    let redis = support::redis::RedisServer::start();
    let key = "h3fleet:sessions:default:h3:big.example:443";
    redis::cmd("SET")
        .arg(key)
        .arg(oversized())
        .exec(&mut redis.client())
        .unwrap();
    let backend = backend_from_uri(&redis.uri()).unwrap();
    let err = backend.get(key).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("longer than"), "{err}");
    let cache = PersistableSessionCache::with_backend(Arc::clone(&backend), "default", Protocol::H3, None);
    assert!(cache.get("big.example", 443).await.is_none());
    assert!(cache.flush(Duration::from_secs(5)).await);
    assert_eq!(
        backend.get(key).await.unwrap(),
        None,
        "the oversized entry was not deleted"
    );
}

#[tokio::test]
async fn an_oversized_sqlite_row_is_a_decode_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let backend = backend_from_uri(&format!("sqlite:{}", path.display())).unwrap();
    let key = "h3fleet:sessions:default:h3:big.example:443";
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "INSERT INTO h3fleet_sessions (key, value, expires_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![key, String::from_utf8(oversized()).unwrap(), i64::MAX],
    )
    .unwrap();
    let err = backend.get(key).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Decode, "{err}");
}
