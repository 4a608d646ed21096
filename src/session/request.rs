//! [`RequestBuilder`]: one request being built, and the early-data rule
//! that decides whether it may leave before the handshake.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderMap, Method};
use tracing::Instrument;

use super::redirect::{self, Hop};
use super::{Response, Session};
use crate::error::Error;
use crate::http::body::{Body, RequestBody};
use crate::http::connect::url_error;
use crate::http::{HttpProtocol, PreparedRequest};
use crate::replay::ReplaySafe;

/// When a first request may be sent as 0-RTT early data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EarlyDataPolicy {
    /// Replay-safe requests only: `GET`, `HEAD` and `OPTIONS` without a
    /// body, unless a request opts in or out with
    /// [`RequestBuilder::early_data`]. Early data can be replayed by an
    /// attacker, so anything that changes state waits for the handshake.
    #[default]
    IdempotentOnly,
    /// Never: every request waits for the handshake.
    Never,
}

/// A request being built. Errors (a bad URL, a bad header, a value that
/// cannot be encoded) are kept and reported by [`send`](Self::send), as in
/// reqwest.
#[must_use]
#[derive(Debug)]
pub struct RequestBuilder {
    session: Session,
    method: Method,
    url: Result<url::Url, Error>,
    headers: Result<HeaderMap, Error>,
    body: RequestBody,
    early_data: Option<bool>,
    timeout: Option<Duration>,
    version: Option<http::Version>,
}

/// What a URL can be given as: `&str`, `String`, or a parsed [`url::Url`].
pub trait IntoUrl: sealed::Sealed {
    /// The parsed URL, or the error [`RequestBuilder::send`] reports.
    #[doc(hidden)]
    fn into_url(self) -> Result<url::Url, Error>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &String {}
    impl Sealed for url::Url {}
    impl Sealed for &url::Url {}
}

impl IntoUrl for &str {
    fn into_url(self) -> Result<url::Url, Error> {
        url::Url::parse(self).map_err(|e| url_error(self, &e.to_string()))
    }
}

impl IntoUrl for String {
    fn into_url(self) -> Result<url::Url, Error> {
        self.as_str().into_url()
    }
}

impl IntoUrl for &String {
    fn into_url(self) -> Result<url::Url, Error> {
        self.as_str().into_url()
    }
}

impl IntoUrl for url::Url {
    fn into_url(self) -> Result<url::Url, Error> {
        Ok(self)
    }
}

impl IntoUrl for &url::Url {
    fn into_url(self) -> Result<url::Url, Error> {
        Ok(self.clone())
    }
}

impl RequestBuilder {
    pub(super) fn new(session: Session, method: Method, url: Result<url::Url, Error>) -> Self {
        Self {
            session,
            method,
            url,
            headers: Ok(HeaderMap::new()),
            body: RequestBody::default(),
            early_data: None,
            timeout: None,
            version: None,
        }
    }

    /// Adds a header (another value of a name already set is added too, as
    /// in reqwest). Names and values may be strings or `http`'s types.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: std::fmt::Display,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: std::fmt::Display,
    {
        if let Ok(headers) = &mut self.headers {
            match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                (Err(e), _) => self.headers = Err(Error::Header(format!("invalid name: {e}"))),
                (Ok(n), Err(e)) => self.headers = Err(Error::Header(format!("value of {n}: {e}"))),
            }
        }
        self
    }

    /// Sets every header in `headers`, replacing the values this request
    /// already had for those names.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        if let Ok(mine) = &mut self.headers {
            replace_headers(mine, headers);
        }
        self
    }

    /// `Authorization: Bearer TOKEN` (marked sensitive: HTTP/2 and HTTP/3
    /// never index it in their header compression).
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> Self {
        self.sensitive_authorization(format!("Bearer {token}"))
    }

    /// `Authorization: Basic base64(USER:PASSWORD)` (marked sensitive).
    pub fn basic_auth(self, user: impl std::fmt::Display, password: Option<impl std::fmt::Display>) -> Self {
        use base64::Engine as _;
        let pair = match password {
            Some(password) => format!("{user}:{password}"),
            None => format!("{user}:"),
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        self.sensitive_authorization(format!("Basic {encoded}"))
    }

    fn sensitive_authorization(mut self, value: String) -> Self {
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                if let Ok(headers) = &mut self.headers {
                    headers.insert(AUTHORIZATION, value);
                }
            }
            Err(_) => {
                self.headers = Err(Error::Header(
                    "the authorization value is not a valid header value".into(),
                ))
            }
        }
        self
    }

    /// Appends `query` (anything serde serialises as a map or a sequence
    /// of pairs) to the URL's query string, URL-encoded.
    pub fn query<T: serde::Serialize + ?Sized>(mut self, query: &T) -> Self {
        let encoded = serde_urlencoded::to_string(query).map_err(|e| Error::Encode {
            what: "query",
            source: Box::new(e),
        });
        match (encoded, &mut self.url) {
            (Ok(encoded), Ok(url)) if !encoded.is_empty() => {
                let joined = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{encoded}"),
                    _ => encoded,
                };
                url.set_query(Some(&joined));
            }
            (Err(e), Ok(_)) => self.url = Err(e),
            _ => {}
        }
        self
    }

    /// Sends `form` URL-encoded as the body, with `Content-Type:
    /// application/x-www-form-urlencoded`.
    pub fn form<T: serde::Serialize + ?Sized>(self, form: &T) -> Self {
        let encoded = serde_urlencoded::to_string(form).map_err(|e| Error::Encode {
            what: "form body",
            source: Box::new(e),
        });
        self.encoded_body(
            encoded.map(String::into_bytes),
            "application/x-www-form-urlencoded",
        )
    }

    /// Sends `json` serialised as the body, with `Content-Type:
    /// application/json` unless one is set.
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        let encoded = serde_json::to_vec(json).map_err(|e| Error::Encode {
            what: "JSON body",
            source: Box::new(e),
        });
        self.encoded_body(encoded, "application/json")
    }

    fn encoded_body(mut self, encoded: Result<Vec<u8>, Error>, content_type: &'static str) -> Self {
        match encoded {
            Ok(body) => {
                self.body = RequestBody::Full(body.into());
                if let Ok(headers) = &mut self.headers {
                    headers
                        .entry(CONTENT_TYPE)
                        .or_insert(HeaderValue::from_static(content_type));
                }
            }
            Err(e) => self.headers = Err(e),
        }
        self
    }

    /// Sets the body: bytes (`&str`, `String`, `Vec<u8>`, `Bytes`), or a
    /// [`Body::wrap_stream`] read as it is sent. A streamed body never goes
    /// as early data, even with [`early_data(true)`](Self::early_data).
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into().0;
        self
    }

    /// Opts this request in to (`true`) or out of (`false`) 0-RTT early data,
    /// overriding the method-based rule. Only opt in for requests the server
    /// may safely see twice. [`EarlyDataPolicy::Never`] still wins.
    pub fn early_data(mut self, allowed: bool) -> Self {
        self.early_data = Some(allowed);
        self
    }

    /// The HTTP version this request must go over, whatever the session's
    /// [`protocol`](crate::SessionBuilder::protocol), as reqwest's
    /// `version`: `HTTP_3` (QUIC), `HTTP_2` (TLS, ALPN `h2` only) or
    /// `HTTP_11` (TLS, ALPN `http/1.1` only; the only one an `http://` URL
    /// takes). Only open connections of that version carry it. `send` fails
    /// for any other version.
    pub fn version(mut self, version: http::Version) -> Self {
        self.version = Some(version);
        self
    }

    /// The longest this request may take, from sending it to the last byte
    /// of its body. A limit too large to add to the current time
    /// (`Duration::MAX`) means none.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Sends the request and waits for the response head.
    ///
    /// # Errors
    ///
    /// A bad URL or header, a failed lookup or connection, a time limit.
    pub async fn send(self) -> Result<Response, Error> {
        let url = check_url(self.url?, self.session.https_only())?;
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_error(url.as_str(), &e.to_string()))?;
        let mut headers = self.headers?;
        for (name, value) in self.session.default_headers() {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        self.session.accepts().set_accept(&mut headers);
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("h3fleet/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let rule = EarlyRule {
            policy: self.session.early_data_policy(),
            opted: self.early_data,
        };
        let replay_safe = rule.proof(&self.method, &self.body);
        let protocol = match self.version {
            None => None,
            Some(v) => Some(HttpProtocol::for_version(v).ok_or_else(|| {
                Error::Config(format!("{v:?} is not spoken: ask for HTTP/1.1, HTTP/2 or HTTP/3"))
            })?),
        };
        let request = PreparedRequest {
            protocol,
            method: self.method,
            uri,
            headers,
            body: self.body,
            replay_safe,
        };
        let span = tracing::debug_span!("request", method = %request.method, url = %url);
        let limit = self.timeout.or(self.session.default_timeout());
        let work = follow(&self.session, request, url, rule).instrument(span);
        // A limit past the end of time is no limit.
        let mut response =
            match limit.and_then(|l| tokio::time::Instant::now().checked_add(l).map(|d| (l, d))) {
                None => work.await?,
                Some((limit, deadline)) => {
                    let mut response =
                        tokio::time::timeout_at(deadline, work)
                            .await
                            .map_err(|_| Error::Timeout {
                                what: "the request",
                                after: limit,
                            })??;
                    response.set_deadline(deadline, limit);
                    response
                }
            };
        response.set_read_timeout(self.session.read_timeout());
        Ok(response)
    }
}

/// Whether a request (or a redirected one) may go as early data.
#[derive(Debug, Clone, Copy)]
struct EarlyRule {
    policy: EarlyDataPolicy,
    opted: Option<bool>,
}

impl EarlyRule {
    fn proof(self, method: &Method, body: &RequestBody) -> Option<ReplaySafe> {
        // A stream's length is unknown and its replay not assured.
        let body_len = body.len()?;
        match (self.policy, self.opted) {
            (EarlyDataPolicy::Never, _) | (_, Some(false)) => None,
            (_, Some(true)) => Some(ReplaySafe::opted_in()),
            (_, None) => ReplaySafe::check(method, body_len),
        }
    }
}

/// Sends `request`, then follows the redirects the session's policy
/// allows; each hop's request goes early only by the same rule as the
/// first. The final response lists the hops.
async fn follow(
    session: &Session,
    mut request: PreparedRequest,
    mut url: url::Url,
    rule: EarlyRule,
) -> Result<Response, Error> {
    let mut hops = Vec::new();
    loop {
        let response = session.execute(&request, url.clone()).await?;
        let (status, location) = (response.status(), response.headers().get(LOCATION));
        let policy = session.redirect_policy();
        let next = redirect::next(policy, hops.len(), &url, status, location, &request)?;
        // A redirect that keeps a streamed body too long to send again is
        // the answer, as reqwest does with a body it cannot clone.
        let Some((next_url, mut next)) = next.filter(|(_, n)| n.body.replayable()) else {
            let sent = sent_head(request, response.protocol());
            return Ok(response.with_redirects(hops, sent).decoded(session.accepts()));
        };
        hops.push(Hop {
            url,
            status,
            tls: response.tls().clone(),
            request: sent_head(request, response.protocol()),
            headers: response.headers().clone(),
            remote_addr: response.remote_addr(),
        });
        // The redirect's own body is not wanted; dropping it frees the stream.
        drop(response);
        url = check_url(next_url, session.https_only())?;
        next.replay_safe = rule.proof(&next.method, &next.body);
        request = next;
    }
}

/// The head of `request` as it went, over `version`.
fn sent_head(request: PreparedRequest, version: http::Version) -> http::request::Parts {
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = request.method;
    head.uri = request.uri;
    head.version = version;
    head.headers = request.headers;
    head
}

/// Sets every header of `from` in `into`, each name's values replacing
/// what `into` had for it.
pub(crate) fn replace_headers(into: &mut HeaderMap, from: HeaderMap) {
    let mut last = None;
    for (name, value) in from {
        match (name, &last) {
            (Some(name), _) => {
                into.insert(name.clone(), value);
                last = Some(name);
            }
            (None, Some(name)) => {
                into.append(name.clone(), value);
            }
            (None, None) => {}
        }
    }
}

/// The URL of a request: `https://` (or `http://` unless the session is
/// `https_only`) with a host, without its fragment.
fn check_url(mut url: url::Url, https_only: bool) -> Result<url::Url, Error> {
    let refused = match url.scheme() {
        "https" => None,
        "http" if !https_only => None,
        "http" => Some("http:// refused: the session is https_only"),
        _ => Some("only https:// and http:// URLs can be requested"),
    };
    if let Some(reason) = refused {
        return Err(Error::Scheme {
            url: url.into(),
            reason,
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(url_error(url.as_str(), "no host"));
    }
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
fn parse_url(raw: &str, https_only: bool) -> Result<url::Url, Error> {
    check_url(raw.into_url()?, https_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_with_a_host_are_accepted() {
        assert!(parse_url("https://example.com/a#frag", false).is_ok_and(|u| u.fragment().is_none()));
        assert!(parse_url("http://example.com/", false).is_ok());
        assert!(parse_url("ftp://example.com/", false).is_err());
        assert!(parse_url("not a url", false).is_err());
        assert!(parse_url("https://user@/", false).is_err());
    }

    #[test]
    fn https_only_refuses_http_urls() {
        assert!(parse_url("https://example.com/", true).is_ok());
        assert!(parse_url("http://example.com/", true).is_err_and(|e| e.is_url()));
    }
}
