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
