//! The metrics h3fleet emits, read back through a real `metrics` recorder
//! (metrics-util's debugging recorder, installed for this test binary).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use h3fleet::cache::{MemoryBackend, SessionCacheBackend};
use h3fleet::server::{H3Origin, LatencyRelay};
use h3fleet::{telemetry, Session};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use support::quic::TestPki;

/// One recorded metric: name, labels, value.
type Metric = (String, Vec<(String, String)>, DebugValue);

/// The value of counter `name` whose labels include all of `want`.
fn counter(snapshot: &[Metric], name: &str, want: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, value)| match value {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_backend_calls_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let pki = TestPki::new();
    let origin = H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
    // 0-RTT needs the request written before the handshake completes; the
    // relay's round trip keeps a loaded machine from losing that race.
    let relay = LatencyRelay::start(origin.local_addr().unwrap(), std::time::Duration::from_millis(20))
        .await
        .unwrap();
    let port = relay.addr().port();
    let backend: Arc<dyn SessionCacheBackend> = Arc::new(MemoryBackend::new());
    let make = || {
        Session::builder()
            .system_roots(false)
            .add_root_certificate_pem(pki.ca_pem.as_bytes())
            .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
            .session_cache(Arc::clone(&backend), None)
            .http3_only()
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{port}/m");
    let first = make();
    first.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(first.close().await);
    let second = make();
    second.get(&url).send().await.unwrap().bytes().await.unwrap();

    let snapshot: Vec<Metric> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let full = [
        ("protocol", "h3"),
        ("handshake", "full"),
        ("ticket_source", "none"),
    ];
    assert_eq!(
        counter(&snapshot, telemetry::CONNECTIONS, &full),
        1,
        "{snapshot:?}"
    );
    let resumed = [
        ("handshake", "resumed"),
        ("ticket_source", "backend"),
        ("early_data", "accepted"),
    ];
    assert_eq!(
        counter(&snapshot, telemetry::CONNECTIONS, &resumed),
        1,
        "{snapshot:?}"
    );
    assert!(
        counter(
            &snapshot,
            telemetry::BACKEND_OPS,
            &[("op", "get"), ("outcome", "ok")]
        ) >= 2
    );
    assert!(
        counter(
            &snapshot,
            telemetry::BACKEND_OPS,
            &[("op", "put"), ("outcome", "ok")]
        ) >= 1
    );
    assert!(snapshot
        .iter()
        .any(|(n, _, v)| n == telemetry::BACKEND_SECONDS
            && matches!(v, DebugValue::Histogram(h) if !h.is_empty())));
}
