//! One contract suite, run against every backend: a failure reads like
//! `redis_cluster::ttl_expiry_hides_entry`.
//!
//! Each test starts the real service it needs (a `redis-server`, a 3-master
//! Redis Cluster, a `memcached`, a SQLite file) and stops it when done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use h3fleet::cache::{backend_from_uri, BackendErrorKind, SessionCacheBackend, StoredSession};
use support::sessions::state;

/// A backend and whatever keeps its service alive.
pub struct Fixture {
    backend: Arc<dyn SessionCacheBackend>,
    _service: Box<dyn Any + Send>,
}

const LONG: Duration = Duration::from_secs(600);

async fn miss_is_ok_none(b: &dyn SessionCacheBackend) {
    assert_eq!(
        b.get("h3fleet:sessions:default:h3:absent.example:443")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.get_ech_config("h3fleet:ech:default:absent.example:443")
            .await
            .unwrap(),
        None
    );
}

async fn put_get_round_trip(b: &dyn SessionCacheBackend) {
    let key = "h3fleet:sessions:default:h3:example.com:443";
    let value = state("dGlja2V0", "c3RhdGU=");
    b.put(key, &value, LONG).await.unwrap();
    assert_eq!(b.get(key).await.unwrap(), Some(value));
    let newer = state("bmV3", "bmV3ZXI=");
    b.put(key, &newer, LONG).await.unwrap();
    assert_eq!(b.get(key).await.unwrap(), Some(newer), "a put replaces the value");
}

async fn ttl_expiry_hides_entry(b: &dyn SessionCacheBackend) {
    let (key, ech_key) = (
        "h3fleet:sessions:default:h2:ttl.example:443",
        "h3fleet:ech:default:ttl.example:443",
    );
    b.put(key, &state("dA==", "cw=="), Duration::from_millis(800))
        .await
        .unwrap();
    b.put_ech_config(ech_key, b"cfg", Duration::from_millis(800))
        .await
        .unwrap();
    assert!(b.get(key).await.unwrap().is_some());
    assert!(b.get_ech_config(ech_key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(b.get(key).await.unwrap(), None, "session outlived its TTL");
    assert_eq!(
        b.get_ech_config(ech_key).await.unwrap(),
        None,
        "ECH config outlived its TTL"
    );
}

async fn zero_ttl_is_rejected(b: &dyn SessionCacheBackend) {
    let err = b
        .put("k", &state("dA==", "cw=="), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::InvalidInput);
}

async fn delete_removes_entry(b: &dyn SessionCacheBackend) {
    let key = "h3fleet:sessions:alice:default:h1:example.com:8443";
    b.put(key, &state("dA==", "cw=="), LONG).await.unwrap();
    b.delete(key).await.unwrap();
    assert_eq!(b.get(key).await.unwrap(), None);
    b.delete(key)
        .await
        .expect("deleting a missing key is not an error");
}

async fn ech_get_put(b: &dyn SessionCacheBackend) {
    let key = "h3fleet:ech:default:ech.example:443";
    let config: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    b.put_ech_config(key, &config, LONG).await.unwrap();
    assert_eq!(
        b.get_ech_config(key).await.unwrap(),
        Some(config),
        "raw bytes, including NUL and 0xFF"
    );
    b.put_ech_config(key, b"second", LONG).await.unwrap();
    assert_eq!(
        b.get_ech_config(key).await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
}

async fn concurrent_writers_and_readers_lose_nothing(b: Arc<dyn SessionCacheBackend>) {
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::spawn(async move {
                let key = format!("h3fleet:sessions:default:h3:host{i}.example:443");
                let value = state(&format!("t{i}"), &format!("s{i}"));
                b.put(&key, &value, LONG).await.unwrap();
                assert_eq!(b.get(&key).await.unwrap(), Some(value));
                // Read a neighbour's key while it may be being written.
                let other = format!("h3fleet:sessions:default:h3:host{}.example:443", (i + 1) % 64);
                if let Some(v) = b.get(&other).await.unwrap() {
                    assert_eq!(v.ticket, format!("t{}", (i + 1) % 64));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..64 {
        let key = format!("h3fleet:sessions:default:h3:host{i}.example:443");
        assert_eq!(
            b.get(&key).await.unwrap().map(|v| v.ticket),
            Some(format!("t{i}")),
            "{key} lost"
        );
    }
}

async fn values_of_16_kib(b: &dyn SessionCacheBackend) {
    let key = "h3fleet:sessions:default:h3:big.example:443";
    let big = "A".repeat(16 * 1024);
    let value = state(&big, &big);
    b.put(key, &value, LONG).await.unwrap();
    assert_eq!(b.get(key).await.unwrap(), Some(value));
    let config = vec![0x5a; 16 * 1024];
    b.put_ech_config("h3fleet:ech:default:big.example:443", &config, LONG)
        .await
        .unwrap();
    assert_eq!(
        b.get_ech_config("h3fleet:ech:default:big.example:443")
            .await
            .unwrap(),
        Some(config)
    );
}

async fn keys_with_unusual_characters(b: &dyn SessionCacheBackend) {
    let keys = [
        "h3fleet:sessions:tenant%3A7:default:h3:[2001:db8::1]:443",
        "h3fleet:sessions:ünïcødé-ид:default:h2:xn--bcher-kva.example:443",
        "h3fleet:sessions:with space:default:h1:[fe80::1%25eth0]:8443",
        "h3fleet:sessions:quote'\"\\;--:default:h3:a.example:1",
        "{hash-tag}:sessions:x",
        "",
    ];
    for (i, key) in keys.iter().enumerate() {
        b.put(key, &state(&format!("t{i}"), "cw=="), LONG).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            b.get(key).await.unwrap().map(|v| v.ticket),
            Some(format!("t{i}")),
            "{key:?}"
        );
    }
}

async fn conditional_delete_removes_only_the_expected_value(b: &dyn SessionCacheBackend) {
    let key = "h3fleet:sessions:default:h3:cad.example:443";
    assert!(
        !b.delete_if(key, StoredSession::Ticket("b2xk")).await.unwrap(),
        "deleted a missing key"
    );
    let value = state("b2xk", "c3RhdGU=");
    b.put(key, &value, LONG).await.unwrap();
    assert!(!b.delete_if(key, StoredSession::Ticket("bmV3")).await.unwrap());
    assert!(!b.delete_if(key, StoredSession::Unreadable).await.unwrap());
    assert_eq!(
        b.get(key).await.unwrap(),
        Some(value),
        "another ticket's delete removed it"
    );
    assert!(b.delete_if(key, StoredSession::Ticket("b2xk")).await.unwrap());
    assert_eq!(b.get(key).await.unwrap(), None);
    let ech = "h3fleet:ech:default:cad.example:443";
    b.put_ech_config(ech, b"\x00\x01a", LONG).await.unwrap();
    assert!(!b.delete_ech_config_if(ech, b"\x00\x01b").await.unwrap());
    assert!(b.get_ech_config(ech).await.unwrap().is_some());
    assert!(b.delete_ech_config_if(ech, b"\x00\x01a").await.unwrap());
    assert_eq!(b.get_ech_config(ech).await.unwrap(), None);
}

/// One replica invalidates the ticket it was refused while another stores
/// the fresh one: however they interleave, the fresh ticket survives.
async fn a_racing_refresh_is_never_deleted(b: Arc<dyn SessionCacheBackend>) {
    let key = "h3fleet:sessions:default:h3:race.example:443";
    for round in 0..100 {
        b.put(key, &state("b2xk", "b2xk"), LONG).await.unwrap();
        let fresh = state("ZnJlc2g=", &format!("round{round}"));
        let (invalidate, refresh) = (Arc::clone(&b), Arc::clone(&b));
        let refreshed = fresh.clone();
        let a = tokio::spawn(async move { invalidate.delete_if(key, StoredSession::Ticket("b2xk")).await });
        let r = tokio::spawn(async move { refresh.put(key, &refreshed, LONG).await });
        a.await.unwrap().unwrap();
        r.await.unwrap().unwrap();
        assert_eq!(
            b.get(key).await.unwrap(),
            Some(fresh),
            "round {round}: the fresh ticket was lost"
        );
    }
}

const POOL: &str = "h3fleet:pool:default:h3:pool.example:443";

fn at_most(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// 16 takers race for 8 pooled tickets: each ticket goes to one taker.
async fn sixteen_concurrent_takers_get_each_pooled_ticket_at_most_once(b: Arc<dyn SessionCacheBackend>) {
    let pooled = if b.name() == "custom" { 1 } else { 8 };
    for i in 0..pooled {
        let ticket = format!("dGlj{i}");
        b.pool_add(POOL, &state(&ticket, "cw=="), LONG, at_most(8))
            .await
            .unwrap();
    }
    let takers: Vec<_> = (0..16)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.pool_take(POOL).await })
        })
        .collect();
    let mut taken = Vec::new();
    for t in takers {
        if let Some(take) = t.await.unwrap().unwrap() {
            taken.push(take.session.ticket);
        }
    }
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!(before, taken.len(), "a ticket was given to two takers: {taken:?}");
    assert_eq!(taken.len(), pooled, "every pooled ticket was taken once");
    assert_eq!(b.pool_take(POOL).await.unwrap(), None, "the pool is empty");
}

/// A pool keeps its newest tickets, hands them out newest first, and lets
/// each expire on its own.
async fn a_pool_keeps_its_newest_tickets_and_expires_each(b: &dyn SessionCacheBackend) {
    for i in 0..10 {
        b.pool_add(POOL, &state(&format!("dGlj{i}"), "cw=="), LONG, at_most(8))
            .await
            .unwrap();
    }
    let held: Vec<String> = b
        .pool_peek(POOL)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.ticket)
        .collect();
    assert_eq!(held, (2..10).map(|i| format!("dGlj{i}")).collect::<Vec<_>>());
    let first = b.pool_take(POOL).await.unwrap().unwrap();
    assert_eq!(first.session.ticket, "dGlj9");
    if let Some(left) = first.left {
        assert_eq!(left, 7);
    }
    b.pool_delete(POOL).await.unwrap();
    assert!(
        b.pool_peek(POOL).await.unwrap().is_empty(),
        "pool_delete empties the pool"
    );

    b.pool_add(POOL, &state("bG9uZw==", "cw=="), LONG, at_most(8))
        .await
        .unwrap();
    b.pool_add(
        POOL,
        &state("c2hvcnQ=", "cw=="),
        Duration::from_millis(1200),
        at_most(8),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let live = b.pool_take(POOL).await.unwrap().map(|t| t.session.ticket);
    assert_eq!(
        live.as_deref(),
        Some("bG9uZw=="),
        "the expired ticket is never handed out"
    );
    assert_eq!(b.pool_take(POOL).await.unwrap(), None);
}

/// Listing finds sessions, pools and ECH configs by prefix (memcached says
/// it cannot).
async fn list_keys_finds_every_kind_under_the_prefix(b: &dyn SessionCacheBackend) {
    let session = "h3fleet:sessions:default:h3:listed.example:443";
    b.put(session, &state("dA==", "cw=="), LONG).await.unwrap();
    b.pool_add(POOL, &state("cA==", "cw=="), LONG, at_most(8))
        .await
        .unwrap();
    b.put_ech_config("h3fleet:ech:default:listed.example:443", b"\x00\x01", LONG)
        .await
        .unwrap();
    b.put("other:sessions:default:h3:x:1", &state("dA==", "cw=="), LONG)
        .await
        .unwrap();
    match b.list_keys("h3fleet:", 1000).await {
        Err(e) if b.name() == "memcached" => assert_eq!(e.kind(), BackendErrorKind::Unsupported),
        Ok(keys) => {
            for want in [session, POOL, "h3fleet:ech:default:listed.example:443"] {
                assert!(keys.iter().any(|k| k == want), "{want} not listed in {keys:?}");
            }
            assert!(!keys.iter().any(|k| k.starts_with("other:")), "{keys:?}");
        }
        Err(e) => panic!("listing failed: {e}"),
    }
}

/// Instantiates every contract test for one backend, in a module of its name.
macro_rules! contract_suite {
    ($module:ident, $setup:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn miss_is_ok_none() {
                let f: Fixture = $setup;
                super::miss_is_ok_none(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_get_round_trip() {
                let f: Fixture = $setup;
                super::put_get_round_trip(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ttl_expiry_hides_entry() {
                let f: Fixture = $setup;
                super::ttl_expiry_hides_entry(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn zero_ttl_is_rejected() {
                let f: Fixture = $setup;
                super::zero_ttl_is_rejected(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_removes_entry() {
                let f: Fixture = $setup;
                super::delete_removes_entry(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ech_get_put() {
                let f: Fixture = $setup;
                super::ech_get_put(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_and_readers_lose_nothing() {
                let f: Fixture = $setup;
                super::concurrent_writers_and_readers_lose_nothing(Arc::clone(&f.backend)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn values_of_16_kib() {
                let f: Fixture = $setup;
                super::values_of_16_kib(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn conditional_delete_removes_only_the_expected_value() {
                let f: Fixture = $setup;
                super::conditional_delete_removes_only_the_expected_value(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_racing_refresh_is_never_deleted() {
                let f: Fixture = $setup;
                super::a_racing_refresh_is_never_deleted(Arc::clone(&f.backend)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sixteen_concurrent_takers_get_each_pooled_ticket_at_most_once() {
                let f: Fixture = $setup;
                super::sixteen_concurrent_takers_get_each_pooled_ticket_at_most_once(Arc::clone(&f.backend))
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_keeps_its_newest_tickets_and_expires_each() {
                let f: Fixture = $setup;
                super::a_pool_keeps_its_newest_tickets_and_expires_each(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_keys_finds_every_kind_under_the_prefix() {
                let f: Fixture = $setup;
                super::list_keys_finds_every_kind_under_the_prefix(&*f.backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keys_with_unusual_characters() {
                let f: Fixture = $setup;
                super::keys_with_unusual_characters(&*f.backend).await;
            }
        }
    };
}

contract_suite!(
    memory,
    Fixture {
        backend: backend_from_uri("memory:").unwrap(),
        _service: Box::new(()),
    }
);

contract_suite!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:{}", dir.path().join("cache.db").display());
    Fixture {
        backend: backend_from_uri(&uri).unwrap(),
        _service: Box::new(dir),
    }
});

contract_suite!(redis, {
    let server = support::redis::RedisServer::start();
    Fixture {
        backend: backend_from_uri(&server.uri()).unwrap(),
        _service: Box::new(server),
    }
});

contract_suite!(redis_cluster, {
    let cluster = tokio::task::spawn_blocking(support::redis::RedisCluster::start)
        .await
        .unwrap();
    Fixture {
        backend: backend_from_uri(&cluster.uri()).unwrap(),
        _service: Box::new(cluster),
    }
});

contract_suite!(memcached, {
    let server = support::memcached::MemcachedServer::start();
    Fixture {
        backend: backend_from_uri(&server.uri()).unwrap(),
        _service: Box::new(server),
    }
});
