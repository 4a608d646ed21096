//! `h3fleet cache ls | show | rm | stats` on entries that real `h3fleet get`
//! processes wrote to real SQLite, Redis and Redis Cluster backends: every
//! kind is listed with its metadata, and no output holds a byte of a
//! ticket or a session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use h3fleet::cache::backend_from_uri;
use serde_json::Value;
use support::serve::Serve;

fn h3fleet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// One `get` against `serve` that stores its tickets in `cache`; its
/// `-w '%{json}'` report.
fn get(serve: &Serve, cache: &str, extra: &[&str]) -> Value {
    let port = serve.addr.port().to_string();
    let url = format!("https://localhost:{port}/inspect");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut args = vec![
        "get",
        &url,
        "-w",
        "%{json}",
        "-o",
        "/dev/null",
        "--http3-only",
        "--cache",
        cache,
        "--cacert",
        &serve.cert,
    ];
    args.extend(["--resolve", &resolve]);
    args.extend(extra);
    let (ok, out, err) = h3fleet(&args);
    assert!(ok, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

/// Every secret the backend holds in base64, as written there, for the
/// outputs to be searched for.
async fn secrets(cache: &str) -> Vec<String> {
    let backend = backend_from_uri(cache).unwrap();
    let mut found = Vec::new();
    for key in backend.list_keys("h3fleet:", 1000).await.unwrap() {
        let states = if key.contains(":pool:") {
            backend.pool_peek(&key).await.unwrap()
        } else {
            backend.get(&key).await.unwrap().into_iter().collect()
        };
        for s in states {
            // A run of 24 base64 characters is 18 secret bytes.
            for field in [s.ticket, s.state] {
                found.extend(
                    field
                        .as_bytes()
                        .chunks(24)
                        .filter(|c| c.len() == 24)
                        .map(|c| String::from_utf8_lossy(c).into_owned()),
                );
            }
        }
    }
    assert!(!found.is_empty(), "the gets stored nothing");
    found
}

async fn inspect_entries_written_by_get_processes(cache: &str) {
    let serve = Serve::start();
    get(&serve, cache, &[]);
    get(&serve, cache, &["--ticket-reuse", "single-use"]);
    let (ok, ls, err) = h3fleet(&["cache", "ls", "--cache", cache, "--json"]);
    assert!(ok, "{err}");
    let rows: Vec<Value> = ls.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ticket = rows
        .iter()
        .find(|r| r["kind"] == "ticket")
        .unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(
        (ticket["protocol"].as_str(), ticket["host"].as_str()),
        (Some("h3"), Some("localhost"))
    );
    assert_eq!(ticket["port"], serve.addr.port());
    assert_eq!(ticket["early_data"], true, "{ticket}");
    assert!(ticket["remaining_secs"].as_u64().unwrap() > 0, "{ticket}");
    assert!(ticket["sealed_with"].is_null(), "{ticket}");
    let pool = rows
        .iter()
        .find(|r| r["kind"] == "pool")
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(pool["pool_size"].as_u64().unwrap() >= 1, "{pool}");

    let key = ticket["key"].as_str().unwrap();
    let (ok, show, err) = h3fleet(&["cache", "show", key, "--cache", cache]);
    assert!(ok && show.contains("\"early_data\": true"), "{show}{err}");
    let (ok, pool_show, _) = h3fleet(&["cache", "show", pool["key"].as_str().unwrap(), "--cache", cache]);
    assert!(ok && pool_show.contains("ticket 0:"), "{pool_show}");
    let (ok, table, _) = h3fleet(&["cache", "ls", "--cache", cache, "--host", "LOCALHOST"]);
    assert!(ok && table.lines().count() == rows.len() + 1, "{table}");
    let (ok, stats, _) = h3fleet(&["cache", "stats", "--cache", cache, "--json"]);
    assert!(ok, "{stats}");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["entries"]["ticket:h3"], 1, "{stats}");
    assert_eq!(stats["entries"]["pool:h3"], 1, "{stats}");

    for secret in secrets(cache).await {
        for (name, out) in [
            ("ls", &ls),
            ("show", &show),
            ("pool show", &pool_show),
            ("table", &table),
        ] {
            assert!(!out.contains(&secret), "cache {name} printed secret bytes");
        }
    }

    let (ok, removed, _) = h3fleet(&["cache", "rm", "--host", "localhost", "--cache", cache]);
    assert!(ok && removed.contains("removed 2 entries"), "{removed}");
    let (_, after, _) = h3fleet(&["cache", "ls", "--cache", cache, "--json"]);
    assert_eq!(after.trim(), "", "rm --host left entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_ls_show_stats_rm_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("sqlite:{}", dir.path().join("c.db").display());
    inspect_entries_written_by_get_processes(&cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_ls_show_stats_rm_on_redis() {
    let redis = support::redis::RedisServer::start();
    inspect_entries_written_by_get_processes(&redis.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_ls_show_stats_rm_on_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(support::redis::RedisCluster::start)
        .await
        .unwrap();
    inspect_entries_written_by_get_processes(&cluster.uri()).await;
}

#[test]
fn sealed_entries_show_their_key_id_and_open_only_with_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("sqlite:{}", dir.path().join("c.db").display());
    let keys = dir.path().join("keys");
    let (ok, line, _) = h3fleet(&["cache", "keygen"]);
    assert!(ok);
    std::fs::write(&keys, &line).unwrap();
    let id = line.split_whitespace().next().unwrap().to_owned();
    let serve = Serve::start();
    get(&serve, &cache, &["--cache-keys", keys.to_str().unwrap()]);
    let (ok, without, _) = h3fleet(&["cache", "ls", "--cache", &cache, "--json"]);
    assert!(ok);
    let row: Value = serde_json::from_str(without.lines().next().unwrap()).unwrap();
    assert_eq!(row["sealed_with"], id.as_str(), "{row}");
    assert!(
        row["early_data"].is_null() && row["unreadable"].is_string(),
        "{row}"
    );
    let keys_arg = keys.to_str().unwrap();
    let (ok, with, _) = h3fleet(&[
        "cache",
        "ls",
        "--cache",
        &cache,
        "--json",
        "--cache-keys",
        keys_arg,
    ]);
    assert!(ok);
    let row: Value = serde_json::from_str(with.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["sealed_with"].as_str(), row["early_data"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    assert!(
        !with.contains(line.split_whitespace().nth(1).unwrap()),
        "the key itself was printed"
    );

    // Pooled tickets are sealed like any entry, and resume once opened.
    let keyed = ["--cache-keys", keys_arg, "--ticket-reuse", "single-use"];
    get(&serve, &cache, &keyed);
    let (ok, pools, _) = h3fleet(&["cache", "ls", "--cache", &cache, "--json"]);
    assert!(ok);
    let pool: Value = pools
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["kind"] == "pool")
        .unwrap_or_else(|| panic!("{pools}"));
    assert_eq!(pool["sealed_with"], id.as_str(), "{pool}");
    let report = get(&serve, &cache, &keyed);
    assert_eq!(
        (report["resumed"].as_bool(), report["ticket_source"].as_str()),
        (Some(true), Some("backend")),
        "{report}"
    );
}

#[test]
fn cache_ls_on_memcached_says_it_cannot_list() {
    let server = support::memcached::MemcachedServer::start();
    let (ok, _, err) = h3fleet(&["cache", "ls", "--cache", &server.uri()]);
    assert!(!ok && err.contains("cannot list"), "{err}");
}
