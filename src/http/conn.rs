//! What HTTP/3 and TLS-over-TCP connections have in common: the handle the
//! pool holds ([`Conn`]), what a handshake did ([`Handshake`]), the ticket
//! counter a closing session waits on, the "ready" hook that hands a new
//! connection to waiting requests, and the response body being read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use tokio::sync::Notify;

use super::h3::{H3Connection, RequestStream};
use super::tcp::{TcpConnection, TcpHttp};
use super::PreparedRequest;
use crate::cache::{Protocol, TicketReuse, TicketSource};
use crate::ech::{EchSource, EchStatus};
use crate::error::Error;
use crate::sync::lock;

/// What happened to early data on a request's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyData {
    /// The request did not go as early data (no ticket allowing it, a
    /// request that is not replay-safe, a reused connection, or the policy).
    NotAttempted,
    /// The request went in 0-RTT and the server took it.
    Accepted,
    /// The request went in 0-RTT, the server refused the early data, and
    /// the request was sent again after the handshake.
    Rejected,
}

impl EarlyData {
    /// `not_attempted`, `accepted` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAttempted => "not_attempted",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

/// What a connection offered of ECH, and where its config came from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EchOffered {
    pub(crate) source: Option<EchSource>,
    pub(crate) config: bool,
    pub(crate) grease: bool,
}

impl EchOffered {
    /// The outcome, given whether the server accepted ECH.
    pub(crate) fn status(self, accepted: bool) -> EchStatus {
        match (self.config, accepted, self.grease) {
            (true, true, _) => EchStatus::Accepted,
            (true, false, _) => EchStatus::Rejected,
            (false, _, true) => EchStatus::Grease,
            (false, _, false) => EchStatus::Off,
        }
    }
}

/// The session a connection offered, as its report tells it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OfferedTicket {
    /// Where it came from (`None`: none was offered).
    pub(crate) source: Option<TicketSource>,
    /// The session's ticket reuse policy.
    pub(crate) reuse: TicketReuse,
    /// Under single-use: the pool's size when this ticket was taken (it
    /// included), 0 if it was empty; `None` if unknown or shared.
    pub(crate) pool_held: Option<usize>,
}

/// What the handshake of a connection did.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub(crate) resumed: bool,
    pub(crate) early_data: EarlyData,
    pub(crate) ticket: OfferedTicket,
    pub(crate) duration: Duration,
    pub(crate) alpn: Option<String>,
    pub(crate) ech_accepted: bool,
    pub(crate) ech_offered: EchOffered,
    /// The address the connection went to.
    pub(crate) remote_addr: Option<std::net::SocketAddr>,
}

/// Counts the session tickets a connection has received, so a closing
/// session can wait for the first one instead of losing it.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    count: AtomicUsize,
    arrived: Notify,
}

impl Tickets {
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for at least one ticket. True if one came.
    pub(crate) async fn wait_first(&self, limit: Duration) -> bool {
        let first = async {
            loop {
                let notified = self.arrived.notified();
                if self.count() > 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, first).await.is_ok()
    }
}

/// Called once with a new connection as soon as requests can use it
/// (handshake done, HTTP client up), before its first response.
pub(crate) type OnReady<'a> = Box<dyn FnOnce(Conn) + Send + 'a>;

/// A connection's "ready" hook, shared by the attempts that may make it
/// (a retry, a race): the first to be ready calls it.
pub(crate) struct SharedReady<'a>(Arc<std::sync::Mutex<Option<OnReady<'a>>>>);

impl<'a> SharedReady<'a> {
    pub(crate) fn new(on_ready: OnReady<'a>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(on_ready))))
    }

    /// A hook for one attempt.
    pub(crate) fn hook(&self) -> OnReady<'a> {
        let slot = Arc::clone(&self.0);
        Box::new(move |conn: Conn| {
            let ready = lock(&slot).take();
            if let Some(ready) = ready {
                ready(conn);
            }
        })
    }
}

/// An open connection of either kind, as the pool holds it.
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    H3(Arc<H3Connection>),
    Tcp(Arc<TcpConnection>),
}

impl Conn {
    /// The connection can carry a request now.
    pub(crate) fn is_usable(&self) -> bool {
        match self {
            Self::H3(c) => c.is_open(),
            Self::Tcp(c) => c.is_open(),
        }
    }

    /// What the handshake did (for TCP with early data, complete once the
    /// first response has been read).
    pub(crate) fn handshake(&self) -> Handshake {
        match self {
            Self::H3(c) => c.handshake.clone(),
            Self::Tcp(c) => c.handshake(),
        }
    }

    pub(crate) fn tickets(&self) -> &Arc<Tickets> {
        match self {
            Self::H3(c) => &c.tickets,
            Self::Tcp(c) => &c.tickets,
        }
    }

    /// The connection runs over TLS (all but those of `http://` URLs).
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            Self::H3(_) => true,
            Self::Tcp(c) => c.tls,
        }
    }

    /// The protocol the connection speaks.
    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Self::H3(_) => Protocol::H3,
            Self::Tcp(c) if c.http == TcpHttp::H2 => Protocol::H2,
            Self::Tcp(_) => Protocol::H1,
        }
    }

    /// The HTTP version the connection speaks.
    pub(crate) fn version(&self) -> http::Version {
        match self.protocol() {
            Protocol::H3 => http::Version::HTTP_3,
            Protocol::H2 => http::Version::HTTP_2,
            Protocol::H1 => http::Version::HTTP_11,
        }
    }

    /// Takes the connection for one request if a request sent now would not
    /// wait behind another exchange (only an HTTP/1.1 connection can be
    /// busy; taking it marks it busy).
    pub(crate) fn try_claim(&self) -> bool {
        match self {
            Self::H3(c) => c.is_open(),
            Self::Tcp(c) => c.try_claim(),
        }
    }

    /// Closes an HTTP/3 connection cleanly; a TCP one closes when dropped.
    pub(crate) fn close(&self) {
        if let Self::H3(c) = self {
            c.close();
        }
    }

    /// An HTTP/3 connection's CONNECTION_CLOSE has been put on the wire
    /// (always true for TCP, which closes with the socket).
    pub(crate) fn close_sent(&self) -> bool {
        match self {
            Self::H3(c) => c.close_sent(),
            Self::Tcp(_) => true,
        }
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn exchange(
        &self,
        request: &PreparedRequest,
    ) -> Result<(http::response::Parts, ResponseBody), Error> {
        let body = match self {
            Self::H3(c) => {
                let (stream, head) = c.exchange(request).await?;
                (head.into_parts().0, Body::H3(Box::new(stream)))
            }
            Self::Tcp(c) => {
                let (head, body) = c.exchange(request).await?.into_parts();
                (head, Body::Tcp(body))
            }
        };
        Ok((body.0, ResponseBody::new(self.clone(), body.1)))
    }
}

/// A response body being received.
pub(crate) enum Body {
    // Boxed: an h3 stream is ten times the size of the other variants.
    H3(Box<RequestStream>),
    Tcp(hyper::body::Incoming),
    Done,
}

/// The body of one response, with the connection it arrives on (kept open,
/// and asked for the clearest error, while the body is read).
pub(crate) struct ResponseBody {
    conn: Conn,
    body: Body,
}

impl ResponseBody {
    pub(crate) fn new(conn: Conn, body: Body) -> Self {
        Self { conn, body }
    }

    /// The connection the body arrives on.
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// The next piece of the body, or `None` at its end.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
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
                    None => {
                        conn.body_done();
                        break Ok(None);
                    }
                }
            },
            _ => Ok(None),
        };
        if !matches!(received, Ok(Some(_))) {
            self.body = Body::Done;
        }
        received
    }

    /// Reads and drops the rest of the body (a short `425` answer), so an
    /// HTTP/1.1 connection can carry the next exchange.
    pub(crate) async fn discard(mut self) {
        while let Ok(Some(_)) = self.next_chunk().await {}
    }
}

/// `read`, failing if it waits longer than `limit` (the session's
/// `read_timeout`) for the peer.
pub(crate) async fn read_within<T>(
    limit: Option<std::time::Duration>,
    read: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| Error::Timeout {
                what: "a read from the server",
                after: limit,
            })?,
        None => read.await,
    }
}

/// Told when a new connection is established (handshake complete, or TLS
/// early data under way), so a connect timeout covers connecting only and
/// never the wait for the first response.
#[derive(Debug)]
pub(crate) struct Connected(tokio::sync::watch::Sender<bool>);

impl Default for Connected {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(false))
    }
}

impl Connected {
    pub(crate) fn mark(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once [`mark`](Self::mark) has been called.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Resolves when `limit` passes before the connection is established;
    /// never once it is.
    pub(crate) async fn expired(&self, limit: std::time::Duration) {
        if tokio::time::timeout(limit, self.wait()).await.is_ok() {
            std::future::pending::<()>().await;
        }
    }
}
