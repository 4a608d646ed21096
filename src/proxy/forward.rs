//! Performing a client's request with a [`Session`] and streaming the
//! answer back, with what TLS did in `X-H3fleet-*` headers.

use std::time::Instant;

use futures_util::TryStreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};

use super::handler::{self, Handler, ProxyBody, Target};
use super::{headers, ProxyRecord};
use crate::error::{BoxError, Error};
use crate::session::Session;

/// Sends `request` to `target` with `session`; the head comes back as soon
/// as the origin's does, the body as it arrives. Dropping the answer (the
/// client went away) drops the upstream request with it.
pub(super) async fn perform(
    handler: &Handler,
    session: &Session,
    id: &str,
    request: Request<Incoming>,
    target: Target,
    started: Instant,
) -> Response<ProxyBody> {
    let (head, body) = request.into_parts();
    let mut upstream = session
        .request(head.method.clone(), target.url.clone())
        .headers(headers::forwardable(&head.headers, true));
    // A request without a body stays eligible for 0-RTT; one with a body
    // streams through (and so never goes as early data).
    if !body.is_end_stream() {
        let frames = TryStreamExt::map_err(BodyStream::new(body), |e| -> BoxError { Box::new(e) })
            .try_filter_map(|frame| std::future::ready(Ok(frame.into_data().ok())));
        upstream = upstream.body(crate::Body::wrap_stream(frames));
    }
    if let Some(limit) = handler.settings().request_timeout {
        upstream = upstream.timeout(limit);
    }
    let mut record = ProxyRecord {
        session: id.to_owned(),
        method: head.method.to_string(),
        url: target.url.to_string(),
        status: 0,
        protocol: "none",
        resumed: false,
        early_data: "not_attempted",
        ticket_source: "none",
        ech: "off",
        ms: 0.0,
    };
    let answer = match upstream.send().await {
        Ok(response) => answer(response, &mut record, target.https),
        Err(e) => failed(&e),
    };
    record.status = answer.status().as_u16();
    record.ms = handler::millis(started);
    handler.record(record);
    answer
}

/// The client's answer to a response: its status and headers (hop-by-hop
/// ones dropped; a decoded body has lost its `Content-Encoding` and
/// `Content-Length` already), the `X-H3fleet-*` report, and its body as a
/// stream (chunked to the client when its length is unknown).
fn answer(response: crate::Response, record: &mut ProxyRecord, https: bool) -> Response<ProxyBody> {
    let tls = response.tls();
    record.protocol = match response.protocol() {
        http::Version::HTTP_3 => "h3",
        http::Version::HTTP_2 => "h2",
        _ => "http/1.1",
    };
    let mut out = headers::forwardable(response.headers(), false);
    if https {
        record.resumed = tls.resumed;
        record.early_data = tls.early_data.as_str();
        record.ticket_source = tls.ticket_source_str();
        record.ech = tls.ech.as_str();
        headers::report(
            &mut out,
            "x-h3fleet-resumed",
            if tls.resumed { "true" } else { "false" },
        );
        headers::report(&mut out, "x-h3fleet-early-data", record.early_data);
        headers::report(&mut out, "x-h3fleet-ticket-source", record.ticket_source);
        headers::report(&mut out, "x-h3fleet-ech", record.ech);
    }
    headers::report(&mut out, "x-h3fleet-protocol", record.protocol);
    let status = response.status();
    let frames = response
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(|e| -> BoxError { Box::new(e) });
    let mut client = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *client.status_mut() = status;
    *client.headers_mut() = out;
    client
}

/// `504` when the origin was too slow, `502` for any other failure, with
/// what failed (never a secret: errors carry none).
fn failed(e: &Error) -> Response<ProxyBody> {
    let status = if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_dns() {
        "dns"
    } else if e.is_tls() {
        "tls"
    } else if e.is_proxy() {
        "proxy"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    tracing::debug!("local proxy upstream request failed: {e}");
    let mut response = handler::error(status, &e.to_string());
    headers::report(response.headers_mut(), "x-h3fleet-error", kind);
    response
}
