//! QUIC connections on loopback (handshake plus one request/response): h3fleet's BoringSSL client (full, resumed,
//! resumed with 0-RTT) against quinn's rustls client as the reference, and
//! time to the first response through a relay that adds a 40 ms RTT.
//!
//! `cargo bench --bench quic_handshake`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use h3fleet::cache::CachedSession;
use h3fleet::quic::QuicClientConfig;
use h3fleet::server::LatencyRelay;
use support::quic::{client_endpoint, echo, EchoServer, TestPki};

/// The newest ticket of a server, used once and replaced by one the next
/// connection receives (rustls's stateful tickets are single-use).
#[derive(Clone, Default)]
struct LatestTicket(Arc<Mutex<Option<CachedSession>>>);

impl LatestTicket {
    fn config(&self, base: &QuicClientConfig, early_data: bool) -> QuicClientConfig {
        let mut ticket = self.0.lock().unwrap().take();
        if let Some(t) = ticket.as_mut() {
            t.envelope.early_data &= early_data;
        }
        let slot = Arc::clone(&self.0);
        base.with_session(ticket)
            .on_ticket(Arc::new(move |t, _| *slot.lock().unwrap() = Some(t)))
    }
}

/// Every variant does the same work: a handshake and one request/response
/// exchange (an echo), then closes. Returns the time from `connect` to the
/// response.
async fn full(endpoint: &quinn::Endpoint, config: quinn::ClientConfig, addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let conn = endpoint
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    echo(&conn, b"GET /").await.unwrap();
    let elapsed = started.elapsed();
    conn.close(0u32.into(), b"");
    elapsed
}

/// A resumed connection (with `zero_rtt`, the request leaves as early
/// data). Returns the time from `connect` to the response; waiting for the
/// next ticket afterwards is not counted.
async fn resumed(
    endpoint: &quinn::Endpoint,
    latest: &LatestTicket,
    base: &QuicClientConfig,
    addr: SocketAddr,
    zero_rtt: bool,
) -> Duration {
    let tls = latest.config(base, zero_rtt);
    let started = Instant::now();
    let connecting = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(tls)), addr, "localhost")
        .unwrap();
    let conn = if zero_rtt {
        let (conn, accepted) = connecting
            .into_0rtt()
            .unwrap_or_else(|_| panic!("0-RTT not offered"));
        echo(&conn, b"GET /").await.unwrap();
        assert!(accepted.await, "0-RTT rejected");
        conn
    } else {
        let conn = connecting.await.unwrap();
        echo(&conn, b"GET /").await.unwrap();
        conn
    };
    let elapsed = started.elapsed();
    let data = conn
        .handshake_data()
        .unwrap()
        .downcast::<h3fleet::quic::HandshakeData>()
        .unwrap();
    assert!(data.resumed, "the connection did not resume");
    wait_for_ticket(latest).await;
    conn.close(0u32.into(), b"");
    elapsed
}

async fn wait_for_ticket(latest: &LatestTicket) {
    for _ in 0..2000 {
        if latest.0.lock().unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("no new ticket within 2 s");
}

/// Makes `latest` hold a ticket from `addr` (a full handshake).
async fn seed(endpoint: &quinn::Endpoint, latest: &LatestTicket, base: &QuicClientConfig, addr: SocketAddr) {
    let tls = quinn::ClientConfig::new(Arc::new(latest.config(base, false)));
    let conn = endpoint
        .connect_with(tls, addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    wait_for_ticket(latest).await;
    conn.close(0u32.into(), b"");
}

/// The variants measured against one server address.
#[derive(Clone, Copy)]
enum Kind {
    FullOurs,
    FullRustls,
    Resumed,
    ZeroRtt,
}

struct Fixture {
    endpoint: quinn::Endpoint,
    ours: QuicClientConfig,
    theirs: quinn::ClientConfig,
}

impl Fixture {
    async fn run(&self, kind: Kind, latest: &LatestTicket, addr: SocketAddr, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += match kind {
                Kind::FullOurs => {
                    full(
                        &self.endpoint,
                        quinn::ClientConfig::new(Arc::new(self.ours.clone())),
                        addr,
                    )
                    .await
                }
                Kind::FullRustls => full(&self.endpoint, self.theirs.clone(), addr).await,
                Kind::Resumed => resumed(&self.endpoint, latest, &self.ours, addr, false).await,
                Kind::ZeroRtt => resumed(&self.endpoint, latest, &self.ours, addr, true).await,
            };
        }
        total
    }
}

fn bench_group(c: &mut Criterion, group_name: &str, rtt: Option<Duration>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let pki = TestPki::new();
    let rustls_server = EchoServer::start(pki.rustls_server());
    let our_server = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(pki.boring_server())));
    let fx = Fixture {
        endpoint: client_endpoint(),
        ours: pki.boring_client(),
        theirs: pki.rustls_client(),
    };
    let mut group = c.benchmark_group(group_name);
    if rtt.is_some() {
        group.sample_size(10).measurement_time(Duration::from_secs(5));
    }
    for (server, upstream) in [
        ("rustls_server", rustls_server.addr()),
        ("h3fleet_server", our_server.addr()),
    ] {
        let relay = rtt.map(|rtt| rt.block_on(LatencyRelay::start(upstream, rtt)).unwrap());
        let addr = relay.as_ref().map_or(upstream, LatencyRelay::addr);
        let latest = LatestTicket::default();
        let kinds = [
            ("full/h3fleet_client", Kind::FullOurs),
            ("full/rustls_client", Kind::FullRustls),
            ("resumed/h3fleet_client", Kind::Resumed),
            ("resumed_0rtt/h3fleet_client", Kind::ZeroRtt),
        ];
        for (name, kind) in kinds {
            if let Kind::Resumed = kind {
                // Just before use: rustls keeps a bounded store of sessions,
                // which the full handshakes above would have flushed.
                rt.block_on(seed(&fx.endpoint, &latest, &fx.ours, addr));
            }
            group.bench_function(format!("{name}/{server}"), |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| fx.run(kind, &latest, addr, iters))
            });
        }
    }
    group.finish();
}

/// On plain loopback: the CPU cost of each kind of connection.
fn loopback(c: &mut Criterion) {
    bench_group(c, "quic_connect_and_request", None);
}

/// Through a relay adding 40 ms of RTT: about 2 RTT for a full handshake
/// then a request, 1 RTT for a 0-RTT request when the server answers in
/// 0.5-RTT.
fn rtt_40ms(c: &mut Criterion) {
    bench_group(
        c,
        "quic_connect_and_request_rtt40ms",
        Some(Duration::from_millis(40)),
    );
}

criterion_group!(benches, loopback, rtt_40ms);
criterion_main!(benches);
