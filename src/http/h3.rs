//! One HTTP/3 connection: its set-up together with the first request (so
//! that request can ride in 0-RTT), further requests on it, and its close.
//!
//! The 0-RTT path follows what was measured with h3 0.0.8 and quinn 0.11:
//! the h3 driver is not polled until the
//! server has said whether it took the early data. If it did not, the first
//! h3 client (whose control and QPACK streams were lost with the early
//! data) is dropped unpolled and a new one is built on the same, now
//! 1-RTT, QUIC connection, and the request is sent again once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::conn::{Conn, EarlyData, EchOffered, Handshake, OfferedTicket, OnReady, Tickets};
use super::PreparedRequest;
use crate::error::Error;
use crate::quic::{HandshakeData, QuicClientConfig};
use crate::replay::ReplaySafe;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
pub(crate) type RequestStream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type Driver = h3::client::Connection<h3_quinn::Connection, Bytes>;

/// H3_NO_ERROR (RFC 9114 §8.1): a clean close.
const H3_NO_ERROR: u32 = 0x100;

/// Everything needed to open a connection to one origin.
pub(crate) struct Dial<'a> {
    /// `host:port`, for messages.
    pub(crate) origin: String,
    /// The name to verify (and send as SNI unless it is an IP literal).
    pub(crate) server_name: String,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) endpoint: quinn::Endpoint,
    /// Carries the session to resume and the ticket sink.
    pub(crate) tls: QuicClientConfig,
    pub(crate) transport: Arc<quinn::TransportConfig>,
    /// Where the offered session came from, if one was offered.
    pub(crate) ticket: OfferedTicket,
    pub(crate) tickets: Arc<Tickets>,
    pub(crate) on_ready: Option<OnReady<'a>>,
    pub(crate) ech_offered: EchOffered,
    /// The address reported as the connection's far end, when it is not
    /// `addr` (through a proxy: its UDP relay).
    pub(crate) via: Option<std::net::SocketAddr>,
    /// Told when the QUIC handshake has completed (the server answered),
    /// before the first response.
    pub(crate) handshaken: Handshaken,
}

/// What an attempt's completed handshake tells, and whether the attempt
/// may then carry the request: attempts to a name's addresses race, and
/// only the first to complete its handshake sends a request that must not
/// go twice (the others end with [`superseded`]).
#[derive(Clone, Default)]
pub(crate) struct Handshaken {
    /// Told once, by the winner: a race against TCP is decided by it.
    pub(crate) signal: Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
    /// The slot the attempts race for, and this attempt's number.
    pub(crate) claim: Option<(Arc<AtomicUsize>, usize)>,
}

/// The claim slot before any attempt has taken it.
pub(crate) const UNCLAIMED: usize = usize::MAX;

impl Handshaken {
    /// Claims the connection's place for this attempt; true if it is its.
    fn won(&self) -> bool {
        let won = match &self.claim {
            None => true,
            Some((slot, me)) => {
                match slot.compare_exchange(UNCLAIMED, *me, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => true,
                    Err(holder) => holder == *me,
                }
            }
        };
        if won {
            if let Some(tx) = crate::sync::lock(&self.signal).take() {
                let _ = tx.send(());
            }
        }
        won
    }
}

/// The end of an attempt whose handshake completed after another's: it
/// sends nothing (and its error is never the one a caller sees).
fn superseded(origin: &str) -> Error {
    tracing::debug!(%origin, "another address answered first; this QUIC attempt sends nothing");
    Error::Timeout {
        what: "a QUIC attempt that another address answered before",
        after: Duration::ZERO,
    }
}

/// An open HTTP/3 connection.
pub(crate) struct H3Connection {
    origin: String,
    quic: quinn::Connection,
    send: SendRequest,
    driver: JoinHandle<()>,
    pub(crate) handshake: Handshake,
    pub(crate) tickets: Arc<Tickets>,
    /// After [`close`](H3Connection::close): the datagram count that means
    /// the CONNECTION_CLOSE has been handed to the socket (0: nothing left
    /// to send). `u64::MAX` until then.
    close_mark: AtomicU64,
}

impl std::fmt::Debug for H3Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Connection")
            .field("origin", &self.origin)
            .field("handshake", &self.handshake)
            .finish_non_exhaustive()
    }
}

/// The response head of the first request on a new connection.
pub(crate) struct FirstExchange {
    pub(crate) conn: Arc<H3Connection>,
    pub(crate) stream: RequestStream,
    pub(crate) head: http::Response<()>,
}

fn spawn_driver(mut driver: Driver, origin: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let end = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        if end.is_h3_no_error() {
            tracing::debug!(%origin, "HTTP/3 connection closed");
        } else {
            tracing::debug!(%origin, error = %end, "HTTP/3 connection ended");
        }
    })
}

async fn send_request(send: &mut SendRequest, request: &PreparedRequest) -> Result<RequestStream, BoxedH3> {
    let head = request.head().map_err(|e| BoxedH3(Box::new(e)))?;
    let mut stream = send.send_request(head).await.map_err(BoxedH3::from)?;
    let mut body = request.body.outgoing();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        if let Ok(data) = frame.map_err(BoxedH3)?.into_data() {
            stream.send_data(data).await.map_err(BoxedH3::from)?;
        }
    }
    stream.finish().await.map_err(BoxedH3::from)?;
    Ok(stream)
}

/// An h3 failure, kept until it can be told apart from a QUIC one.
struct BoxedH3(crate::error::BoxError);

impl From<h3::error::StreamError> for BoxedH3 {
    fn from(e: h3::error::StreamError) -> Self {
        Self(Box::new(e))
    }
}

impl From<h3::error::ConnectionError> for BoxedH3 {
    fn from(e: h3::error::ConnectionError) -> Self {
        Self(Box::new(e))
    }
}

/// The clearest error for a failure on `quic`: the QUIC reason if the
/// connection is gone (a refused certificate, an unreachable peer), else h3's.
fn failure(origin: &str, quic: &quinn::Connection, e: BoxedH3) -> Error {
    match quic.close_reason() {
        Some(source) => Error::Connection {
            origin: origin.to_owned(),
            source: source.into(),
        },
        None => Error::Http {
            origin: origin.to_owned(),
            protocol: "HTTP/3",
            source: e.0,
        },
    }
}

fn handshake_data(quic: &quinn::Connection) -> Option<HandshakeData> {
    quic.handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .map(|d| *d)
}

impl H3Connection {
    /// Opens a connection and sends `request` as its first request: in
    /// 0-RTT when `request` is replay-safe and the offered session allows it,
    /// else after the handshake.
    pub(crate) async fn open(dial: Dial<'_>, request: &PreparedRequest) -> Result<FirstExchange, Error> {
        let started = Instant::now();
        let Dial {
            origin,
            server_name,
            addr,
            endpoint,
            tls,
            transport,
            ticket,
            tickets,
            on_ready,
            handshaken,
            ech_offered,
            via,
        } = dial;
        let mut client = quinn::ClientConfig::new(Arc::new(tls));
        client.transport_config(transport);
        let connecting = endpoint
            .connect_with(client, addr, &server_name)
            .map_err(|source| Error::Connect {
                origin: origin.clone(),
                addr,
                source: source.into(),
            })?;
        let base = Setup {
            origin,
            started,
            ticket,
            tickets,
            on_ready,
            handshaken,
            ech_offered,
            via,
        };
        let connecting = if let Some(proof) = request.replay_safe {
            match connecting.into_0rtt() {
                Ok((quic, accepted)) => return base.early(quic, accepted, request, proof).await,
                Err(connecting) => connecting,
            }
        } else {
            connecting
        };
        let quic = connecting.await.map_err(|source| Error::Connection {
            origin: base.origin.clone(),
            source: source.into(),
        })?;
        if !base.handshaken.won() {
            return Err(superseded(&base.origin));
        }
        let conn = base.finish(quic, EarlyData::NotAttempted).await?;
        let (stream, head) = conn.exchange(request).await?;
        Ok(FirstExchange { conn, stream, head })
    }

    /// Sends `request` on this connection and waits for the response head.
    pub(crate) async fn exchange(
        &self,
        request: &PreparedRequest,
    ) -> Result<(RequestStream, http::Response<()>), Error> {
        let mut send = self.send.clone();
        let mut stream = send_request(&mut send, request)
            .await
            .map_err(|e| failure(&self.origin, &self.quic, e))?;
        let head = stream
            .recv_response()
            .await
            .map_err(|e| failure(&self.origin, &self.quic, e.into()))?;
        Ok((stream, head))
    }

    /// The QUIC connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.quic.close_reason().is_none()
    }

    /// Closes the connection cleanly (`H3_NO_ERROR`).
    pub(crate) fn close(&self) {
        // An idle connection sends nothing but the CONNECTION_CLOSE after
        // this, so the next datagram quinn sends is the one carrying it; a
        // connection already closed has nothing left to send.
        let mark = match self.quic.close_reason() {
            Some(_) => 0,
            None => self.quic.stats().udp_tx.datagrams + 1,
        };
        let _ = self
            .close_mark
            .compare_exchange(u64::MAX, mark, Ordering::SeqCst, Ordering::SeqCst);
        self.quic.close(H3_NO_ERROR.into(), b"");
    }

    /// The CONNECTION_CLOSE has left: quinn has sent the datagram after
    /// [`close`](Self::close) (it counts datagrams as it hands them to the
    /// socket). False before `close`.
    pub(crate) fn close_sent(&self) -> bool {
        let mark = self.close_mark.load(Ordering::SeqCst);
        mark != u64::MAX && self.quic.stats().udp_tx.datagrams >= mark
    }

    /// The error for a failure while reading a response body: the QUIC
    /// reason if the connection is gone, else h3's.
    pub(crate) fn body_error(&self, e: h3::error::StreamError) -> Error {
        let source: crate::error::BoxError = match self.quic.close_reason() {
            Some(reason) => Box::new(reason),
            None => Box::new(e),
        };
        Error::Body {
            origin: self.origin.clone(),
            protocol: "HTTP/3",
            source,
        }
    }
}

impl Drop for H3Connection {
    fn drop(&mut self) {
        self.close();
        self.driver.abort();
    }
}

/// The parts of a connection set-up shared by its two paths.
struct Setup<'a> {
    origin: String,
    started: Instant,
    ticket: OfferedTicket,
    tickets: Arc<Tickets>,
    on_ready: Option<OnReady<'a>>,
    handshaken: Handshaken,
    ech_offered: EchOffered,
    via: Option<std::net::SocketAddr>,
}

impl Setup<'_> {
    /// Builds the h3 client on a handshaken connection.
    async fn finish(
        self,
        quic: quinn::Connection,
        early_data: EarlyData,
    ) -> Result<Arc<H3Connection>, Error> {
        let duration = self.started.elapsed();
        let (driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| failure(&self.origin, &quic, e.into()))?;
        Ok(self.assemble(quic, driver, send, early_data, duration))
    }

    fn assemble(
        self,
        quic: quinn::Connection,
        driver: Driver,
        send: SendRequest,
        early_data: EarlyData,
        duration: Duration,
    ) -> Arc<H3Connection> {
        let data = handshake_data(&quic);
        let handshake = Handshake {
            resumed: data.as_ref().is_some_and(|d| d.resumed),
            early_data,
            ticket: self.ticket,
            duration,
            ech_accepted: data.as_ref().is_some_and(|d| d.ech_accepted),
            ech_offered: self.ech_offered,
            remote_addr: Some(self.via.unwrap_or_else(|| quic.remote_address())),
            alpn: data
                .and_then(|d| d.protocol)
                .map(|p| String::from_utf8_lossy(&p).into_owned()),
        };
        tracing::debug!(origin = %self.origin, ?handshake, "HTTP/3 connection ready");
        let conn = Arc::new(H3Connection {
            driver: spawn_driver(driver, self.origin.clone()),
            origin: self.origin,
            quic,
            send,
            handshake,
            tickets: self.tickets,
            close_mark: AtomicU64::new(u64::MAX),
        });
        if let Some(ready) = self.on_ready {
            ready(Conn::H3(Arc::clone(&conn)));
        }
        conn
    }

    /// The 0-RTT path: the request leaves with the ClientHello. Only a
    /// request proven replay-safe can take it.
    async fn early(
        self,
        quic: quinn::Connection,
        accepted: quinn::ZeroRttAccepted,
        request: &PreparedRequest,
        _proof: ReplaySafe,
    ) -> Result<FirstExchange, Error> {
        let (driver, mut send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| failure(&self.origin, &quic, e.into()))?;
        let mut accepted = accepted;
        let sent = send_request(&mut send, request).await;
        // Had the handshake completed before the request was handed to
        // QUIC, it went at 1-RTT, not as early data.
        let decided = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut accepted).poll(cx))).await;
        let went_early = decided.is_pending();
        // Do not poll the h3 driver before the server has decided.
        let accepted = match decided {
            Poll::Ready(accepted) => accepted,
            Poll::Pending => accepted.await,
        };
        if let Some(source) = quic.close_reason() {
            return Err(Error::Connection {
                origin: self.origin,
                source: source.into(),
            });
        }
        if !self.handshaken.won() {
            return Err(superseded(&self.origin));
        }
        if !accepted {
            tracing::debug!(origin = %self.origin, "0-RTT rejected; sending the request again");
            // Everything tied to the lost early data goes before any new stream.
            drop(sent);
            drop(send);
            drop(driver);
            let conn = self.finish(quic, EarlyData::Rejected).await?;
            let (stream, head) = conn.exchange(request).await?;
            return Ok(FirstExchange { conn, stream, head });
        }
        let duration = self.started.elapsed();
        let origin = self.origin.clone();
        let early_data = if went_early {
            EarlyData::Accepted
        } else {
            tracing::debug!(origin = %origin, "the handshake completed before the request was written: not early data");
            EarlyData::NotAttempted
        };
        let conn = self.assemble(quic, driver, send, early_data, duration);
        let mut stream = sent.map_err(|e| failure(&origin, &conn.quic, e))?;
        let head = stream
            .recv_response()
            .await
            .map_err(|e| failure(&origin, &conn.quic, e.into()))?;
        Ok(FirstExchange { conn, stream, head })
    }
}
