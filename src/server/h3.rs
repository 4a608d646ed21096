//! The HTTP/3 side of the origin.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response, StatusCode};

use super::ServerError;
use crate::quic::{HandshakeData, QuicServerConfig};

/// The largest request body the origin reads (it echoes bodies back).
const MAX_BODY: usize = 1 << 20;

/// Counters of what the origin served.
#[derive(Debug, Default)]
pub struct OriginStats {
    connections: AtomicU64,
    requests: AtomicU64,
    early_requests: AtomicU64,
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

    /// Requests whose headers arrived before the handshake completed (0-RTT).
    pub fn early_requests(&self) -> u64 {
        self.early_requests.load(Ordering::Relaxed)
    }
}

/// An HTTP/3 origin on a UDP port.
///
/// ## Behavior
///
/// - Connections are taken with quinn's `into_0rtt`, so requests sent as
///   0-RTT are answered before the handshake completes (0.5-RTT).
/// - Every request gets `200 OK` with `x-early-data: 1` if it was read
///   before the handshake completed (so it came as 0-RTT), else `0`. A `GET` gets a short
///   text naming the method and path; any other method gets its body back.
/// - Stopping ([`close`](Self::close) or drop) closes every connection.
pub struct H3Origin {
    endpoint: quinn::Endpoint,
    stats: Arc<OriginStats>,
    task: tokio::task::JoinHandle<()>,
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
    pub fn bind(addr: SocketAddr, tls: QuicServerConfig) -> Result<Self, ServerError> {
        let config = quinn::ServerConfig::with_crypto(Arc::new(tls));
        let endpoint =
            quinn::Endpoint::server(config, addr).map_err(|source| ServerError::Bind { addr, source })?;
        let stats = Arc::new(OriginStats::default());
        let task = tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&stats)));
        Ok(Self {
            endpoint,
            stats,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// What it has served so far.
    pub fn stats(&self) -> &OriginStats {
        &self.stats
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

async fn accept_loop(endpoint: quinn::Endpoint, stats: Arc<OriginStats>) {
    while let Some(incoming) = endpoint.accept().await {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(incoming, stats).await {
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
fn still_handshaking(conn: &quinn::Connection) -> bool {
    !conn
        .handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .is_some_and(|d| d.handshake_complete)
}

async fn serve_connection(incoming: quinn::Incoming, stats: Arc<OriginStats>) -> Result<(), BoxError> {
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
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut h3 = h3::server::Connection::new(h3_quinn::Connection::new(conn.clone())).await?;
    while let Some(resolver) = h3.accept().await? {
        let (stats, conn) = (Arc::clone(&stats), conn.clone());
        tokio::spawn(async move {
            let Ok((request, stream)) = resolver.resolve_request().await else {
                return;
            };
            let early = still_handshaking(&conn);
            if let Err(e) = answer(request, stream, early, &stats).await {
                tracing::debug!(error = %e, "origin request failed");
            }
        });
    }
    Ok(())
}

async fn answer<S>(
    request: Request<()>,
    mut stream: h3::server::RequestStream<S, Bytes>,
    early: bool,
    stats: &OriginStats,
) -> Result<(), BoxError>
where
    S: h3::quic::BidiStream<Bytes>,
{
    stats.requests.fetch_add(1, Ordering::Relaxed);
    if early {
        stats.early_requests.fetch_add(1, Ordering::Relaxed);
    }
    let mut body = BytesMut::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        if body.len() + chunk.remaining() > MAX_BODY {
            break;
        }
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    let reply = if request.method() == http::Method::GET {
        Bytes::from(format!(
            "h3fleet origin: {} {}\n",
            request.method(),
            request.uri().path()
        ))
    } else {
        body.freeze()
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("x-early-data", if early { "1" } else { "0" })
        .header("content-length", reply.len())
        .body(())?;
    stream.send_response(response).await?;
    stream.send_data(reply).await?;
    stream.finish().await?;
    Ok(())
}
