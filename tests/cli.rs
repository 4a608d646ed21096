//! The `h3fleet` binary, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

fn h3fleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_h3fleet"))
}

#[test]
fn demo_shares_a_ticket_between_two_processes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:{}", dir.path().join("demo.db").display());
    let out = h3fleet().args(["demo", "--cache", &uri]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ticket_source: backend, same ticket: yes"),
        "{stdout}"
    );
}

#[test]
fn demo_uses_the_embedded_sqlite_file_under_xdg_cache_home() {
    let dir = tempfile::tempdir().unwrap();
    let out = h3fleet()
        .arg("demo")
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("h3fleet/cache.db").is_file());
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
