//! The accept loop: at most `max_connections` clients at once, loopback
//! only unless auth is on, each connection served by hyper's HTTP/1.1
//! server with keep-alive until the client closes it or the proxy stops.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::handler::Handler;
use super::registry::Registry;
use super::Settings;

/// How many clients, and from where.
pub(super) struct Limits {
    pub(super) max_connections: usize,
    /// Refuse clients that are not on this machine (no auth to tell them
    /// apart).
    pub(super) loopback_only: bool,
}

/// Accepts until `stop` turns true. A client over the limit is not
/// accepted until a slot frees: it waits in the kernel's queue, and is
/// never left holding a half-served connection.
pub(super) async fn run(
    listener: TcpListener,
    limits: Limits,
    registry: Arc<Registry>,
    settings: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopped(&mut stop) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a moment, go on.
                tracing::warn!("local proxy accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if limits.loopback_only && !peer.ip().is_loopback() {
            tracing::warn!(%peer, "local proxy refused a client that is not on loopback (no auth is set)");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let handler = Handler::new(Arc::clone(&registry), Arc::clone(&settings), peer);
        tokio::spawn(serve(stream, peer, handler, permit, stop.clone()));
    }
}

/// Serves one client connection; on stop, finishes the request in flight
/// and closes (hyper's graceful shutdown).
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let _open = handler.registry().open_connection(true);
    let _permit = permit;
    let service = hyper::service::service_fn(move |request| handler.clone().handle(request));
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, "local proxy client connection ended: {e}");
    }
}

/// Resolves once the proxy is told to stop (or its handle is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}
