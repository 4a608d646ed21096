//! `h3fleet proxy` with real clients nobody here wrote (curl, Python
//! `requests`, Node's fetch through undici's `ProxyAgent`) against
//! h3fleet's origin: the answer, the `X-H3fleet-*` report, 0-RTT across
//! proxy processes that share a cache, tunnels, auth and streaming.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use h3fleet::server::{LatencyRelay, TcpLatencyRelay};

use support::local_proxy::{curl, node_fetch, python_requests, ProxyProc};
use support::serve::Serve;

/// A response as `curl -i` printed it: status, headers (lower-case), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// `curl -s -i -x PROXY ARGS`; the last head printed is the answer's.
fn curl_via(proxy: &ProxyProc, args: &[&str]) -> Answer {
    let out = curl(&[&["-s", "-S", "-i", "-x", &proxy.url()][..], args].concat());
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_curl(&String::from_utf8_lossy(&out.stdout))
}

fn parse_curl(text: &str) -> Answer {
    let mut rest = text;
    // A CONNECT's own `200` head (or a `100 Continue`) comes first.
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        if body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap_or("")
            .split(' ')
            .nth(1)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        return Answer {
            status,
            headers,
            body: body.to_owned(),
        };
    }
}

fn scheme_https() -> [&'static str; 2] {
    ["-H", "X-H3fleet-Scheme: https"]
}

#[test]
fn curl_python_requests_and_node_fetch_get_the_origins_answer_and_the_fleet_report() {
    let serve = Serve::start();
    let proxy = ProxyProc::start(&["--cache", "none", "--cacert", &serve.cert]);
    let url = format!("http://localhost:{}/hello", serve.addr.port());

    let a = curl_via(&proxy, &[&scheme_https()[..], &[url.as_str()]].concat());
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "h3fleet origin: GET /hello\n");
    assert_eq!(a.header("x-h3fleet-protocol"), "h3", "{:?}", a.headers);
    assert_eq!(a.header("x-h3fleet-resumed"), "false");
    assert_eq!(a.header("x-h3fleet-early-data"), "not_attempted");
    assert_eq!(a.header("x-h3fleet-ticket-source"), "none");
    assert_eq!(a.header("x-h3fleet-ech"), "grease");

    let py = python_requests(&proxy.url(), &url, &["X-H3fleet-Scheme: https"], 2);
    assert_eq!(py.len(), 2);
    for r in &py {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["body"], "h3fleet origin: GET /hello\n");
        assert_eq!(r["headers"]["x-h3fleet-protocol"], "h3", "{r}");
        assert_eq!(r["headers"]["x-h3fleet-ticket-source"], "none", "{r}");
    }

    let node = node_fetch(&proxy.url(), &url, &["X-H3fleet-Scheme: https"]);
    assert_eq!(node["status"], 200, "{node}");
    assert_eq!(node["body"], "h3fleet origin: GET /hello\n");
    assert_eq!(node["headers"]["x-h3fleet-protocol"], "h3", "{node}");
    assert_eq!(node["headers"]["x-h3fleet-early-data"], "not_attempted", "{node}");

    // The proxy's own headers never reached the origin; the client's did.
    let echo = curl_via(
        &proxy,
        &[
            &scheme_https()[..],
            &["-H", "X-Custom: 7", &url.replace("/hello", "/echo")],
        ]
        .concat(),
    );
    let seen: serde_json::Value = serde_json::from_str(&echo.body).unwrap();
    assert_eq!(seen["headers"]["x-custom"], "7", "{seen}");
    assert!(seen["headers"].get("x-h3fleet-scheme").is_none(), "{seen}");
    assert!(seen["headers"].get("proxy-connection").is_none(), "{seen}");

    // Every request was logged as a JSON line, by the default session.
    let records = proxy.records(5);
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r["session"] == "default" && r["status"] == 200),
        "{records:?}"
    );
    assert_eq!(
        records[0]["url"],
        format!("https://localhost:{}/hello", serve.addr.port())
    );
    assert_eq!(records[0]["protocol"], "h3");
}

#[test]
fn a_decoded_body_loses_its_coding_and_length_and_streams_both_ways() {
    let serve = Serve::start();
    let proxy = ProxyProc::start(&["--cache", "none", "--cacert", &serve.cert, "--http2"]);
    let base = format!("http://localhost:{}", serve.addr.port());

    let gz = curl_via(
        &proxy,
        &[&scheme_https()[..], &[format!("{base}/gzip").as_str()]].concat(),
    );
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("x-h3fleet-protocol"), "h2");
    assert_eq!(
        gz.header("content-encoding"),
        "",
        "a stale coding header: {:?}",
        gz.headers
    );
    assert_eq!(gz.header("transfer-encoding"), "chunked", "{:?}", gz.headers);
    assert_eq!(gz.body, h3fleet::server::plain_body());

    // A response of unknown length goes out chunked, as it arrives: the
    // origin sends five lines 100 ms apart.
    let drip = curl_via(
        &proxy,
        &[
            &scheme_https()[..],
            &[
                "-w",
                "\n%{time_starttransfer} %{time_total}",
                &format!("{base}/drip"),
            ],
        ]
        .concat(),
    );
    assert!(
        drip.body.starts_with("drip 0\ndrip 1\ndrip 2\ndrip 3\ndrip 4\n"),
        "{}",
        drip.body
    );
    let times: Vec<f64> = drip
        .body
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        times[1] - times[0] > 0.25,
        "the body came at once, not as it was sent: {times:?}"
    );

    // An upload streams through (curl -T sends it chunked).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let up = curl_via(
        &proxy,
        &[
            &scheme_https()[..],
            &[
                "-X",
                "POST",
                "-T",
                file.to_str().unwrap(),
                &format!("{base}/upload"),
            ],
        ]
        .concat(),
    );
    let seen: serde_json::Value = serde_json::from_str(&up.body).unwrap();
    assert_eq!(seen["bytes"], data.len(), "{seen}");
    assert_eq!(seen["method"], "POST");
}

/// Proxy 1 pays a full handshake and is stopped at once (SIGTERM); a fresh
/// proxy 2 on the same cache resumes its ticket with 0-RTT.
fn second_proxy_resumes_the_first_ones_ticket(rt: &tokio::runtime::Runtime, cache: &str) {
    let serve = Serve::start();
    let relay = rt
        .block_on(LatencyRelay::start(serve.addr, Duration::from_millis(20)))
        .unwrap();
    let port = relay.addr().port();
    let args = ["--cache", cache, "--cacert", &serve.cert, "--http3-only"];
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("http://localhost:{port}/fleet");
    let request = [&scheme_https()[..], &[url.as_str()]].concat();

    let first = ProxyProc::start(&[&args[..], &["--resolve", &resolve]].concat());
    let a = curl_via(&first, &request);
    assert_eq!(
        (a.status, a.header("x-h3fleet-ticket-source")),
        (200, "none"),
        "{:?}",
        a.headers
    );
    assert_eq!(a.header("x-h3fleet-resumed"), "false");
    assert!(first.stop(), "proxy 1 did not shut down cleanly");

    let second = ProxyProc::start(&[&args[..], &["--resolve", &resolve]].concat());
    let b = curl_via(&second, &request);
    assert_eq!(b.status, 200);
    assert_eq!(b.header("x-h3fleet-ticket-source"), "backend", "{:?}", b.headers);
    assert_eq!(b.header("x-h3fleet-resumed"), "true");
    assert_eq!(b.header("x-h3fleet-early-data"), "accepted");
    assert_eq!(
        b.header("x-early-data"),
        "1",
        "the origin did not see 0-RTT: {:?}",
        b.headers
    );
    let records = second.records(1);
    assert_eq!(records[0]["early_data"], "accepted", "{records:?}");
    assert_eq!(records[0]["ticket_source"], "backend");
}

#[test]
fn a_second_proxy_process_resumes_with_0rtt_through_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    second_proxy_resumes_the_first_ones_ticket(
        &rt,
        &format!("sqlite:{}", dir.path().join("fleet.db").display()),
    );
}

/// Redis is 300 ms away, so proxy 1's ticket write is still on its way
/// when it is told to stop: only a graceful shutdown that waits for it
/// lets proxy 2 resume.
#[test]
fn a_second_proxy_process_resumes_with_0rtt_through_a_distant_redis() {
    let redis = support::redis::RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], redis.port()));
    let relay = rt
        .block_on(TcpLatencyRelay::start(
            "127.0.0.1:0".parse().unwrap(),
            upstream,
            Duration::from_millis(300),
        ))
        .unwrap();
    second_proxy_resumes_the_first_ones_ticket(&rt, &format!("redis://{}", relay.addr()));
}

#[test]
fn connect_tunnels_carry_the_clients_own_tls_and_denied_ports_are_refused() {
    let serve = Serve::start();
    let proxy = ProxyProc::start(&["--cache", "none", "--deny-ports", "25,23"]);
    let url = format!("https://localhost:{}/hello", serve.addr.port());
    let a = curl_via(&proxy, &["--cacert", &serve.cert, &url]);
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "h3fleet origin: GET /hello\n");
    assert_eq!(
        a.header("x-h3fleet-protocol"),
        "",
        "a tunnel carries no report: {:?}",
        a.headers
    );

    let denied = curl(&[
        "-s",
        "-x",
        &proxy.url(),
        "-w",
        "%{http_connect}",
        "https://localhost:25/",
    ]);
    assert_eq!(
        denied.status.code(),
        Some(56),
        "curl's code for a refused CONNECT"
    );
    assert_eq!(String::from_utf8_lossy(&denied.stdout), "403");
    let records = proxy.records(2);
    assert_eq!(records[0]["method"], "CONNECT");
    assert_eq!(records[0]["protocol"], "tunnel");
    assert_eq!(records[1]["status"], 403, "{records:?}");
}

#[test]
fn auth_is_required_when_set_and_never_forwarded() {
    let serve = Serve::start();
    // From the environment, as the help advises (argv is visible to all).
    let proxy = ProxyProc::start_with_env(
        &["--cache", "none", "--cacert", &serve.cert],
        &[("H3FLEET_PROXY_AUTH", "fleet:s3cret")],
    );
    let url = format!("http://localhost:{}/echo", serve.addr.port());
    let without = curl_via(&proxy, &[&scheme_https()[..], &[url.as_str()]].concat());
    assert_eq!(without.status, 407);
    assert!(
        without.header("proxy-authenticate").starts_with("Basic"),
        "{:?}",
        without.headers
    );
    let wrong = curl_via(
        &proxy,
        &[&scheme_https()[..], &["-U", "fleet:nope", url.as_str()]].concat(),
    );
    assert_eq!(wrong.status, 407);
    let right = curl_via(
        &proxy,
        &[&scheme_https()[..], &["-U", "fleet:s3cret", url.as_str()]].concat(),
    );
    assert_eq!(right.status, 200);
    let seen: serde_json::Value = serde_json::from_str(&right.body).unwrap();
    assert!(seen["headers"].get("proxy-authorization").is_none(), "{seen}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
        .args(["proxy", "--listen", "0.0.0.0:0", "--cache", "none"])
        .env_remove("H3FLEET_PROXY_AUTH")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a proxy open to the network without auth started"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs basic_auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
