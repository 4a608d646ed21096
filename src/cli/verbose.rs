//! `h3fleet get -v`: what curl's `-v` shows, on stderr: for every hop,
//! where the connection went, what TLS did (h3fleet's own: resumed, whose
//! ticket, early data, ECH), the request head (`>`) and the response head
//! (`<`). Credentials are shown as `[redacted]`, never in the clear.

use std::fmt::Write as _;
use std::net::SocketAddr;

use h3fleet::{Response, TlsInfo};
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
use http::{HeaderMap, HeaderName, StatusCode, Version};

/// Headers whose values are secrets.
const REDACTED: [HeaderName; 4] = [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE];

/// One request and its answer, as `-v` shows them.
struct Exchange<'a> {
    url: &'a url::Url,
    remote: Option<SocketAddr>,
    tls: &'a TlsInfo,
    request: &'a http::request::Parts,
    status: StatusCode,
    headers: &'a HeaderMap,
}

/// The `-v` text for `response` and the redirects before it.
pub(crate) fn text(response: &Response) -> String {
    let mut out = String::new();
    for hop in response.redirects() {
        write_exchange(
            &mut out,
            &Exchange {
                url: &hop.url,
                remote: hop.remote_addr,
                tls: &hop.tls,
                request: &hop.request,
                status: hop.status,
                headers: &hop.headers,
            },
        );
    }
    write_exchange(
        &mut out,
        &Exchange {
            url: response.url(),
            remote: response.remote_addr(),
            tls: response.tls(),
            request: response.request(),
            status: response.status(),
            headers: response.headers(),
        },
    );
    out
}

fn write_exchange(out: &mut String, x: &Exchange<'_>) {
    let host = x.url.host_str().unwrap_or_default();
    let port = x.url.port_or_known_default().unwrap_or_default();
    let version = label(x.request.version);
    if x.tls.connection_reused {
        let _ = writeln!(out, "* Re-using existing {version} connection with host {host}");
    } else {
        let ip = x.remote.map(|a| a.ip().to_string()).unwrap_or_default();
        let _ = writeln!(out, "* Connected to {host} ({ip}) port {port}");
        write_tls(out, x.url.scheme() == "https", x.tls);
    }
    let target = x.request.uri.path_and_query().map_or("/", |p| p.as_str());
    let _ = writeln!(out, "> {} {target} {version}", x.request.method);
    let authority = x.request.uri.authority().map_or(host, |a| a.as_str());
    let _ = writeln!(out, "> Host: {authority}");
    write_headers(out, '>', &x.request.headers);
    let _ = writeln!(out, "< {version} {}", x.status.as_u16());
    write_headers(out, '<', x.headers);
}

/// What the handshake of a new connection did.
fn write_tls(out: &mut String, tls: bool, info: &TlsInfo) {
    if !tls {
        let _ = writeln!(out, "* Plain HTTP: no TLS, no session ticket");
        return;
    }
    let alpn = info.alpn.as_deref().unwrap_or("none");
    let _ = writeln!(
        out,
        "* TLS handshake in {:.1} ms, ALPN {alpn}",
        info.handshake_time.as_secs_f64() * 1000.0
    );
    let resumed = if info.resumed { "resumed" } else { "full handshake" };
    let ticket = match info.ticket_source {
        None => "no ticket offered".to_owned(),
        Some(_) => format!("ticket from {}", info.ticket_source_str()),
    };
    let early = info.early_data.as_str().replace('_', " ");
    let _ = writeln!(out, "* Session: {resumed}, {ticket}, early data {early}");
    let _ = writeln!(out, "* ECH: {}", info.ech.as_str());
}

fn write_headers(out: &mut String, mark: char, headers: &HeaderMap) {
    for (name, value) in headers {
        let shown = if REDACTED.contains(name) {
            "[redacted]".into()
        } else {
            String::from_utf8_lossy(value.as_bytes())
        };
        let _ = writeln!(out, "{mark} {name}: {shown}");
    }
    let _ = writeln!(out, "{mark}");
}

/// `HTTP/3`, `HTTP/2` or `HTTP/1.1`, as curl writes status lines.
pub(crate) fn label(version: Version) -> &'static str {
    match version {
        Version::HTTP_3 => "HTTP/3",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_shown() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        headers.insert("x-visible", "yes".parse().unwrap());
        let mut out = String::new();
        write_headers(&mut out, '>', &headers);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("> authorization: [redacted]\n"));
        assert!(out.contains("> x-visible: yes\n"));
        assert!(out.ends_with(">\n"));
    }
}
