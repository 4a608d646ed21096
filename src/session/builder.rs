//! [`SessionBuilder`]: every setting of a [`Session`], checked at
//! [`build`](SessionBuilder::build), which makes one call per subsystem
//! (caches, backend, connector).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::{EarlyDataPolicy, Inner, Session};
use crate::cache::{
    BreakerConfig, CacheKeys, CacheOptions, CircuitBreaker, ErrorCallback, KeyFormat, SessionCacheBackend,
    TicketCaches, TicketReuse, DEFAULT_KEY_PREFIX, MAX_GET_TIMEOUT,
};
use crate::ech::{self, EchCache, EchPolicy};
use crate::error::Error;
use crate::http::connect::{Connector, ConnectorSettings};
use crate::http::eyeballs::SocketOptions;
use crate::http::pool::Pool;
use crate::http::HttpProtocol;
use crate::preset::Preset;

/// How long a QUIC attempt runs alone before TCP joins the race (as in
/// Happy Eyeballs; curl's default for the same race is 200 ms).
const DEFAULT_HEAD_START: Duration = Duration::from_millis(250);

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
    key_prefix: String,
    cache_keys: Option<CacheKeys>,
    accept_unsealed: bool,
    ticket_reuse: TicketReuse,
    identifier: Option<String>,
    system_roots: bool,
    roots_pem: Vec<Vec<u8>>,
    early_data: EarlyDataPolicy,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    idle_timeout: Duration,
    max_idle_per_host: usize,
    https_only: bool,
    close_timeout: Duration,
    overrides: Vec<String>,
    dns_server: Option<SocketAddr>,
    default_headers: Result<http::HeaderMap, Error>,
    redirect: super::redirect::Policy,
    accepts: super::decode::Accepts,
    sslkeylogfile: bool,
    accept_invalid_certs: bool,
    identity: Option<crate::tls::Identity>,
    proxy: Option<crate::Proxy>,
    socket: SocketOptions,
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
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            cache_keys: None,
            accept_unsealed: false,
            ticket_reuse: TicketReuse::Shared,
            identifier: None,
            system_roots: true,
            roots_pem: Vec::new(),
            early_data: EarlyDataPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            read_timeout: None,
            idle_timeout: Duration::from_secs(90),
            max_idle_per_host: usize::MAX,
            https_only: false,
            close_timeout: Duration::from_secs(2),
            overrides: Vec::new(),
            dns_server: None,
            default_headers: Ok(http::HeaderMap::new()),
            redirect: super::redirect::Policy::default(),
            accepts: super::decode::Accepts::default(),
            sslkeylogfile: false,
            accept_invalid_certs: false,
            identity: None,
            proxy: None,
            socket: SocketOptions::default(),
        }
    }
}

impl SessionBuilder {
    /// The client profile; its canonical name goes into cache keys.
    /// Default `"default"`.
    pub fn preset(mut self, name: &str) -> Self {
        self.preset = Preset::named(name).map_err(Error::from);
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
    /// maximum 5 s), for tickets and ECH configs alike. On timeout the
    /// handshake is full.
    pub fn backend_get_timeout(mut self, limit: Duration) -> Self {
        self.backend_get_timeout = limit;
        self
    }

    /// The first component of every backend key (tickets and ECH configs).
    /// Default `"h3fleet"`. Fleets that must not see each other's entries
    /// on one backend use different prefixes; replicas that share tickets
    /// use the same one.
    pub fn cache_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
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

    /// Seals every ticket and ECH config written to the backend with the
    /// first of `keys`, and accepts only entries that open under one of
    /// them, bound to the key they are stored under.
    ///
    /// A stored session is a resumption secret, and a resumed TLS 1.3
    /// connection verifies no certificate. Without keys, whoever can read
    /// the backend can decrypt the fleet's early data, and whoever can write
    /// it can make every replica resume with a server of their choosing. A
    /// network backend without keys works, with a warning at build.
    ///
    /// ```
    /// use h3fleet::cache::CacheKeys;
    /// use h3fleet::Session;
    ///
    /// let keys = CacheKeys::parse(&CacheKeys::generate_line()?)?;
    /// let session = Session::builder().cache_keys(keys).build()?;
    /// # drop(session);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_keys(mut self, keys: CacheKeys) -> Self {
        self.cache_keys = Some(keys);
        self
    }

    /// With [`cache_keys`](Self::cache_keys), also accepts unsealed entries
    /// (written by builds without keys), for a migration only. New entries
    /// are sealed all the same. While this is on, anyone who can write the
    /// backend can plant an unsealed session: the hole the keys close is
    /// open again. Default false.
    pub fn accept_unsealed(mut self, accept: bool) -> Self {
        self.accept_unsealed = accept;
        self
    }

    /// Headers sent with every request that does not set the same name
    /// itself (as reqwest's `default_headers`); replaces the defaults set
    /// before, except a [`user_agent`](Self::user_agent) set after.
    ///
    /// ```
    /// use h3fleet::Session;
    /// use http::{header, HeaderMap, HeaderValue};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    /// let session = Session::builder().default_headers(headers).build()?;
    /// # drop(session);
    /// # Ok::<(), h3fleet::Error>(())
    /// ```
    pub fn default_headers(mut self, headers: http::HeaderMap) -> Self {
        if let Ok(mine) = &mut self.default_headers {
            *mine = headers;
        }
        self
    }

    /// Which redirects requests follow: by default up to 10, as reqwest
    /// (`Policy::none()` returns a redirect as the response). On the way,
    /// 301 and 302 turn `POST` into `GET` and 303 anything but `HEAD`;
    /// `Authorization`, `Cookie` and `Proxy-Authorization` are dropped when
    /// the origin changes; a hop goes as 0-RTT only if it is replay-safe by
    /// the same rule as a first request. [`Response::redirects`](crate::Response::redirects)
    /// lists the hops, each with its own [`TlsInfo`](crate::TlsInfo).
    pub fn redirect(mut self, policy: super::redirect::Policy) -> Self {
        self.redirect = policy;
        self
    }

    /// Writes every connection's TLS secrets (QUIC and TCP) to the file
    /// `SSLKEYLOGFILE` names, in the NSS key log format Wireshark reads, as
    /// reqwest's `tls_sslkeylogfile`. Default off; with it on and the
    /// variable unset, nothing is written. Whoever can read that file can
    /// decrypt the traffic: use it to debug, never in production. The file
    /// is created readable by its owner only.
    pub fn tls_sslkeylogfile(mut self, on: bool) -> Self {
        self.sslkeylogfile = on;
        self
    }

    /// Accepts any certificate, verifying none, like reqwest's
    /// `danger_accept_invalid_certs` and curl's `-k`: anyone on the path
    /// can then read and change the traffic. Default false.
    ///
    /// Such a session never touches the fleet's cache: the backend given
    /// to [`session_cache`](Self::session_cache) is not used (with a
    /// warning), so a session won from a server nobody verified is never
    /// written where verifying replicas would find it, and nothing a
    /// verifying replica stored is read. Its tickets stay in its own
    /// memory, offered only where their chain verifies.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.accept_invalid_certs = accept;
        self
    }

    /// Sends every connection through `proxy`, as reqwest's `proxy`: TCP
    /// through HTTP CONNECT (`http://`, or `https://` inside TLS) or SOCKS5
    /// (see [`Proxy`](crate::Proxy)), and HTTP/3 through a SOCKS5 proxy's
    /// UDP relay. An HTTP proxy carries TCP only: `Auto` then speaks TCP
    /// and `Http3` fails ([`Error::is_proxy`](crate::Error::is_proxy)).
    ///
    /// Unlike reqwest, a session reads no proxy from the environment unless
    /// told to (`.proxy(..)` with [`Proxy::from_env`](crate::Proxy::from_env)):
    /// a fleet's replicas should not change exits, and so ticket keys, with
    /// a variable set in one of them. `h3fleet get` reads it, as curl.
    ///
    /// Tickets won through the proxy are stored under keys that name it
    /// (`{preset}~{16 hex digits of the SHA-256 of scheme://user@host:port}`),
    /// so they are resumed only through the same exit, never through
    /// another or directly; a session identifier still applies on top.
    pub fn proxy(mut self, proxy: crate::Proxy) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// No proxy at all (undoes [`proxy`](Self::proxy)), as reqwest's
    /// `no_proxy`.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = None;
        self
    }

    /// Offers this client certificate to servers that ask for one, as
    /// reqwest's `identity` (read it with
    /// [`Identity::from_pem`](crate::tls::Identity::from_pem)); QUIC and
    /// TCP alike.
    ///
    /// Resuming a session resumes the authentication it was won with, so
    /// the sessions of an identity are kept apart: their backend keys carry
    /// the certificate's fingerprint after the preset
    /// (`{preset}@{first 32 hex digits of its SHA-256}`), and a session
    /// without an identity, or with another, never finds them.
    pub fn identity(mut self, identity: crate::tls::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Ask for and decode gzip bodies (default: on when the `gzip` feature
    /// is). As in reqwest, `Accept-Encoding` lists the codings on unless the
    /// request sets it, and a decoded response loses its `Content-Encoding`
    /// and `Content-Length` headers; a body that does not decode is an
    /// [`Error::is_decode`](crate::Error::is_decode) error.
    pub fn gzip(mut self, on: bool) -> Self {
        self.accepts.gzip = on && cfg!(feature = "gzip");
        self
    }

    /// Ask for and decode brotli (`br`) bodies (the `brotli` feature).
    pub fn brotli(mut self, on: bool) -> Self {
        self.accepts.brotli = on && cfg!(feature = "brotli");
        self
    }

    /// Ask for and decode zstd bodies (the `zstd` feature).
    pub fn zstd(mut self, on: bool) -> Self {
        self.accepts.zstd = on && cfg!(feature = "zstd");
        self
    }

    /// Ask for and decode deflate (zlib) bodies (the `deflate` feature).
    pub fn deflate(mut self, on: bool) -> Self {
        self.accepts.deflate = on && cfg!(feature = "deflate");
        self
    }

    /// The `User-Agent` of every request that does not set one (default
    /// `h3fleet/VERSION`). An invalid value fails [`build`](Self::build).
    pub fn user_agent<V>(mut self, value: V) -> Self
    where
        http::HeaderValue: TryFrom<V>,
        <http::HeaderValue as TryFrom<V>>::Error: std::fmt::Display,
    {
        match (http::HeaderValue::try_from(value), &mut self.default_headers) {
            (Ok(v), Ok(headers)) => {
                headers.insert(http::header::USER_AGENT, v);
            }
            (Err(e), Ok(_)) => self.default_headers = Err(Error::Header(format!("user agent: {e}"))),
            (_, Err(_)) => {}
        }
        self
    }

    /// Whether connections share each origin's one ticket
    /// ([`TicketReuse::Shared`], the default) or each take a ticket of
    /// their own from a fleet-wide pool ([`TicketReuse::SingleUse`]).
    ///
    /// Choose `SingleUse` for servers that accept a 0-RTT ticket only once
    /// (anti-replay, RFC 8446 section 8): under `Shared` every replica after
    /// the first has its early data refused and resent a round trip later.
    /// `SingleUse` also keeps the server from linking connections through a
    /// ticket they share (RFC 8446 appendix C.4). Its cost: a pool that
    /// runs dry means a full handshake, and every new connection asks the
    /// backend (there is no local copy to reuse).
    ///
    /// ```
    /// use h3fleet::cache::TicketReuse;
    /// use h3fleet::Session;
    ///
    /// let session = Session::builder().ticket_reuse(TicketReuse::single_use()).build()?;
    /// # drop(session);
    /// # Ok::<(), h3fleet::Error>(())
    /// ```
    pub fn ticket_reuse(mut self, reuse: TicketReuse) -> Self {
        self.ticket_reuse = reuse;
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

    /// The longest making a new connection (lookup, TCP or QUIC handshake,
    /// TLS) may take. Default 10 s. It stops counting once the connection is
    /// established: waiting for the first response is not connecting (use
    /// [`timeout`](Self::timeout) for that).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The longest a request may take, from sending it to the last byte of
    /// its body. Default none. A limit too large to add to the current time
    /// (`Duration::MAX`) means none.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Binds every socket to this local address before connecting, like
    /// reqwest's `local_address` and curl's `--interface`. Addresses of
    /// the other family are then not tried over TCP. Default none (the
    /// system chooses).
    pub fn local_address<T: Into<Option<IpAddr>>>(mut self, addr: T) -> Self {
        self.socket.local_address = addr.into();
        self
    }

    /// Turns on TCP keepalive with this idle time before the first probe,
    /// like reqwest's `tcp_keepalive` (whole seconds, at least one). Default
    /// none (off). QUIC has its own keep-alive and ignores this.
    pub fn tcp_keepalive<D: Into<Option<Duration>>>(mut self, idle: D) -> Self {
        self.socket.keepalive = idle.into();
        self
    }

    /// The longest the server may stay silent, as reqwest's `read_timeout`:
    /// from a connection established (or a request sent on an open one) to
    /// the response head, and then between two pieces of the body; each
    /// read restarts it. Default none. A stalled server is an
    /// [`Error::is_timeout`](crate::Error::is_timeout) error.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = Some(limit);
        self
    }

    /// How long an unused connection stays open for reuse. Default 90 s.
    pub fn idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// reqwest's name for [`idle_timeout`](Self::idle_timeout); `None`
    /// keeps unused connections until the server closes them.
    pub fn pool_idle_timeout<D: Into<Option<Duration>>>(self, limit: D) -> Self {
        self.idle_timeout(limit.into().unwrap_or(Duration::MAX))
    }

    /// The most connections kept open for reuse per origin, as reqwest's
    /// `pool_max_idle_per_host`. An HTTP/3 or HTTP/2 connection carries
    /// every request to its origin at once, so this bounds the HTTP/1.1
    /// connections that concurrent requests opened. `0` turns reuse off:
    /// each request opens (and resumes) a connection of its own. Default
    /// no limit.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.max_idle_per_host = max;
        self
    }

    /// Refuses `http://` URLs, the first one and any a redirect leads to,
    /// as reqwest's `https_only`. Default off: an `http://` URL is fetched
    /// over plain HTTP/1.1 (no TLS, so nothing is cached and nothing goes
    /// early).
    pub fn https_only(mut self, enabled: bool) -> Self {
        self.https_only = enabled;
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
        self.dns_server = Some(addr);
        self
    }

    /// The ticket caches' options this builder sets.
    fn cache_options(&self) -> Result<CacheOptions, Error> {
        Ok(CacheOptions {
            get_timeout: self.backend_get_timeout.min(MAX_GET_TIMEOUT),
            keys: KeyFormat::with_prefix(self.key_prefix.clone())
                .map_err(|e| Error::Config(format!("cache key prefix: {e}")))?,
            cache_keys: self.cache_keys.clone(),
            accept_unsealed: self.accept_unsealed,
            ticket_reuse: self.ticket_reuse,
            ..CacheOptions::default()
        })
    }

    /// Refuses a malformed ECH config; sets the backend aside under
    /// `danger_accept_invalid_certs`, else warns if its values go unsealed.
    fn check_backend_and_ech(&mut self, options: &CacheOptions) -> Result<(), Error> {
        for ((host, port), list) in &self.ech_configs {
            ech::validate_ech_config_list(list)
                .map_err(|e| Error::Config(format!("the ECH config for {host}:{port}: {e}")))?;
        }
        if self.accept_invalid_certs && self.backend.take().is_some() {
            tracing::warn!("danger_accept_invalid_certs: the session cache backend is not used");
        }
        if let Some((backend, _)) = &self.backend {
            warn_if_unsealed(backend.name(), options.cache_keys.is_some());
        }
        Ok(())
    }

    /// Builds the session.
    ///
    /// # Errors
    ///
    /// An unknown preset, an unreadable root certificate, a malformed
    /// override or ECH config, an invalid key prefix, an invalid default
    /// header or user agent.
    pub fn build(mut self) -> Result<Session, Error> {
        let options = self.cache_options()?;
        self.check_backend_and_ech(&options)?;
        let preset = self.preset?;
        let default_headers = self.default_headers?;
        let caches = TicketCaches::new(&options);
        let ech = Arc::new(EchCache::new(preset.name(), &options));
        let breaker = self.breaker.map(|mut config| {
            config
                .probe_key
                .get_or_insert_with(|| format!("{}:probe", self.key_prefix));
            config
        });
        let ticket_preset = ticket_preset(&preset, self.identity.as_ref(), self.proxy.as_ref());
        let breaker = attach_backend(self.backend, breaker, &caches, &ech, &ticket_preset);
        if let Some(id) = &self.identifier {
            caches.set_session_identifier(id);
        }
        let connector = Connector::new(ConnectorSettings {
            preset: preset.clone(),
            mode: self.mode,
            system_roots: self.system_roots,
            roots_pem: self.roots_pem,
            overrides: self.overrides,
            dns_server: self.dns_server,
            ech_policy: self.ech,
            ech_configs: self.ech_configs,
            head_start: self.head_start,
            caches: caches.clone(),
            ech,
            sslkeylogfile: self.sslkeylogfile,
            accept_invalid_certs: self.accept_invalid_certs,
            identity: self.identity,
            proxy: self.proxy,
            socket: self.socket,
        })?;
        Ok(Session {
            inner: Arc::new(Inner {
                mode: self.mode,
                breaker,
                caches,
                connector,
                pool: Pool::new(self.idle_timeout, self.max_idle_per_host),
                plain: Pool::new(self.idle_timeout, self.max_idle_per_host),
                https_only: self.https_only,
                early_data: self.early_data,
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                read_timeout: self.read_timeout,
                close_timeout: self.close_timeout,
                default_headers,
                redirect: self.redirect,
                accepts: self.accepts,
                preset,
            }),
        })
    }
}

/// The preset component of ticket keys. Sessions won with a client
/// certificate resume its authentication: their keys name it, so they are
/// never offered without it. Sessions won through a proxy would link its
/// exit to any other they were resumed through: their keys name the proxy
/// (a hash of its namespace, so keys do not spell out the exit).
fn ticket_preset(
    preset: &Preset,
    identity: Option<&crate::tls::Identity>,
    proxy: Option<&crate::Proxy>,
) -> String {
    let mut component = preset.name().to_owned();
    if let Some(identity) = identity {
        component = format!("{component}@{}", identity.key_tag());
    }
    if let Some(proxy) = proxy {
        let digest = boring::sha::sha256(proxy.namespace().as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        component = format!("{component}~{tag}");
    }
    component
}

/// Attaches the backend to the ticket caches and the ECH cache: behind a
/// breaker (which takes it away while the backend fails) or directly.
fn attach_backend(
    backend: Option<(Arc<dyn SessionCacheBackend>, Option<ErrorCallback>)>,
    breaker: Option<BreakerConfig>,
    caches: &TicketCaches,
    ech: &Arc<EchCache>,
    preset: &str,
) -> Option<Arc<CircuitBreaker>> {
    let (backend, on_error) = backend?;
    match breaker {
        Some(config) => {
            let b = CircuitBreaker::new(backend, config, on_error);
            for (cache, protocol) in caches.all() {
                b.manage(cache, preset, protocol);
            }
            ech.set_error_callback(Some(b.error_callback()));
            let ech_cache = Arc::clone(ech);
            b.attach(Box::new(move |backend| ech_cache.set_backend(backend)));
            Some(b)
        }
        None => {
            for (cache, protocol) in caches.all() {
                cache.set_backend(Some(Arc::clone(&backend)), preset, protocol, on_error.clone());
            }
            ech.set_error_callback(on_error);
            ech.set_backend(Some(backend));
            None
        }
    }
}

/// A store other processes or hosts reach, written without keys: say once
/// per session what that allows.
fn warn_if_unsealed(backend: &str, sealed: bool) {
    if !sealed && matches!(backend, "redis" | "redis-cluster" | "memcached") {
        tracing::warn!(
            backend,
            "no cache keys: whoever can read this backend can decrypt resumed requests' early data, \
             and whoever can write it can send every replica to a server of their choosing; \
             set cache keys (SessionBuilder::cache_keys, --cache-keys)"
        );
    }
}
