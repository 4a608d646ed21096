//! Real QUIC interop on loopback between h3fleet's BoringSSL crypto layer
//! and quinn's standard rustls one, in both roles, including a session
//! exported by one OS process and resumed with 0-RTT by another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use h3fleet::cache::{CachedSession, Protocol, TlsSessionState};
use h3fleet::quic::{EarlyDataStatus, HandshakeData, QuicClientConfig};
use support::quic::{client_endpoint, echo, ticket_collector, EchoServer, TestPki};

fn handshake_data(conn: &quinn::Connection) -> HandshakeData {
    *conn
        .handshake_data()
        .expect("handshake data")
        .downcast::<HandshakeData>()
        .expect("h3fleet handshake data")
}

/// Starts a connection to `localhost` at `addr` from a fresh client endpoint.
fn start_connecting(tls: QuicClientConfig, addr: SocketAddr) -> quinn::Connecting {
    client_endpoint()
        .connect_with(quinn::ClientConfig::new(Arc::new(tls)), addr, "localhost")
        .unwrap()
}

async fn connect(tls: QuicClientConfig, addr: SocketAddr, name: &str) -> Result<quinn::Connection, String> {
    let endpoint = client_endpoint();
    let connecting = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(tls)), addr, name)
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// Connects with a ticket collector and returns the first ticket received.
async fn win_ticket(pki: &TestPki, addr: SocketAddr) -> CachedSession {
    let (sink, tickets) = ticket_collector();
    let conn = connect(pki.boring_client().on_ticket(sink), addr, "localhost")
        .await
        .unwrap();
    assert_eq!(echo(&conn, b"first").await.unwrap(), b"first");
    for _ in 0..500 {
        if let Some(t) = tickets.lock().unwrap().first() {
            return t.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server sent no session ticket within 5 s");
}

async fn full_handshake_echo_key_update_and_ticket(server: EchoServer, pki: &TestPki) {
    let (sink, tickets) = ticket_collector();
    let conn = connect(pki.boring_client().on_ticket(sink), server.addr(), "localhost")
        .await
        .unwrap();
    let data = handshake_data(&conn);
    assert!(!data.resumed);
    assert_eq!(data.protocol.as_deref(), Some(&b"h3"[..]));
    assert_eq!(data.early_data, EarlyDataStatus::NotAttempted);
    assert_eq!(echo(&conn, b"hello").await.unwrap(), b"hello");
    conn.force_key_update();
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(echo(&conn, &big).await.unwrap(), big, "echo after a key update");
    conn.force_key_update();
    assert_eq!(
        echo(&conn, b"again").await.unwrap(),
        b"again",
        "echo after a second key update"
    );
    for _ in 0..500 {
        if !tickets.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tickets = tickets.lock().unwrap();
    let ticket = tickets.first().expect("a session ticket was exported");
    assert!(ticket.envelope.early_data, "the server allows 0-RTT");
    assert!(!ticket.envelope.transport_params.is_empty());
    assert!(ticket.envelope.lifetime_secs > 0 && !ticket.ticket.is_empty());
    assert_eq!(ticket.envelope.alpn, b"h3");
}

#[tokio::test]
async fn our_client_full_handshake_echo_and_key_update_with_rustls_server() {
    let pki = TestPki::new();
    full_handshake_echo_key_update_and_ticket(EchoServer::start(pki.rustls_server()), &pki).await;
}

#[tokio::test]
async fn our_client_full_handshake_echo_and_key_update_with_our_server() {
    let pki = TestPki::new();
    let server = quinn::ServerConfig::with_crypto(Arc::new(pki.boring_server()));
    full_handshake_echo_key_update_and_ticket(EchoServer::start(server), &pki).await;
}

/// Exports a ticket here, resumes it in a child process, and returns what
/// the child printed.
async fn resume_in_another_process(server: EchoServer, pki: &TestPki) -> String {
    let ticket = win_ticket(pki, server.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, session) = (dir.path().join("ca.pem"), dir.path().join("session.json"));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    std::fs::write(
        &session,
        ticket.to_state(chrono::Utc::now()).unwrap().to_json().unwrap(),
    )
    .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child::resume_exported_session",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("H3FLEET_TEST_QUIC_ADDR", server.addr().to_string())
        .env("H3FLEET_TEST_QUIC_CA", &ca)
        .env("H3FLEET_TEST_QUIC_SESSION", &session)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_exported_here_resumes_with_0rtt_in_another_process_against_rustls() {
    let pki = TestPki::new();
    let out = resume_in_another_process(EchoServer::start(pki.rustls_server()), &pki).await;
    assert!(
        out.contains("RESULT resumed=true early_data=Accepted zero_rtt_echo=ok"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_exported_here_resumes_with_0rtt_in_another_process_against_our_server() {
    let pki = TestPki::new();
    let server = quinn::ServerConfig::with_crypto(Arc::new(pki.boring_server()));
    let out = resume_in_another_process(EchoServer::start(server), &pki).await;
    assert!(
        out.contains("RESULT resumed=true early_data=Accepted zero_rtt_echo=ok"),
        "{out}"
    );
}

mod child {
    use super::*;

    /// The second process: imports the session, sends data as 0-RTT.
    #[tokio::test]
    #[ignore = "a child process of the session_exported_here_* tests"]
    async fn resume_exported_session() {
        let (Ok(addr), Ok(ca), Ok(session)) = (
            std::env::var("H3FLEET_TEST_QUIC_ADDR"),
            std::env::var("H3FLEET_TEST_QUIC_CA"),
            std::env::var("H3FLEET_TEST_QUIC_SESSION"),
        ) else {
            eprintln!("runs only as a child of the session_exported_here_* tests");
            return;
        };
        let state = TlsSessionState::from_json("file", &std::fs::read(session).unwrap()).unwrap();
        let session = CachedSession::from_state(&state, Protocol::H3).unwrap();
        let tls = QuicClientConfig::builder()
            .system_roots(false)
            .add_root_certificates_pem(std::fs::read(ca).unwrap())
            .build()
            .unwrap()
            .with_session(Some(session));
        let connecting = start_connecting(tls, addr.parse().unwrap());
        let Ok((conn, accepted)) = connecting.into_0rtt() else {
            panic!("the imported ticket did not allow 0-RTT");
        };
        let echoed = echo(&conn, b"sent as 0-RTT").await.unwrap();
        let accepted = accepted.await;
        let data = handshake_data(&conn);
        println!(
            "RESULT resumed={} early_data={:?} zero_rtt_echo={}",
            data.resumed,
            data.early_data,
            if echoed == b"sent as 0-RTT" && accepted {
                "ok"
            } else {
                "failed"
            }
        );
    }
}

async fn resume_against(
    server: EchoServer,
    ticket: CachedSession,
    pki: &TestPki,
) -> (quinn::Connection, bool, bool) {
    let tls = pki.boring_client().with_session(Some(ticket));
    let connecting = start_connecting(tls, server.addr());
    let (conn, accepted) = connecting
        .into_0rtt()
        .unwrap_or_else(|_| panic!("0-RTT was not offered"));
    let zero_rtt_echo = echo(&conn, b"early").await.is_ok_and(|e| e == b"early");
    let accepted = accepted.await;
    // Whatever happened to 0-RTT, the connection works at 1-RTT.
    assert_eq!(echo(&conn, b"after").await.unwrap(), b"after");
    drop(server);
    (conn, accepted, zero_rtt_echo)
}

#[tokio::test]
async fn zero_rtt_rejected_after_context_change_completes_at_1rtt_and_is_reported() {
    let pki = TestPki::new();
    let config = pki.boring_server();
    let first = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(config.clone())));
    let ticket = win_ticket(&pki, first.addr()).await;
    // Same ticket keys, different early-data context: resumption, no 0-RTT.
    let changed = config.with_early_data_context(b"rotated".to_vec());
    let second = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(changed)));
    let (conn, accepted, zero_rtt_echo) = resume_against(second, ticket, &pki).await;
    assert!(!accepted && !zero_rtt_echo, "0-RTT should have been rejected");
    let data = handshake_data(&conn);
    assert!(data.resumed, "the session itself still resumes");
    assert_eq!(data.early_data, EarlyDataStatus::Rejected);
    assert_ne!(data.early_data_reason, "accepted");
}

#[tokio::test]
async fn zero_rtt_rejected_by_server_with_early_data_off_completes_at_1rtt() {
    let pki = TestPki::new();
    let config = pki.boring_server();
    let first = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(config.clone())));
    let ticket = win_ticket(&pki, first.addr()).await;
    let off = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(
        config.with_early_data(false),
    )));
    let (conn, accepted, _) = resume_against(off, ticket, &pki).await;
    assert!(!accepted);
    assert_eq!(handshake_data(&conn).early_data, EarlyDataStatus::Rejected);
}

#[tokio::test]
async fn zero_rtt_accepted_in_process_against_our_server() {
    let pki = TestPki::new();
    let config = pki.boring_server();
    let server = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(config)));
    let ticket = win_ticket(&pki, server.addr()).await;
    let (conn, accepted, zero_rtt_echo) = resume_against(server, ticket, &pki).await;
    assert!(accepted && zero_rtt_echo);
    let data = handshake_data(&conn);
    assert!(data.resumed);
    assert_eq!(
        (data.early_data, data.early_data_reason),
        (EarlyDataStatus::Accepted, "accepted")
    );
}

#[tokio::test]
async fn rustls_client_handshakes_and_echoes_with_our_server() {
    let pki = TestPki::new();
    let server = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(pki.boring_server())));
    let endpoint = client_endpoint();
    let conn = endpoint
        .connect_with(pki.rustls_client(), server.addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    assert_eq!(echo(&conn, b"interop").await.unwrap(), b"interop");
    let big = vec![7u8; 300_000];
    assert_eq!(echo(&conn, &big).await.unwrap(), big);
}

#[tokio::test]
async fn corrupt_or_truncated_session_falls_back_to_a_full_handshake() {
    let pki = TestPki::new();
    let server = EchoServer::start(pki.rustls_server());
    let ticket = win_ticket(&pki, server.addr()).await;
    let mut truncated = ticket.clone();
    truncated
        .envelope
        .session
        .truncate(ticket.envelope.session.len() / 2);
    let mut garbage = ticket.clone();
    garbage.envelope.session = vec![0x30; 64];
    for broken in [truncated, garbage] {
        let tls = pki.boring_client().with_session(Some(broken));
        let connecting = start_connecting(tls, server.addr());
        let connecting = match connecting.into_0rtt() {
            Ok(_) => panic!("a broken session offered 0-RTT"),
            Err(connecting) => connecting,
        };
        let conn = connecting.await.unwrap();
        assert!(!handshake_data(&conn).resumed);
        assert_eq!(echo(&conn, b"full").await.unwrap(), b"full");
    }
    // The stored form of a truncated state is an error, not a panic.
    let mut state = ticket.to_state(chrono::Utc::now()).unwrap();
    state.state.truncate(state.state.len() / 2);
    assert!(CachedSession::from_state(&state, Protocol::H3).is_err());
}

/// Connecting as `name` with `client` fails, and the error says why.
async fn assert_verification_fails(client: QuicClientConfig, server: &EchoServer, name: &str) {
    let err = connect(client, server.addr(), name).await.unwrap_err();
    assert!(err.contains("certificate verification"), "{err}");
}

#[tokio::test]
async fn wrong_server_name_fails_with_a_clear_error() {
    let pki = TestPki::new();
    let server = EchoServer::start(pki.rustls_server());
    assert_verification_fails(pki.boring_client(), &server, "wrong.example").await;
}

#[tokio::test]
async fn untrusted_certificate_fails_with_a_clear_error() {
    let pki = TestPki::new();
    let server = EchoServer::start(pki.rustls_server());
    assert_verification_fails(TestPki::new().boring_client(), &server, "localhost").await;
}

#[tokio::test]
async fn ip_literal_server_name_is_verified_against_the_ip_san() {
    let pki = TestPki::new();
    let server = EchoServer::start(pki.rustls_server());
    let conn = connect(pki.boring_client(), server.addr(), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(echo(&conn, b"ip").await.unwrap(), b"ip");
    assert_verification_fails(pki.boring_client(), &server, "127.0.0.2").await;
}

#[tokio::test]
async fn ech_config_is_offered_and_accepted_by_our_server() {
    let pki = TestPki::new();
    let keys = Arc::new(h3fleet::tls::EchKeys::generate("public.example").unwrap());
    let config = h3fleet::quic::QuicServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
        .ech_keys(Arc::clone(&keys))
        .build()
        .unwrap();
    let server = EchoServer::start(quinn::ServerConfig::with_crypto(Arc::new(config)));
    let with_ech = pki
        .boring_client()
        .with_ech_config_list(Some(keys.config_list().to_vec()));
    let conn = connect(with_ech, server.addr(), "localhost").await.unwrap();
    assert!(handshake_data(&conn).ech_accepted, "ECH was not accepted");
    assert_eq!(echo(&conn, b"hidden name").await.unwrap(), b"hidden name");
    let without = connect(pki.boring_client(), server.addr(), "localhost")
        .await
        .unwrap();
    assert!(!handshake_data(&without).ech_accepted);
}
