//! The `h3fleet` binary, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

fn h3fleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_h3fleet"))
}

#[test]
fn demo_second_replica_resumes_from_sqlite_with_0rtt() {
    let out = h3fleet().args(["demo", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let replicas = report["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0]["ticket_source"], "none");
    assert_eq!(replicas[1]["ticket_source"], "backend");
    assert_eq!(replicas[1]["resumed"], true);
    assert_eq!(replicas[1]["early_data"], "accepted");
}

#[test]
fn demo_prints_a_table_of_both_replicas() {
    let out = h3fleet().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("backend") && stdout.contains("accepted"),
        "{stdout}"
    );
    assert!(stdout.contains("values sealed with the keys in"), "{stdout}");
}

#[test]
fn keygen_prints_a_key_line_that_check_accepts() {
    let out = h3fleet().args(["cache", "keygen"]).output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let (id, key) = line.trim().split_once(' ').unwrap();
    assert!(!id.is_empty() && key.len() == 44, "{line:?}");
    let again = h3fleet().args(["cache", "keygen"]).output().unwrap();
    assert_ne!(again.stdout, line.as_bytes(), "two keygens printed the same key");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, &line).unwrap();
    let cache = format!("sqlite:{}", dir.path().join("c.db").display());
    let out = h3fleet()
        .args(["cache", "check", "--cache", &cache, "--cache-keys"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("keys:   {id}")), "{stdout}");
    assert!(!stdout.contains(key), "{stdout}");
    std::fs::write(&file, "broken line here\n").unwrap();
    let out = h3fleet()
        .args(["cache", "check", "--cache", &cache, "--cache-keys"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache key line 1"));
}

#[test]
fn a_backend_password_never_reaches_the_output() {
    let redis = support::redis::RedisServer::start_with(&["--requirepass", "s3cret-pw@x"]);
    let uri = format!("redis://:s3cret-pw@x@127.0.0.1:{}/", redis.port());
    let out = h3fleet()
        .args(["cache", "check"])
        .env("H3FLEET_CACHE", &uri)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("ok:") && stdout.contains("<redacted>"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout}{stderr}"
    );
    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/", redis.port());
    let out = h3fleet()
        .args(["cache", "check"])
        .env("H3FLEET_CACHE", &wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("wrong-pw"), "{all}");
}

#[test]
fn cache_check_round_trips_a_probe_through_redis() {
    let redis = support::redis::RedisServer::start();
    let out = h3fleet()
        .args(["cache", "check", "--cache", &redis.uri()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("backend: redis") && stdout.contains("ok:"),
        "{stdout}"
    );
}

#[test]
fn unreachable_backend_is_a_clear_error_not_a_panic() {
    let port = support::free_port(None);
    let out = h3fleet()
        .args(["cache", "check", "--cache", &format!("redis://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn bad_cache_uri_lists_the_accepted_forms() {
    let out = h3fleet()
        .args(["cache", "check", "--cache", "mongodb://x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("redis+cluster://") && stderr.contains("sqlite:PATH"),
        "{stderr}"
    );
}

/// Runs `h3fleet bench` small and reads its JSON report.
fn bench(protocol: &str, dir: &std::path::Path) -> serde_json::Value {
    let json = dir.join(format!("bench-{protocol}.json"));
    let svg = dir.join(format!("bench-{protocol}.svg"));
    let out = h3fleet()
        .args([
            "bench",
            "--replicas",
            "3",
            "--hosts",
            "4",
            "--requests-per-host",
            "2",
        ])
        .args(["--rtt-ms", "10", "--protocol", protocol, "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shared / local-only"), "{stdout}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// The fleet physics the bench must show: local-only caches pay a full
/// handshake at every first contact (replicas x hosts); the shared cache
/// lets later replicas resume (with 0-RTT on HTTP/3).
#[test]
fn bench_shows_what_the_shared_cache_saves() {
    let dir = tempfile::tempdir().unwrap();
    for protocol in ["h3", "h2"] {
        let report = bench(protocol, dir.path());
        let (shared, local) = (&report["shared"], &report["local_only"]);
        assert_eq!(shared["failed_requests"], 0, "{report}");
        assert_eq!(local["failed_requests"], 0, "{report}");
        assert_eq!(local["full_handshakes"], 12, "{report}");
        assert_eq!(local["resumed"], 0, "{report}");
        let full = shared["full_handshakes"].as_u64().unwrap();
        assert!(full < 12, "{report}");
        assert_eq!(shared["resumed"].as_u64().unwrap() + full, 12, "{report}");
        assert!(shared["zero_rtt_accepted"].as_u64().unwrap() >= 1, "{report}");
        assert!(
            report["ratio"]["full_handshakes"].as_f64().unwrap() < 1.0,
            "{report}"
        );
        for key in ["p50", "p90", "p99"] {
            assert!(
                shared["first_request_ms"][key].as_f64().unwrap() > 0.0,
                "{report}"
            );
            assert!(local["later_request_ms"][key].as_f64().unwrap() > 0.0, "{report}");
        }
        assert_eq!(report["config"]["protocol"], protocol);
    }
}

/// Against quinn's rustls origin (each 0-RTT ticket accepted once),
/// single-use tickets have every 0-RTT attempt accepted, and the same
/// invocation runs the shared-ticket policy for comparison.
#[test]
fn bench_against_a_single_use_origin_runs_both_ticket_policies() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = h3fleet()
        .args([
            "bench",
            "--replicas",
            "6",
            "--hosts",
            "4",
            "--requests-per-host",
            "1",
        ])
        .args(["--origin", "rustls", "--ticket-reuse", "single-use", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("single-use / local-only") && stdout.contains("0-RTT acceptance"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (single, shared) = (&report["shared"], &report["shared_tickets"]);
    assert!(single["zero_rtt_attempted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(single["zero_rtt_acceptance"], 1.0, "{report}");
    assert_eq!(shared["failed_requests"], 0, "{report}");
    assert_eq!(report["config"]["origin"], "rustls");

    let refused = h3fleet()
        .args(["bench", "--origin", "rustls", "--protocol", "h2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("HTTP/3 only"),
        "{stderr}"
    );
}
