//! Opening a new connection, for HTTP/3 and TCP alike.
//!
//! A [`Connector`] (one per session) turns an origin into a [`Target`]: its
//! addresses, the ECH offer, the ticket to offer and where new tickets go.
//! Both dials take that one description. What is common to them is written
//! once here: the retry after an ECH rejection ([`Connector::with_ech_retry`]),
//! the resend after `425 Too Early` ([`resend_if_too_early`]), and the
//! invalidation of a ticket the server refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::OnceCell;

use super::conn::{Conn, Connected, EarlyData, OfferedTicket, OnReady, ResponseBody, SharedReady, Tickets};
use super::ech_offer::EchChoice;
use super::egress::{Proxy, Tunnel};
use super::eyeballs::{self, SocketOptions};
use super::h3::{Dial, H3Connection, Handshaken, UNCLAIMED};
use super::select::{Open, Plan, ProtocolMemory};
use super::tcp::{TcpConnection, TcpDial};
use super::{HttpProtocol, PreparedRequest};
use crate::cache::{CacheHit, CachedSession, Protocol, TicketCaches, TicketReuse};
use crate::dns::{parse_override, Resolver, Upstream};
use crate::ech::{EchCache, EchPolicy};
use crate::error::Error;
use crate::preset::Preset;
use crate::quic::QuicClientConfig;
use crate::tls::early_data::RetryFresh;
use crate::tls::{EchRejection, KeyLog, TcpClientConfig, TicketSink};

/// How a session connects: what its builder decided.
pub(crate) struct ConnectorSettings {
    pub(crate) preset: Preset,
    pub(crate) mode: HttpProtocol,
    pub(crate) system_roots: bool,
    pub(crate) roots_pem: Vec<Vec<u8>>,
    /// curl-style `HOST:PORT:ADDR[,ADDR...]` overrides.
    pub(crate) overrides: Vec<String>,
    /// A DNS server to ask instead of the system's.
    pub(crate) dns_server: Option<SocketAddr>,
    pub(crate) ech_policy: EchPolicy,
    pub(crate) ech_configs: HashMap<(String, u16), Vec<u8>>,
    pub(crate) head_start: Duration,
    pub(crate) caches: TicketCaches,
    pub(crate) ech: Arc<EchCache>,
    /// Honour `SSLKEYLOGFILE`.
    pub(crate) sslkeylogfile: bool,
    /// Verify no certificate.
    pub(crate) accept_invalid_certs: bool,
    /// The client certificate, if any.
    pub(crate) identity: Option<crate::tls::Identity>,
    /// The egress proxy, if any.
    pub(crate) proxy: Option<Proxy>,
    /// The local address and keepalive of every TCP socket (the local
    /// address binds QUIC sockets too).
    pub(crate) socket: SocketOptions,
}

/// Opens the connections of one session.
#[derive(Debug)]
pub(crate) struct Connector {
    pub(crate) mode: HttpProtocol,
    pub(crate) head_start: Duration,
    pub(crate) memory: ProtocolMemory,
    pub(crate) ech_policy: EchPolicy,
    pub(crate) ech_configs: HashMap<(String, u16), Vec<u8>>,
    pub(crate) ech: Arc<EchCache>,
    pub(crate) resolver: Resolver,
    caches: TicketCaches,
    tls: QuicClientConfig,
    tcp_tls: TcpClientConfig,
    /// Speaks to an `https://` proxy: the session's roots, `http/1.1`.
    proxy_tls: Option<TcpClientConfig>,
    transport: Arc<quinn::TransportConfig>,
    socket: SocketOptions,
    /// Every connection goes through it (TCP only).
    pub(crate) proxy: Option<Proxy>,
    v4: OnceCell<quinn::Endpoint>,
    v6: OnceCell<quinn::Endpoint>,
}

/// What one new connection is for: the origin, the identifier it is opened
/// under, its first request and who gets it once it is usable.
pub(crate) struct NewConnection<'a> {
    /// The protocol setting for this request (the session's, unless the
    /// request asked for a version).
    pub(crate) mode: HttpProtocol,
    pub(crate) identifier: Option<String>,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    /// The ECH offer, if the request already chose it (it is chosen once per
    /// connection, so its source is reported as it was found).
    pub(crate) ech: Option<EchChoice>,
    pub(crate) request: &'a PreparedRequest,
    pub(crate) on_ready: OnReady<'a>,
    /// Marked once the connection is established (for the connect timeout).
    pub(crate) connected: &'a Connected,
}

/// A new connection and the response head of its first request.
pub(crate) struct Opened {
    pub(crate) head: http::response::Parts,
    pub(crate) body: ResponseBody,
    /// The server answered `425 Too Early` and the request went again.
    pub(crate) retried_too_early: bool,
    /// Overrides the connection's own early-data report (the request was
    /// moved to a new connection after its early data was refused).
    pub(crate) early_data: Option<EarlyData>,
}

impl Opened {
    pub(crate) fn new((head, body): (http::response::Parts, ResponseBody)) -> Self {
        Self {
            head,
            body,
            retried_too_early: false,
            early_data: None,
        }
    }

    pub(crate) fn conn(&self) -> &Conn {
        self.body.conn()
    }
}

/// Where a new connection goes and what it offers.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) ech: EchChoice,
    /// Hears if the server rejects ECH (fresh for each attempt).
    pub(crate) ech_rejection: Arc<EchRejection>,
    pub(crate) origin: String,
    pub(crate) server_name: String,
    pub(crate) port: u16,
    /// In resolver order; QUIC uses the first, TCP tries each in turn.
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) identifier: Option<String>,
    pub(crate) protocol: Protocol,
    /// The protocols a ticket was looked for under: for TCP, what ALPN
    /// offers.
    pub(crate) protocol_choices: &'static [Protocol],
    pub(crate) hit: Option<CacheHit>,
    pub(crate) tickets: Arc<Tickets>,
    pub(crate) sink: TicketSink,
}

/// The host as a TLS server name: an IPv6 literal without its brackets.
pub(crate) fn server_name(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connector {
    /// Builds the TLS configurations, the resolver and the QUIC transport.
    pub(crate) fn new(settings: ConnectorSettings) -> Result<Self, Error> {
        let (tls, tcp_tls) = tls_configs(&settings)?;
        let proxy_tls = settings
            .proxy
            .as_ref()
            .is_some_and(Proxy::speaks_tls)
            .then(|| proxy_tls_config(&settings))
            .transpose()?;
        Ok(Self {
            mode: settings.mode,
            head_start: settings.head_start,
            memory: ProtocolMemory::default(),
            ech_policy: settings.ech_policy,
            ech_configs: settings.ech_configs,
            ech: settings.ech,
            resolver: resolver(settings.overrides, settings.dns_server)?,
            caches: settings.caches,
            tls,
            tcp_tls,
            proxy_tls,
            transport: Arc::new(transport(&settings.preset)?),
            socket: settings.socket,
            proxy: settings.proxy,
            v4: OnceCell::new(),
            v6: OnceCell::new(),
        })
    }

    /// How a request to `host:port` goes, from the mode and what has been
    /// learned about the origin.
    pub(crate) fn plan(&self, mode: HttpProtocol, host: &str, port: u16) -> Plan {
        if self.proxy_for(host).is_some_and(|p| !p.carries_udp()) && mode == HttpProtocol::Auto {
            // HTTP/3 cannot go through an HTTP proxy (see `egress`).
            return Plan::tcp_only();
        }
        super::select::plan(mode, &self.memory, host, port)
    }

    /// Opens a connection as `plan` says and sends the first request on it.
    pub(crate) async fn open(&self, open: Open, new: NewConnection<'_>) -> Result<Opened, Error> {
        let ech = match new.ech.clone() {
            Some(ech) => ech,
            None => self.ech_for(server_name(new.host), new.port).await?,
        };
        let protocols: &'static [Protocol] = match open {
            Open::H3 => &[Protocol::H3],
            Open::Tcp => new.mode.tcp_protocols(),
            Open::Race { h3_port, expected } => {
                return self.open_raced(new, ech, h3_port, expected).await;
            }
        };
        let target = self
            .target(new.identifier, new.host, new.port, protocols, ech)
            .await?;
        match open {
            Open::H3 => self.open_h3(target, new.request, new.on_ready, None).await,
            _ => {
                self.open_tcp(target, new.request, new.on_ready, new.connected)
                    .await
            }
        }
    }

    /// Lets the CONNECTION_CLOSE frames of closed connections leave: waits
    /// until each QUIC endpoint has none left to send, at most `limit`.
    pub(crate) async fn wait_closes_sent(&self, conns: &[Conn], limit: Duration) {
        let sent = async {
            // The frame usually leaves within a few turns of the scheduler;
            // a timer tick (a millisecond or more) would cost more than that.
            let mut turns = 0u32;
            while !conns.iter().all(Conn::close_sent) {
                turns += 1;
                if turns < 200 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // The frame is in a datagram; one turn of the endpoint driver
            // hands it to the socket.
            tokio::task::yield_now().await;
        };
        let _ = tokio::time::timeout(limit, sent).await;
    }

    /// Resolves `host` and looks up the session to offer.
    pub(crate) async fn target(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        protocols: &'static [Protocol],
        ech: EchChoice,
    ) -> Result<Target, Error> {
        let server_name = server_name(host).to_owned();
        // A proxy that resolves names gets the name: no lookup leaks it here.
        let proxy = self.proxy_for(host);
        let addrs = match proxy {
            Some(proxy) if proxy.resolves_names() => Vec::new(),
            _ => self.resolver.resolve(host, port).await?,
        };
        if addrs.is_empty() && !proxy.is_some_and(Proxy::resolves_names) {
            return Err(url_error(host, "no address"));
        }
        let (protocol, hit) = self
            .offer(identifier.clone(), &server_name, port, protocols, &ech)
            .await;
        let tickets = Arc::new(Tickets::default());
        let sink = self.sink(identifier.clone(), &server_name, port, &tickets);
        Ok(Target {
            ech,
            ech_rejection: Arc::new(EchRejection::default()),
            origin: format!("{host}:{port}"),
            server_name,
            port,
            addrs,
            identifier,
            protocol,
            protocol_choices: protocols,
            hit,
            tickets,
            sink,
        })
    }

    /// The first protocol with a session to offer (TCP: h2, then h1). A
    /// ticket won over ECH goes only into a ClientHello that offers ECH.
    async fn offer(
        &self,
        identifier: Option<String>,
        server_name: &str,
        port: u16,
        protocols: &[Protocol],
        ech: &EchChoice,
    ) -> (Protocol, Option<CacheHit>) {
        for p in protocols {
            let hit = self
                .caches
                .of(*p)
                .get_for(identifier.clone(), server_name, port)
                .await
                .filter(|h| !h.session.envelope.ech || ech.list.is_some())
                .filter(|h| self.trusts(h, server_name));
            if hit.is_some() {
                return (*p, hit);
            }
        }
        (protocols.first().copied().unwrap_or(Protocol::H3), None)
    }

    /// A stored session is offered only if the chain it carries verifies
    /// for `server_name` under this session's roots (`tls::resume`): one won
    /// under other trust settings, or copied from an impostor, is a miss.
    fn trusts(&self, hit: &CacheHit, server_name: &str) -> bool {
        let trusted = match hit.session.envelope.protocol {
            Protocol::H3 => self.tls.trusts_session(&hit.session, server_name),
            _ => self.tcp_tls.trusts_session(&hit.session, server_name),
        };
        if !trusted {
            tracing::debug!(
                server_name,
                "stored session not trusted under these roots; not offered"
            );
        }
        trusted
    }

    /// Where a connection's tickets go: each to the cache of the protocol it
    /// was won on, under the identifier the connection was opened for.
    fn sink(&self, identifier: Option<String>, name: &str, port: u16, tickets: &Arc<Tickets>) -> TicketSink {
        let (caches, tickets, name) = (self.caches.clone(), Arc::clone(tickets), name.to_owned());
        Arc::new(move |ticket: CachedSession, sharing| {
            caches
                .of(ticket.envelope.protocol)
                .put_for(identifier.clone(), &name, port, ticket, sharing);
            tickets.add();
        })
    }

    /// How the report of a connection to `target` describes its ticket.
    fn offered_ticket(&self, target: &Target) -> OfferedTicket {
        let reuse = self.caches.of(target.protocol).ticket_reuse();
        let pool_held = match (&target.hit, reuse) {
            (_, TicketReuse::Shared) => None,
            (Some(hit), _) => hit.pool_left.map(|left| left + 1),
            (None, _) => Some(0),
        };
        OfferedTicket {
            source: target.hit.as_ref().map(|h| h.source),
            reuse,
            pool_held,
        }
    }

    /// What a completed handshake teaches: an offered session the server
    /// did not resume is forgotten; an ECH config it accepted is proven.
    pub(crate) fn check_resumed(&self, target: &Target, conn: &Conn) {
        self.ech_proven(target, conn.handshake().ech_accepted);
        if let Some(hit) = &target.hit {
            if !conn.handshake().resumed {
                tracing::debug!(origin = %target.origin, "offered session refused; forgetting it");
                self.caches.of(target.protocol).invalidate_for(
                    target.identifier.clone(),
                    &target.server_name,
                    target.port,
                    &hit.session.ticket,
                );
            }
        }
    }

    /// Runs `attempt` for `target`; if it fails because the server rejected
    /// ECH, once more with what the rejection allows (RFC 9849 §6.1.6).
    pub(crate) async fn with_ech_retry<T, F, Fut>(
        &self,
        target: &mut Target,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Target) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let first = attempt(target.clone()).await;
        let Err(e) = first else { return first };
        let result = if self.adopt_ech_retry(target)? {
            attempt(target.clone()).await
        } else {
            Err(e)
        };
        // A certificate refused while a cached config was offered is what a
        // bogus config looks like (the server could not decrypt it, and its
        // certificate is not for the public name); a retry config rejected
        // too has failed as well: the config offered last goes.
        if result.as_ref().is_err_and(|e| e.is_tls() || e.is_ech()) {
            self.ech_failed(target);
        }
        result
    }

    /// Opens an HTTP/3 connection carrying `request` first (in 0-RTT when
    /// it may), with the ECH retry.
    pub(crate) async fn open_h3(
        &self,
        mut target: Target,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
        handshaken: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Opened, Error> {
        let ready = SharedReady::new(on_ready);
        let signal = Arc::new(std::sync::Mutex::new(handshaken));
        let opened = self
            .with_ech_retry(&mut target, |t| {
                let (ready, signal) = (&ready, Arc::clone(&signal));
                async move { self.open_h3_addresses(&t, request, ready, signal).await }
            })
            .await?;
        resend_if_too_early(opened, request).await
    }

    /// Opens the connection on the first of the target's addresses to
    /// answer QUIC: a dead first address costs at most the stagger
    /// ([`eyeballs::first_to_answer`]). Only the first attempt to complete
    /// its handshake sends a request that must not go twice.
    async fn open_h3_addresses(
        &self,
        target: &Target,
        request: &PreparedRequest,
        ready: &SharedReady<'_>,
        signal: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    ) -> Result<Opened, Error> {
        let ordered = match self.proxy_for(&target.server_name) {
            // The proxy resolves the name: one attempt, to the relay.
            Some(proxy) if proxy.resolves_names() => vec![Proxy::quic_placeholder(target.port)],
            _ => self.socket.order(&target.addrs),
        };
        let slot = Arc::new(AtomicUsize::new(UNCLAIMED));
        let committed = || Some(slot.load(Ordering::SeqCst)).filter(|i| *i != UNCLAIMED);
        let attempt = |i, addr| {
            let handshaken = Handshaken {
                signal: Arc::clone(&signal),
                claim: (ordered.len() > 1).then(|| (Arc::clone(&slot), i)),
            };
            self.open_h3_at(target, addr, request, ready.hook(), handshaken)
        };
        eyeballs::first_to_answer(&ordered, eyeballs::STAGGER, committed, attempt)
            .await
            .map_err(|failures| {
                // The committed attempt's error if there is one, else the last.
                let winner = committed();
                let mut failures = failures;
                let chosen = match failures.iter().position(|(i, _)| Some(*i) == winner) {
                    Some(at) => Some(failures.swap_remove(at)),
                    None => failures.pop(),
                };
                match chosen {
                    Some((_, e)) => e,
                    None => eyeballs::no_address(&target.origin, &self.socket),
                }
            })
    }

    async fn open_h3_at(
        &self,
        target: &Target,
        addr: SocketAddr,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
        handshaken: Handshaken,
    ) -> Result<Opened, Error> {
        let (endpoint, addr, via) = match self.proxy_for(&target.server_name) {
            Some(proxy) => {
                proxy
                    .quic_endpoint(&target.server_name, target.port, addr, &self.socket)
                    .await?
            }
            None => (self.endpoint(&addr).await?, addr, None),
        };
        let session = target.hit.as_ref().map(|h| h.session.clone());
        let early = session.as_ref().is_some_and(|s| s.envelope.early_data);
        // Offer early data only when this request will use it.
        let request = match request.replay_safe.filter(|_| early) {
            Some(_) => request.clone(),
            None => request.after_handshake(),
        };
        let session = session.map(|mut s| {
            s.envelope.early_data &= request.replay_safe.is_some();
            s
        });
        let dial = Dial {
            origin: target.origin.clone(),
            server_name: target.server_name.clone(),
            addr,
            endpoint,
            tls: self
                .tls
                .with_session(session)
                .on_ticket(Arc::clone(&target.sink))
                .with_ech_config_list(target.ech.list.clone())
                .with_ech_grease(target.ech.grease)
                .with_ech_rejection(Arc::clone(&target.ech_rejection)),
            transport: Arc::clone(&self.transport),
            ticket: self.offered_ticket(target),
            tickets: Arc::clone(&target.tickets),
            on_ready: Some(on_ready),
            handshaken,
            ech_offered: target.ech.offered(),
            via,
        };
        let first = H3Connection::open(dial, &request).await?;
        let conn = Conn::H3(first.conn);
        self.check_resumed(target, &conn);
        let (head, ()) = first.head.into_parts();
        let body = super::conn::Body::H3(Box::new(first.stream));
        Ok(Opened::new((head, ResponseBody::new(conn, body))))
    }

    /// Opens a TLS-over-TCP connection (HTTP/2 or HTTP/1.1) and sends
    /// `request` on it: as early data when it may and the session allows
    /// it, in which case the connection is handed to other requests only
    /// once the handshake is complete (they must not go early).
    pub(crate) async fn open_tcp(
        &self,
        mut target: Target,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
        connected: &Connected,
    ) -> Result<Opened, Error> {
        let session_early = target.hit.as_ref().is_some_and(|h| h.session.envelope.early_data);
        let early = request.replay_safe.filter(|_| session_early);
        let first = self.dial_tcp(&mut target, early).await?;
        connected.mark();
        let conn = Conn::Tcp(Arc::clone(&first));
        if !first.early_data_offered() {
            self.check_resumed(&target, &conn);
            on_ready(conn.clone());
            return Ok(Opened::new(conn.exchange(request).await?));
        }
        match conn.exchange(request).await {
            Ok(answer) => {
                self.check_resumed(&target, &conn);
                on_ready(conn);
                resend_if_too_early(Opened::new(answer), request).await
            }
            Err(e) => {
                let Some(why) = first.retry_fresh() else {
                    return Err(e);
                };
                self.check_resumed(&target, &conn);
                drop(conn);
                self.retry_fresh(target, why, e, request, on_ready).await
            }
        }
    }

    /// After early data that could not be used: nothing of the request
    /// reached the server as a request (the early data was refused and not
    /// replayed, or the handshake failed), so it goes once more, on a new
    /// connection, after the handshake.
    async fn retry_fresh(
        &self,
        mut target: Target,
        why: RetryFresh,
        error: Error,
        request: &PreparedRequest,
        on_ready: OnReady<'_>,
    ) -> Result<Opened, Error> {
        tracing::debug!(origin = %target.origin, ?why, "early data unusable; retrying on a new connection");
        if why == RetryFresh::EchRejected && !self.adopt_ech_retry(&mut target)? {
            return Err(error);
        }
        let conn = Conn::Tcp(self.dial_tcp(&mut target, None).await?);
        self.check_resumed(&target, &conn);
        on_ready(conn.clone());
        let mut opened = Opened::new(conn.exchange(request).await?);
        opened.early_data = Some(EarlyData::Rejected);
        Ok(opened)
    }

    /// Connects over TCP and runs the TLS handshake for `target`, with the
    /// ECH retry.
    pub(crate) async fn dial_tcp(
        &self,
        target: &mut Target,
        early: Option<crate::replay::ReplaySafe>,
    ) -> Result<Arc<TcpConnection>, Error> {
        self.with_ech_retry(target, |t| async move { self.dial_tcp_once(&t, early).await })
            .await
    }

    async fn dial_tcp_once(
        &self,
        target: &Target,
        early: Option<crate::replay::ReplaySafe>,
    ) -> Result<Arc<TcpConnection>, Error> {
        TcpConnection::open(TcpDial {
            origin: target.origin.clone(),
            server_name: target.server_name.clone(),
            addrs: target.addrs.clone(),
            port: target.port,
            socket: self.socket.clone(),
            proxy: self.proxy_for(&target.server_name).cloned(),
            proxy_tls: self.proxy_tls.clone(),
            tls: self.tcp_tls.clone(),
            alpn: tcp_alpn(target.protocol_choices),
            resume: target.hit.as_ref().map(|h| h.session.clone()),
            sink: Arc::clone(&target.sink),
            ticket: self.offered_ticket(target),
            tickets: Arc::clone(&target.tickets),
            early_data: early,
            ech: target.ech.list.clone(),
            ech_offered: target.ech.offered(),
            ech_rejection: Arc::clone(&target.ech_rejection),
        })
        .await
    }

    /// The proxy connections to `host` go through: none if it is in the
    /// proxy's no-proxy list.
    pub(crate) fn proxy_for(&self, host: &str) -> Option<&Proxy> {
        self.proxy.as_ref().filter(|p| p.applies_to(host))
    }

    /// Opens a plain HTTP/1.1 connection for an `http://` URL.
    pub(crate) async fn open_plain(&self, host: &str, port: u16) -> Result<Conn, Error> {
        let started = std::time::Instant::now();
        let proxy = self.proxy_for(host);
        let remote_dns = proxy.is_some_and(Proxy::resolves_names);
        let addrs = if remote_dns {
            Vec::new()
        } else {
            self.resolver.resolve(host, port).await?
        };
        if addrs.is_empty() && !remote_dns {
            return Err(url_error(host, "no address"));
        }
        let origin = format!("{host}:{port}");
        let tcp = match proxy {
            Some(proxy) => {
                let tls = self.proxy_tls.as_ref();
                proxy.connect(host, port, &addrs, &self.socket, tls).await?
            }
            None => Tunnel::Tcp(eyeballs::connect(&origin, &addrs, &self.socket, eyeballs::STAGGER).await?),
        };
        Ok(Conn::Tcp(TcpConnection::open_plain(origin, tcp, started).await?))
    }

    async fn endpoint(&self, addr: &SocketAddr) -> Result<quinn::Endpoint, Error> {
        let (cell, any) = match addr {
            SocketAddr::V4(_) => (&self.v4, SocketAddr::from(([0, 0, 0, 0], 0))),
            SocketAddr::V6(_) => (&self.v6, SocketAddr::from(([0u16; 8], 0))),
        };
        let bind = match self.socket.local_address {
            Some(local) if local.is_ipv4() == addr.is_ipv4() => SocketAddr::new(local, 0),
            _ => any,
        };
        cell.get_or_try_init(|| async { quinn::Endpoint::client(bind).map_err(Error::Socket) })
            .await
            .cloned()
    }
}

/// RFC 8470 §5.2: a `425 Too Early` answer to a request that went as early
/// data is sent again once the handshake is complete. The short 425 body is
/// read first, so an HTTP/1.1 connection can carry the resend.
pub(crate) async fn resend_if_too_early(opened: Opened, request: &PreparedRequest) -> Result<Opened, Error> {
    let conn = opened.conn().clone();
    let went_early = opened.early_data.unwrap_or(conn.handshake().early_data) == EarlyData::Accepted;
    if opened.head.status != StatusCode::TOO_EARLY || !went_early {
        return Ok(opened);
    }
    tracing::debug!(protocol = ?conn.protocol(), "425 Too Early; sending the request again after the handshake");
    opened.body.discard().await;
    let mut again = Opened::new(conn.exchange(&request.after_handshake()).await?);
    again.retried_too_early = true;
    Ok(again)
}

/// The QUIC and TCP client contexts of a session: the preset's ALPN for
/// QUIC, the mode's for TCP, the same roots for both.
fn tls_configs(settings: &ConnectorSettings) -> Result<(QuicClientConfig, TcpClientConfig), Error> {
    let keylog = if settings.sslkeylogfile {
        KeyLog::from_env()?
    } else {
        None
    };
    let mut tls = QuicClientConfig::builder()
        .alpn_protocols(settings.preset.alpn().iter().copied())
        .system_roots(settings.system_roots)
        .danger_accept_invalid_certs(settings.accept_invalid_certs)
        .identity(settings.identity.clone())
        .keylog(keylog.clone());
    let mut tcp_tls = TcpClientConfig::builder()
        .alpn_protocols(settings.mode.tcp_alpn().iter().copied())
        .system_roots(settings.system_roots)
        .danger_accept_invalid_certs(settings.accept_invalid_certs)
        .identity(settings.identity.clone())
        .keylog(keylog);
    for pem in &settings.roots_pem {
        tls = tls.add_root_certificates_pem(pem.clone());
        tcp_tls = tcp_tls.add_root_certificates_pem(pem.clone());
    }
    Ok((tls.build()?, tcp_tls.build()?))
}

/// The TLS context for an `https://` proxy: the session's roots (and
/// certificate checks), ALPN `http/1.1`, no client certificate (that is the
/// origin's), no key log.
fn proxy_tls_config(settings: &ConnectorSettings) -> Result<TcpClientConfig, Error> {
    let mut tls = TcpClientConfig::builder()
        .alpn_protocols([b"http/1.1"])
        .system_roots(settings.system_roots)
        .danger_accept_invalid_certs(settings.accept_invalid_certs);
    for pem in &settings.roots_pem {
        tls = tls.add_root_certificates_pem(pem.clone());
    }
    Ok(tls.build()?)
}

fn resolver(specs: Vec<String>, dns_server: Option<SocketAddr>) -> Result<Resolver, Error> {
    let mut overrides: HashMap<(String, u16), Vec<IpAddr>> = HashMap::new();
    for spec in &specs {
        let (key, ips) = parse_override(spec).ok_or_else(|| {
            Error::Config(format!(
                "resolve override {spec:?} is not HOST:PORT:ADDR[,ADDR...]"
            ))
        })?;
        overrides.insert(key, ips);
    }
    let upstream = dns_server.map_or(Upstream::System, Upstream::Server);
    Ok(Resolver::new(upstream, overrides))
}

fn transport(preset: &Preset) -> Result<quinn::TransportConfig, Error> {
    let mut transport = quinn::TransportConfig::default();
    let idle = preset
        .quic_idle_timeout()
        .try_into()
        .map_err(|_| Error::Config("QUIC idle timeout out of range".into()))?;
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(preset.quic_keep_alive());
    Ok(transport)
}

/// What ALPN offers on a TCP connection that may resume a ticket of
/// `protocols`: `h2` for HTTP/2, `http/1.1` for HTTP/1.1, in their order.
fn tcp_alpn(protocols: &[Protocol]) -> Vec<&'static [u8]> {
    protocols
        .iter()
        .filter_map(|p| match p {
            Protocol::H2 => Some(&b"h2"[..]),
            Protocol::H1 => Some(&b"http/1.1"[..]),
            Protocol::H3 => None,
        })
        .collect()
}

pub(crate) fn url_error(url: &str, reason: &str) -> Error {
    Error::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
}
