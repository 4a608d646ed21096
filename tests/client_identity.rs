//! Client certificates (`SessionBuilder::identity`), against origins on
//! rustls that ask for one: hyper on tokio-rustls over TCP, quinn over
//! QUIC. A session won with a certificate resumes its authentication, so
//! its tickets must never reach a client without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use h3fleet::cache::{backend_from_uri, SessionCacheBackend};
use h3fleet::server::H3Origin;
use h3fleet::tls::Identity;
use h3fleet::{HttpProtocol, Session};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::quic::TestPki;
use support::tcp::{Flavor, TcpOrigin};

/// A client CA and a certificate it issued for client authentication.
struct ClientPki {
    ca_pem: String,
    /// The certificate, then its key.
    identity_pem: String,
    other_key_pem: String,
}

impl ClientPki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "h3fleet client CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "replica-7");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca).unwrap();
        Self {
            ca_pem: ca.pem(),
            identity_pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            other_key_pem: KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(self.identity_pem.as_bytes()).unwrap()
    }
}

fn session(
    pki: &TestPki,
    protocol: HttpProtocol,
    backend: &Arc<dyn SessionCacheBackend>,
    identity: Option<Identity>,
) -> Session {
    let mut builder = Session::builder()
        .system_roots(false)
        .add_root_certificate_pem(pki.ca_pem.as_bytes())
        .protocol(protocol)
        .session_cache(Arc::clone(backend), None);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

/// The origin's answer and whether the connection resumed.
async fn fetch(session: &Session, url: &str) -> (String, bool) {
    let response = session.get(url).send().await.unwrap();
    let resumed = response.tls().resumed;
    let text = response.text().await.unwrap();
    session.close().await;
    (text, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_won_with_a_certificate_are_never_offered_without_it() {
    let pki = TestPki::new();
    let client = ClientPki::new();
    let origin = TcpOrigin::start_asking(&pki, Flavor::Modern, Some(&client.ca_pem)).await;
    let url = format!("https://localhost:{}/", origin.addr().port());
    let backend: Arc<dyn SessionCacheBackend> = backend_from_uri("memory:").unwrap();

    let (text, resumed) = fetch(
        &session(&pki, HttpProtocol::Http2, &backend, Some(client.identity())),
        &url,
    )
    .await;
    assert!(text.ends_with("client-cert: yes\n") && !resumed, "{text}");
    // Another replica with the same certificate resumes the first one's session.
    let (text, resumed) = fetch(
        &session(&pki, HttpProtocol::Http2, &backend, Some(client.identity())),
        &url,
    )
    .await;
    assert!(text.ends_with("client-cert: yes\n") && resumed, "{text}");
    // One without it must not: resuming would authenticate it as replica-7.
    let (text, resumed) = fetch(&session(&pki, HttpProtocol::Http2, &backend, None), &url).await;
    assert!(text.ends_with("client-cert: no\n") && !resumed, "{text}");

    let keys = backend.list_keys("", 100).await.unwrap();
    let identity = client.identity();
    let tag = &identity.fingerprint()[..32];
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys.iter()
            .filter(|k| k.contains(&format!("default@{tag}:h2:")))
            .count(),
        1,
        "{keys:?}"
    );
}

/// A quinn origin on rustls that refuses clients without a certificate
/// from `client_ca`.
fn h3_origin_requiring(pki: &TestPki, client_ca: &str) -> H3Origin {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client_ca.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), Arc::clone(&provider))
            .build()
            .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    H3Origin::bind("127.0.0.1:0".parse().unwrap(), Arc::new(crypto)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_presents_the_certificate_to_an_origin_that_requires_one() {
    let pki = TestPki::new();
    let client = ClientPki::new();
    let origin = h3_origin_requiring(&pki, &client.ca_pem);
    let url = format!("https://localhost:{}/", origin.local_addr().unwrap().port());
    let backend: Arc<dyn SessionCacheBackend> = backend_from_uri("memory:").unwrap();
    let with = session(&pki, HttpProtocol::Http3, &backend, Some(client.identity()));
    let response = with.get(&url).send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.version()),
        (200, http::Version::HTTP_3)
    );
    drop(response);
    with.close().await;
    // Without it the origin refuses the handshake: so the certificate was sent.
    let without = session(&pki, HttpProtocol::Http3, &backend, None);
    let refused = without.get(&url).send().await.unwrap_err();
    assert!(refused.is_tls() || refused.is_connect(), "{refused}");
}

#[test]
fn an_identity_needs_a_certificate_and_its_own_key() {
    let client = ClientPki::new();
    let identity = client.identity();
    assert_eq!(identity.fingerprint().len(), 64);
    assert!(!format!("{identity:?}").contains("PRIVATE"));
    let cert_only = client
        .identity_pem
        .split("-----BEGIN PRIVATE KEY-----")
        .next()
        .unwrap();
    assert!(Identity::from_pem(cert_only.as_bytes()).is_err());
    let wrong_key = format!("{cert_only}{}", client.other_key_pem);
    let err = Identity::from_pem(wrong_key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("not the certificate's"), "{err}");
    assert!(Identity::from_pem(client.other_key_pem.as_bytes()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_sends_the_certificate_of_cert_and_key_and_refuses_a_mismatch_with_58() {
    let pki = TestPki::new();
    let client = ClientPki::new();
    let origin = TcpOrigin::start_asking(&pki, Flavor::Modern, Some(&client.ca_pem)).await;
    let port = origin.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ca = path("ca.pem", &pki.ca_pem);
    let (cert_only, key) = client
        .identity_pem
        .split_at(client.identity_pem.find("-----BEGIN PRIVATE KEY").unwrap());
    let both = path("both.pem", &client.identity_pem);
    let cert = path("cert.pem", cert_only);
    let key = path("key.pem", key);
    let wrong = path("wrong.pem", &client.other_key_pem);
    let get = |flags: Vec<String>| {
        let url = format!("https://localhost:{port}/");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let ca = ca.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_h3fleet"))
                .args([
                    "get",
                    &url,
                    "--cache",
                    "none",
                    "--http2",
                    "--cacert",
                    &ca,
                    "--resolve",
                    &resolve,
                ])
                .args(flags)
                .output()
                .await
                .unwrap()
        }
    };
    let out = get(vec!["--cert".into(), both]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("client-cert: yes\n"),
        "{out:?}"
    );
    let out = get(vec!["-E".into(), cert.clone(), "--key".into(), key]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("client-cert: yes\n"),
        "{out:?}"
    );
    let out = get(vec![]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("client-cert: no\n"),
        "{out:?}"
    );
    let out = get(vec!["--cert".into(), cert, "--key".into(), wrong]).await;
    assert_eq!(out.status.code(), Some(58), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("PRIVATE KEY"));
}
