//! The client: [`Session`], its builder, requests and responses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::cache::{
    BreakerConfig, CacheHit, CacheOptions, CachedSession, CircuitBreaker, ErrorCallback,
    PersistableSessionCache, Protocol, SessionCacheBackend, TicketSource, MAX_GET_TIMEOUT,
};
use crate::dns::{parse_override, Resolver, Upstream};
use crate::ech::{self, EchCache, EchPolicy, EchSource, EchStatus};
use crate::error::Error;
use crate::http::h3::{Dial, H3Connection, OnReady, RequestStream, Tickets};
use crate::http::pool::{Opening, Pool, PoolKey};
use crate::http::select::{Known, ProtocolMemory};
use crate::http::tcp::{TcpConnection, TcpDial, TcpHttp};
use crate::http::Conn;
pub use crate::http::EarlyData;
use crate::http::EchOffered;
use crate::http::{is_replay_safe, PreparedRequest};
use crate::preset::Preset;
use crate::quic::QuicClientConfig;
use crate::telemetry;
use crate::tls::early_data::RetryFresh;
use crate::tls::{EchRejection, TcpClientConfig, TicketSink};
use http_body_util::BodyExt;

/// How long [`Session::close`] lets closed connections drain, so their
/// CONNECTION_CLOSE leaves before the process may exit. Short: the frame
/// leaves at once; the rest of draining is only the peer's retransmissions.
const CLOSE_DRAIN_WAIT: Duration = Duration::from_millis(50);

/// How long a QUIC attempt runs alone before TCP joins the race (as in
/// Happy Eyeballs; curl's default for the same race is 200 ms).
const DEFAULT_HEAD_START: Duration = Duration::from_millis(250);

/// How long retry configs from a server that rejected ECH are kept.
const ECH_RETRY_TTL: Duration = Duration::from_secs(3600);

/// The longest a connection waits for an origin's HTTPS record (ECH).
const HTTPS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// When a first request may be sent as 0-RTT early data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EarlyDataPolicy {
    /// Replay-safe requests only: `GET`, `HEAD` and `OPTIONS` without a
    /// body, unless a request opts in or out with
    /// [`RequestBuilder::early_data`]. Early data can be replayed by an
    /// attacker, so anything that changes state waits for the handshake.
    #[default]
    IdempotentOnly,
    /// Never: every request waits for the handshake.
    Never,
}

/// What TLS did for a response: resumption, early data, where the ticket
/// came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The connection resumed a session (no full handshake).
    pub resumed: bool,
    /// What happened to early data on this connection.
    pub early_data: EarlyData,
    /// Where the offered session came from (`None`: no session offered).
    pub ticket_source: Option<TicketSource>,
    /// From the start of the connection to a completed handshake.
    pub handshake_time: Duration,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The request reused an open connection (no handshake of its own).
    pub connection_reused: bool,
    /// The server answered the early request `425 Too Early`, and it was
    /// sent again after the handshake (RFC 8470).
    pub retried_too_early: bool,
    /// What happened to Encrypted Client Hello on the connection.
    pub ech: EchStatus,
    /// Where the ECH config came from (`None`: none was used).
    pub ech_source: Option<EchSource>,
}

impl TlsInfo {
    /// `local`, `backend` or `none`.
    pub fn ticket_source_str(&self) -> &'static str {
        match self.ticket_source {
            Some(TicketSource::Local) => "local",
            Some(TicketSource::Backend) => "backend",
            None => "none",
        }
    }
}

/// An HTTP client whose TLS session tickets are shared through a backend.
///
/// Cheap to clone (clones share connections, caches and settings). Create
/// and use it inside a Tokio runtime.
///
/// ## Behavior
///
/// - One QUIC connection per origin carries many requests; a connection
///   idle longer than [`SessionBuilder::idle_timeout`] is closed.
/// - Before a new connection, the session cache is asked for a ticket:
///   first this process's memory, then the backend, where any replica may
///   have put one. With a ticket that allows early data, a replay-safe first
///   request leaves in 0-RTT, with the ClientHello.
/// - A refused 0-RTT request is sent again after the handshake; a
///   `425 Too Early` answer to an early request likewise. The caller gets
///   one response either way; [`Response::tls`] says what happened.
/// - Every ticket the server sends is kept in memory and written to the
///   backend in the background. A ticket the server refused is deleted.
/// - A backend that is down, slow or holds garbage never fails a request:
///   the handshake is full and the error callback hears about it.
/// - [`close`](Self::close) waits (bounded) for tickets still on their way
///   and for pending backend writes. Call it before a short-lived process
///   exits.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use h3fleet::{cache::backend_from_uri, Session};
///
/// let backend = backend_from_uri("redis://10.0.0.5:6379")?;
/// let session = Session::builder().session_cache(backend, None).build()?;
/// let response = session.get("https://example.com/").send().await?;
/// println!("{} resumed={}", response.status(), response.tls().resumed);
/// println!("{}", response.text().await?);
/// session.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    preset: Preset,
    mode: HttpProtocol,
    caches: Caches,
    memory: ProtocolMemory,
    head_start: Duration,
    ech_policy: EchPolicy,
    ech: Arc<EchCache>,
    breaker: Option<Arc<CircuitBreaker>>,
    ech_configs: HashMap<(String, u16), Vec<u8>>,
    tls: QuicClientConfig,
    tcp_tls: TcpClientConfig,
    transport: Arc<quinn::TransportConfig>,
    resolver: Resolver,
    pool: Pool,
    v4: OnceCell<quinn::Endpoint>,
    v6: OnceCell<quinn::Endpoint>,
    early_data: EarlyDataPolicy,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    close_timeout: Duration,
}

/// Which HTTP versions a session speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpProtocol {
    /// HTTP/3 where the origin is known to speak it (a cached `Alt-Svc`, a
    /// race QUIC won), else a race in which QUIC gets a short head start
    /// over TCP (HTTP/2, or HTTP/1.1 if the server has no HTTP/2). What won
    /// is remembered per origin for a while. A QUIC attempt that fails or
    /// stalls falls back to TCP within the same request.
    #[default]
    Auto,
    /// HTTP/3 over QUIC only.
    Http3,
    /// HTTP/2 over TLS over TCP only (ALPN `h2`; a server without HTTP/2 is
    /// spoken to in HTTP/1.1).
    Http2,
    /// HTTP/1.1 over TLS over TCP only.
    Http1,
}

impl HttpProtocol {
    /// The ticket caches a TCP connection may resume from, in order.
    fn tcp_protocols(self) -> &'static [Protocol] {
        match self {
            Self::Http1 => &[Protocol::H1],
            Self::Http2 => &[Protocol::H2],
            Self::Auto | Self::Http3 => &[Protocol::H2, Protocol::H1],
        }
    }
}

/// How one request reaches its origin.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Open connections to reuse, by protocol, in order of preference.
    pooled: &'static [Protocol],
    open: Open,
}

/// How a new connection is made.
#[derive(Debug, Clone, Copy)]
enum Open {
    H3,
    Tcp,
    /// QUIC to `h3_port` first, TCP after the head start or QUIC's failure.
    /// `expected`: the origin was believed to speak HTTP/3.
    Race {
        h3_port: u16,
        expected: bool,
    },
}

/// One ticket cache per protocol, all on the same backend (the reference
/// design: a ticket never crosses protocols).
#[derive(Debug, Clone)]
struct Caches {
    h3: PersistableSessionCache,
    h2: PersistableSessionCache,
    h1: PersistableSessionCache,
}

impl Caches {
    fn new(options: &CacheOptions) -> Self {
        Self {
            h3: PersistableSessionCache::with_options(options.clone()),
            h2: PersistableSessionCache::with_options(options.clone()),
            h1: PersistableSessionCache::with_options(options.clone()),
        }
    }

    fn of(&self, protocol: Protocol) -> &PersistableSessionCache {
        match protocol {
            Protocol::H3 => &self.h3,
            Protocol::H2 => &self.h2,
            Protocol::H1 => &self.h1,
        }
    }

    fn all(&self) -> [&PersistableSessionCache; 3] {
        [&self.h3, &self.h2, &self.h1]
    }
}

/// Configures a [`Session`]. Errors are kept until [`build`](Self::build).
#[must_use]
pub struct SessionBuilder {
    preset: Result<Preset, Error>,
    mode: HttpProtocol,
    head_start: Duration,
    ech: EchPolicy,
    ech_configs: HashMap<(String, u16), Vec<u8>>,
    breaker: Option<BreakerConfig>,
    backend_get_timeout: Duration,
    backend: Option<(Arc<dyn SessionCacheBackend>, Option<ErrorCallback>)>,
    identifier: Option<String>,
    system_roots: bool,
    roots_pem: Vec<Vec<u8>>,
    early_data: EarlyDataPolicy,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    idle_timeout: Duration,
    close_timeout: Duration,
    overrides: Vec<String>,
    dns: Upstream,
}

impl std::fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("preset", &self.preset.as_ref().map(Preset::name).ok())
            .field("backend", &self.backend.as_ref().map(|(b, _)| b.name()))
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl Default for SessionBuilder {
    fn default() -> Self {
        Self {
            preset: Ok(Preset::default()),
            mode: HttpProtocol::default(),
            head_start: DEFAULT_HEAD_START,
            ech: EchPolicy::default(),
            ech_configs: HashMap::new(),
            breaker: Some(BreakerConfig::default()),
            backend_get_timeout: MAX_GET_TIMEOUT,
            backend: None,
            identifier: None,
            system_roots: true,
            roots_pem: Vec::new(),
            early_data: EarlyDataPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            idle_timeout: Duration::from_secs(90),
            close_timeout: Duration::from_secs(2),
            overrides: Vec::new(),
            dns: Upstream::System,
        }
    }
}

impl SessionBuilder {
    /// The client profile; its canonical name goes into cache keys.
    /// Default `"default"`.
    pub fn preset(mut self, name: &str) -> Self {
        self.preset = Preset::named(name);
        self
    }

    /// Which HTTP versions to speak. Default [`HttpProtocol::Auto`].
    pub fn protocol(mut self, protocol: HttpProtocol) -> Self {
        self.mode = protocol;
        self
    }

    /// Speaks HTTP/3 over QUIC only ([`HttpProtocol::Http3`]).
    pub fn http3_only(self) -> Self {
        self.protocol(HttpProtocol::Http3)
    }

    /// Speaks HTTP/2 over TLS over TCP only ([`HttpProtocol::Http2`]).
    pub fn http2_only(self) -> Self {
        self.protocol(HttpProtocol::Http2)
    }

    /// Speaks HTTP/1.1 over TLS over TCP only ([`HttpProtocol::Http1`]).
    pub fn http1_only(self) -> Self {
        self.protocol(HttpProtocol::Http1)
    }

    /// Whether to use Encrypted Client Hello. Default [`EchPolicy::Auto`]:
    /// ECH where the origin publishes a config (found in this process's
    /// cache, the backend, or the origin's DNS HTTPS record), GREASE
    /// elsewhere.
    pub fn ech(mut self, policy: EchPolicy) -> Self {
        self.ech = policy;
        self
    }

    /// The circuit breaker in front of the backend (on by default, with
    /// [`BreakerConfig::default`]); `None` turns it off. While the backend
    /// fails, the session runs on its local caches and probes the backend.
    pub fn circuit_breaker(mut self, config: Option<BreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// The longest a backend read may delay a new connection (default and
    /// maximum 5 s). On timeout the handshake is full.
    pub fn backend_get_timeout(mut self, limit: Duration) -> Self {
        self.backend_get_timeout = limit;
        self
    }

    /// Uses `config_list` (an ECHConfigList, as in a DNS HTTPS record's
    /// `ech` parameter) for `host:port` instead of looking one up. It is
    /// checked when the session is built.
    pub fn ech_config_list(mut self, host: &str, port: u16, config_list: impl Into<Vec<u8>>) -> Self {
        self.ech_configs
            .insert((host.to_ascii_lowercase(), port), config_list.into());
        self
    }

    /// With [`HttpProtocol::Auto`], how long a QUIC attempt runs alone
    /// before TCP is tried beside it. Default 250 ms.
    pub fn http3_head_start(mut self, head_start: Duration) -> Self {
        self.head_start = head_start;
        self
    }

    /// Shares tickets through `backend`; `on_error` hears about every
    /// backend failure (which never fails a request).
    pub fn session_cache(
        mut self,
        backend: Arc<dyn SessionCacheBackend>,
        on_error: Option<ErrorCallback>,
    ) -> Self {
        self.backend = Some((backend, on_error));
        self
    }

    /// Keeps this session's tickets apart from other identifiers' (one
    /// tenant, one user) on a shared backend.
    pub fn session_identifier(mut self, id: impl Into<String>) -> Self {
        self.identifier = Some(id.into());
        self
    }

    /// Also trusts the roots in `pem` (one or more PEM certificates).
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots_pem.push(pem.into());
        self
    }

    /// Whether to trust the system's CA bundle. Default true.
    pub fn system_roots(mut self, enabled: bool) -> Self {
        self.system_roots = enabled;
        self
    }

    /// When requests may go as 0-RTT early data. Default
    /// [`EarlyDataPolicy::IdempotentOnly`].
    pub fn early_data(mut self, policy: EarlyDataPolicy) -> Self {
        self.early_data = policy;
        self
    }

    /// The longest a connection set-up (lookup, handshake) may take.
    /// Default 10 s.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The longest a request may take, from sending it to the last byte of
    /// its body. Default none.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How long an unused connection stays open for reuse. Default 90 s.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// The longest [`Session::close`] waits for tickets and backend writes.
    /// Default 2 s.
    pub fn close_timeout(mut self, limit: Duration) -> Self {
        self.close_timeout = limit;
        self
    }

    /// Sends connections for `host:port` to `addrs` instead of looking the
    /// name up, like curl's `--resolve HOST:PORT:ADDR`. The certificate is
    /// still checked against `host`.
    pub fn resolve(mut self, host: &str, port: u16, addrs: &[IpAddr]) -> Self {
        let list: Vec<String> = addrs.iter().map(|a| format!("[{a}]")).collect();
        self.overrides.push(format!("{host}:{port}:{}", list.join(",")));
        self
    }

    /// A curl-style `HOST:PORT:ADDR` override (checked at build).
    pub fn resolve_spec(mut self, spec: impl Into<String>) -> Self {
        self.overrides.push(spec.into());
        self
    }

    /// Looks names up at this DNS server instead of the system's.
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.dns = Upstream::Server(addr);
        self
    }

    /// Builds the session.
    ///
    /// # Errors
    ///
    /// An unknown preset, an unreadable root certificate, a malformed
    /// override.
    pub fn build(self) -> Result<Session, Error> {
        let preset = self.preset?;
        for ((host, port), list) in &self.ech_configs {
            ech::validate_ech_config_list(list)
                .map_err(|e| Error::Config(format!("the ECH config for {host}:{port}: {e}")))?;
        }
        let mut tls = QuicClientConfig::builder()
            .alpn_protocols(preset.alpn().iter().copied())
            .system_roots(self.system_roots);
        let tcp_alpn: &[&[u8]] = match self.mode {
            HttpProtocol::Http1 => &[b"http/1.1"],
            HttpProtocol::Http2 => &[b"h2"],
            HttpProtocol::Auto | HttpProtocol::Http3 => &[b"h2", b"http/1.1"],
        };
        let mut tcp_tls = TcpClientConfig::builder()
            .alpn_protocols(tcp_alpn.iter().copied())
            .system_roots(self.system_roots);
        for pem in self.roots_pem {
            tls = tls.add_root_certificates_pem(pem.clone());
            tcp_tls = tcp_tls.add_root_certificates_pem(pem);
        }
        let tls = tls.build()?;
        let tcp_tls = tcp_tls.build()?;
        let mut overrides = HashMap::new();
        for spec in &self.overrides {
            let (key, ips) = parse_override(spec).ok_or_else(|| {
                Error::Config(format!(
                    "resolve override {spec:?} is not HOST:PORT:ADDR[,ADDR...]"
                ))
            })?;
            overrides.insert(key, ips);
        }
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(Some(
                preset
                    .quic_idle_timeout()
                    .try_into()
                    .map_err(|_| Error::Config("QUIC idle timeout out of range".into()))?,
            ))
            .keep_alive_interval(preset.quic_keep_alive());
        let options = CacheOptions {
            get_timeout: self.backend_get_timeout.min(MAX_GET_TIMEOUT),
            ..CacheOptions::default()
        };
        let caches = Caches::new(&options);
        let ech = Arc::new(EchCache::new(None, preset.name(), None));
        let protocols = [Protocol::H3, Protocol::H2, Protocol::H1];
        let mut breaker = None;
        match (&self.backend, &self.breaker) {
            // Behind a breaker: it attaches the backend and takes it away
            // while the backend fails.
            (Some((backend, on_error)), Some(config)) => {
                let b = CircuitBreaker::new(Arc::clone(backend), config.clone(), on_error.clone());
                for (cache, protocol) in caches.all().into_iter().zip(protocols) {
                    b.manage(cache, preset.name(), protocol);
                }
                ech.set_error_callback(Some(b.error_callback()));
                let ech_cache = Arc::clone(&ech);
                b.attach(Box::new(move |backend| ech_cache.set_backend(backend)));
                breaker = Some(b);
            }
            (Some((backend, on_error)), None) => {
                for (cache, protocol) in caches.all().into_iter().zip(protocols) {
                    cache.set_backend(
                        Some(Arc::clone(backend)),
                        preset.name(),
                        protocol,
                        on_error.clone(),
                    );
                }
                ech.set_error_callback(on_error.clone());
                ech.set_backend(Some(Arc::clone(backend)));
            }
            (None, _) => {}
        }
        if let Some(id) = &self.identifier {
            for cache in caches.all() {
                cache.set_session_identifier(id.clone());
            }
        }
        Ok(Session {
            inner: Arc::new(Inner {
                mode: self.mode,
                memory: ProtocolMemory::default(),
                head_start: self.head_start,
                ech_policy: self.ech,
                ech_configs: self.ech_configs,
                ech,
                breaker,
                caches,
                tls,
                tcp_tls,
                transport: Arc::new(transport),
                resolver: Resolver::new(self.dns, overrides),
                pool: Pool::new(self.idle_timeout),
                v4: OnceCell::new(),
                v6: OnceCell::new(),
                early_data: self.early_data,
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                close_timeout: self.close_timeout,
                preset,
            }),
        })
    }
}

impl Session {
    /// A builder with the defaults: preset `default`, system roots, no
    /// backend (tickets stay in this process), replay-safe 0-RTT.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// A `GET` request.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder {
            session: self.clone(),
            method,
            url: url.to_owned(),
            headers: Ok(HeaderMap::new()),
            body: Bytes::new(),
            early_data: None,
            timeout: None,
        }
    }

    /// Switches the identifier whose tickets (and connections) later
    /// requests use. A connection keeps the identifier it was opened for:
    /// tickets it receives afterwards are stored under that one.
    pub fn set_session_identifier(&self, id: impl Into<String>) {
        let id = id.into();
        for cache in self.inner.caches.all() {
            cache.set_session_identifier(id.clone());
        }
    }

    /// The preset in use.
    pub fn preset(&self) -> &Preset {
        &self.inner.preset
    }

    /// The circuit breaker in front of the backend, if there is a backend
    /// and the breaker is on.
    pub fn circuit_breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.inner.breaker.as_ref()
    }

    /// The ticket cache of `protocol` (local memory in front of the
    /// backend).
    pub fn cache(&self, protocol: Protocol) -> &PersistableSessionCache {
        self.inner.caches.of(protocol)
    }

    /// Closes every connection, first waiting (within the close timeout)
    /// for a ticket on connections that have not had one yet and for
    /// pending backend writes. Returns true if nothing was left waiting.
    pub async fn close(&self) -> bool {
        let deadline = Instant::now() + self.inner.close_timeout;
        let conns = self.inner.pool.drain();
        let mut complete = true;
        for conn in &conns {
            if conn.tickets().count() == 0 && conn.is_usable() {
                let left = deadline.saturating_duration_since(Instant::now());
                complete &= conn.tickets().wait_first(left).await;
            }
        }
        for conn in &conns {
            conn.close();
        }
        drop(conns);
        for cache in self.inner.caches.all() {
            let left = deadline.saturating_duration_since(Instant::now());
            complete &= cache.flush(left).await;
        }
        // Let the CONNECTION_CLOSE frames leave before the process may exit.
        for endpoint in [self.inner.v4.get(), self.inner.v6.get()].into_iter().flatten() {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left.min(CLOSE_DRAIN_WAIT), endpoint.wait_idle()).await;
        }
        complete
    }

    async fn endpoint(&self, addr: &SocketAddr) -> Result<quinn::Endpoint, Error> {
        let (cell, bind) = match addr {
            SocketAddr::V4(_) => (&self.inner.v4, SocketAddr::from(([0, 0, 0, 0], 0))),
            SocketAddr::V6(_) => (&self.inner.v6, SocketAddr::from(([0u16; 8], 0))),
        };
        cell.get_or_try_init(|| async { quinn::Endpoint::client(bind).map_err(Error::Socket) })
            .await
            .cloned()
    }

    /// How a request to `host:port` goes, from the mode and what the
    /// session has learned about the origin.
    fn plan(&self, host: &str, port: u16) -> Plan {
        use Protocol::{H1, H2, H3};
        match self.inner.mode {
            HttpProtocol::Http3 => Plan {
                pooled: &[H3],
                open: Open::H3,
            },
            // A server without HTTP/2 answers in HTTP/1.1.
            HttpProtocol::Http2 => Plan {
                pooled: &[H2, H1],
                open: Open::Tcp,
            },
            HttpProtocol::Http1 => Plan {
                pooled: &[H1],
                open: Open::Tcp,
            },
            HttpProtocol::Auto => match self.inner.memory.get(host, port) {
                Some(Known::Tcp { .. }) => Plan {
                    pooled: &[H3, H2, H1],
                    open: Open::Tcp,
                },
                // Known to speak HTTP/3 (perhaps newly advertised while a TCP
                // connection is open): use it.
                Some(Known::H3 { port: h3_port }) => Plan {
                    pooled: &[H3],
                    open: Open::Race {
                        h3_port,
                        expected: true,
                    },
                },
                None => Plan {
                    pooled: &[H3, H2, H1],
                    open: Open::Race {
                        h3_port: port,
                        expected: false,
                    },
                },
            },
        }
    }

    async fn execute(&self, request: PreparedRequest, url: url::Url) -> Result<Response, Error> {
        let host = url
            .host_str()
            .ok_or_else(|| url_error(url.as_str(), "no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        if self.inner.mode == HttpProtocol::Auto && self.inner.memory.get(&host, port).is_none() {
            // The origin's HTTPS record (looked up with its ECH config) may
            // say whether it speaks HTTP/3 before anything is tried.
            let name = host.trim_start_matches('[').trim_end_matches(']');
            self.ech_for(name, port).await?;
        }
        let plan = self.plan(&host, port);
        let key = |protocol| PoolKey {
            protocol,
            identifier: self.inner.caches.h3.session_identifier(),
            host: host.clone(),
            port,
        };
        // An HTTP/1.1 connection still busy with another exchange is left to it.
        let pooled = plan
            .pooled
            .iter()
            .find_map(|p| self.inner.pool.checkout(&key(*p)).filter(Conn::is_idle));
        if let Some(conn) = pooled {
            match exchange(&conn, &request).await {
                Ok((head, body)) => {
                    self.learn(&host, port, &conn, &head.headers);
                    return Ok(Response::new(url, head, body, &conn, true));
                }
                // The pooled connection died under the request (the server
                // closed it while idle): a request that is safe to repeat goes
                // on a new connection, as reqwest does.
                Err(e) if !conn.is_usable() && is_replay_safe(&request.method) => {
                    tracing::debug!(error = %e, "pooled connection closed; retrying on a new one");
                }
                Err(e) => return Err(e),
            }
        }
        // HTTP/1.1 connections carry one exchange at a time: each waiting
        // request opens its own rather than queueing behind another.
        let lead = key(match plan.open {
            Open::H3 | Open::Race { .. } => Protocol::H3,
            Open::Tcp => Protocol::H2,
        });
        let single_flight = self.inner.mode != HttpProtocol::Http1;
        let opening = single_flight.then(|| self.inner.pool.opening(&lead));
        let guard = match opening {
            None => None,
            Some(Opening::Lead(guard)) => Some(guard),
            Some(Opening::Follow(mut opened)) => {
                // Another request is opening this origin's connection: use it
                // when it is ready, or open our own if it failed.
                if let Ok(conn) = opened.wait_for(Option::is_some).await.map(|c| c.clone()) {
                    if let Some(conn) = conn.filter(Conn::is_usable) {
                        let (head, body) = exchange(&conn, &request).await?;
                        return Ok(Response::new(url, head, body, &conn, true));
                    }
                }
                None
            }
        };
        // Requests waiting on this connection get it as soon as it is
        // usable, not after this request's response.
        let pool = &self.inner.pool;
        let identifier = lead.identifier.clone();
        let on_ready: OnReady<'_> = match guard {
            Some(guard) => Box::new(move |conn: Conn| guard.publish(conn)),
            None => Box::new(move |conn: Conn| pool.insert(lead, conn)),
        };
        let setup = async {
            match plan.open {
                Open::H3 => {
                    let target = self.target(identifier, &host, port, &[Protocol::H3]).await?;
                    self.open_h3(target, &request, on_ready, None).await
                }
                Open::Tcp => {
                    let target = self
                        .target(identifier, &host, port, self.inner.mode.tcp_protocols())
                        .await?;
                    self.open_tcp(target, &request, on_ready).await
                }
                Open::Race { h3_port, expected } => {
                    self.open_raced(identifier, &host, port, h3_port, expected, &request, on_ready)
                        .await
                }
            }
        };
        let span = tracing::debug_span!("connect", host = %host, port);
        let opened = tokio::time::timeout(self.inner.connect_timeout, setup.instrument(span))
            .await
            .map_err(|_| Error::Timeout {
                what: "connecting",
                after: self.inner.connect_timeout,
            })??;
        self.learn(&host, port, &opened.conn, &opened.head.headers);
        let mut response = Response::new(url, opened.head, opened.body, &opened.conn, false);
        response.tls.retried_too_early = opened.retried_too_early;
        if let Some(early_data) = opened.early_data {
            response.tls.early_data = early_data;
        }
        let tls = &response.tls;
        telemetry::connection(&telemetry::ConnectionLabels {
            protocol: protocol_label(response.protocol()),
            resumed: tls.resumed,
            ticket_source: tls.ticket_source_str(),
            early_data: tls.early_data.as_str(),
            ech: tls.ech.as_str(),
        });
        Ok(response)
    }

    /// Notes an `Alt-Svc` advertisement on a TCP response.
    fn learn(&self, host: &str, port: u16, conn: &Conn, headers: &HeaderMap) {
        if self.inner.mode != HttpProtocol::Auto || matches!(conn, Conn::H3(_)) {
            return;
        }
        if let Some(value) = headers.get(http::header::ALT_SVC).and_then(|v| v.to_str().ok()) {
            self.inner.memory.advertised(host, port, value);
        }
    }

    /// Races QUIC (to `h3_port`) against TCP for a new connection: QUIC
    /// starts alone, TCP joins after the head start or as soon as QUIC
    /// fails; the first to complete its handshake carries the request and
    /// the other is dropped. A replay-safe request may already have left in
    /// QUIC 0-RTT when TCP wins; any other request is sent only on the
    /// winner.
    #[allow(clippy::too_many_arguments)]
    async fn open_raced(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        h3_port: u16,
        expected: bool,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
    ) -> Result<Opened, Error> {
        // Whoever is ready first hands its connection to waiting requests.
        let ready = SharedReady::new(on_ready);
        let quic_ready = ready.hook();
        let (handshaken_tx, mut handshaken_rx) = tokio::sync::oneshot::channel();
        let quic = async {
            let target = self
                .target(identifier.clone(), host, h3_port, &[Protocol::H3])
                .await?;
            self.open_h3(target, request, quic_ready, Some(handshaken_tx))
                .await
        };
        let tcp = async {
            let target = self
                .target(identifier.clone(), host, port, self.inner.mode.tcp_protocols())
                .await?;
            let mut target = target;
            let conn = self.dial_tcp(&mut target, false).await?;
            Ok::<_, Error>((target, conn))
        };
        let (mut quic, mut tcp) = (std::pin::pin!(quic), std::pin::pin!(tcp));
        let head_start = tokio::time::sleep(self.inner.head_start);
        let mut head_start = std::pin::pin!(head_start);
        let (mut tcp_started, mut handshaken, mut signal_done) = (false, false, false);
        let (mut quic_error, mut tcp_error): (Option<Error>, Option<Error>) = (None, None);
        loop {
            tokio::select! {
                result = &mut quic, if quic_error.is_none() => match result {
                    Ok(opened) => {
                        self.inner.memory.quic_won(host, port, h3_port);
                        return Ok(opened);
                    }
                    // QUIC worked but the exchange failed: the request may
                    // have reached the server, so it does not go again.
                    Err(e) if handshaken => return Err(e),
                    Err(e) => {
                        tracing::debug!(origin = %format!("{host}:{h3_port}"), error = %e, "QUIC attempt failed; TCP goes on");
                        if let Some(tcp_error) = tcp_error {
                            return Err(worse_failure(e, tcp_error));
                        }
                        quic_error = Some(e);
                        tcp_started = true;
                    }
                },
                signal = &mut handshaken_rx, if !signal_done => {
                    signal_done = true;
                    handshaken = signal.is_ok();
                }
                () = &mut head_start, if !tcp_started => tcp_started = true,
                result = &mut tcp, if tcp_started && !handshaken && tcp_error.is_none() => match result {
                    Ok((target, conn)) => {
                        tracing::debug!(origin = %target.origin, "TCP won the race against QUIC");
                        self.inner.memory.tcp_won(host, port, expected);
                        let conn = Conn::Tcp(conn);
                        self.check_resumed(&target, &conn);
                        ready.hook()(conn.clone());
                        let (head, body) = exchange(&conn, request).await?;
                        return Ok(Opened::new(conn, head, body));
                    }
                    Err(e) => {
                        if let Some(quic_error) = quic_error {
                            return Err(worse_failure(quic_error, e));
                        }
                        tcp_error = Some(e);
                    }
                },
            }
        }
    }

    /// Resolves `host` and looks up the session to offer.
    async fn target(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        protocols: &[Protocol],
    ) -> Result<Target, Error> {
        let server_name = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs = self.inner.resolver.resolve(host, port).await?;
        if addrs.is_empty() {
            return Err(url_error(host, "no address"));
        }
        let ech = self.ech_for(&server_name, port).await?;
        // The first protocol with a session to offer (TCP: h2, then h1). A
        // ticket won over ECH goes only into a ClientHello that offers ECH.
        let mut protocol = protocols.first().copied().unwrap_or(Protocol::H3);
        let mut hit = None;
        for p in protocols {
            hit = self
                .inner
                .caches
                .of(*p)
                .get_for(identifier.clone(), &server_name, port)
                .await
                .filter(|h| !h.session.envelope.ech || ech.list.is_some());
            if hit.is_some() {
                protocol = *p;
                break;
            }
        }
        let tickets = Arc::new(Tickets::default());
        // Each ticket goes to the cache of the protocol it was won on, under
        // the identifier the connection was opened for.
        let sink: TicketSink = {
            let (caches, tickets, name, id) = (
                self.inner.caches.clone(),
                Arc::clone(&tickets),
                server_name.clone(),
                identifier.clone(),
            );
            Arc::new(move |ticket: CachedSession| {
                caches
                    .of(ticket.envelope.protocol)
                    .put_for(id.clone(), &name, port, ticket);
                tickets.add();
            })
        };
        Ok(Target {
            ech,
            ech_rejection: Arc::new(EchRejection::default()),
            origin: format!("{host}:{port}"),
            server_name,
            port,
            addrs,
            identifier,
            protocol,
            hit,
            tickets,
            sink,
        })
    }

    /// The ECH offer for a connection to `host:port`, per the policy.
    async fn ech_for(&self, host: &str, port: u16) -> Result<EchChoice, Error> {
        let policy = self.inner.ech_policy;
        // No ECH for IP literals: there is no name to hide.
        if policy == EchPolicy::Off || host.parse::<IpAddr>().is_ok() {
            return Ok(EchChoice::default());
        }
        if let Some(list) = self.inner.ech_configs.get(&(host.to_ascii_lowercase(), port)) {
            return Ok(EchChoice {
                list: Some(list.clone()),
                source: Some(EchSource::Config),
                ..EchChoice::default()
            });
        }
        let resolver = &self.inner.resolver;
        // RFC 9848: when every HTTPS record of the host carries `ech`, the
        // client must not fall back to a cleartext ClientHello.
        let reliant = std::sync::atomic::AtomicBool::new(false);
        let dns = || async {
            if resolver.is_overridden(host, port) {
                return None;
            }
            let hickory = resolver.hickory().await.ok()?;
            match tokio::time::timeout(HTTPS_LOOKUP_TIMEOUT, ech::dns::lookup_https(hickory, host)).await {
                Ok(Ok(Some(record))) => {
                    if self.inner.mode == HttpProtocol::Auto && !record.alpn.is_empty() {
                        let memory = &self.inner.memory;
                        if record.alpn.iter().any(|a| a == "h3") {
                            memory.https_record_says_h3(host, port, record.port.unwrap_or(port), record.ttl);
                        } else {
                            memory.https_record_says_tcp(host, port, record.ttl);
                        }
                    }
                    let needs_ech = record.all_have_ech && record.ech.is_some();
                    reliant.store(needs_ech, std::sync::atomic::Ordering::Relaxed);
                    record.ech.map(|list| (list, record.ttl))
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    tracing::debug!(host, error = %e, "HTTPS record lookup failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(host, "HTTPS record lookup timed out");
                    None
                }
            }
        };
        let found = self.inner.ech.find(host, port, dns).await;
        let reliant = reliant.load(std::sync::atomic::Ordering::Relaxed);
        match found {
            Some((list, source)) => Ok(EchChoice {
                list: Some(list),
                source: Some(source),
                reliant,
                ..EchChoice::default()
            }),
            None if reliant => Err(Error::Ech {
                host: host.to_owned(),
                reason: "every HTTPS record of the host requires ECH (RFC 9848) and its config is unusable"
                    .to_owned(),
            }),
            None if policy == EchPolicy::Require => Err(Error::Ech {
                host: host.to_owned(),
                reason: "no usable config in the caches or its DNS HTTPS record".to_owned(),
            }),
            None => Ok(EchChoice {
                grease: true,
                ..EchChoice::default()
            }),
        }
    }

    /// Forgets the offered session if the server did not resume it.
    fn check_resumed(&self, target: &Target, conn: &Conn) {
        if let Some(hit) = &target.hit {
            if !conn.handshake().resumed {
                tracing::debug!(origin = %target.origin, "offered session refused; forgetting it");
                self.inner.caches.of(target.protocol).invalidate_for(
                    target.identifier.clone(),
                    &target.server_name,
                    target.port,
                    &hit.session.ticket,
                );
            }
        }
    }

    /// Opens an HTTP/3 connection carrying `request` first (in 0-RTT when
    /// it may). If the server rejects ECH and sends retry configs, they are
    /// kept and the connection is made once more with them.
    async fn open_h3(
        &self,
        mut target: Target,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
        handshaken: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Opened, Error> {
        let ready = SharedReady::new(on_ready);
        match self
            .open_h3_once(&target, request, ready.hook(), handshaken)
            .await
        {
            Err(e) => {
                if self.adopt_ech_retry(&mut target)? {
                    self.open_h3_once(&target, request, ready.hook(), None).await
                } else {
                    Err(e)
                }
            }
            opened => opened,
        }
    }

    async fn open_h3_once(
        &self,
        target: &Target,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
        handshaken: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Opened, Error> {
        let addr = *target
            .addrs
            .first()
            .ok_or_else(|| url_error(&target.origin, "no address"))?;
        let endpoint = self.endpoint(&addr).await?;
        let mut request = request.clone();
        let session = target.hit.as_ref().map(|h| {
            let mut session = h.session.clone();
            // Offer early data only when this request will use it.
            session.envelope.early_data &= request.early_data_ok;
            session
        });
        request.early_data_ok &= session.as_ref().is_some_and(|s| s.envelope.early_data);
        let dial = Dial {
            origin: target.origin.clone(),
            server_name: target.server_name.clone(),
            addr,
            endpoint,
            tls: self
                .inner
                .tls
                .with_session(session)
                .on_ticket(Arc::clone(&target.sink))
                .with_ech_config_list(target.ech.list.clone())
                .with_ech_grease(target.ech.grease)
                .with_ech_rejection(Arc::clone(&target.ech_rejection)),
            transport: Arc::clone(&self.inner.transport),
            ticket_source: target.hit.as_ref().map(|h| h.source),
            tickets: Arc::clone(&target.tickets),
            on_ready: Some(on_ready),
            handshaken,
            ech_offered: target.ech.offered(),
        };
        let first = H3Connection::open(dial, &request).await?;
        let conn = Conn::H3(first.conn);
        self.check_resumed(target, &conn);
        let (head, ()) = first.head.into_parts();
        Ok(Opened {
            conn,
            head,
            body: Body::H3(Box::new(first.stream)),
            retried_too_early: first.retried_too_early,
            early_data: None,
        })
    }

    /// Opens a TLS-over-TCP connection (HTTP/2 or HTTP/1.1) and sends
    /// `request` on it: as early data when it may and the session allows
    /// it, in which case the connection is handed to other requests only
    /// once the handshake is complete (they must not go early).
    async fn open_tcp(
        &self,
        mut target: Target,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
    ) -> Result<Opened, Error> {
        let early =
            request.early_data_ok && target.hit.as_ref().is_some_and(|h| h.session.envelope.early_data);
        let first = self.dial_tcp(&mut target, early).await?;
        let conn = Conn::Tcp(Arc::clone(&first));
        if !first.early_data_offered() {
            self.check_resumed(&target, &conn);
            on_ready(conn.clone());
            let (head, body) = exchange(&conn, request).await?;
            return Ok(Opened::new(conn, head, body));
        }
        let (head, body) = match exchange(&conn, request).await {
            Ok(answer) => answer,
            Err(e) => {
                let Some(why) = first.retry_fresh() else {
                    return Err(e);
                };
                // Nothing of the request reached the server as a request (the
                // early data was refused and not replayed, or the handshake
                // failed): it goes once more, on a new connection, after the
                // handshake.
                tracing::debug!(origin = %target.origin, ?why, "early data unusable; retrying on a new connection");
                self.check_resumed(&target, &conn);
                drop(conn);
                if why == RetryFresh::EchRejected && !self.adopt_ech_retry(&mut target)? {
                    return Err(e);
                }
                let conn = Conn::Tcp(self.dial_tcp(&mut target, false).await?);
                on_ready(conn.clone());
                let (head, body) = exchange(&conn, request).await?;
                let mut opened = Opened::new(conn, head, body);
                opened.early_data = Some(EarlyData::Rejected);
                return Ok(opened);
            }
        };
        self.check_resumed(&target, &conn);
        if head.status != StatusCode::TOO_EARLY || conn.handshake().early_data != EarlyData::Accepted {
            on_ready(conn.clone());
            return Ok(Opened::new(conn, head, body));
        }
        // RFC 8470 §5.2: the handshake is complete now; send it again. The
        // short 425 body is read first so HTTP/1.1 can reuse the connection.
        tracing::debug!(origin = %target.origin, "425 Too Early; sending the request again after the handshake");
        if let Body::Tcp(incoming) = body {
            let _ = incoming.collect().await;
        }
        on_ready(conn.clone());
        let (head, body) = exchange(&conn, request).await?;
        let mut opened = Opened::new(conn, head, body);
        opened.retried_too_early = true;
        Ok(opened)
    }

    /// Connects over TCP and runs the TLS handshake for `target`; once more
    /// with the server's retry configs if it rejects ECH.
    async fn dial_tcp(&self, target: &mut Target, early_data: bool) -> Result<Arc<TcpConnection>, Error> {
        match self.dial_tcp_once(target, early_data).await {
            Err(e) => {
                if self.adopt_ech_retry(target)? {
                    self.dial_tcp_once(target, early_data).await
                } else {
                    Err(e)
                }
            }
            conn => conn,
        }
    }

    async fn dial_tcp_once(&self, target: &Target, early_data: bool) -> Result<Arc<TcpConnection>, Error> {
        TcpConnection::open(TcpDial {
            origin: target.origin.clone(),
            server_name: target.server_name.clone(),
            addrs: target.addrs.clone(),
            tls: self.inner.tcp_tls.clone(),
            resume: target.hit.as_ref().map(|h| h.session.clone()),
            sink: Arc::clone(&target.sink),
            ticket_source: target.hit.as_ref().map(|h| h.source),
            tickets: Arc::clone(&target.tickets),
            early_data,
            ech: target.ech.list.clone(),
            ech_grease: target.ech.grease,
            ech_source: target.ech.source,
            ech_rejection: Arc::clone(&target.ech_rejection),
        })
        .await
    }

    /// After a failed connection: if the server rejected ECH, decides what
    /// the one retry offers (RFC 9849 §6.1.6). With retry configs, they are
    /// validated, kept locally and in the backend, and offered. Without
    /// (the server turned ECH off), the retry goes without ECH unless ECH is
    /// required. Returns true if a retry should be made; an error if ECH
    /// failed for good.
    fn adopt_ech_retry(&self, target: &mut Target) -> Result<bool, Error> {
        let Some(retry) = target.ech_rejection.take() else {
            return Ok(false);
        };
        let fail = |reason: String| Error::Ech {
            host: target.server_name.clone(),
            reason,
        };
        if target.ech.retried {
            return Err(fail(
                "the server rejected ECH again, even with its own retry configs".into(),
            ));
        }
        target.ech_rejection = Arc::new(EchRejection::default());
        if retry.is_empty() {
            if self.inner.ech_policy == EchPolicy::Require || target.ech.reliant {
                return Err(fail("the server rejected ECH and sent no retry config".into()));
            }
            tracing::warn!(host = %target.server_name, "the server rejected ECH and sent no retry config; retrying without ECH");
            target.ech = EchChoice {
                retried: true,
                ..EchChoice::default()
            };
            return Ok(true);
        }
        if let Err(e) = ech::validate_ech_config_list(&retry) {
            return Err(fail(format!(
                "the server rejected ECH and its retry configs are unusable: {e}"
            )));
        }
        tracing::debug!(host = %target.server_name, "ECH rejected; retrying once with the server's retry configs");
        self.inner
            .ech
            .store(&target.server_name, target.port, retry.clone(), ECH_RETRY_TTL);
        target.ech = EchChoice {
            list: Some(retry),
            source: Some(EchSource::Local),
            grease: false,
            retried: true,
            reliant: target.ech.reliant,
        };
        Ok(true)
    }
}

/// A connection's "ready" hook, shared by the attempts that may make it
/// (a retry, a race): the first to be ready calls it.
struct SharedReady<'a>(Arc<std::sync::Mutex<Option<OnReady<'a>>>>);

impl<'a> SharedReady<'a> {
    fn new(on_ready: OnReady<'a>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(on_ready))))
    }

    /// A hook for one attempt.
    fn hook(&self) -> OnReady<'a> {
        let slot = Arc::clone(&self.0);
        Box::new(move |conn: Conn| {
            if let Some(ready) = slot.lock().ok().and_then(|mut s| s.take()) {
                ready(conn);
            }
        })
    }
}

/// Of two failed attempts, the error that says more: a refused TCP
/// connection only says nothing listens on TCP, so QUIC's reason wins then.
fn worse_failure(quic: Error, tcp: Error) -> Error {
    match tcp {
        Error::Tcp { .. } => quic,
        other => other,
    }
}

/// What a new connection offers of ECH, and where the config came from.
#[derive(Debug, Clone, Default)]
struct EchChoice {
    list: Option<Vec<u8>>,
    source: Option<EchSource>,
    grease: bool,
    /// This offer is the one retry after a rejection.
    retried: bool,
    /// The host's DNS says it must be reached with ECH only (RFC 9848).
    reliant: bool,
}

impl EchChoice {
    fn offered(&self) -> EchOffered {
        EchOffered {
            source: self.source,
            config: self.list.is_some(),
            grease: self.grease,
        }
    }
}

/// A new connection and the response head of its first request.
struct Opened {
    conn: Conn,
    head: http::response::Parts,
    body: Body,
    /// The server answered `425 Too Early` and the request went again.
    retried_too_early: bool,
    /// Overrides the connection's own early-data report (the request was
    /// moved to a new connection after its early data was refused).
    early_data: Option<EarlyData>,
}

impl Opened {
    fn new(conn: Conn, head: http::response::Parts, body: Body) -> Self {
        Self {
            conn,
            head,
            body,
            retried_too_early: false,
            early_data: None,
        }
    }
}

/// Where a new connection goes and what it offers.
struct Target {
    ech: EchChoice,
    /// Hears if the server rejects ECH (fresh for each attempt).
    ech_rejection: Arc<EchRejection>,
    origin: String,
    server_name: String,
    port: u16,
    /// In resolver order; QUIC uses the first, TCP tries each in turn.
    addrs: Vec<SocketAddr>,
    identifier: Option<String>,
    protocol: Protocol,
    hit: Option<CacheHit>,
    tickets: Arc<Tickets>,
    sink: TicketSink,
}

/// Sends `request` on an open connection and waits for the response head.
async fn exchange(conn: &Conn, request: &PreparedRequest) -> Result<(http::response::Parts, Body), Error> {
    match conn {
        Conn::H3(c) => {
            let (stream, head) = c.exchange(request).await?;
            Ok((head.into_parts().0, Body::H3(Box::new(stream))))
        }
        Conn::Tcp(c) => {
            let (head, body) = c.exchange(request).await?.into_parts();
            Ok((head, Body::Tcp(body)))
        }
    }
}

fn tls_info(conn: &Conn, reused: bool) -> TlsInfo {
    let h = conn.handshake();
    TlsInfo {
        resumed: h.resumed,
        early_data: if reused {
            EarlyData::NotAttempted
        } else {
            h.early_data
        },
        ticket_source: h.ticket_source,
        handshake_time: h.duration,
        alpn: h.alpn.clone(),
        connection_reused: reused,
        retried_too_early: false,
        ech: h.ech_offered.status(h.ech_accepted),
        ech_source: h.ech_offered.source,
    }
}

/// The label of an HTTP version in metrics and reports.
fn protocol_label(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        _ => "http/1.1",
    }
}

fn url_error(url: &str, reason: &str) -> Error {
    Error::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A request being built. Errors (a bad URL, a bad header) are reported by
/// [`send`](Self::send).
#[must_use]
#[derive(Debug)]
pub struct RequestBuilder {
    session: Session,
    method: Method,
    url: String,
    headers: Result<HeaderMap, Error>,
    body: Bytes,
    early_data: Option<bool>,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Ok(headers) = &mut self.headers {
            match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                (Err(e), _) => self.headers = Err(Error::Header(format!("{name:?}: {e}"))),
                (_, Err(e)) => self.headers = Err(Error::Header(format!("value of {name:?}: {e}"))),
            }
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Opts this request in to (`true`) or out of (`false`) 0-RTT early data,
    /// overriding the method-based rule. Only opt in for requests the server
    /// may safely see twice. [`EarlyDataPolicy::Never`] still wins.
    pub fn early_data(mut self, allowed: bool) -> Self {
        self.early_data = Some(allowed);
        self
    }

    /// The longest this request may take, from sending it to the last byte
    /// of its body.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sends the request and waits for the response head.
    ///
    /// # Errors
    ///
    /// A bad URL or header, a failed lookup or connection, a time limit.
    pub async fn send(self) -> Result<Response, Error> {
        let mut url = url::Url::parse(&self.url).map_err(|e| url_error(&self.url, &e.to_string()))?;
        if url.scheme() != "https" {
            return Err(url_error(
                &self.url,
                "only https:// URLs can be requested (HTTP/3 runs over TLS)",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(url_error(&self.url, "no host"));
        }
        url.set_fragment(None);
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_error(&self.url, &e.to_string()))?;
        let mut headers = self.headers?;
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("h3fleet/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let inner = &self.session.inner;
        let replay_safe = is_replay_safe(&self.method) && self.body.is_empty();
        let early_data_ok =
            inner.early_data != EarlyDataPolicy::Never && self.early_data.unwrap_or(replay_safe);
        let request = PreparedRequest {
            method: self.method,
            uri,
            headers,
            body: self.body,
            early_data_ok,
        };
        let span = tracing::debug_span!("request", method = %request.method, url = %url);
        let limit = self.timeout.or(inner.timeout);
        let work = self.session.execute(request, url).instrument(span);
        let Some(limit) = limit else {
            return work.await;
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut response = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Error::Timeout {
                what: "the request",
                after: limit,
            })??;
        response.deadline = Some((deadline, limit));
        Ok(response)
    }
}

/// A response body being received.
enum Body {
    // Boxed: an h3 stream is ten times the size of the other variants.
    H3(Box<RequestStream>),
    Tcp(hyper::body::Incoming),
    Done,
}

/// A response: its head at once, its body as it arrives.
pub struct Response {
    url: url::Url,
    status: StatusCode,
    headers: HeaderMap,
    version: http::Version,
    tls: TlsInfo,
    body: Body,
    /// Keeps the connection (and, for HTTP/3, its error reporting) alive
    /// while the body is read.
    conn: Conn,
    /// When the request's time limit runs out for the body, and the limit.
    deadline: Option<(tokio::time::Instant, Duration)>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url.as_str())
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Response {
    fn new(url: url::Url, head: http::response::Parts, body: Body, conn: &Conn, reused: bool) -> Self {
        let version = match conn {
            Conn::H3(_) => http::Version::HTTP_3,
            Conn::Tcp(c) if c.http == TcpHttp::H2 => http::Version::HTTP_2,
            Conn::Tcp(_) => http::Version::HTTP_11,
        };
        Self {
            url,
            status: head.status,
            headers: head.headers,
            version,
            tls: tls_info(conn, reused),
            body,
            conn: conn.clone(),
            deadline: None,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The URL requested.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The HTTP version the response came over.
    pub fn protocol(&self) -> http::Version {
        self.version
    }

    /// What TLS did for this response.
    pub fn tls(&self) -> &TlsInfo {
        &self.tls
    }

    /// The next piece of the body, or `None` at its end.
    ///
    /// # Errors
    ///
    /// The stream or the connection failed.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        match self.deadline {
            Some((deadline, limit)) => tokio::time::timeout_at(deadline, self.next_chunk())
                .await
                .map_err(|_| Error::Timeout {
                    what: "the request",
                    after: limit,
                })?,
            None => self.next_chunk().await,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let received = match (&mut self.body, &self.conn) {
            (Body::Done, _) => return Ok(None),
            (Body::H3(stream), Conn::H3(conn)) => match stream.recv_data().await {
                Ok(Some(mut data)) => Ok(Some(data.copy_to_bytes(data.remaining()))),
                Ok(None) => Ok(None),
                Err(e) => Err(conn.body_error(e)),
            },
            (Body::Tcp(incoming), Conn::Tcp(conn)) => loop {
                match incoming.frame().await {
                    // Trailers carry no body bytes.
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => break Ok(Some(data)),
                        Err(_) => continue,
                    },
                    Some(Err(e)) => break Err(conn.body_error(e)),
                    None => break Ok(None),
                }
            },
            _ => Ok(None),
        };
        if !matches!(received, Ok(Some(_))) {
            self.body = Body::Done;
        }
        received
    }

    /// The whole body.
    ///
    /// # Errors
    ///
    /// The stream or the connection failed.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The whole body as text (invalid UTF-8 replaced).
    ///
    /// # Errors
    ///
    /// The stream or the connection failed.
    pub async fn text(self) -> Result<String, Error> {
        let body = self.bytes().await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
