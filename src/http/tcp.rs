//! One TCP connection with TLS on BoringSSL, speaking HTTP/2 or HTTP/1.1
//! (hyper), whichever ALPN chose; or, for an `http://` URL, plain
//! HTTP/1.1 with no TLS at all.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;

use super::body::Outgoing;
use super::conn::{EarlyData, EchOffered, Handshake, OfferedTicket, Tickets};
use super::egress::Tunnel;
use super::eyeballs::{self, SocketOptions};
use super::PreparedRequest;
use crate::cache::CachedSession;
use crate::error::Error;
use crate::replay::ReplaySafe;
use crate::tls::early_data::{EarlyDataReport, RetryFresh};
use crate::tls::{ConnectOptions, EchOffer, EchRejection, TcpClientConfig, TicketSink};

/// The HTTP version a TCP connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpHttp {
    H2,
    H1,
}

impl TcpHttp {
    /// `HTTP/2` or `HTTP/1.1`, for messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::H2 => "HTTP/2",
            Self::H1 => "HTTP/1.1",
        }
    }
}

enum Sender {
    H2(http2::SendRequest<Outgoing>),
    /// HTTP/1.1 carries one exchange at a time.
    H1(tokio::sync::Mutex<http1::SendRequest<Outgoing>>),
}

/// An open TLS-over-TCP connection.
pub(crate) struct TcpConnection {
    origin: String,
    host_header: http::HeaderValue,
    sender: Sender,
    task: JoinHandle<()>,
    pub(crate) http: TcpHttp,
    /// False for the plain HTTP/1.1 of an `http://` URL.
    pub(crate) tls: bool,
    /// What was known when the connection opened: with early data, the
    /// handshake is still running and `resumed` and `alpn` are predictions.
    opened: Handshake,
    started: Instant,
    offered_early: bool,
    early: Arc<EarlyDataReport>,
    pub(crate) tickets: Arc<Tickets>,
    /// HTTP/1.1: an exchange is under way (sent, its body not yet read to
    /// the end). hyper says it is ready for the next one a moment after
    /// the last body byte arrives; this says so as soon as it does.
    busy: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection")
            .field("origin", &self.origin)
            .field("http", &self.http)
            .field("handshake", &self.handshake())
            .finish_non_exhaustive()
    }
}

/// Everything needed to open a TCP connection to one origin.
pub(crate) struct TcpDial {
    /// `host:port`, for messages and the `Host` header.
    pub(crate) origin: String,
    pub(crate) server_name: String,
    /// Tried Happy Eyeballs style until one accepts the TCP connection.
    pub(crate) addrs: Vec<std::net::SocketAddr>,
    pub(crate) port: u16,
    pub(crate) socket: SocketOptions,
    /// The egress proxy the connection goes through, if any.
    pub(crate) proxy: Option<super::egress::Proxy>,
    /// Speaks to an `https://` proxy.
    pub(crate) proxy_tls: Option<TcpClientConfig>,
    pub(crate) tls: TcpClientConfig,
    /// The ALPN protocols to offer, most preferred first.
    pub(crate) alpn: Vec<&'static [u8]>,
    pub(crate) resume: Option<CachedSession>,
    pub(crate) sink: TicketSink,
    pub(crate) ticket: OfferedTicket,
    pub(crate) tickets: Arc<Tickets>,
    /// Send the first request as early data if the session allows it:
    /// only with the proof that it is replay-safe.
    pub(crate) early_data: Option<ReplaySafe>,
    /// The ECHConfigList to offer; else GREASE ECH if `ech_offered.grease`.
    pub(crate) ech: Option<Vec<u8>>,
    pub(crate) ech_offered: EchOffered,
    /// Hears if the server rejects ECH.
    pub(crate) ech_rejection: Arc<EchRejection>,
}

impl TcpDial {
    /// The TCP connection: through the proxy, or to the first address to
    /// answer.
    async fn tcp(&self) -> Result<Tunnel, Error> {
        match &self.proxy {
            Some(proxy) => {
                let tls = self.proxy_tls.as_ref();
                proxy
                    .connect(&self.server_name, self.port, &self.addrs, &self.socket, tls)
                    .await
            }
            None => eyeballs::connect(&self.origin, &self.addrs, &self.socket, eyeballs::STAGGER)
                .await
                .map(Tunnel::Tcp),
        }
    }

    /// What the ClientHello offers of ECH.
    fn ech_offer(&self) -> EchOffer<'_> {
        match (&self.ech, self.ech_offered.grease) {
            (Some(list), _) => EchOffer::Config(list),
            (None, true) => EchOffer::Grease,
            (None, false) => EchOffer::None,
        }
    }
}

fn http_error(origin: &str, http: TcpHttp, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Http {
        origin: origin.to_owned(),
        protocol: http.label(),
        source: Box::new(e),
    }
}

impl TcpConnection {
    /// Connects, runs the TLS handshake and starts HTTP/2 or HTTP/1.1.
    pub(crate) async fn open(dial: TcpDial) -> Result<Arc<Self>, Error> {
        let started = Instant::now();
        let tcp = dial.tcp().await?;
        let remote_addr = tcp.peer_addr();
        let early = Arc::new(EarlyDataReport::default());
        let ech = dial.ech_offer();
        let options = ConnectOptions {
            resume: dial.resume.as_ref(),
            sink: Some(dial.sink.clone()),
            early_data: dial.early_data,
            report: Arc::clone(&early),
            ech,
            ech_rejection: Arc::clone(&dial.ech_rejection),
            alpn: &dial.alpn,
        };
        let tls = dial
            .tls
            .connect(&dial.server_name, tcp, options)
            .await
            .map_err(|source| Error::Handshake {
                origin: dial.origin.clone(),
                source,
            })?;
        // In early data this is the session's protocol, which hyper must
        // speak from the first byte; the stream checks it after the handshake.
        let alpn = tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
        let offered_early = tls.in_early_data();
        let handshake = Handshake {
            resumed: tls.ssl().session_reused(),
            early_data: EarlyData::NotAttempted,
            ticket: dial.ticket,
            duration: started.elapsed(),
            alpn: alpn.as_ref().map(|a| String::from_utf8_lossy(a).into_owned()),
            ech_accepted: tls.ssl().ech_accepted(),
            ech_offered: dial.ech_offered,
            remote_addr,
        };
        let origin = dial.origin;
        let (http, sender, task) = start_http(TokioIo::new(tls), alpn.as_deref(), &origin).await?;
        tracing::debug!(%origin, ?http, ?handshake, "TCP connection ready");
        Ok(Arc::new(Self {
            host_header: host_header(&origin, 443)?,
            origin,
            sender,
            task,
            http,
            tls: true,
            opened: handshake,
            started,
            offered_early,
            early,
            tickets: dial.tickets,
            busy: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Connects for an `http://` URL: HTTP/1.1 in the clear. No ticket,
    /// no early data, no ECH: nothing of it reaches any cache.
    /// `tcp` is connected (directly or through a proxy) to the origin.
    /// `started`: when connecting began.
    pub(crate) async fn open_plain(
        origin: String,
        tcp: Tunnel,
        started: Instant,
    ) -> Result<Arc<Self>, Error> {
        let handshake = Handshake {
            resumed: false,
            early_data: EarlyData::NotAttempted,
            ticket: OfferedTicket::default(),
            // No TLS: the connection is ready once TCP is.
            duration: started.elapsed(),
            alpn: None,
            ech_accepted: false,
            ech_offered: EchOffered::default(),
            remote_addr: tcp.peer_addr(),
        };
        let (http, sender, task) = start_http(TokioIo::new(tcp), None, &origin).await?;
        tracing::debug!(%origin, "plain HTTP/1.1 connection ready");
        Ok(Arc::new(Self {
            host_header: host_header(&origin, 80)?,
            origin,
            sender,
            task,
            http,
            tls: false,
            opened: handshake,
            started,
            offered_early: false,
            early: Arc::new(EarlyDataReport::default()),
            tickets: Arc::new(Tickets::default()),
            busy: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// What the handshake did; complete once a response has been read.
    pub(crate) fn handshake(&self) -> Handshake {
        let mut handshake = self.opened.clone();
        if let Some(outcome) = self.early.outcome() {
            handshake.resumed = outcome.resumed;
            handshake.ech_accepted = outcome.ech_accepted;
            handshake.alpn = outcome.alpn.map(|a| String::from_utf8_lossy(&a).into_owned());
            handshake.duration = outcome.completed_at.saturating_duration_since(self.started);
            handshake.early_data = match outcome.early_data_accepted {
                None => EarlyData::NotAttempted,
                Some(true) => EarlyData::Accepted,
                Some(false) => EarlyData::Rejected,
            };
        }
        handshake
    }

    /// The first request went (or is going) as early data.
    pub(crate) fn early_data_offered(&self) -> bool {
        self.offered_early
    }

    /// The connection failed in a way that a new connection without early
    /// data avoids (the server chose another protocol or TLS 1.2).
    pub(crate) fn retry_fresh(&self) -> Option<RetryFresh> {
        self.early.retry_fresh()
    }

    /// True while the connection can carry another request now (HTTP/1.1:
    /// the previous exchange is over).
    pub(crate) fn is_open(&self) -> bool {
        match &self.sender {
            Sender::H2(s) => !s.is_closed(),
            Sender::H1(s) => s.try_lock().map_or(true, |s| !s.is_closed()),
        }
    }

    /// Takes the connection for one request if one sent now would not wait
    /// for another exchange: on HTTP/2 if it can open a stream; on
    /// HTTP/1.1 if nothing is being sent and the last body has been read
    /// (or hyper says it is ready), marking it busy so that no other
    /// request takes it too.
    pub(crate) fn try_claim(&self) -> bool {
        match &self.sender {
            Sender::H2(s) => s.is_ready(),
            Sender::H1(s) => {
                let Ok(s) = s.try_lock() else { return false };
                let was_busy = self.busy.swap(true, Ordering::SeqCst);
                !s.is_closed() && (!was_busy || s.is_ready())
            }
        }
    }

    /// Marks a new HTTP/1.1 connection taken by the request that opened it.
    pub(crate) fn claim_new(&self) {
        self.busy.store(true, Ordering::SeqCst);
    }

    /// The body of the exchange under way has been read to its end.
    pub(crate) fn body_done(&self) {
        self.busy.store(false, Ordering::SeqCst);
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn exchange(
        &self,
        request: &PreparedRequest,
    ) -> Result<http::Response<Incoming>, Error> {
        let mut builder = http::Request::builder().method(request.method.clone());
        builder = match self.http {
            // HTTP/2 carries scheme and authority as pseudo-headers.
            TcpHttp::H2 => builder.uri(request.uri.clone()),
            // HTTP/1.1 wants the origin form and a Host header.
            TcpHttp::H1 => builder.uri(
                request
                    .uri
                    .path_and_query()
                    .map_or("/", http::uri::PathAndQuery::as_str),
            ),
        };
        let mut outgoing = builder
            .body(request.body.outgoing())
            .map_err(|e| http_error(&self.origin, self.http, e))?;
        *outgoing.headers_mut() = request.headers.clone();
        if self.http == TcpHttp::H1 {
            outgoing
                .headers_mut()
                .insert(http::header::HOST, self.host_header.clone());
        }
        let sent = match &self.sender {
            Sender::H2(sender) => {
                let mut sender = sender.clone();
                sender
                    .ready()
                    .await
                    .map_err(|e| http_error(&self.origin, self.http, e))?;
                sender.send_request(outgoing).await
            }
            Sender::H1(sender) => {
                let mut sender = sender.lock().await;
                self.busy.store(true, Ordering::SeqCst);
                sender
                    .ready()
                    .await
                    .map_err(|e| http_error(&self.origin, self.http, e))?;
                sender.send_request(outgoing).await
            }
        };
        let head = sent.map_err(|e| http_error(&self.origin, self.http, e))?;
        if hyper::body::Body::is_end_stream(head.body()) {
            self.body_done();
        }
        Ok(head)
    }

    /// The error for a failure while reading a response body.
    pub(crate) fn body_error(&self, e: hyper::Error) -> Error {
        Error::Body {
            origin: self.origin.clone(),
            protocol: self.http.label(),
            source: Box::new(e),
        }
    }
}

impl Drop for TcpConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `Host` header for `origin` (`host:port`): without the port when
/// it is the scheme's default, as curl and browsers send it.
fn host_header(origin: &str, default_port: u16) -> Result<http::HeaderValue, Error> {
    let suffix = format!(":{default_port}");
    let value = origin.strip_suffix(&suffix).unwrap_or(origin);
    http::HeaderValue::from_str(value).map_err(|e| Error::Header(format!("host {origin:?}: {e}")))
}

/// Starts HTTP/2 if ALPN chose `h2`, else HTTP/1.1, on the TLS stream.
async fn start_http<S>(
    io: TokioIo<S>,
    alpn: Option<&[u8]>,
    origin: &str,
) -> Result<(TcpHttp, Sender, JoinHandle<()>), Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if alpn == Some(b"h2") {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| http_error(origin, TcpHttp::H2, e))?;
        Ok((TcpHttp::H2, Sender::H2(sender), spawn(conn, origin.to_owned())))
    } else {
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| http_error(origin, TcpHttp::H1, e))?;
        let sender = Sender::H1(tokio::sync::Mutex::new(sender));
        Ok((TcpHttp::H1, sender, spawn(conn, origin.to_owned())))
    }
}

fn spawn<F>(conn: F, origin: String) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%origin, error = %e, "TCP connection ended");
        }
    })
}
