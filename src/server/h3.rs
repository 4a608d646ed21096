//! The HTTP/3 side of the origin.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use http::{Request, Response};

use super::respond::{
    drip_chunk, LogSlot, OriginStats, Reply, ReplyBody, RequestLog, RequestRecord, DRIP_CHUNKS, DRIP_INTERVAL,
};
use super::ServerError;
use crate::quic::HandshakeData;

/// An HTTP/3 origin on a UDP port.
///
/// ## Behavior
///
/// - Connections are taken with quinn's `into_0rtt`, so requests sent as
///   0-RTT are answered before the handshake completes (0.5-RTT).
/// - Every request gets `200 OK` with `x-early-data: 1` if it was read
///   before the handshake completed (so it came as 0-RTT), else `0`. A `GET` gets a short
///   text naming the method and path; any other method gets its body back.
/// - The path `/too-early` answers `425 Too Early` to a request that came as
///   early data (RFC 8470), and `200 OK` otherwise: clients use it to test
///   their retry.
/// - The path `/drip` sends its body as five lines 100 ms apart, and `/slow`
///   waits 300 ms before its response head, for tests of streaming, time
///   limits and concurrency.
/// - Stopping ([`close`](Self::close) or drop) closes every connection.
///
/// The TLS stack is the caller's: [`rustls_quic_config`](super::rustls_quic_config)
/// (quinn's standard rustls server, the default of `h3fleet serve`) or
/// h3fleet's BoringSSL [`QuicServerConfig`](crate::quic::QuicServerConfig).
pub struct H3Origin {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What the origin's tasks share.
#[derive(Default)]
struct Shared {
    stats: OriginStats,
    log: LogSlot,
    /// Open connections, by quinn's stable id.
    open: Mutex<HashMap<usize, quinn::Connection>>,
}

impl std::fmt::Debug for H3Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Origin")
            .field("addr", &self.endpoint.local_addr().ok())
            .finish()
    }
}

impl H3Origin {
    /// Listens on `addr` (port 0 picks a free one) with `tls`.
    ///
    /// # Errors
    ///
    /// The socket cannot be bound.
    pub fn bind(addr: SocketAddr, tls: Arc<dyn quinn::crypto::ServerConfig>) -> Result<Self, ServerError> {
        let config = quinn::ServerConfig::with_crypto(tls);
        let endpoint =
            quinn::Endpoint::server(config, addr).map_err(|source| ServerError::Bind { addr, source })?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        Ok(Self {
            endpoint,
            shared,
            task,
        })
    }

    /// Hands every answered request to `log` (or stops, with `None`).
    pub fn set_request_log(&self, log: Option<RequestLog>) {
        self.shared.log.set(log);
    }

    /// Closes every open connection (`H3_NO_ERROR`), as a server that drops
    /// idle connections does, and keeps accepting new ones.
    pub fn close_connections(&self) {
        let open: Vec<quinn::Connection> = self
            .shared
            .open
            .lock()
            .map(|open| open.values().cloned().collect())
            .unwrap_or_default();
        for conn in open {
            conn.close(
                quinn::VarInt::from_u32(H3_NO_ERROR_U32),
                b"origin closing connections",
            );
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// What it has served so far.
    pub fn stats(&self) -> &OriginStats {
        &self.shared.stats
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"origin closing");
        self.task.abort();
    }
}

impl Drop for H3Origin {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(incoming, shared).await {
                tracing::debug!(error = %e, "origin connection ended");
            }
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// True until the TLS handshake is complete. BoringSSL verifies the
/// client's Finished while quinn processes that packet, before any later
/// packet's streams reach h3, so a request read while this is true came in
/// 0-RTT packets. (The converse can miss: on a path with almost no delay the
/// Finished may be processed before h3 gets to a 0-RTT request.)
fn still_handshaking(data: Option<&HandshakeData>) -> bool {
    !data.is_some_and(|d| d.handshake_complete)
}

fn handshake_data(conn: &quinn::Connection) -> Option<HandshakeData> {
    conn.handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .map(|d| *d)
}

/// H3_NO_ERROR (RFC 9114 §8.1).
const H3_NO_ERROR_U32: u32 = 0x100;
const H3_NO_ERROR: u64 = H3_NO_ERROR_U32 as u64;

async fn serve_connection(incoming: quinn::Incoming, shared: Arc<Shared>) -> Result<(), BoxError> {
    let mut connecting = incoming.accept()?;
    // Wait for the whole ClientHello first. A ClientHello (large with a
    // ticket) can span two datagrams, and until it is read quinn knows none
    // of the client's transport parameters, so it has no stream credit;
    // quinn 0.11 does not wake a stream opener when those parameters arrive,
    // so an h3 server started earlier would wait forever to open its
    // control stream.
    connecting.handshake_data().await?;
    // On a server `into_0rtt` always succeeds: it lets 0-RTT requests be
    // answered before the handshake completes (0.5-RTT data).
    let conn = match connecting.into_0rtt() {
        Ok((conn, _)) => conn,
        Err(connecting) => connecting.await?,
    };
    let stats = &shared.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let id = conn.stable_id();
    crate::sync::lock(&shared.open).insert(id, conn.clone());
    let served = serve_requests(&conn, &shared).await;
    crate::sync::lock(&shared.open).remove(&id);
    let clean = match &served {
        Err(e) => e.is_h3_no_error(),
        Ok(()) => matches!(conn.closed().await,
            quinn::ConnectionError::ApplicationClosed(c) if u64::from(c.error_code) == H3_NO_ERROR),
    };
    let counter = if clean {
        &shared.stats.clean_closes
    } else {
        &shared.stats.error_closes
    };
    counter.fetch_add(1, Ordering::Relaxed);
    served.map_err(Into::into)
}

async fn serve_requests(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
) -> Result<(), h3::error::ConnectionError> {
    let mut h3 = h3::server::Connection::new(h3_quinn::Connection::new(conn.clone())).await?;
    while let Some(resolver) = h3.accept().await? {
        let (shared, conn) = (Arc::clone(shared), conn.clone());
        tokio::spawn(async move {
            let Ok((request, stream)) = resolver.resolve_request().await else {
                return;
            };
            let data = handshake_data(&conn);
            let mut record = RequestRecord {
                protocol: "h3",
                method: request.method().to_string(),
                path: request.uri().path().to_owned(),
                early_data: still_handshaking(data.as_ref()),
                resumed: data.as_ref().is_some_and(|d| d.resumed),
                ech: data.as_ref().is_some_and(|d| d.ech_accepted),
                server_name: data.as_ref().and_then(|d| d.server_name.clone()),
                status: 0,
                peer: Some(conn.remote_address()),
            };
            match answer(request, stream, record.early_data, record.ech, &shared.stats).await {
                Ok(status) => {
                    record.status = status;
                    shared.log.record(&record);
                }
                Err(e) => tracing::debug!(error = %e, "origin request failed"),
            }
        });
    }
    Ok(())
}

async fn answer<S>(
    request: Request<()>,
    mut stream: h3::server::RequestStream<S, Bytes>,
    early: bool,
    ech: bool,
    stats: &OriginStats,
) -> Result<u16, BoxError>
where
    S: h3::quic::BidiStream<Bytes>,
{
    let mut received = super::body::Received::default();
    while let Some(mut chunk) = stream.recv_data().await? {
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            let n = piece.len();
            received.add(piece);
            chunk.advance(n);
        }
    }
    let (head, ()) = request.into_parts();
    let reply = Reply::to(&head, received, early, ech, stats);
    if let Some(wait) = reply.head_delay {
        tokio::time::sleep(wait).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers() {
        response = response.header(name, value);
    }
    stream.send_response(response.body(())?).await?;
    match reply.body {
        ReplyBody::Full(bytes) => stream.send_data(bytes).await?,
        ReplyBody::Drip => {
            for i in 0..DRIP_CHUNKS {
                if i > 0 {
                    tokio::time::sleep(DRIP_INTERVAL).await;
                }
                stream.send_data(drip_chunk(i)).await?;
            }
        }
        ReplyBody::Stream(mut left) => {
            while let Some(piece) = super::body::stream_piece(&mut left) {
                stream.send_data(piece).await?;
            }
        }
    }
    stream.finish().await?;
    Ok(reply.status.as_u16())
}
