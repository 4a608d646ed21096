//! `CONNECT host:port`: a plain TCP tunnel. The client keeps its own TLS
//! end to end, so the fleet's cache plays no part; ports on the deny list
//! (mail, telnet by default) are refused.

use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::handler::{self, Handler, ProxyBody};
use super::ProxyRecord;

/// The longest connecting to a tunnel's target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a `CONNECT`: `200` and the tunnel, or why not.
pub(super) async fn open(
    handler: Handler,
    request: Request<Incoming>,
    started: Instant,
) -> Response<ProxyBody> {
    let authority = request.uri().authority().cloned();
    let shown = authority.as_ref().map_or_else(String::new, ToString::to_string);
    let (status, reason, upstream) = match &authority {
        None => (
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port".to_owned(),
            None,
        ),
        Some(a) => match a.port_u16() {
            None => (
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port".to_owned(),
                None,
            ),
            Some(port) if handler.settings().denied_ports.contains(&port) => (
                StatusCode::FORBIDDEN,
                format!("port {port} is not tunnelled"),
                None,
            ),
            Some(port) => connect(a.host(), port).await,
        },
    };
    handler.registry().count_request(None);
    handler.record(ProxyRecord {
        session: String::new(),
        method: "CONNECT".to_owned(),
        url: shown.clone(),
        status: status.as_u16(),
        protocol: if upstream.is_some() { "tunnel" } else { "none" },
        resumed: false,
        early_data: "not_attempted",
        ticket_source: "none",
        ech: "off",
        ms: handler::millis(started),
    });
    let Some(upstream) = upstream else {
        return handler::error(status, &reason);
    };
    let open = handler.registry().open_connection(false);
    tokio::spawn(async move {
        let _open = open;
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(target = %shown, "local proxy tunnel ended: {e}");
                }
            }
            Err(e) => tracing::debug!(target = %shown, "local proxy tunnel not upgraded: {e}"),
        }
    });
    Response::new(handler::full(bytes::Bytes::new()))
}

/// Connects to the tunnel's target: the stream, or the `502`/`504` why not.
async fn connect(host: &str, port: u16) -> (StatusCode, String, Option<TcpStream>) {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            (StatusCode::OK, String::new(), Some(stream))
        }
        Ok(Err(e)) => (
            StatusCode::BAD_GATEWAY,
            format!("cannot connect to {host}:{port}: {e}"),
            None,
        ),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("connecting to {host}:{port} took longer than {CONNECT_TIMEOUT:?}"),
            None,
        ),
    }
}
