//! Single-use tickets across real processes: an `h3fleet serve` origin on
//! quinn's rustls server (which takes each 0-RTT ticket once from its
//! store: a second offer of the same ticket resumes nothing and has its
//! early data refused), `h3fleet get` replica processes and a real
//! redis-server between them, behind a relay that adds 20 ms of RTT.
//!
//! Under `--ticket-reuse single-use` six replicas at once each take a
//! ticket of their own: every 0-RTT attempt is accepted, and the origin
//! saw every request as early data on a resumed connection, which it
//! grants only to a ticket it has not seen before. Under `shared` the
//! same six offer one ticket, and the refusals show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use h3fleet::server::LatencyRelay;
use serde_json::Value;
use support::serve::Serve;

const REPLICAS: usize = 6;

/// One `h3fleet get -w '%{json}'` process through `relay`.
async fn get(relay: &LatencyRelay, serve: &Serve, cache: &str, reuse: &str) -> Value {
    get_on(relay.addr().port(), &serve.cert, cache, reuse).await
}

async fn get_on(port: u16, cert: &str, cache: &str, reuse: &str) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args([
            "get",
            &format!("https://localhost:{port}/pool"),
            "-w",
            "%{json}",
            "-o",
            "/dev/null",
            "--http3-only",
        ])
        .args(["--cache", cache, "--cacert", cert, "--ticket-reuse", reuse])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `REPLICAS` get processes started at once.
async fn replicas(relay: &LatencyRelay, serve: &Serve, cache: &str, reuse: &str) -> Vec<Value> {
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..REPLICAS {
        let (port, cert, cache, reuse) = (
            relay.addr().port(),
            serve.cert.clone(),
            cache.to_owned(),
            reuse.to_owned(),
        );
        runs.spawn(async move { get_on(port, &cert, &cache, &reuse).await });
    }
    runs.join_all().await
}

async fn origin_behind_relay() -> (Serve, LatencyRelay) {
    let serve = Serve::start();
    let relay = LatencyRelay::start(serve.addr, Duration::from_millis(20))
        .await
        .unwrap();
    (serve, relay)
}

fn accepted(reports: &[Value]) -> usize {
    reports.iter().filter(|r| r["early_data"] == "accepted").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_tickets_let_every_replica_send_0rtt_where_a_shared_one_is_refused() {
    let redis = support::redis::RedisServer::start();
    let cache = redis.uri();

    // Shared: one ticket, offered by all six at once.
    let (serve, relay) = origin_behind_relay().await;
    let seed = get(&relay, &serve, &cache, "shared").await;
    assert_eq!(
        (seed["resumed"].as_bool(), seed["ticket_reuse"].as_str()),
        (Some(false), Some("shared"))
    );
    let shared = replicas(&relay, &serve, &cache, "shared").await;
    eprintln!("shared: {} of {REPLICAS} accepted", accepted(&shared));
    assert!(
        accepted(&shared) < REPLICAS,
        "one shared ticket was accepted as 0-RTT by every replica: the origin is not single-use: {shared:?}"
    );

    // Single-use: seed the pool (a full handshake, then resumptions that
    // each take one ticket and bring new ones), then six at once.
    let (serve, relay) = origin_behind_relay().await;
    let prefix_cache = format!("{cache}1");
    let first = get(&relay, &serve, &prefix_cache, "single-use").await;
    assert_eq!(first["ticket_pool_held"], 0, "an empty pool: {first}");
    assert_eq!(
        first["resumed"], false,
        "an empty pool means a full handshake: {first}"
    );
    let mut held = 0;
    while held < REPLICAS + 1 {
        let seed = get(&relay, &serve, &prefix_cache, "single-use").await;
        assert_eq!(seed["early_data"], "accepted", "{seed}");
        held = seed["ticket_pool_held"].as_u64().unwrap() as usize;
        assert!(held >= 1, "the pool refills from each resumed connection: {seed}");
    }
    let before = serve.requests(0).await.len();
    let single = replicas(&relay, &serve, &prefix_cache, "single-use").await;
    for r in &single {
        assert_eq!(r["ticket_reuse"], "single-use");
        assert_eq!(r["ticket_source"], "backend", "{r}");
        assert_eq!(
            r["early_data"], "accepted",
            "every replica's 0-RTT is accepted: {single:?}"
        );
    }
    let seen = serve.requests(before + REPLICAS).await;
    let concurrent = &seen[before..];
    assert_eq!(concurrent.len(), REPLICAS, "{seen:?}");
    assert!(
        concurrent
            .iter()
            .all(|r| r["early_data"] == true && r["resumed"] == true),
        "the origin saw a ticket twice (a resumption without 0-RTT): {concurrent:?}"
    );
    assert!(
        accepted(&single) > accepted(&shared),
        "single-use {} vs shared {} accepted",
        accepted(&single),
        accepted(&shared)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_pool_falls_back_to_a_full_handshake_and_refills_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("sqlite:{}", dir.path().join("pool.db").display());
    let (serve, relay) = origin_behind_relay().await;
    let dry = get(&relay, &serve, &cache, "single-use").await;
    assert_eq!(
        (dry["resumed"].as_bool(), dry["ticket_pool_held"].as_u64()),
        (Some(false), Some(0)),
        "{dry}"
    );
    // The full handshake brought the origin's tickets (rustls sends two).
    let refilled = get(&relay, &serve, &cache, "single-use").await;
    assert_eq!(refilled["resumed"], true, "{refilled}");
    assert_eq!(refilled["ticket_pool_held"], 2, "{refilled}");
    assert_eq!(refilled["early_data"], "accepted", "{refilled}");
}
