//! [`Response`] (head at once, body as it arrives) and [`TlsInfo`], what
//! TLS did for it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use super::decode::{Accepts, Decoder};
use super::redirect::Hop;
use crate::cache::{TicketReuse, TicketSource};
use crate::ech::{EchSource, EchStatus};
use crate::error::Error;
use crate::http::connect::Opened;
use crate::http::{Conn, EarlyData, ResponseBody};

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
    /// The session's ticket reuse policy ([`SessionBuilder::ticket_reuse`](crate::SessionBuilder::ticket_reuse)).
    pub ticket_reuse: TicketReuse,
    /// Under [`TicketReuse::SingleUse`]: how many tickets the pool held
    /// when this connection took one (the one it took included), `Some(0)`
    /// when it was empty (so the handshake was full). `None` under
    /// `Shared`, or when the store does not tell.
    pub ticket_pool_held: Option<usize>,
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

    fn of(conn: &Conn, reused: bool) -> Self {
        let h = conn.handshake();
        Self {
            resumed: h.resumed,
            early_data: if reused {
                EarlyData::NotAttempted
            } else {
                h.early_data
            },
            ticket_source: h.ticket.source,
            ticket_reuse: h.ticket.reuse,
            ticket_pool_held: h.ticket.pool_held,
            handshake_time: h.duration,
            alpn: h.alpn.clone(),
            connection_reused: reused,
            retried_too_early: false,
            ech: h.ech_offered.status(h.ech_accepted),
            ech_source: h.ech_offered.source,
        }
    }
}

/// A response: its head at once, its body as it arrives.
pub struct Response {
    url: url::Url,
    status: StatusCode,
    headers: HeaderMap,
    version: http::Version,
    tls: TlsInfo,
    /// Keeps the connection (and, for HTTP/3, its error reporting) alive
    /// while the body is read.
    body: ResponseBody,
    /// When the request's time limit runs out for the body, and the limit.
    deadline: Option<(tokio::time::Instant, Duration)>,
    /// The longest one read of the body may wait.
    read_timeout: Option<Duration>,
    redirects: Vec<Hop>,
    /// The request this answers, as it went.
    request: Box<http::request::Parts>,
    /// Decodes a compressed body, when the session does.
    decoder: Option<Decoder>,
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
    pub(crate) fn new(url: url::Url, head: http::response::Parts, body: ResponseBody, reused: bool) -> Self {
        Self {
            url,
            status: head.status,
            headers: head.headers,
            version: body.conn().version(),
            tls: TlsInfo::of(body.conn(), reused),
            body,
            deadline: None,
            read_timeout: None,
            redirects: Vec::new(),
            // Replaced by `with_redirects` before the caller sees it.
            request: Box::new(http::Request::new(()).into_parts().0),
            decoder: None,
        }
    }

    /// The response to the first request of a new connection.
    pub(crate) fn opened(url: url::Url, opened: Opened) -> Self {
        let mut response = Self::new(url, opened.head, opened.body, false);
        response.tls.retried_too_early = opened.retried_too_early;
        if let Some(early_data) = opened.early_data {
            response.tls.early_data = early_data;
        }
        response
    }

    pub(crate) fn with_redirects(mut self, hops: Vec<Hop>, request: http::request::Parts) -> Self {
        self.redirects = hops;
        *self.request = request;
        self
    }

    /// Decodes the body from here on if its coding is one `accepts` has;
    /// `Content-Encoding` and `Content-Length` then go from the headers.
    pub(crate) fn decoded(mut self, accepts: Accepts) -> Self {
        self.decoder = accepts.decoder_for(&mut self.headers);
        self
    }

    /// The redirects followed to get here, first first, each with the
    /// status it answered and what TLS did for it ([`tls`](Self::tls) is
    /// this final response's).
    pub fn redirects(&self) -> &[Hop] {
        &self.redirects
    }

    /// The request this response answers, as it went on the wire: its
    /// method, URI and version, and every header it carried (the session's
    /// default headers, `User-Agent` and `Accept-Encoding` included; not
    /// `Host`, which HTTP/1.1 derives from the URI). After redirects, the
    /// last hop's. What `h3fleet get -v` prints.
    pub fn request(&self) -> &http::request::Parts {
        &self.request
    }

    pub(crate) fn set_deadline(&mut self, deadline: tokio::time::Instant, limit: Duration) {
        self.deadline = Some((deadline, limit));
    }

    pub(crate) fn set_read_timeout(&mut self, limit: Option<Duration>) {
        self.read_timeout = limit;
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

    /// The HTTP version the response came over, by reqwest's name (the
    /// same as [`protocol`](Self::protocol)).
    pub fn version(&self) -> http::Version {
        self.version
    }

    /// The address of the server this response came from.
    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.body.conn().handshake().remote_addr
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
        if self.decoder.is_none() {
            return self.raw_chunk().await;
        }
        loop {
            if let Some(piece) = self.decoder.as_mut().and_then(Decoder::ready) {
                return Ok(Some(piece));
            }
            let raw = self.raw_chunk().await?;
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(raw);
            };
            let fed = match &raw {
                Some(raw) => decoder.push(raw),
                None => decoder.finish(),
            };
            if let Err(e) = fed {
                return Err(Error::Decode {
                    url: Box::new(self.url.clone()),
                    what: decoder.coding().to_owned(),
                    source: Box::new(e),
                });
            }
            if raw.is_none() {
                return Ok(decoder.ready());
            }
        }
    }

    /// The next piece of the body as it came off the wire.
    async fn raw_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let read = crate::http::conn::read_within(self.read_timeout, self.body.next_chunk());
        match self.deadline {
            Some((deadline, limit)) => {
                tokio::time::timeout_at(deadline, read)
                    .await
                    .map_err(|_| Error::Timeout {
                        what: "the request",
                        after: limit,
                    })?
            }
            None => read.await,
        }
    }

    /// The whole body. Its size is not limited: a peer can send as much as
    /// it likes, so read untrusted bodies with [`chunk`](Self::chunk) and
    /// stop where you need to.
    ///
    /// # Errors
    ///
    /// The stream or the connection failed.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        // Most small bodies arrive in one chunk: hand it over without a copy.
        let Some(first) = self.chunk().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.chunk().await? else {
            return Ok(first);
        };
        let mut body = BytesMut::with_capacity(first.len() + second.len());
        body.extend_from_slice(&first);
        body.extend_from_slice(&second);
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

    /// The whole body, decoded from JSON.
    ///
    /// ```no_run
    /// # async fn run(session: h3fleet::Session) -> Result<(), h3fleet::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Ip { origin: String }
    /// let ip: Ip = session.get("https://example.com/ip").send().await?.json().await?;
    /// # drop(ip.origin); Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The body could not be read, or is not JSON of type `T`
    /// ([`Error::is_decode`]).
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let url = self.url.clone();
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(|source| Error::Decode {
            url: Box::new(url),
            what: "JSON".to_owned(),
            source: Box::new(source),
        })
    }

    /// The response, or an [`Error::is_status`] error if its status is a
    /// client (4xx) or server (5xx) error, as reqwest's.
    ///
    /// # Errors
    ///
    /// The status is 400 to 599.
    pub fn error_for_status(self) -> Result<Self, Error> {
        self.error_for_status_ref()?;
        Ok(self)
    }

    /// [`error_for_status`](Self::error_for_status) without taking the
    /// response.
    ///
    /// # Errors
    ///
    /// The status is 400 to 599.
    pub fn error_for_status_ref(&self) -> Result<&Self, Error> {
        if self.status.is_client_error() || self.status.is_server_error() {
            return Err(Error::Status {
                status: self.status,
                url: Box::new(self.url.clone()),
            });
        }
        Ok(self)
    }

    /// The body's length as the `Content-Length` header gives it, if it
    /// does.
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The body as a [`Stream`](futures_core::Stream) of chunks, as they
    /// arrive (the request's time limit still applies).
    pub fn bytes_stream(self) -> impl futures_core::Stream<Item = Result<Bytes, Error>> + Send {
        futures_util::stream::unfold(Some(self), |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}
