//! The TCP side of the origin: HTTP/2 and HTTP/1.1 (hyper) over BoringSSL
//! TLS with tickets and early data, or plain HTTP/1.1 without TLS.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::respond::{
    drip_chunk, LogSlot, OriginStats, Reply, ReplyBody, RequestLog, RequestRecord, DRIP_CHUNKS, DRIP_INTERVAL,
};
use super::ServerError;
use crate::tls::{ServerTls, TcpServerConfig};

/// An HTTP/2 and HTTP/1.1 origin on a TCP port, TLS on BoringSSL.
///
/// ## Behavior
///
/// - ALPN picks HTTP/2 or HTTP/1.1 (see [`TcpServerConfig`]); tickets and
///   early data are on, so a client resuming a session can send its first
///   request before the handshake completes.
/// - Requests are answered as by [`H3Origin`](super::H3Origin), with
///   `x-early-data: 1` on a request that arrived as early data, and the
///   same `/too-early`, `/drip` and `/slow` paths.
/// - With [`set_alt_svc`](Self::set_alt_svc), every response advertises
///   HTTP/3 (`Alt-Svc: h3=":PORT"`), so clients learn to use it.
/// - [`bind_plain`](Self::bind_plain) serves the same paths in plain
///   HTTP/1.1, for `http://` URLs.
/// - Stopping ([`close`](Self::close) or drop) ends every connection.
pub struct TcpOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    stats: OriginStats,
    log: LogSlot,
    alt_svc: RwLock<Option<HeaderValue>>,
}

impl std::fmt::Debug for TcpOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpOrigin").field("addr", &self.addr).finish()
    }
}

impl TcpOrigin {
    /// Listens on `addr` (port 0 picks a free one) with `tls`. Must be
    /// called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The socket cannot be bound.
    pub fn bind(addr: SocketAddr, tls: TcpServerConfig) -> Result<Self, ServerError> {
        Self::listen(addr, Some(tls))
    }

    /// Listens on `addr` for plain HTTP/1.1, no TLS. Must be called within
    /// a Tokio runtime.
    ///
    /// # Errors
    ///
    /// The socket cannot be bound.
    pub fn bind_plain(addr: SocketAddr) -> Result<Self, ServerError> {
        Self::listen(addr, None)
    }

    fn listen(addr: SocketAddr, tls: Option<TcpServerConfig>) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind { addr, source };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, tls, Arc::clone(&shared)));
        Ok(Self {
            addr: local,
            shared,
            task,
        })
    }

    /// Hands every answered request to `log` (or stops, with `None`).
    pub fn set_request_log(&self, log: Option<RequestLog>) {
        self.shared.log.set(log);
    }

    /// Advertises HTTP/3 on `port` of the same host in every response
    /// (`Alt-Svc: h3=":PORT"; ma=86400`), or stops with `None`.
    pub fn set_alt_svc(&self, port: Option<u16>) {
        let value = port.and_then(|p| HeaderValue::from_str(&format!("h3=\":{p}\"; ma=86400")).ok());
        if let Ok(mut slot) = self.shared.alt_svc.write() {
            *slot = value;
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has served so far.
    pub fn stats(&self) -> &OriginStats {
        &self.shared.stats
    }

    /// Stops accepting and ends every connection. The port is released
    /// once the origin's task has stopped: see [`shutdown`](Self::shutdown).
    pub fn close(&self) {
        self.task.abort();
    }

    /// Closes the origin and waits until its port is free again.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for TcpOrigin {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<TcpServerConfig>, shared: Arc<Shared>) {
    // Connection tasks live in the set, so they end with this task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(tcp, peer, tls.clone(), Arc::clone(&shared)));
                }
                Err(e) => tracing::debug!(error = %e, "origin accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TcpServerConfig>,
    shared: Arc<Shared>,
) {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        let handler = Handler::new(&shared, None, "http/1.1", peer);
        let served = serve_http(TokioIo::new(tcp), false, handler).await;
        return count_close(&shared, served);
    };
    let stream = match tls.accept(tcp).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(error = %e, "origin TLS handshake failed");
            shared.stats.error_closes.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let facts = stream.tls();
    let h2 = facts.alpn() == Some(b"h2");
    let handler = Handler::new(&shared, Some(facts), if h2 { "h2" } else { "http/1.1" }, peer);
    let served = serve_http(TokioIo::new(stream), h2, handler).await;
    count_close(&shared, served);
}

async fn serve_http<S>(io: TokioIo<S>, h2: bool, handler: Handler) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handler.clone().handle(request));
    if h2 {
        http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new().serve_connection(io, service).await
    }
}

fn count_close(shared: &Shared, served: Result<(), hyper::Error>) {
    let counter = match served {
        Ok(()) => &shared.stats.clean_closes,
        Err(e) => {
            tracing::debug!(error = %e, "origin connection ended with an error");
            &shared.stats.error_closes
        }
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    /// `None` on a plain HTTP/1.1 connection.
    tls: Option<Arc<ServerTls>>,
    protocol: &'static str,
    /// Requests seen on this connection so far.
    seen: Arc<AtomicU64>,
    /// Where the connection came from.
    peer: SocketAddr,
}

impl Handler {
    fn new(
        shared: &Arc<Shared>,
        tls: Option<Arc<ServerTls>>,
        protocol: &'static str,
        peer: SocketAddr,
    ) -> Self {
        Self {
            shared: Arc::clone(shared),
            tls,
            protocol,
            seen: Arc::new(AtomicU64::new(0)),
            peer,
        }
    }

    async fn handle(self, request: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
        let first = self.seen.fetch_add(1, Ordering::SeqCst) == 0;
        // Still in early data: the request came before the client's Finished.
        // Or: the connection carried early data, which a client spends on its
        // first request.
        let early = self
            .tls
            .as_ref()
            .is_some_and(|tls| tls.in_early_data() || (first && tls.early_bytes() > 0));
        let ech = self.tls.as_ref().is_some_and(|tls| tls.ech_accepted());
        let (head, mut body) = request.into_parts();
        let mut received = super::body::Received::default();
        while let Some(frame) = body.frame().await {
            match frame.map(Frame::into_data) {
                Ok(Ok(data)) => received.add(&data),
                Ok(Err(_trailers)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "origin could not read a request body");
                    break;
                }
            }
        }
        let reply = Reply::to(&head, received, early, ech, &self.shared.stats);
        if let Some(wait) = reply.head_delay {
            tokio::time::sleep(wait).await;
        }
        let mut response = Response::builder().status(reply.status);
        for (name, value) in reply.headers() {
            response = response.header(name, value);
        }
        let alt_svc = crate::sync::read(&self.shared.alt_svc).clone();
        if let Some(alt_svc) = alt_svc {
            response = response.header(http::header::ALT_SVC, alt_svc);
        }
        let status = reply.status;
        let body = match reply.body {
            ReplyBody::Full(bytes) => OriginBody::Full(Some(bytes)),
            ReplyBody::Drip => OriginBody::Drip { next: 0, wait: None },
            ReplyBody::Stream(left) => OriginBody::Stream(left),
        };
        self.shared.log.record(&RequestRecord {
            protocol: self.protocol,
            method: head.method.to_string(),
            path: head.uri.path().to_owned(),
            early_data: early,
            resumed: self.tls.as_ref().is_some_and(|tls| tls.resumed()),
            ech,
            server_name: self
                .tls
                .as_ref()
                .and_then(|tls| tls.server_name().map(str::to_owned)),
            status: status.as_u16(),
            peer: Some(self.peer),
        });
        Ok(response
            .body(body)
            .unwrap_or_else(|_| Response::new(OriginBody::Full(None))))
    }
}

/// A response body: whole, `/drip`'s lines one by one, or `/stream/N`'s
/// pieces (the bytes still to send).
enum OriginBody {
    Full(Option<Bytes>),
    Stream(u64),
    Drip {
        next: usize,
        wait: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl hyper::body::Body for OriginBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(left) => Poll::Ready(super::body::stream_piece(left).map(|b| Ok(Frame::data(b)))),
            Self::Drip { next, wait } => {
                if *next >= DRIP_CHUNKS {
                    return Poll::Ready(None);
                }
                if *next > 0 {
                    let sleep = wait.get_or_insert_with(|| Box::pin(tokio::time::sleep(DRIP_INTERVAL)));
                    ready!(sleep.as_mut().poll(cx));
                    *wait = None;
                }
                let chunk = drip_chunk(*next);
                *next += 1;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }
}
