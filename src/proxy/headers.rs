//! The headers the proxy reads, strips and adds.

use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, PROXY_AUTHORIZATION};

/// Asks for `https://` on a request sent as `http://…` (for clients that
/// only send plain HTTP to a proxy).
pub(super) const SCHEME: &str = "x-h3fleet-scheme";
/// Names the registered session that performs the request.
pub(super) const SESSION: &str = "x-h3fleet-session";

/// Headers about one hop only (RFC 9110 section 7.6.1, and the
/// `Proxy-Connection` and `Keep-Alive` that clients still send).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `Basic` credentials as the header carries them (base64 of
/// `user:password`).
pub(super) fn basic_credentials(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Whether the request's `Proxy-Authorization` carries `expected`,
/// compared in constant time so the comparison leaks no prefix.
pub(super) fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim())
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter().cycle()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// One header value as text, if it is.
pub(super) fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The headers to send on: without the hop-by-hop ones (and those the
/// `Connection` header names), the proxy's own `X-H3fleet-*`, and `Host`
/// (the session writes it from the URL).
pub(super) fn forwardable(headers: &HeaderMap, request: bool) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_str = name.as_str();
        let drop = HOP_BY_HOP.contains(&name_str)
            || named.iter().any(|n| n == name_str)
            || name_str.starts_with("x-h3fleet-")
            || (request && name == HOST);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Adds `X-H3fleet-<name>: value`.
pub(super) fn report(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic abc"));
        h.insert("x-h3fleet-session", HeaderValue::from_static("a"));
        h.insert("host", HeaderValue::from_static("example.com"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let out = forwardable(&h, true);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out.contains_key("accept"));
        assert!(
            forwardable(&h, false).contains_key("host"),
            "a response keeps a header named host"
        );
    }

    #[test]
    fn only_the_exact_basic_credentials_authorize() {
        let expected = basic_credentials("user", "pass");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(PROXY_AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            authorized(&h, &expected)
        };
        assert!(with(&format!("Basic {expected}")));
        assert!(with(&format!("basic  {expected}")));
        assert!(!with(&format!("Bearer {expected}")));
        assert!(!with(&format!("Basic {}", basic_credentials("user", "pas"))));
        assert!(!with(&format!("Basic {expected}x")));
        assert!(!with("Basic "));
        assert!(!authorized(&HeaderMap::new(), &expected));
    }
}
