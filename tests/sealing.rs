//! The store as an attacker would use it, on a real `redis-server`: a
//! session planted under a host's key sends every replica to an impostor
//! when values are not sealed, and is refused, deleted and reported when
//! they are; sealed entries do not move between keys; keys rotate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use h3fleet::cache::{
    backend_from_uri, CacheKeys, Envelope, ErrorCallback, KeyFormat, Protocol, SessionCacheBackend,
    TlsSessionState,
};
use h3fleet::server::{H3Origin, LatencyRelay};
use h3fleet::{Session, SessionBuilder};
use support::quic::TestPki;
use support::redis::RedisServer;

const KEY_ONE: &str = "one AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_TWO: &str = "two HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

fn keys(lines: &[&str]) -> CacheKeys {
    CacheKeys::parse(&lines.join("\n")).unwrap()
}

fn h3_key(port: u16) -> String {
    KeyFormat::default().session(None, "default", Protocol::H3, "localhost", port)
}

/// A session for `https://localhost:port` trusting only `pki`, with `name`
/// resolving to `addr`.
fn client(
    pki: &TestPki,
    port: u16,
    addr: SocketAddr,
    backend: &Arc<dyn SessionCacheBackend>,
) -> SessionBuilder {
    Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .resolve("localhost", port, &[addr.ip()])
        .session_cache(Arc::clone(backend), None)
        .http3_only()
}

/// Records the operations the error callback hears about.
fn recorder() -> (ErrorCallback, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let callback: ErrorCallback = Arc::new(move |op: &str, _key: &str, _e: &_| {
        sink.lock().unwrap().push(op.to_owned());
    });
    (callback, seen)
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The leaf and CA certificates, DER.
fn certs(pki: &TestPki) -> [Vec<u8>; 2] {
    [der(&pki.cert_pem), der(&pki.ca_pem)]
}

/// A real and an impostor PKI whose certificates have the same DER lengths
/// (ECDSA signatures and serials vary by a byte or two), so one can be put
/// in place of the other inside a serialised session. Any two of a batch
/// that match will do: waiting for a match to one fixed PKI fails now and
/// then when that one's lengths happen to be rare.
fn matching_pkis() -> (TestPki, TestPki) {
    let lengths = |pki: &TestPki| certs(pki).map(|c| c.len());
    let mut seen: std::collections::HashMap<[usize; 2], TestPki> = std::collections::HashMap::new();
    for _ in 0..2000 {
        let pki = TestPki::new();
        let key = lengths(&pki);
        if let Some(real) = seen.remove(&key) {
            return (real, pki);
        }
        seen.insert(key, pki);
    }
    panic!("no two of 2000 test PKIs have certificates of the same lengths");
}

/// What an attacker with write access stores: the impostor's session (its
/// secret known to the impostor) with the real server's public certificate
/// put in place of the impostor's, so that re-verifying the chain a stored
/// session carries passes. Only sealing stops this.
fn carrying_chain_of(won: &TlsSessionState, impostor: &TestPki, real: &TestPki) -> TlsSessionState {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut envelope = Envelope::decode(&b64.decode(&won.state).unwrap()).unwrap();
    let mut replaced = 0;
    for (fake, genuine) in certs(impostor).iter().zip(certs(real).iter()) {
        // A session may hold a certificate more than once (the peer, the
        // chain): every copy is replaced.
        while let Some(at) = envelope
            .session
            .windows(fake.len())
            .position(|w| w == fake.as_slice())
        {
            envelope.session[at..at + fake.len()].copy_from_slice(genuine);
            replaced += 1;
        }
    }
    assert!(
        replaced >= 1,
        "the session carries none of the impostor's certificates"
    );
    TlsSessionState {
        state: b64.encode(envelope.encode().unwrap()),
        ..won.clone()
    }
}

/// The real origin for `localhost` on 127.0.0.1:P, an impostor with its
/// own certificate reached (as after a spoofed DNS answer) at 127.0.0.2:P,
/// and the impostor's ticket, won by a client that trusts it, planted in
/// Redis under the real origin's key, crafted to carry the real chain.
struct Attack {
    real_pki: TestPki,
    _real: H3Origin,
    impostor: H3Origin,
    _spoofed: LatencyRelay,
    port: u16,
    redis: RedisServer,
    backend: Arc<dyn SessionCacheBackend>,
}

impl Attack {
    async fn plant() -> Self {
        let (real_pki, impostor_pki) = matching_pkis();
        let real = H3Origin::bind("127.0.0.1:0".parse().unwrap(), real_pki.rustls_crypto()).unwrap();
        let port = real.local_addr().unwrap().port();
        let impostor = H3Origin::bind("127.0.0.1:0".parse().unwrap(), impostor_pki.rustls_crypto()).unwrap();
        let impostor_addr = impostor.local_addr().unwrap();
        let spoofed = LatencyRelay::start_at(
            SocketAddr::from(([127, 0, 0, 2], port)),
            impostor_addr,
            Duration::from_millis(2),
        )
        .await
        .unwrap();
        let redis = RedisServer::start();
        let backend = backend_from_uri(&redis.uri()).unwrap();
        // The attacker: no keys, trusts the impostor, wins its ticket.
        let attacker = client(&impostor_pki, impostor_addr.port(), impostor_addr, &backend)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/attacker", impostor_addr.port());
        attacker.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(attacker.close().await);
        let won = backend
            .get(&h3_key(impostor_addr.port()))
            .await
            .unwrap()
            .expect("a ticket");
        let crafted = carrying_chain_of(&won, &impostor_pki, &real_pki);
        backend
            .put(&h3_key(port), &crafted, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(impostor.stats().requests(), 1);
        Self {
            real_pki,
            _real: real,
            impostor,
            _spoofed: spoofed,
            port,
            redis,
            backend,
        }
    }

    /// A victim replica: trusts only the real certificate, sent to the
    /// impostor's address.
    fn victim(&self) -> SessionBuilder {
        client(
            &self.real_pki,
            self.port,
            SocketAddr::from(([127, 0, 0, 2], self.port)),
            &self.backend,
        )
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/victim", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_a_planted_session_sends_replicas_to_an_impostor() {
    let attack = Attack::plant().await;
    // Without the planted entry the victim refuses the impostor...
    let fresh = client(
        &attack.real_pki,
        attack.port,
        SocketAddr::from(([127, 0, 0, 2], attack.port)),
        &(Arc::new(h3fleet::cache::MemoryBackend::new()) as Arc<dyn SessionCacheBackend>),
    )
    .build()
    .unwrap();
    let refused = fresh.get(attack.url()).send().await.unwrap_err();
    assert!(refused.to_string().contains("certificate"), "{refused}");
    // ...but with it, the victim resumes with the impostor and no
    // certificate is checked: this is what the cache keys are for.
    let victim = attack.victim().build().unwrap();
    let response = victim.get(attack.url()).send().await.unwrap();
    assert!(response.tls().resumed, "{:?}", response.tls());
    assert_eq!(response.status(), 200);
    assert_eq!(attack.impostor.stats().requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_a_planted_session_is_refused_deleted_and_reported() {
    let attack = Attack::plant().await;
    let (on_error, seen) = recorder();
    let victim = attack
        .victim()
        .session_cache(Arc::clone(&attack.backend), Some(on_error))
        .cache_keys(keys(&[KEY_ONE]))
        .build()
        .unwrap();
    let err = victim.get(attack.url()).send().await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(
        attack.impostor.stats().requests(),
        1,
        "a request reached the impostor"
    );
    assert!(victim.close().await);
    assert!(seen.lock().unwrap().iter().any(|op| op == "decode"), "{seen:?}");
    assert_eq!(
        attack.backend.get(&h3_key(attack.port)).await.unwrap(),
        None,
        "not deleted"
    );
    drop(attack.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_unsealed_reopens_the_hole_while_set() {
    let attack = Attack::plant().await;
    let victim = attack
        .victim()
        .cache_keys(keys(&[KEY_ONE]))
        .accept_unsealed(true)
        .build()
        .unwrap();
    let response = victim.get(attack.url()).send().await.unwrap();
    assert!(response.tls().resumed);
    assert_eq!(attack.impostor.stats().requests(), 2);
}

/// A real origin and a Redis, for the sealed-entry tests.
struct Fleet {
    pki: TestPki,
    origin: H3Origin,
    _redis: RedisServer,
    backend: Arc<dyn SessionCacheBackend>,
}

impl Fleet {
    fn start() -> Self {
        let pki = TestPki::new();
        let origin = H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
        let redis = RedisServer::start();
        let backend = backend_from_uri(&redis.uri()).unwrap();
        Self {
            pki,
            origin,
            _redis: redis,
            backend,
        }
    }

    fn port(&self) -> u16 {
        self.origin.local_addr().unwrap().port()
    }

    /// One request from a new replica with `keys`; whether it resumed.
    async fn visit(&self, keys: CacheKeys, id: Option<&str>) -> bool {
        let mut builder = client(
            &self.pki,
            self.port(),
            self.origin.local_addr().unwrap(),
            &self.backend,
        )
        .cache_keys(keys);
        if let Some(id) = id {
            builder = builder.session_identifier(id);
        }
        let session = builder.build().unwrap();
        let url = format!("https://localhost:{}/", self.port());
        let response = session.get(&url).send().await.unwrap();
        let resumed = response.tls().resumed;
        response.bytes().await.unwrap();
        assert!(session.close().await);
        resumed
    }

    /// The id of the key that sealed the entry under `key`.
    async fn sealed_with(&self, key: &str) -> String {
        let state = self.backend.get(key).await.unwrap().expect("an entry");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(state.state)
            .unwrap();
        assert_eq!(&raw[..4], b"H3SL", "the entry is not sealed");
        let len = usize::from(raw[5]);
        String::from_utf8(raw[6..6 + len].to_vec()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_entry_does_not_open_under_another_host_or_identifier() {
    let fleet = Fleet::start();
    assert!(!fleet.visit(keys(&[KEY_ONE]), Some("alice")).await);
    assert!(
        fleet.visit(keys(&[KEY_ONE]), Some("alice")).await,
        "alice's own entry"
    );
    let alice =
        KeyFormat::default().session(Some("alice"), "default", Protocol::H3, "localhost", fleet.port());
    let entry = fleet.backend.get(&alice).await.unwrap().unwrap();
    for target in [
        KeyFormat::default().session(Some("bob"), "default", Protocol::H3, "localhost", fleet.port()),
        h3_key(fleet.port()),
    ] {
        fleet
            .backend
            .put(&target, &entry, Duration::from_secs(600))
            .await
            .unwrap();
    }
    assert!(
        !fleet.visit(keys(&[KEY_ONE]), Some("bob")).await,
        "bob resumed alice's entry"
    );
    assert!(!fleet.visit(keys(&[KEY_ONE]), None).await, "a moved entry opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_turning_the_fleet_cold() {
    let fleet = Fleet::start();
    let key = h3_key(fleet.port());
    assert!(!fleet.visit(keys(&[KEY_ONE]), None).await);
    assert_eq!(fleet.sealed_with(&key).await, "one");
    // The new key goes first: old entries still open, new ones use it.
    assert!(fleet.visit(keys(&[KEY_TWO, KEY_ONE]), None).await);
    assert_eq!(fleet.sealed_with(&key).await, "two");
    // Drop the new key's predecessor: an entry it sealed is a miss...
    assert!(
        !fleet.visit(keys(&[KEY_ONE]), None).await,
        "key one opened key two's entry"
    );
    assert_eq!(fleet.sealed_with(&key).await, "one");
    assert!(!fleet.visit(keys(&[KEY_TWO]), None).await);
    // ...and is replaced by one sealed with the key in use.
    assert_eq!(fleet.sealed_with(&key).await, "two");
    assert!(fleet.visit(keys(&[KEY_TWO]), None).await);
}
