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
    CachedSession, ErrorCallback, PersistableSessionCache, Protocol, SessionCacheBackend, TicketSource,
};
use crate::dns::{parse_override, Resolver, Upstream};
use crate::error::Error;
use crate::http::h3::{Dial, H3Connection, OnReady, RequestStream, Tickets};
use crate::http::pool::{Opening, Pool, PoolKey};
pub use crate::http::EarlyData;
use crate::http::{is_replay_safe, PreparedRequest};
use crate::preset::Preset;
use crate::quic::QuicClientConfig;

/// How long [`Session::close`] lets closed connections drain, so their
/// CONNECTION_CLOSE leaves before the process may exit. Short: the frame
/// leaves at once; the rest of draining is only the peer's retransmissions.
const CLOSE_DRAIN_WAIT: Duration = Duration::from_millis(50);

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
    cache: PersistableSessionCache,
    tls: QuicClientConfig,
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

/// Configures a [`Session`]. Errors are kept until [`build`](Self::build).
#[must_use]
pub struct SessionBuilder {
    preset: Result<Preset, Error>,
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
        let mut tls = QuicClientConfig::builder()
            .alpn_protocols(preset.alpn().iter().copied())
            .system_roots(self.system_roots);
        for pem in self.roots_pem {
            tls = tls.add_root_certificates_pem(pem);
        }
        let tls = tls.build()?;
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
        let cache = PersistableSessionCache::new();
        if let Some((backend, on_error)) = self.backend {
            cache.set_backend(Some(backend), preset.name(), Protocol::H3, on_error);
        }
        if let Some(id) = self.identifier {
            cache.set_session_identifier(id);
        }
        Ok(Session {
            inner: Arc::new(Inner {
                cache,
                tls,
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
        self.inner.cache.set_session_identifier(id);
    }

    /// The preset in use.
    pub fn preset(&self) -> &Preset {
        &self.inner.preset
    }

    /// The session cache (local memory in front of the backend).
    pub fn cache(&self) -> &PersistableSessionCache {
        &self.inner.cache
    }

    /// Closes every connection, first waiting (within the close timeout)
    /// for a ticket on connections that have not had one yet and for
    /// pending backend writes. Returns true if nothing was left waiting.
    pub async fn close(&self) -> bool {
        let deadline = Instant::now() + self.inner.close_timeout;
        let conns = self.inner.pool.drain();
        let mut complete = true;
        for conn in &conns {
            if conn.tickets.count() == 0 && conn.is_open() {
                let left = deadline.saturating_duration_since(Instant::now());
                complete &= conn.tickets.wait_first(left).await;
            }
        }
        for conn in &conns {
            conn.close();
        }
        drop(conns);
        let left = deadline.saturating_duration_since(Instant::now());
        complete &= self.inner.cache.flush(left).await;
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

    async fn execute(&self, request: PreparedRequest, url: url::Url) -> Result<Response, Error> {
        let host = url
            .host_str()
            .ok_or_else(|| url_error(url.as_str(), "no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let key = PoolKey {
            identifier: self.inner.cache.session_identifier(),
            host: host.clone(),
            port,
        };
        if let Some(conn) = self.inner.pool.checkout(&key) {
            match reuse(&conn, &request).await {
                Ok((stream, head, tls)) => return Ok(Response::new(url, head, stream, conn, tls)),
                // The pooled connection died under the request (the server
                // closed it while idle): a request that is safe to repeat goes
                // on a new connection, as reqwest does.
                Err(e) if !conn.is_open() && is_replay_safe(&request.method) => {
                    tracing::debug!(error = %e, "pooled connection closed; retrying on a new one");
                }
                Err(e) => return Err(e),
            }
        }
        let guard = match self.inner.pool.opening(&key) {
            Opening::Lead(guard) => Some(guard),
            Opening::Follow(mut opened) => {
                // Another request is opening this origin's connection: use it
                // when it is ready, or open our own if it failed.
                if let Ok(conn) = opened.wait_for(Option::is_some).await.map(|c| c.clone()) {
                    if let Some(conn) = conn.filter(|c| c.is_open()) {
                        let (stream, head, tls) = reuse(&conn, &request).await?;
                        return Ok(Response::new(url, head, stream, conn, tls));
                    }
                }
                None
            }
        };
        // Requests waiting on this connection get it as soon as it is
        // usable, not after this request's response.
        let pool = &self.inner.pool;
        let identifier = key.identifier.clone();
        let on_ready: OnReady<'_> = match guard {
            Some(guard) => Box::new(move |conn: &Arc<H3Connection>| guard.publish(conn)),
            None => Box::new(move |conn: &Arc<H3Connection>| pool.insert(key, Arc::clone(conn))),
        };
        let setup = tokio::time::timeout(
            self.inner.connect_timeout,
            self.open(identifier, &host, port, &request, on_ready),
        );
        let first = setup.await.map_err(|_| Error::Timeout {
            what: "connecting",
            after: self.inner.connect_timeout,
        })??;
        let mut tls = tls_info(&first.conn);
        tls.retried_too_early = first.retried_too_early;
        Ok(Response::new(url, first.head, first.stream, first.conn, tls))
    }

    /// Opens a connection to `host:port` carrying `request` first.
    async fn open(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
    ) -> Result<crate::http::h3::FirstExchange, Error> {
        let origin = format!("{host}:{port}");
        let server_name = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let addrs = self.inner.resolver.resolve(host, port).await?;
        let addr = *addrs.first().ok_or_else(|| url_error(host, "no address"))?;
        let endpoint = self.endpoint(&addr).await?;
        let hit = self
            .inner
            .cache
            .get_for(identifier.clone(), &server_name, port)
            .await;
        let offered = hit.as_ref().map(|h| h.session.ticket.clone());
        let mut request = request.clone();
        let session = hit.as_ref().map(|h| {
            let mut session = h.session.clone();
            // Offer early data only when this request will use it.
            session.envelope.early_data &= request.early_data_ok;
            session
        });
        request.early_data_ok &= session.as_ref().is_some_and(|s| s.envelope.early_data);
        let tickets = Arc::new(Tickets::default());
        let sink = {
            let (cache, tickets, name, id) = (
                self.inner.cache.clone(),
                Arc::clone(&tickets),
                server_name.clone(),
                identifier.clone(),
            );
            Arc::new(move |ticket: CachedSession| {
                cache.put_for(id.clone(), &name, port, ticket);
                tickets.add();
            })
        };
        let dial = Dial {
            origin,
            server_name: server_name.clone(),
            addr,
            endpoint,
            tls: self.inner.tls.with_session(session).on_ticket(sink),
            transport: Arc::clone(&self.inner.transport),
            ticket_source: hit.as_ref().map(|h| h.source),
            tickets,
            on_ready: Some(on_ready),
        };
        let first = H3Connection::open(dial, &request).await?;
        if let Some(ticket) = offered {
            if !first.conn.handshake.resumed {
                tracing::debug!(host = %server_name, port, "offered session refused; forgetting it");
                self.inner
                    .cache
                    .invalidate_for(identifier, &server_name, port, &ticket);
            }
        }
        Ok(first)
    }
}

/// Sends `request` on an open connection.
async fn reuse(
    conn: &H3Connection,
    request: &PreparedRequest,
) -> Result<(RequestStream, http::Response<()>, TlsInfo), Error> {
    let (stream, head) = conn.exchange(request).await?;
    let mut tls = tls_info(conn);
    tls.connection_reused = true;
    tls.early_data = EarlyData::NotAttempted;
    Ok((stream, head, tls))
}

fn tls_info(conn: &H3Connection) -> TlsInfo {
    let h = &conn.handshake;
    TlsInfo {
        resumed: h.resumed,
        early_data: h.early_data,
        ticket_source: h.ticket_source,
        handshake_time: h.duration,
        alpn: h.alpn.clone(),
        connection_reused: false,
        retried_too_early: false,
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

/// A response: its head at once, its body as it arrives.
pub struct Response {
    url: url::Url,
    status: StatusCode,
    headers: HeaderMap,
    tls: TlsInfo,
    stream: Option<RequestStream>,
    conn: Arc<H3Connection>,
    /// When the request's time limit runs out for the body, and the limit.
    deadline: Option<(tokio::time::Instant, Duration)>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url.as_str())
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Response {
    fn new(
        url: url::Url,
        head: http::Response<()>,
        stream: RequestStream,
        conn: Arc<H3Connection>,
        tls: TlsInfo,
    ) -> Self {
        let (parts, ()) = head.into_parts();
        Self {
            url,
            status: parts.status,
            headers: parts.headers,
            tls,
            stream: Some(stream),
            conn,
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

    /// The HTTP version (always HTTP/3 for now).
    pub fn protocol(&self) -> http::Version {
        http::Version::HTTP_3
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
        let Some(stream) = &mut self.stream else {
            return Ok(None);
        };
        let received = match self.deadline {
            Some((deadline, limit)) => tokio::time::timeout_at(deadline, stream.recv_data())
                .await
                .map_err(|_| Error::Timeout {
                    what: "the request",
                    after: limit,
                })?,
            None => stream.recv_data().await,
        };
        match received {
            Ok(Some(mut data)) => Ok(Some(data.copy_to_bytes(data.remaining()))),
            Ok(None) => {
                self.stream = None;
                Ok(None)
            }
            Err(e) => {
                self.stream = None;
                Err(self.conn.body_error(e))
            }
        }
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
