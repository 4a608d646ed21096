//! What the origin answers, whatever the protocol carried the request, and
//! what it counts and logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

/// `/slow` waits this long before its response head.
const SLOW_HEAD: Duration = Duration::from_millis(300);

/// `/drip` sends its body in this many pieces, this far apart.
pub(crate) const DRIP_CHUNKS: usize = 5;
pub(crate) const DRIP_INTERVAL: Duration = Duration::from_millis(100);

/// Counters of what the origin served.
#[derive(Debug, Default)]
pub struct OriginStats {
    pub(crate) connections: AtomicU64,
    requests: AtomicU64,
    early_requests: AtomicU64,
    pub(crate) clean_closes: AtomicU64,
    pub(crate) error_closes: AtomicU64,
}

impl OriginStats {
    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests that arrived as early data (0-RTT), before the handshake
    /// completed.
    pub fn early_requests(&self) -> u64 {
        self.early_requests.load(Ordering::Relaxed)
    }

    /// Connections that ended cleanly (HTTP/3: `H3_NO_ERROR` from either
    /// side; TCP: the HTTP connection ended without error).
    pub fn clean_closes(&self) -> u64 {
        self.clean_closes.load(Ordering::Relaxed)
    }

    /// Connections that ended with an error (e.g. `H3_CLOSED_CRITICAL_STREAM`,
    /// an idle timeout, bytes that are not HTTP).
    pub fn error_closes(&self) -> u64 {
        self.error_closes.load(Ordering::Relaxed)
    }
}

/// One request the origin answered, as handed to the request log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRecord {
    /// `h3`, `h2` or `http/1.1`.
    pub protocol: &'static str,
    /// The request method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// True if the request arrived as early data (0-RTT).
    pub early_data: bool,
    /// True if the connection resumed a session.
    pub resumed: bool,
    /// True if the client's Encrypted Client Hello was accepted.
    pub ech: bool,
    /// The server name the TLS handshake saw (with ECH accepted, the inner,
    /// hidden one).
    pub server_name: Option<String>,
    /// The status the origin answered with.
    pub status: u16,
    /// The address the request came from: the client's, or the egress
    /// proxy's when the client used one.
    pub peer: Option<std::net::SocketAddr>,
}

/// Receives a [`RequestRecord`] for every request answered.
pub type RequestLog = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// The request log slot an origin's tasks share.
#[derive(Default)]
pub(crate) struct LogSlot(RwLock<Option<RequestLog>>);

impl LogSlot {
    pub(crate) fn set(&self, log: Option<RequestLog>) {
        *crate::sync::write(&self.0) = log;
    }

    pub(crate) fn record(&self, record: &RequestRecord) {
        let log = crate::sync::read(&self.0).clone();
        if let Some(log) = log {
            log(record);
        }
    }
}

/// The body of a reply.
pub(crate) enum ReplyBody {
    Full(Bytes),
    /// [`DRIP_CHUNKS`] lines ([`drip_chunk`]), [`DRIP_INTERVAL`] apart.
    Drip,
    /// `/stream/N`: this many bytes, made as they go
    /// ([`stream_piece`](super::body::stream_piece)).
    Stream(u64),
}

/// The origin's answer to one request.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) early: bool,
    /// The client's ECH was accepted (`x-ech: 1`).
    pub(crate) ech: bool,
    /// Wait this long before sending the head.
    pub(crate) head_delay: Option<Duration>,
    pub(crate) body: ReplyBody,
    /// A redirect's `Location`.
    pub(crate) location: Option<String>,
    /// The body's `Content-Encoding`.
    pub(crate) coding: Option<&'static str>,
}

impl Reply {
    /// The answer to `method path` with `body`; `early` if the request came
    /// as early data. Counts the request in `stats`.
    ///
    /// - `/too-early` answers `425 Too Early` to an early request (RFC 8470)
    ///   and `200 OK` otherwise;
    /// - `/drip` streams five lines 100 ms apart; `/slow` waits 300 ms
    ///   before its head;
    /// - `/redirect/N` answers `302` to `/redirect/N-1`, and `/redirect/0`
    ///   `200`; `/redirect-to?url=U&status=S` answers `S` (default 302)
    ///   with `Location: U`;
    /// - `/gzip`, `/br`, `/zstd`, `/deflate` answer
    ///   [`plain_body`](super::plain_body) in that coding, `/corrupt/{coding}`
    ///   half of it;
    /// - `/echo` answers JSON with the request's method, path, query,
    ///   headers and body (as text, its first MiB); `/status/N` answers
    ///   status `N`; `/upload` answers `{"method", "bytes", "sha256"}` for a
    ///   body of any size; `/stream/N` streams `N` bytes;
    /// - a `GET` gets a line naming method and path; anything else gets its
    ///   body back.
    pub(crate) fn to(
        head: &http::request::Parts,
        received: super::body::Received,
        early: bool,
        ech: bool,
        stats: &OriginStats,
    ) -> Self {
        let (method, path) = (&head.method, head.uri.path());
        let (body, total, sha256) = received.finish();
        stats.requests.fetch_add(1, Ordering::Relaxed);
        if early {
            stats.early_requests.fetch_add(1, Ordering::Relaxed);
        }
        let too_early = early && path == "/too-early";
        let location = redirect_location(head);
        let compressed = super::compress::compressed(path);
        let (status, body) = if let Some((status, _)) = &location {
            (*status, ReplyBody::Full(Bytes::from_static(b"redirecting\n")))
        } else if too_early {
            (
                StatusCode::TOO_EARLY,
                ReplyBody::Full(Bytes::from_static(b"too early: send again after the handshake\n")),
            )
        } else if let Some((_, body)) = &compressed {
            (StatusCode::OK, ReplyBody::Full(body.clone()))
        } else if path == "/drip" {
            (StatusCode::OK, ReplyBody::Drip)
        } else if path == "/echo" {
            (StatusCode::OK, ReplyBody::Full(echo(head, &body)))
        } else if path == "/upload" {
            let answer = serde_json::json!({ "method": method.as_str(), "bytes": total, "sha256": sha256 });
            (StatusCode::OK, ReplyBody::Full(Bytes::from(answer.to_string())))
        } else if let Some(n) = path.strip_prefix("/stream/").and_then(|n| n.parse().ok()) {
            (StatusCode::OK, ReplyBody::Stream(n))
        } else if let Some(status) = path.strip_prefix("/status/").and_then(|n| n.parse().ok()) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, ReplyBody::Full(Bytes::from(format!("status {status}\n"))))
        } else if method == Method::GET {
            (
                StatusCode::OK,
                ReplyBody::Full(Bytes::from(format!("h3fleet origin: {method} {path}\n"))),
            )
        } else {
            (StatusCode::OK, ReplyBody::Full(body))
        };
        Self {
            status,
            early,
            ech,
            head_delay: (!too_early && path == "/slow").then_some(SLOW_HEAD),
            body,
            location: location.map(|(_, to)| to),
            coding: compressed.map(|(coding, _)| coding),
        }
    }

    /// The headers every reply carries: `x-early-data`, `x-ech` (whether
    /// the ClientHello was encrypted) and, for a body of known size,
    /// `content-length`.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let flag = |on: bool| if on { "1" } else { "0" }.to_owned();
        let mut headers = vec![("x-early-data", flag(self.early)), ("x-ech", flag(self.ech))];
        if let Some(location) = &self.location {
            headers.push(("location", location.clone()));
        }
        if let Some(coding) = self.coding {
            headers.push(("content-encoding", coding.to_owned()));
        }
        match &self.body {
            ReplyBody::Full(bytes) => headers.push(("content-length", bytes.len().to_string())),
            ReplyBody::Stream(n) => headers.push(("content-length", n.to_string())),
            ReplyBody::Drip => {}
        }
        headers
    }
}

/// Where `/redirect/N` and `/redirect-to` send the client, and with what
/// status.
fn redirect_location(head: &http::request::Parts) -> Option<(StatusCode, String)> {
    let path = head.uri.path();
    if let Some(n) = path
        .strip_prefix("/redirect/")
        .and_then(|n| n.parse::<u32>().ok())
    {
        return (n > 0).then(|| (StatusCode::FOUND, format!("/redirect/{}", n - 1)));
    }
    if path != "/redirect-to" {
        return None;
    }
    let query = head.uri.query().unwrap_or_default();
    let mut to = None;
    let mut status = StatusCode::FOUND;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "url" => to = Some(value.into_owned()),
            "status" => {
                status = value
                    .parse()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(status)
            }
            _ => {}
        }
    }
    to.map(|to| (status, to))
}

/// The `/echo` body: what the origin received, as JSON.
fn echo(head: &http::request::Parts, body: &[u8]) -> Bytes {
    let mut headers = serde_json::Map::new();
    for name in head.headers.keys() {
        let values: Vec<String> = head
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), values.join(", ").into());
    }
    let echo = serde_json::json!({
        "method": head.method.as_str(),
        "path": head.uri.path(),
        "query": head.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(body),
    });
    Bytes::from(echo.to_string())
}

/// Piece `i` of a `/drip` body.
pub(crate) fn drip_chunk(i: usize) -> Bytes {
    Bytes::from(format!("drip {i}\n"))
}
