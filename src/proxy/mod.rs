//! [`LocalProxy`]: a local HTTP proxy that performs other programs'
//! requests with a [`Session`], so a client in any language (curl, Python
//! `requests`, Node's `fetch`) gets the fleet's tickets, 0-RTT and ECH
//! without linking h3fleet.
//!
//! Clients speak plain HTTP/1.1 to the proxy, with keep-alive. A request
//! in absolute form for `https://…`, or for `http://…` with
//! `X-H3fleet-Scheme: https` (for clients that only send plain HTTP to a
//! proxy), is performed by a session: the default one, or the one
//! registered under the id in `X-H3fleet-Session`. The response says what
//! TLS did in `X-H3fleet-Protocol`, `-Resumed`, `-Early-Data`,
//! `-Ticket-Source` and `-Ech`. `CONNECT` opens a plain tunnel (the
//! client's own TLS, so no fleet cache), and other `http://` requests are
//! forwarded over HTTP/1.1.
//!
//! Why a proxy at all: a fleet whose workers are written in several
//! languages shares one ticket cache only if something in front of them
//! holds it. The proxy's default session takes the fleet's backend
//! ([`LocalProxyBuilder::session_cache`]); a registered session gets its
//! id as session identifier, so tenants on one backend never resume each
//! other's tickets.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use h3fleet::cache::MemoryBackend;
//! use h3fleet::proxy::LocalProxy;
//!
//! let proxy = LocalProxy::builder()
//!     .session_cache(Arc::new(MemoryBackend::new()), None)
//!     .start()
//!     .await?;
//! println!("curl -x http://{} -H 'X-H3fleet-Scheme: https' http://example.com/", proxy.addr());
//! proxy.register_session("tenant-a", h3fleet::Session::builder().build()?)?;
//! # proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod accept;
mod forward;
mod handler;
mod headers;
mod registry;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use registry::{ProxyStats, DEFAULT_SESSION};

use crate::cache::{ErrorCallback, SessionCacheBackend};
use crate::error::Error;
use crate::session::{Session, SessionBuilder};

/// The ports a `CONNECT` may not reach by default: mail submission and
/// relay (25, 465, 587) and telnet (23), which an open tunnel would let
/// anyone on the machine abuse.
pub const DEFAULT_DENIED_PORTS: [u16; 4] = [25, 465, 587, 23];

/// What went wrong setting up or running a [`LocalProxy`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalProxyError {
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A setting that cannot work (the message says which).
    #[error("invalid local proxy setting: {0}")]
    Config(String),
    /// The default session could not be built.
    #[error("cannot build the proxy's default session: {0}")]
    Session(#[source] Error),
    /// [`LocalProxy::register_session`] with an id already registered.
    #[error("a session is already registered as {0:?}")]
    SessionRegistered(String),
    /// A session id that is empty, too long (over 128 bytes) or not
    /// printable ASCII (it travels in a header).
    #[error("invalid session id {0:?}: 1 to 128 printable ASCII characters")]
    SessionId(String),
}

/// One request the proxy answered, as [`LocalProxyBuilder::on_request`]
/// sees it (and `h3fleet proxy` prints it).
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct ProxyRecord {
    /// The session that performed it ([`DEFAULT_SESSION`] or a registered
    /// id; empty for a refused request or a tunnel).
    pub session: String,
    /// The request method.
    pub method: String,
    /// The URL performed (`host:port` for a tunnel).
    pub url: String,
    /// The status answered to the client.
    pub status: u16,
    /// `h3`, `h2`, `http/1.1`, `tunnel` or `none` (nothing sent upstream).
    pub protocol: &'static str,
    /// The upstream connection resumed a TLS session.
    pub resumed: bool,
    /// `accepted`, `rejected` or `not_attempted`.
    pub early_data: &'static str,
    /// `local`, `backend` or `none`.
    pub ticket_source: &'static str,
    /// `accepted`, `rejected`, `grease` or `off`.
    pub ech: &'static str,
    /// Milliseconds from the request's head to the response's.
    pub ms: f64,
}

/// Called with each [`ProxyRecord`].
pub type RecordCallback = Arc<dyn Fn(&ProxyRecord) + Send + Sync>;

/// The settings every connection handler reads.
pub(crate) struct Settings {
    request_timeout: Option<Duration>,
    /// `Basic` credentials, base64 of `user:password`, when auth is on.
    auth: Option<String>,
    denied_ports: Vec<u16>,
    on_request: Option<RecordCallback>,
}

/// Builds a [`LocalProxy`]; [`start`](Self::start) binds and runs it.
#[must_use]
pub struct LocalProxyBuilder {
    listen: SocketAddr,
    max_connections: usize,
    request_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    session: Option<Session>,
    session_builder: Option<SessionBuilder>,
    cache: Option<(Arc<dyn SessionCacheBackend>, Option<ErrorCallback>)>,
    auth: Option<(String, String)>,
    denied_ports: Vec<u16>,
    on_request: Option<RecordCallback>,
}

impl std::fmt::Debug for LocalProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProxyBuilder")
            .field("listen", &self.listen)
            .field("max_connections", &self.max_connections)
            .field("auth", &self.auth.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl LocalProxy {
    /// A builder with the defaults: `127.0.0.1:0` (a free loopback port),
    /// 1024 connections, no request timeout, a default session built from
    /// [`Session::builder`], no auth, [`DEFAULT_DENIED_PORTS`].
    pub fn builder() -> LocalProxyBuilder {
        LocalProxyBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 1024,
            request_timeout: None,
            shutdown_timeout: Duration::from_secs(30),
            session: None,
            session_builder: None,
            cache: None,
            auth: None,
            denied_ports: DEFAULT_DENIED_PORTS.to_vec(),
            on_request: None,
        }
    }
}

impl LocalProxyBuilder {
    /// Where to listen. Anything but a loopback address needs
    /// [`basic_auth`](Self::basic_auth): an open proxy on a network lends
    /// the fleet's tickets (and exit) to anyone who finds it.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The most client connections served at once; further clients wait
    /// in the listen queue until one closes.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The longest one request may take upstream, head and body (`504`
    /// when the head is late).
    pub fn request_timeout(mut self, limit: Duration) -> Self {
        self.request_timeout = Some(limit);
        self
    }

    /// How long [`LocalProxy::shutdown`] waits for open requests and
    /// tunnels before it closes them (default 30 s).
    pub fn shutdown_timeout(mut self, limit: Duration) -> Self {
        self.shutdown_timeout = limit;
        self
    }

    /// Performs requests without `X-H3fleet-Session` with this session,
    /// as it is (its redirect policy included).
    pub fn session(mut self, session: Session) -> Self {
        self.session = Some(session);
        self
    }

    /// Builds the default session from this builder. As with the default
    /// builder, redirects are not followed: the client sees them and
    /// decides, as with any proxy.
    pub fn session_builder(mut self, builder: SessionBuilder) -> Self {
        self.session_builder = Some(builder);
        self
    }

    /// The reference's `WithProxySessionCache`: the default session keeps
    /// its tickets and ECH configs in `backend` (see
    /// [`SessionBuilder::session_cache`]). Not with [`session`](Self::session),
    /// which is already built.
    pub fn session_cache(
        mut self,
        backend: Arc<dyn SessionCacheBackend>,
        on_error: Option<ErrorCallback>,
    ) -> Self {
        self.cache = Some((backend, on_error));
        self
    }

    /// Requires `Proxy-Authorization: Basic` with these credentials from
    /// every client (`407` otherwise).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// The ports `CONNECT` refuses (`403`), replacing [`DEFAULT_DENIED_PORTS`].
    pub fn denied_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.denied_ports = ports.into_iter().collect();
        self
    }

    /// Called after each request is answered (for logs and metrics).
    pub fn on_request(mut self, callback: RecordCallback) -> Self {
        self.on_request = Some(callback);
        self
    }

    fn default_session(&mut self) -> Result<Session, LocalProxyError> {
        let cache = self.cache.take();
        if let Some(session) = self.session.take() {
            if cache.is_some() {
                return Err(LocalProxyError::Config(
                    "session_cache applies to a session the proxy builds: give a session_builder instead of a session"
                        .into(),
                ));
            }
            return Ok(session);
        }
        let mut builder = self
            .session_builder
            .take()
            .unwrap_or_else(Session::builder)
            .redirect(crate::redirect::Policy::none());
        if let Some((backend, on_error)) = cache {
            builder = builder.session_cache(backend, on_error);
        }
        builder.build().map_err(LocalProxyError::Session)
    }

    /// Binds the listening address and starts serving.
    pub async fn start(mut self) -> Result<LocalProxy, LocalProxyError> {
        if self.max_connections == 0 {
            return Err(LocalProxyError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if !self.listen.ip().is_loopback() && self.auth.is_none() {
            return Err(LocalProxyError::Config(format!(
                "listening on {} (not loopback) needs basic_auth: an open proxy lends the fleet's tickets to anyone",
                self.listen
            )));
        }
        let default = self.default_session()?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| LocalProxyError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LocalProxyError::Bind {
            addr: self.listen,
            source,
        })?;
        let registry = Arc::new(registry::Registry::new(default));
        let settings = Arc::new(Settings {
            request_timeout: self.request_timeout,
            auth: self
                .auth
                .as_ref()
                .map(|(user, password)| headers::basic_credentials(user, password)),
            denied_ports: self.denied_ports,
            on_request: self.on_request,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept::run(
            listener,
            accept::Limits {
                max_connections: self.max_connections,
                loopback_only: self.auth.is_none(),
            },
            Arc::clone(&registry),
            settings,
            stopped,
        ));
        tracing::info!(%addr, "local proxy listening");
        Ok(LocalProxy {
            addr,
            registry,
            stop,
            task: std::sync::Mutex::new(Some(task)),
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// A running local proxy. Dropping it stops accepting; call
/// [`shutdown`](Self::shutdown) to also finish open requests and keep the
/// tickets they won.
#[derive(Debug)]
pub struct LocalProxy {
    addr: SocketAddr,
    registry: Arc<registry::Registry>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl LocalProxy {
    /// The address it listens on (with the port chosen, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Performs requests that carry `X-H3fleet-Session: id` with
    /// `session`, after setting its session identifier to `id` (as the
    /// reference's `RegisterSession` does), so each id's tickets stay its
    /// own even on one backend. An id already registered is an error.
    pub fn register_session(&self, id: &str, session: Session) -> Result<(), LocalProxyError> {
        self.registry.register(id, session)
    }

    /// Removes the session registered as `id`, returning it; later
    /// requests naming `id` get `400`.
    pub fn unregister_session(&self, id: &str) -> Option<Session> {
        self.registry.unregister(id)
    }

    /// The registered ids, sorted.
    pub fn sessions(&self) -> Vec<String> {
        self.registry.ids()
    }

    /// Whether `id` is registered.
    pub fn has_session(&self, id: &str) -> bool {
        self.registry.has(id)
    }

    /// The default session.
    pub fn default_session(&self) -> &Session {
        self.registry.default_session()
    }

    /// Connections and requests so far.
    pub fn stats(&self) -> ProxyStats {
        self.registry.stats()
    }

    /// Stops accepting, lets open requests and tunnels finish (up to the
    /// shutdown timeout), then closes every session, which waits for their
    /// pending ticket writes: the next process resumes what this one won.
    /// Returns true if nothing had to be cut short.
    pub async fn shutdown(&self) -> bool {
        let _ = self.stop.send(true);
        let task = crate::sync::lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let mut complete = true;
        while self.registry.active() > 0 {
            if tokio::time::timeout_at(deadline, self.registry.connection_closed())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = self.registry.active(),
                    "local proxy shutdown: connections still open"
                );
                complete = false;
                break;
            }
        }
        for session in self.registry.all_sessions() {
            complete &= session.close().await;
        }
        complete
    }
}

impl Drop for LocalProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
