//! The client: [`Session`] decides, the [`http`](crate::http) layer
//! connects and exchanges.
//!
//! A request goes: [`RequestBuilder::send`] (URL, headers, the replay-safe
//! proof) → [`Session`] (the plan: which protocol, a pooled connection or a
//! new one, one opener per origin) → `http::connect` (target, ECH, ticket,
//! dial or race) → [`Response`] with its [`TlsInfo`].

mod builder;
mod decode;
pub(crate) mod redirect;
mod request;
mod response;
mod service;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use tracing::Instrument;

pub use builder::SessionBuilder;
pub use request::{EarlyDataPolicy, IntoUrl, RequestBuilder};
pub use response::{Response, TlsInfo};
pub use service::ResponseFuture;

use crate::cache::{CircuitBreaker, PersistableSessionCache, Protocol, TicketCaches};
use crate::error::Error;
use crate::http::conn::{read_within, Connected, OnReady};
use crate::http::connect::{url_error, Connector, NewConnection, Opened};
use crate::http::ech_offer::EchChoice;
use crate::http::pool::{Opening, Pool, PoolKey};
use crate::http::select::Plan;
use crate::http::{Conn, HttpProtocol, PreparedRequest};
use crate::preset::Preset;
use crate::replay::is_replay_safe;
use crate::telemetry;

/// The longest [`Session::close`] waits for closed QUIC connections'
/// CONNECTION_CLOSE frames to leave; they usually leave within a
/// millisecond, and the wait ends then.
const CLOSE_SENT_WAIT: Duration = Duration::from_millis(50);

/// An HTTP client whose TLS session tickets are shared through a backend.
///
/// Cheap to clone (clones share connections, caches and settings). Create
/// and use it inside a Tokio runtime.
///
/// ## Behavior
///
/// - Speaks HTTP/3, HTTP/2 or HTTP/1.1 as [`SessionBuilder::protocol`]
///   says (by default [`HttpProtocol::Auto`]: HTTP/3 where the origin has
///   it, TCP otherwise). One connection per origin carries many requests; a
///   connection idle longer than [`SessionBuilder::idle_timeout`] is closed.
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
    caches: TicketCaches,
    breaker: Option<Arc<CircuitBreaker>>,
    connector: Connector,
    pool: Pool,
    /// Plain HTTP/1.1 connections for `http://` URLs, apart from the TLS
    /// ones (an origin may answer both on one port number of two hosts).
    plain: Pool,
    https_only: bool,
    early_data: EarlyDataPolicy,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    close_timeout: Duration,
    /// Sent with every request that does not set the name itself.
    default_headers: http::HeaderMap,
    redirect: redirect::Policy,
    /// The content codings asked for and decoded.
    accepts: decode::Accepts,
}

impl Session {
    /// A builder with the defaults: preset `default`, system roots, no
    /// backend (tickets stay in this process), replay-safe 0-RTT.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// A `GET` request.
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request.
    pub fn patch(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request.
    pub fn delete(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url.into_url())
    }

    /// Switches the identifier whose tickets (and connections) later
    /// requests use. A connection keeps the identifier it was opened for:
    /// tickets it receives afterwards are stored under that one.
    pub fn set_session_identifier(&self, id: impl Into<String>) {
        self.inner.caches.set_session_identifier(&id.into());
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
    /// pending backend writes, then until the QUIC CONNECTION_CLOSE frames
    /// have left. Returns true if nothing was left waiting.
    pub async fn close(&self) -> bool {
        let deadline = tokio::time::Instant::now().checked_add(self.inner.close_timeout);
        let left = || {
            deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(tokio::time::Instant::now())
            })
        };
        let mut conns = self.inner.pool.drain();
        conns.extend(self.inner.plain.drain());
        let mut complete = true;
        for conn in &conns {
            if conn.tickets().count() == 0 && conn.is_usable() {
                complete &= conn.tickets().wait_first(left()).await;
            }
        }
        for conn in &conns {
            conn.close();
        }
        for (cache, _) in self.inner.caches.all() {
            complete &= cache.flush(left()).await;
        }
        complete &= self.inner.connector.ech.flush(left()).await;
        let limit = left().min(CLOSE_SENT_WAIT);
        self.inner.connector.wait_closes_sent(&conns, limit).await;
        complete
    }

    pub(crate) fn early_data_policy(&self) -> EarlyDataPolicy {
        self.inner.early_data
    }

    pub(crate) fn accepts(&self) -> decode::Accepts {
        self.inner.accepts
    }

    pub(crate) fn redirect_policy(&self) -> redirect::Policy {
        self.inner.redirect
    }

    pub(crate) fn default_headers(&self) -> &http::HeaderMap {
        &self.inner.default_headers
    }

    pub(crate) fn default_timeout(&self) -> Option<Duration> {
        self.inner.timeout
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.inner.read_timeout
    }

    pub(crate) fn https_only(&self) -> bool {
        self.inner.https_only
    }

    /// Carries one request: the plan, a pooled connection or a new one.
    async fn execute(&self, request: &PreparedRequest, url: url::Url) -> Result<Response, Error> {
        let host = url
            .host_str()
            .ok_or_else(|| url_error(url.as_str(), "no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let mode = request.protocol.unwrap_or(self.inner.mode);
        if url.scheme() == "http" {
            if mode != HttpProtocol::Http1 && request.protocol.is_some() {
                return Err(Error::Config(
                    "an http:// URL is fetched over HTTP/1.1 only".into(),
                ));
            }
            return self.execute_plain(request, url, host, port).await;
        }
        let connector = &self.inner.connector;
        let ech = connector.choose_ech_early(&host, port).await?;
        let mut plan = connector.plan(mode, &host, port);
        if let Some(required) = request.protocol {
            plan = plan.requiring(required);
        }
        let origin = Origin {
            identifier: self.inner.caches.session_identifier(),
            host,
            port,
        };
        let keys = plan.pooled.iter().map(|p| origin.key(*p));
        let url = match self
            .try_pooled(&self.inner.pool, &origin, keys, request, url)
            .await?
        {
            Ok(response) => return Ok(response),
            Err(url) => url,
        };
        self.open_new(plan, origin, ech, request, url, mode).await
    }

    /// An `http://` request: HTTP/1.1 in the clear, whatever the protocol
    /// setting, on an idle connection of its own pool or a new one. No
    /// ticket, ECH config or protocol belief comes from it or goes to it.
    async fn execute_plain(
        &self,
        request: &PreparedRequest,
        url: url::Url,
        host: String,
        port: u16,
    ) -> Result<Response, Error> {
        let origin = Origin {
            identifier: None,
            host,
            port,
        };
        let key = origin.key(Protocol::H1);
        let pool = &self.inner.plain;
        let keys = std::iter::once(key.clone());
        let url = match self.try_pooled(pool, &origin, keys, request, url).await? {
            Ok(response) => return Ok(response),
            Err(url) => url,
        };
        let limit = self.inner.connect_timeout;
        let dial = self.inner.connector.open_plain(&origin.host, port);
        let conn = tokio::time::timeout(limit, dial)
            .await
            .map_err(|_| Error::Timeout {
                what: "connecting",
                after: limit,
            })??;
        pool.insert(key, conn.clone());
        let (head, body) = read_within(self.inner.read_timeout, conn.exchange(request)).await?;
        Ok(Response::new(url, head, body, false))
    }

    /// A request on an open connection, if `pool` has one that is idle
    /// under one of `keys`. `Err(url)` hands the URL back when a new
    /// connection is needed.
    async fn try_pooled(
        &self,
        pool: &Pool,
        origin: &Origin,
        mut keys: impl Iterator<Item = PoolKey>,
        request: &PreparedRequest,
        url: url::Url,
    ) -> Result<Result<Response, url::Url>, Error> {
        // An HTTP/1.1 connection still busy with another exchange is left to it.
        let Some(conn) = keys.find_map(|key| pool.checkout(&key)) else {
            return Ok(Err(url));
        };
        match read_within(self.inner.read_timeout, conn.exchange(request)).await {
            Ok((head, body)) => {
                self.learn(origin, &conn, &head.headers);
                Ok(Ok(Response::new(url, head, body, true)))
            }
            // The pooled connection died under the request (the server
            // closed it while idle): a request that is safe to repeat goes
            // on a new connection, as reqwest does.
            Err(e) if !conn.is_usable() && is_replay_safe(&request.method) && request.body.replayable() => {
                tracing::debug!(error = %e, "pooled connection closed; retrying on a new one");
                Ok(Err(url))
            }
            Err(e) => Err(e),
        }
    }

    /// A request that needs a new connection: it opens one, or waits for
    /// the one another request to the same origin is opening.
    async fn open_new(
        &self,
        plan: Plan,
        origin: Origin,
        ech: Option<EchChoice>,
        request: &PreparedRequest,
        url: url::Url,
        mode: HttpProtocol,
    ) -> Result<Response, Error> {
        let lead = origin.key(plan.open.lead_protocol());
        // HTTP/1.1 connections carry one exchange at a time: each waiting
        // request opens its own rather than queueing behind another.
        let guard = if mode == HttpProtocol::Http1 {
            None
        } else {
            match self.inner.pool.opening(&lead) {
                Opening::Lead(guard) => Some(guard),
                Opening::Follow(mut opened) => {
                    // Another request is opening this origin's connection: use
                    // it when it is ready, or open our own if it failed.
                    if let Ok(Some(conn)) = opened.wait_for(Option::is_some).await.map(|c| c.clone()) {
                        if conn.is_usable() {
                            let (head, body) =
                                read_within(self.inner.read_timeout, conn.exchange(request)).await?;
                            return Ok(Response::new(url, head, body, true));
                        }
                    }
                    None
                }
            }
        };
        let connected = Connected::default();
        let pool = &self.inner.pool;
        let on_ready: OnReady<'_> = {
            let connected = &connected;
            match guard {
                Some(guard) => Box::new(move |conn: Conn| {
                    connected.mark();
                    guard.publish(conn);
                }),
                None => Box::new(move |conn: Conn| {
                    connected.mark();
                    pool.insert(lead, conn);
                }),
            }
        };
        let new = NewConnection {
            mode,
            identifier: origin.identifier.clone(),
            host: &origin.host,
            port: origin.port,
            ech,
            request,
            on_ready,
            connected: &connected,
        };
        let opened = self.connect(plan, new, &connected).await?;
        self.learn(&origin, opened.conn(), &opened.head.headers);
        Ok(record(Response::opened(url, opened)))
    }

    /// Opens the connection, bounded by the connect timeout (which stops
    /// counting once the connection is established).
    async fn connect(
        &self,
        plan: Plan,
        new: NewConnection<'_>,
        connected: &Connected,
    ) -> Result<Opened, Error> {
        let span = tracing::debug_span!("connect", host = %new.host, port = new.port);
        let limit = self.inner.connect_timeout;
        let setup = self.inner.connector.open(plan.open, new).instrument(span);
        // Once connected, the wait for the first answer is a read: its
        // clock starts then, not before.
        let answered = async {
            connected.wait().await;
            read_within(
                self.inner.read_timeout,
                std::future::pending::<Result<(), Error>>(),
            )
            .await
        };
        tokio::select! {
            opened = setup => opened,
            () = connected.expired(limit) => Err(Error::Timeout {
                what: "connecting",
                after: limit,
            }),
            Err(e) = answered => Err(e),
        }
    }

    /// Notes an `Alt-Svc` advertisement on a TLS-over-TCP response.
    fn learn(&self, origin: &Origin, conn: &Conn, headers: &HeaderMap) {
        if self.inner.mode != HttpProtocol::Auto || matches!(conn, Conn::H3(_)) || !conn.is_tls() {
            return;
        }
        if let Some(value) = headers.get(http::header::ALT_SVC).and_then(|v| v.to_str().ok()) {
            self.inner
                .connector
                .memory
                .advertised(&origin.host, origin.port, value);
        }
    }
}

/// The origin of a request and the identifier it goes under.
struct Origin {
    identifier: Option<String>,
    host: String,
    port: u16,
}

impl Origin {
    fn key(&self, protocol: Protocol) -> PoolKey {
        PoolKey {
            protocol,
            identifier: self.identifier.clone(),
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// Counts a new connection in the metrics.
fn record(response: Response) -> Response {
    let tls = response.tls();
    telemetry::connection(&telemetry::ConnectionLabels {
        protocol: protocol_label(response.protocol()),
        resumed: tls.resumed,
        ticket_source: tls.ticket_source_str(),
        early_data: tls.early_data.as_str(),
        ech: tls.ech.as_str(),
    });
    response
}

/// The label of an HTTP version in metrics and reports.
fn protocol_label(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        _ => "http/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Session>();
    }

    #[test]
    fn protocol_labels_match_the_metrics_names() {
        assert_eq!(protocol_label(http::Version::HTTP_3), "h3");
        assert_eq!(protocol_label(http::Version::HTTP_2), "h2");
        assert_eq!(protocol_label(http::Version::HTTP_11), "http/1.1");
    }
}
