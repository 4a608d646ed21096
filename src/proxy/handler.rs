//! One client request: authenticate, then tunnel (`CONNECT`), perform
//! with a session (`https`), or forward (plain `http`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;

use super::registry::Registry;
use super::{headers, ProxyRecord, Settings};
use crate::error::BoxError;

/// The body of every answer to a client.
pub(super) type ProxyBody = BoxBody<Bytes, BoxError>;

/// Handles the requests of one client connection.
#[derive(Clone)]
pub(super) struct Handler {
    registry: Arc<Registry>,
    settings: Arc<Settings>,
    peer: SocketAddr,
}

/// Where a request goes, read from its target and headers.
pub(super) struct Target {
    pub(super) url: url::Url,
    /// Performed by a session over TLS (else forwarded as plain HTTP/1.1).
    pub(super) https: bool,
}

impl Handler {
    pub(super) fn new(registry: Arc<Registry>, settings: Arc<Settings>, peer: SocketAddr) -> Self {
        Self {
            registry,
            settings,
            peer,
        }
    }

    pub(super) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Answers one request; every failure is an HTTP answer, never a
    /// dropped connection.
    pub(super) async fn handle(self, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let shown = request.uri().to_string();
        if let Some(expected) = &self.settings.auth {
            if !headers::authorized(request.headers(), expected) {
                tracing::debug!(peer = %self.peer, "local proxy: missing or wrong Proxy-Authorization");
                let mut response = error(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "proxy authentication required",
                );
                response.headers_mut().insert(
                    http::header::PROXY_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"h3fleet\""),
                );
                return Ok(self.refused(response, &method, &shown, started));
            }
        }
        if method == Method::CONNECT {
            return Ok(super::tunnel::open(self, request, started).await);
        }
        let target = match target(&request) {
            Ok(target) => target,
            Err(reason) => {
                return Ok(self.refused(error(StatusCode::BAD_REQUEST, &reason), &method, &shown, started))
            }
        };
        let asked = headers::text(request.headers(), headers::SESSION).map(str::to_owned);
        let Some((id, session)) = self.registry.pick(asked.as_deref()) else {
            let reason = format!("unknown session {:?}", asked.unwrap_or_default());
            return Ok(self.refused(error(StatusCode::BAD_REQUEST, &reason), &method, &shown, started));
        };
        self.registry.count_request(Some(&id));
        Ok(super::forward::perform(&self, &session, &id, request, target, started).await)
    }

    /// Counts and logs an answer the proxy gave without going upstream.
    fn refused(
        &self,
        response: Response<ProxyBody>,
        method: &Method,
        url: &str,
        started: Instant,
    ) -> Response<ProxyBody> {
        self.registry.count_request(None);
        self.record(ProxyRecord {
            session: String::new(),
            method: method.to_string(),
            url: url.to_owned(),
            status: response.status().as_u16(),
            protocol: "none",
            resumed: false,
            early_data: "not_attempted",
            ticket_source: "none",
            ech: "off",
            ms: millis(started),
        });
        response
    }

    /// Hands `record` to the callback, if one is set.
    pub(super) fn record(&self, record: ProxyRecord) {
        tracing::debug!(method = %record.method, url = %record.url, status = record.status, "local proxy request");
        if let Some(callback) = &self.settings.on_request {
            callback(&record);
        }
    }
}

/// The URL a request asks for: absolute form (`https://…`, or `http://…`
/// turned into `https` by `X-H3fleet-Scheme: https`), or origin form with
/// `Host` and the scheme header.
pub(super) fn target<B>(request: &Request<B>) -> Result<Target, String> {
    let uri = request.uri();
    let asked_https = match headers::text(request.headers(), headers::SCHEME) {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        Some(other) => return Err(format!("X-H3fleet-Scheme {other:?}: expected https or http")),
    };
    let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => (scheme.to_ascii_lowercase(), authority.as_str().to_owned()),
        (None, None) if asked_https => {
            let host = headers::text(request.headers(), http::header::HOST.as_str())
                .ok_or("a request in origin form needs a Host header")?;
            ("http".to_owned(), host.to_owned())
        }
        _ => return Err("not a proxy request: send the absolute URL (or CONNECT host:port)".into()),
    };
    let https = match scheme.as_str() {
        "https" => true,
        "http" => asked_https,
        other => return Err(format!("scheme {other:?} is not proxied: use http or https")),
    };
    if authority.contains('@') {
        return Err("a target URL may not carry credentials".into());
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // An explicit port stays; `http://host/` asked for as https goes to 443.
    let text = format!("{}://{authority}{path}", if https { "https" } else { "http" });
    let url = url::Url::parse(&text).map_err(|e| format!("invalid target {text:?}: {e}"))?;
    Ok(Target { url, https })
}

/// A short JSON answer from the proxy itself.
pub(super) fn error(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": reason, "status": status.as_u16() }).to_string();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A whole body.
pub(super) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub(super) fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(uri: &str, extra: &[(&str, &str)]) -> Result<(String, bool), String> {
        let mut builder = Request::builder().uri(uri);
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(()).map_err(|e| e.to_string())?;
        target(&request).map(|t| (t.url.to_string(), t.https))
    }

    #[test]
    fn the_scheme_header_turns_a_plain_request_into_https_on_the_port_named() {
        let https = [("x-h3fleet-scheme", "https")];
        assert_eq!(
            target_of("http://localhost:8443/a?b", &https).unwrap(),
            ("https://localhost:8443/a?b".into(), true)
        );
        assert_eq!(
            target_of("http://example.com/", &https).unwrap(),
            ("https://example.com/".into(), true)
        );
        assert_eq!(
            target_of("http://example.com/", &[]).unwrap(),
            ("http://example.com/".into(), false)
        );
        assert_eq!(
            target_of("https://example.com/x", &[]).unwrap(),
            ("https://example.com/x".into(), true)
        );
        let origin_form = [("x-h3fleet-scheme", "https"), ("host", "h:1")];
        assert_eq!(
            target_of("/p", &origin_form).unwrap(),
            ("https://h:1/p".into(), true)
        );
    }

    #[test]
    fn requests_that_are_not_for_a_proxy_are_refused() {
        assert!(
            target_of("/p", &[("host", "h")]).is_err(),
            "origin form without the scheme header"
        );
        assert!(target_of("ftp://h/", &[]).is_err());
        assert!(target_of("http://h/", &[("x-h3fleet-scheme", "gopher")]).is_err());
    }
}
