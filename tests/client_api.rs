//! reqwest's everyday surface on `Session`, against h3fleet's origin on
//! quinn's rustls server (HTTP/3) and on BoringSSL over TCP (HTTP/2): the
//! origin's `/echo` says what arrived, so each helper is checked on the
//! wire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use futures_util::StreamExt;
use h3fleet::redirect::Policy;
use h3fleet::server::{H3Origin, TcpOrigin};
use h3fleet::tls::TcpServerConfig;
use h3fleet::{HttpProtocol, Session};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use support::quic::TestPki;

/// An HTTP/3 and an HTTP/2 origin on one certificate.
struct Origins {
    pki: TestPki,
    h3: H3Origin,
    tcp: TcpOrigin,
}

impl Origins {
    fn start() -> Self {
        let pki = TestPki::new();
        let h3 = H3Origin::bind("127.0.0.1:0".parse().unwrap(), pki.rustls_crypto()).unwrap();
        let tls = TcpServerConfig::builder(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes())
            .build()
            .unwrap();
        let tcp = TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
        Self { pki, h3, tcp }
    }

    /// A session speaking `protocol`, and the base URL of its origin.
    fn session(
        &self,
        protocol: HttpProtocol,
        builder: impl FnOnce(h3fleet::SessionBuilder) -> h3fleet::SessionBuilder,
    ) -> (Session, String) {
        let port = match protocol {
            HttpProtocol::Http3 => self.h3.local_addr().unwrap().port(),
            _ => self.tcp.local_addr().port(),
        };
        let session = builder(
            Session::builder()
                .system_roots(false)
                .add_root_certificate_pem(self.pki.ca_pem.as_bytes())
                .protocol(protocol),
        )
        .build()
        .unwrap();
        (session, format!("https://localhost:{port}"))
    }
}

const PROTOCOLS: [HttpProtocol; 2] = [HttpProtocol::Http3, HttpProtocol::Http2];

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Order {
    item: String,
    count: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_go_out_with_their_content_type_and_come_back_typed() {
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let order = Order {
            item: "tea".into(),
            count: 3,
        };
        let echo: Value = session
            .post(format!("{base}/echo"))
            .json(&order)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["method"], "POST", "{protocol:?}");
        assert_eq!(echo["headers"]["content-type"], "application/json");
        let sent: Order = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent, order);
        let not_json = session.get(format!("{base}/plain")).send().await.unwrap();
        let err = not_json.json::<Order>().await.unwrap_err();
        assert!(
            err.is_decode() && err.url().is_some_and(|u| u.path() == "/plain"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_form_auth_and_headers_arrive_as_reqwest_sends_them() {
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b.user_agent("fleet-test/1"));
        let url = url::Url::parse(&format!("{base}/echo?a=1")).unwrap();
        let mut extra = HeaderMap::new();
        extra.insert("x-one", HeaderValue::from_static("1"));
        let form = BTreeMap::from([("name", "a b&c"), ("lang", "fr")]);
        let echo: Value = session
            .put(&url)
            .query(&[("q", "x y"), ("n", "2")])
            .form(&form)
            .basic_auth("alice", Some("s3cret"))
            .headers(extra)
            .header(header::ACCEPT, "text/plain")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["method"], "PUT");
        assert_eq!(echo["query"], "a=1&q=x+y&n=2", "{protocol:?}");
        assert_eq!(echo["body"], "lang=fr&name=a+b%26c");
        assert_eq!(
            echo["headers"]["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(echo["headers"]["authorization"], "Basic YWxpY2U6czNjcmV0");
        assert_eq!(echo["headers"]["x-one"], "1");
        assert_eq!(echo["headers"]["accept"], "text/plain");
        assert_eq!(echo["headers"]["user-agent"], "fleet-test/1");
        let bearer: Value = session
            .delete(format!("{base}/echo"))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (
                bearer["method"].as_str(),
                bearer["headers"]["authorization"].as_str()
            ),
            (Some("DELETE"), Some("Bearer tok"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_headers_apply_unless_the_request_sets_the_name() {
    let origins = Origins::start();
    let mut defaults = HeaderMap::new();
    defaults.insert("x-team", HeaderValue::from_static("fleet"));
    defaults.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let (session, base) = origins.session(HttpProtocol::Http2, |b| b.default_headers(defaults));
    let echo: Value = session
        .get(format!("{base}/echo"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-team"], "fleet");
    assert_eq!(echo["headers"]["accept"], "text/html");
    assert!(echo["headers"]["user-agent"]
        .as_str()
        .unwrap()
        .starts_with("h3fleet/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_become_errors_only_when_asked() {
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let response = session.get(format!("{base}/status/503")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.error_for_status_ref().is_err());
        let err = response.error_for_status().unwrap_err();
        assert!(err.is_status(), "{err}");
        assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(session
            .get(format!("{base}/status/204"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .is_ok());
        let head = session.head(format!("{base}/plain")).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_chunk_by_chunk_with_their_length_known() {
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let response = session
            .patch(format!("{base}/echo"))
            .body("x".repeat(10))
            .send()
            .await
            .unwrap();
        let length = response.content_length();
        let mut stream = Box::pin(response.bytes_stream());
        let mut total = 0;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len();
        }
        assert_eq!(length, Some(total as u64), "{protocol:?}");
        let drip = session.get(format!("{base}/drip")).send().await.unwrap();
        let chunks: Vec<_> = drip.bytes_stream().collect().await;
        assert!(chunks.len() >= 2, "a drip arrives in pieces: {}", chunks.len());
    }
}

#[test]
fn invalid_values_are_errors_at_send_or_build_never_panics() {
    let bad_agent = Session::builder().user_agent("bad\nagent").build();
    assert!(bad_agent.is_err_and(|e| e.is_builder()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = Session::builder().build().unwrap();
        let err = session.get("not a url").send().await.unwrap_err();
        assert!(err.is_url(), "{err}");
        let err = session
            .get("https://example.invalid/")
            .header("bad name", "v")
            .send()
            .await
            .unwrap_err();
        assert!(err.is_builder(), "{err}");
        let not_a_map = session
            .get("https://example.invalid/")
            .query(&"scalar")
            .send()
            .await
            .unwrap_err();
        assert!(not_a_map.is_builder(), "{not_a_map}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_up_to_the_policy_and_each_hop_is_reported() {
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let response = session.get(format!("{base}/redirect/3")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{protocol:?}");
        assert_eq!(response.url().path(), "/redirect/0");
        let hops: Vec<_> = response
            .redirects()
            .iter()
            .map(|h| (h.url.path().to_owned(), h.status))
            .collect();
        assert_eq!(hops.len(), 3, "{hops:?}");
        assert!(hops.iter().all(|(_, s)| *s == StatusCode::FOUND));
        assert_eq!(hops[0].0, "/redirect/3");
        assert!(
            response.redirects()[1].tls.connection_reused,
            "later hops reuse the connection"
        );

        let (strict, _) = origins.session(protocol, |b| b.redirect(Policy::limited(2)));
        let err = strict.get(format!("{base}/redirect/3")).send().await.unwrap_err();
        assert!(err.is_redirect() && err.url().is_some(), "{err}");
        let (none, _) = origins.session(protocol, |b| b.redirect(Policy::none()));
        let first = none.get(format!("{base}/redirect/1")).send().await.unwrap();
        assert_eq!(
            (first.status(), first.headers()["location"].to_str().unwrap()),
            (StatusCode::FOUND, "/redirect/0")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_change_methods_as_browsers_do_and_keep_credentials_on_their_origin() {
    let origins = Origins::start();
    let tls = TcpServerConfig::builder(origins.pki.cert_pem.as_bytes(), origins.pki.key_pem.as_bytes())
        .build()
        .unwrap();
    let other = TcpOrigin::bind("127.0.0.1:0".parse().unwrap(), tls).unwrap();
    let (session, base) = origins.session(HttpProtocol::Http2, |b| b);
    let elsewhere = format!("https://localhost:{}/echo", other.local_addr().port());
    let hop = |to: &str, status: u16| {
        let to: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
        format!("{base}/redirect-to?url={to}&status={status}")
    };
    let send = |url: String| {
        let session = session.clone();
        async move {
            let response = session
                .post(url)
                .bearer_auth("secret")
                .json(&[1, 2])
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let see_other = send(hop(&elsewhere, 303)).await;
    assert_eq!(
        (see_other["method"].as_str(), see_other["body"].as_str()),
        (Some("GET"), Some(""))
    );
    assert!(
        see_other["headers"]["content-type"].is_null() && see_other["headers"]["authorization"].is_null()
    );
    let temporary = send(hop(&elsewhere, 307)).await;
    assert_eq!(
        (temporary["method"].as_str(), temporary["body"].as_str()),
        (Some("POST"), Some("[1,2]"))
    );
    assert!(
        temporary["headers"]["authorization"].is_null(),
        "credentials went to another origin"
    );
    let same_origin = send(hop("/echo", 308)).await;
    assert_eq!(same_origin["headers"]["authorization"], "Bearer secret");
    let found = send(hop("/echo", 302)).await;
    assert_eq!(found["method"], "GET", "302 turns POST into GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_content_coding_is_asked_for_and_decoded_as_it_streams() {
    let origins = Origins::start();
    let plain = h3fleet::server::plain_body();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let echo: Value = session
            .get(format!("{base}/echo"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            echo["headers"]["accept-encoding"], "gzip, br, zstd, deflate",
            "{protocol:?}"
        );
        for coding in ["gzip", "br", "zstd", "deflate"] {
            let response = session.get(format!("{base}/{coding}")).send().await.unwrap();
            assert!(
                response.headers().get("content-encoding").is_none(),
                "{coding}: the coding header goes"
            );
            assert_eq!(response.content_length(), None, "{coding}");
            assert_eq!(
                response.text().await.unwrap(),
                plain,
                "{coding} over {protocol:?}"
            );
            let cut = session
                .get(format!("{base}/corrupt/{coding}"))
                .send()
                .await
                .unwrap();
            let err = cut.bytes().await.unwrap_err();
            assert!(
                err.is_decode() && err.to_string().contains(coding),
                "{coding}: {err}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_decoding_gets_the_coded_bytes() {
    let origins = Origins::start();
    let (session, base) = origins.session(HttpProtocol::Http2, |b| {
        b.gzip(false).brotli(false).zstd(false).deflate(false)
    });
    let echo: Value = session
        .get(format!("{base}/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(echo["headers"]["accept-encoding"].is_null(), "{echo}");
    let raw = session.get(format!("{base}/gzip")).send().await.unwrap();
    assert_eq!(raw.headers()["content-encoding"], "gzip");
    let bytes = raw.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "the gzip magic, undecoded");
    let (only_br, _) = origins.session(HttpProtocol::Http2, |b| b.gzip(false).zstd(false).deflate(false));
    let echo: Value = only_br
        .get(format!("{base}/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["accept-encoding"], "br");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_middleware_stacks_on_a_session() {
    use tower::{Service as _, ServiceBuilder, ServiceExt as _};
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        let (session, base) = origins.session(protocol, |b| b);
        let mut service = ServiceBuilder::new()
            .timeout(std::time::Duration::from_secs(5))
            .concurrency_limit(2)
            .map_request(|mut request: http::Request<Vec<u8>>| {
                request
                    .headers_mut()
                    .insert("x-layer", HeaderValue::from_static("mapped"));
                request
            })
            .service(session.clone());
        let request = http::Request::post(format!("{base}/echo"))
            .body(b"from tower".to_vec())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        let echo: Value = response.json().await.unwrap();
        assert_eq!(
            (echo["body"].as_str(), echo["headers"]["x-layer"].as_str()),
            (Some("from tower"), Some("mapped"))
        );
        let by_ref = (&session).oneshot(
            http::Request::get(format!("{base}/status/418"))
                .body(Vec::<u8>::new())
                .unwrap(),
        );
        assert_eq!(
            by_ref.await.unwrap().status(),
            StatusCode::IM_A_TEAPOT,
            "{protocol:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_certificates_are_accepted_only_when_asked_and_never_reach_the_backend() {
    let origins = Origins::start();
    let backend: std::sync::Arc<dyn h3fleet::cache::SessionCacheBackend> =
        std::sync::Arc::new(h3fleet::cache::MemoryBackend::new());
    for protocol in PROTOCOLS {
        let port = match protocol {
            HttpProtocol::Http3 => origins.h3.local_addr().unwrap().port(),
            _ => origins.tcp.local_addr().port(),
        };
        let url = format!("https://localhost:{port}/");
        // Trusting nothing, a verifying session refuses the origin...
        let verifying = Session::builder()
            .system_roots(false)
            .protocol(protocol)
            .session_cache(std::sync::Arc::clone(&backend), None)
            .build()
            .unwrap();
        let refused = verifying.get(&url).send().await.unwrap_err();
        assert!(refused.is_tls(), "{protocol:?}: {refused}");
        // ...and one that verifies nothing talks to it, twice...
        let careless = Session::builder()
            .system_roots(false)
            .protocol(protocol)
            .danger_accept_invalid_certs(true)
            .session_cache(std::sync::Arc::clone(&backend), None)
            .build()
            .unwrap();
        for _ in 0..2 {
            let response = careless.get(&url).send().await.unwrap();
            assert!(response.status().is_success(), "{protocol:?}");
            response.bytes().await.unwrap();
        }
        assert!(careless.close().await);
    }
    // ...without a single session reaching the fleet's store.
    assert_eq!(backend.list_keys("", 100).await.unwrap(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_bounds_each_silence_not_the_whole_response() {
    use std::time::Duration;
    let origins = Origins::start();
    for protocol in PROTOCOLS {
        // `/drip` sends five lines 100 ms apart: 500 ms in all, no gap of
        // 250 ms. Twice: on the new connection, then on the pooled one.
        let (session, base) = origins.session(protocol, |b| b.read_timeout(Duration::from_millis(250)));
        for _ in 0..2 {
            let body = session
                .get(format!("{base}/drip"))
                .send()
                .await
                .unwrap()
                .text()
                .await;
            assert_eq!(body.unwrap().lines().count(), 5, "{protocol:?}");
        }
        // `/slow` holds its head back 300 ms: on a new connection and on
        // an open one.
        let (session, base) = origins.session(protocol, |b| b.read_timeout(Duration::from_millis(100)));
        for attempt in ["new connection", "pooled connection"] {
            let stalled = session.get(format!("{base}/slow")).send().await.unwrap_err();
            assert!(stalled.is_timeout(), "{protocol:?}, {attempt}: {stalled}");
            let recovered = session.get(format!("{base}/")).send().await;
            assert!(
                recovered.unwrap().status().is_success(),
                "{protocol:?}, {attempt}"
            );
        }
        // A gap of 100 ms in the body is too long for 30 ms.
        let (session, base) = origins.session(protocol, |b| b.read_timeout(Duration::from_millis(30)));
        let response = session.get(format!("{base}/drip")).send().await;
        let failed = match response {
            Ok(response) => response.bytes().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(failed.is_timeout(), "{protocol:?}: {failed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_starts_counting_once_connected() {
    use std::time::Duration;
    let origins = Origins::start();
    // 200 ms a round trip: connecting takes one (and more), the answer one
    // more. A 300 ms read timeout covers the answer, not both.
    let relay =
        h3fleet::server::LatencyRelay::start(origins.h3.local_addr().unwrap(), Duration::from_millis(200))
            .await
            .unwrap();
    let port = relay.addr().port();
    let (session, _) = origins.session(HttpProtocol::Http3, |b| {
        b.read_timeout(Duration::from_millis(300))
            .resolve("localhost", port, &["127.0.0.1".parse().unwrap()])
    });
    let started = std::time::Instant::now();
    let response = session.get(format!("https://localhost:{port}/")).send().await;
    let took = started.elapsed();
    assert!(response.is_ok(), "after {took:?}: {:?}", response.err());
    assert!(
        took > Duration::from_millis(300),
        "the relay added no delay: {took:?}"
    );
}
