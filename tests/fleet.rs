//! The fleet claim with real processes: an `h3fleet serve` origin process,
//! and two `h3fleet get` replica processes sharing one backend (a real
//! redis-server, or one SQLite file). The first replica pays a full
//! handshake; the second resumes its ticket from the backend and its
//! request arrives at the origin as 0-RTT early data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use h3fleet::server::LatencyRelay;
use serde_json::Value;

use support::serve::Serve;

fn h3fleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_h3fleet"))
}

async fn get(relay: &LatencyRelay, serve: &Serve, cache: &str, extra: &[&str]) -> Value {
    get_at(relay.addr().port(), "/fleet", serve, cache, extra).await
}

/// `h3fleet get -w '%{json}' https://localhost:PORT{path}` trusting `serve`'s
/// certificate, returning its JSON report.
async fn get_at(port: u16, path: &str, serve: &Serve, cache: &str, extra: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args([
            "get",
            &format!("https://localhost:{port}{path}"),
            "-w",
            "%{json}",
            "-o",
            "/dev/null",
        ])
        .args(["--cache", cache, "--cacert", &serve.cert])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(extra)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn second_process_resumes_from(cache: &str) {
    let serve = Serve::start();
    let relay = LatencyRelay::start(serve.addr, Duration::from_millis(20))
        .await
        .unwrap();
    let first = get(&relay, &serve, cache, &[]).await;
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["protocol"], "h3");
    assert_eq!(first["ticket_source"], "none", "{first}");
    assert_eq!(first["resumed"], false);
    assert_eq!(first["body_bytes"], "h3fleet origin: GET /fleet\n".len());
    let second = get(&relay, &serve, cache, &[]).await;
    assert_eq!(second["ticket_source"], "backend", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
    assert_eq!(second["early_data"], "accepted", "{second}");
    let seen = serve.requests(2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["early_data"], false);
    assert_eq!(
        seen[1]["early_data"], true,
        "the origin did not see 0-RTT: {seen:?}"
    );
    assert_eq!(seen[1]["resumed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_get_process_resumes_with_0rtt_through_redis() {
    let redis = support::redis::RedisServer::start();
    second_process_resumes_from(&redis.uri()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_get_process_resumes_with_0rtt_through_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    second_process_resumes_from(&format!("sqlite:{}", dir.path().join("fleet.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_with_different_ids_do_not_share_tickets() {
    let redis = support::redis::RedisServer::start();
    let serve = Serve::start();
    let relay = LatencyRelay::start(serve.addr, Duration::from_millis(2))
        .await
        .unwrap();
    get(&relay, &serve, &redis.uri(), &["--id", "alice"]).await;
    let bob = get(&relay, &serve, &redis.uri(), &["--id", "bob"]).await;
    assert_eq!(
        (&bob["ticket_source"], &bob["resumed"]),
        (&"none".into(), &false.into())
    );
    let alice = get(&relay, &serve, &redis.uri(), &["--id", "alice"]).await;
    assert_eq!(alice["ticket_source"], "backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_defaults_to_the_embedded_sqlite_file_under_xdg_cache_home() {
    let serve = Serve::start();
    let home = tempfile::tempdir().unwrap();
    let port = serve.addr.port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args([
            "get",
            &format!("https://localhost:{port}/"),
            "--cacert",
            &serve.cert,
        ])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .env("XDG_CACHE_HOME", home.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "h3fleet origin: GET /\n");
    assert!(home.path().join("h3fleet/cache.db").is_file());
}

#[test]
fn get_of_an_unreachable_backend_still_answers() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let serve = Serve::start();
        let relay = LatencyRelay::start(serve.addr, Duration::from_millis(2))
            .await
            .unwrap();
        let dead = format!("redis://127.0.0.1:{}", support::free_port(None));
        let report = get(&relay, &serve, &dead, &[]).await;
        assert_eq!(report["status"], 200);
        assert_eq!(report["ticket_source"], "none");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_looks_names_up_at_the_dns_server_given() {
    let serve = Serve::start_with(&["--name", "origin.fleet.test"]);
    let dns = support::dns::DnsServer::start(
        "fleet.test.",
        &[("origin.fleet.test.", std::net::Ipv4Addr::LOCALHOST)],
    )
    .await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .arg("get")
        .arg(format!("https://origin.fleet.test:{}/named", serve.addr.port()))
        .args([
            "--cache",
            "none",
            "--cacert",
            &serve.cert,
            "--dns",
            &dns.addr().to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "h3fleet origin: GET /named\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_posts_data_with_headers_and_writes_the_body_to_a_file() {
    let serve = Serve::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.out");
    let port = serve.addr.port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .arg("get")
        .arg(format!("https://localhost:{port}/submit"))
        .args(["--cache", "none", "--cacert", &serve.cert])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-d", "payload=1", "-H", "content-type: text/plain", "-o"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "payload=1");
    let seen = serve.requests(1).await;
    assert_eq!(seen[0]["method"], "POST");
}

#[test]
fn get_of_a_wrong_url_is_a_clear_error() {
    for (url, says) in [
        ("not-a-url", "invalid URL"),
        ("ftp://localhost/", "only https:// and http://"),
    ] {
        let out = h3fleet().args(["get", url, "--cache", "none"]).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}

/// `h3fleet get --http2` / `--http1` processes against a hyper + tokio-rustls
/// origin: the second process resumes the first one's ticket from Redis.
async fn second_tcp_process_resumes(flag: &str, protocol: &str) {
    let pki = support::quic::TestPki::new();
    let origin = support::tcp::TcpOrigin::start(&pki, support::tcp::Flavor::Modern).await;
    let redis = support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let port = origin.addr().port();
    let run = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args([
                "get",
                &format!("https://localhost:{port}/tcp"),
                "-w",
                "%{json}",
                "-o",
                "/dev/null",
                flag,
            ])
            .args(["--cache", &redis.uri(), "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = run().await;
    assert_eq!(
        (&first["protocol"], &first["ticket_source"]),
        (&protocol.into(), &"none".into())
    );
    let second = run().await;
    assert_eq!(second["protocol"], protocol);
    assert_eq!(second["ticket_source"], "backend", "{second}");
    assert_eq!(second["resumed"], true, "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_h2_process_resumes_from_redis_against_rustls() {
    second_tcp_process_resumes("--http2", "h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_h1_process_resumes_from_redis_against_rustls() {
    second_tcp_process_resumes("--http1", "http/1.1").await;
}

/// `h3fleet get` straight to `serve` (no relay), returning its JSON report.
async fn get_direct(serve: &Serve, cache: &str, extra: &[&str]) -> Value {
    get_at(serve.addr.port(), "/tcp", serve, cache, extra).await
}

/// Over TCP against h3fleet's own origin (BoringSSL on both sides), a
/// second `get` process resumes the first one's ticket from Redis and its
/// request arrives as TLS 1.3 early data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_get_processes_send_early_data_with_a_ticket_from_redis() {
    let redis = support::redis::RedisServer::start();
    let serve = Serve::start();
    for (flag, protocol) in [("--http2", "h2"), ("--http1", "http/1.1")] {
        let first = get_direct(&serve, &redis.uri(), &[flag]).await;
        assert_eq!(first["protocol"], protocol, "{first}");
        assert_eq!(first["early_data"], "not_attempted", "{first}");
        let second = get_direct(&serve, &redis.uri(), &[flag]).await;
        assert_eq!(second["ticket_source"], "backend", "{second}");
        assert_eq!(second["resumed"], true, "{second}");
        assert_eq!(second["early_data"], "accepted", "{second}");
    }
    let seen = serve.requests(4).await;
    let summary: Vec<(&str, bool)> = seen
        .iter()
        .map(|r| {
            (
                r["protocol"].as_str().unwrap(),
                r["early_data"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("h2", false),
            ("h2", true),
            ("http/1.1", false),
            ("http/1.1", true)
        ]
    );
}

/// A restarted `serve` has new ticket keys and a new self-signed
/// certificate: the session stored against the old certificate does not
/// verify under the new one, so it is never offered (no ticket from another
/// trust setting goes out), and the request arrives exactly once, after a
/// full handshake. (Early data refused by an origin that lost its ticket
/// keys is covered in-process by `tests/tcp_early_data.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_won_under_another_certificate_is_never_offered() {
    let redis = support::redis::RedisServer::start();
    let first_origin = Serve::start();
    let addr = first_origin.addr.to_string();
    get_direct(&first_origin, &redis.uri(), &["--http2"]).await;
    drop(first_origin);
    let serve = Serve::start_on(&addr, &[]);
    let report = get_direct(&serve, &redis.uri(), &["--http2"]).await;
    assert_eq!(report["status"], 200);
    assert_eq!(report["resumed"], false, "{report}");
    assert_eq!(report["ticket_source"], "none", "{report}");
    assert_eq!(report["early_data"], "not_attempted", "{report}");
    let seen = serve.requests(1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["early_data"], false);
    assert_eq!(seen[0]["resumed"], false);
}

/// Without a protocol flag, `get` takes HTTP/3 where the origin offers it
/// and HTTP/2 where it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_picks_h3_or_tcp_as_the_origin_allows() {
    let both = Serve::start();
    let report = get_direct(&both, "none", &[]).await;
    assert_eq!(report["protocol"], "h3", "{report}");
    // No ECH config for the origin: GREASE, as `--ech auto` says; `off` sends none.
    assert_eq!(report["ech"], "grease", "{report}");
    assert_eq!(report["ech_source"], "none", "{report}");
    let report = get_direct(&both, "none", &["--ech", "off"]).await;
    assert_eq!(report["ech"], "off", "{report}");
    let tcp_only = Serve::start_with(&["--no-http3"]);
    let report = get_direct(&tcp_only, "none", &[]).await;
    assert_eq!(report["protocol"], "h2", "{report}");
    assert_eq!(report["status"], 200);
}

/// ECH across processes: replica A finds the origin's ECH config in its DNS
/// HTTPS record and writes it to Redis; replica B takes it from Redis
/// (no HTTPS query), and with A's ticket its request goes in 0-RTT inside
/// the encrypted ClientHello. The origin confirms it saw the inner name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ech_config_and_ticket_travel_through_redis_between_processes() {
    let redis = support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ech_file = dir.path().join("ech.bin");
    let serve = Serve::start_with(&[
        "--name",
        "origin.fleet.test",
        "--ech",
        "--ech-public-name",
        "public.fleet.test",
        "--ech-config-out",
        ech_file.to_str().unwrap(),
    ]);
    let ech_config = std::fs::read(&ech_file).unwrap();
    let dns = support::dns::DnsServer::start_with_https(
        "fleet.test.",
        &[("origin.fleet.test.", std::net::Ipv4Addr::LOCALHOST)],
        &[("origin.fleet.test.", ech_config)],
    )
    .await;
    // 0-RTT needs the request written before the handshake completes; the
    // relay's round trip keeps a loaded machine from losing that race.
    let relay = LatencyRelay::start(serve.addr, Duration::from_millis(20))
        .await
        .unwrap();
    let replica = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .arg("get")
            .arg(format!(
                "https://origin.fleet.test:{}/hidden",
                relay.addr().port()
            ))
            .args([
                "-w",
                "%{json}",
                "-o",
                "/dev/null",
                "--http3-only",
                "--cache",
                &redis.uri(),
                "--cacert",
                &serve.cert,
            ])
            .args(["--dns", &dns.addr().to_string()])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let a = replica().await;
    assert_eq!(a["ech"], "accepted", "{a}");
    assert_eq!(a["ech_source"], "dns", "{a}");
    assert_eq!(dns.https_queries(), 1);
    let b = replica().await;
    assert_eq!(b["ech"], "accepted", "{b}");
    assert_eq!(b["ech_source"], "backend", "{b}");
    assert_eq!(b["ticket_source"], "backend", "{b}");
    assert_eq!(b["resumed"], true, "{b}");
    assert_eq!(b["early_data"], "accepted", "{b}");
    assert_eq!(dns.https_queries(), 1, "replica B asked DNS for the ECH config");
    let seen = serve.requests(2).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    for record in &seen {
        assert_eq!(record["ech"], true, "{record}");
        assert_eq!(record["server_name"], "origin.fleet.test", "{record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_get_process_resumes_with_0rtt_through_memcached() {
    let memcached = support::memcached::MemcachedServer::start();
    second_process_resumes_from(&memcached.uri()).await;
}

/// A network backend without cache keys works, with a warning that says
/// what anyone with access to the store could do; with keys, no warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_backend_without_keys_is_warned_about() {
    let redis = support::redis::RedisServer::start();
    let serve = Serve::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let line = std::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(["cache", "keygen"])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&keys, line).unwrap();
    let run = |extra: Vec<String>| {
        let port = serve.addr.port();
        std::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args([
                "get",
                &format!("https://localhost:{port}/"),
                "-w",
                "%{json}",
                "-o",
                "/dev/null",
                "--http2",
            ])
            .args(["--cache", &redis.uri(), "--cacert", &serve.cert])
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(extra)
            .output()
            .unwrap()
    };
    let unsealed = run(vec![]);
    assert!(unsealed.status.success());
    let stderr = String::from_utf8_lossy(&unsealed.stderr);
    assert!(
        stderr.contains("no cache keys") && stderr.contains("server of their choosing"),
        "{stderr}"
    );
    let sealed = run(vec!["--cache-keys".into(), keys.to_str().unwrap().into()]);
    assert!(sealed.status.success());
    assert!(!String::from_utf8_lossy(&sealed.stderr).contains("no cache keys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_follows_redirects_only_with_location_as_curl() {
    let serve = Serve::start();
    let port = serve.addr.port();
    let stay = get_at(port, "/redirect/2", &serve, "none", &[]).await;
    assert_eq!(
        (stay["status"].as_u64(), stay["num_redirects"].as_u64()),
        (Some(302), Some(0)),
        "{stay}"
    );
    let follow = get_at(port, "/redirect/2", &serve, "none", &["-L"]).await;
    assert_eq!(
        (follow["status"].as_u64(), follow["num_redirects"].as_u64()),
        (Some(200), Some(2)),
        "{follow}"
    );
    assert!(
        follow["url_effective"].as_str().unwrap().ends_with("/redirect/0"),
        "{follow}"
    );
    let out = h3fleet()
        .args([
            "get",
            &format!("https://localhost:{port}/redirect/3"),
            "-L",
            "--max-redirs",
            "1",
        ])
        .args(["--cache", "none", "--cacert", &serve.cert])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("more than 1 redirects"),
        "{stderr}"
    );
}
