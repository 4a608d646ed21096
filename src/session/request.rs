//! [`RequestBuilder`]: one request being built, and the early-data rule
//! that decides whether it may leave before the handshake.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method};
use tracing::Instrument;

use super::{Response, Session};
use crate::error::Error;
use crate::http::connect::url_error;
use crate::http::PreparedRequest;
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

/// A request being built. Errors (a bad URL, a bad header) are reported by
/// [`send`](Self::send).
#[must_use]
#[derive(Debug)]
pub struct RequestBuilder {
    session: Session,
    method: Method,
    url: String,
    headers: Result<HeaderMap, Error>,
    body: Bytes,
    early_data: Option<bool>,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    pub(super) fn new(session: Session, method: Method, url: &str) -> Self {
        Self {
            session,
            method,
            url: url.to_owned(),
            headers: Ok(HeaderMap::new()),
            body: Bytes::new(),
            early_data: None,
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Ok(headers) = &mut self.headers {
            match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                (Err(e), _) => self.headers = Err(Error::Header(format!("{name:?}: {e}"))),
                (_, Err(e)) => self.headers = Err(Error::Header(format!("value of {name:?}: {e}"))),
            }
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Opts this request in to (`true`) or out of (`false`) 0-RTT early data,
    /// overriding the method-based rule. Only opt in for requests the server
    /// may safely see twice. [`EarlyDataPolicy::Never`] still wins.
    pub fn early_data(mut self, allowed: bool) -> Self {
        self.early_data = Some(allowed);
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
        let url = parse_url(&self.url)?;
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|e: http::uri::InvalidUri| url_error(&self.url, &e.to_string()))?;
        let mut headers = self.headers?;
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("h3fleet/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let replay_safe = match (self.session.early_data_policy(), self.early_data) {
            (EarlyDataPolicy::Never, _) | (_, Some(false)) => None,
            (_, Some(true)) => Some(ReplaySafe::opted_in()),
            (_, None) => ReplaySafe::check(&self.method, self.body.len()),
        };
        let request = PreparedRequest {
            method: self.method,
            uri,
            headers,
            body: self.body,
            replay_safe,
        };
        let span = tracing::debug_span!("request", method = %request.method, url = %url);
        let limit = self.timeout.or(self.session.default_timeout());
        let work = self.session.execute(request, url).instrument(span);
        // A limit past the end of time is no limit.
        let Some((limit, deadline)) =
            limit.and_then(|l| tokio::time::Instant::now().checked_add(l).map(|d| (l, d)))
        else {
            return work.await;
        };
        let mut response = tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| Error::Timeout {
                what: "the request",
                after: limit,
            })??;
        response.set_deadline(deadline, limit);
        Ok(response)
    }
}

/// The URL of a request: `https://` with a host, without its fragment.
fn parse_url(raw: &str) -> Result<url::Url, Error> {
    let mut url = url::Url::parse(raw).map_err(|e| url_error(raw, &e.to_string()))?;
    if url.scheme() != "https" {
        return Err(url_error(raw, "only https:// URLs can be requested"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(url_error(raw, "no host"));
    }
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host_are_accepted() {
        assert!(parse_url("https://example.com/a#frag").is_ok_and(|u| u.fragment().is_none()));
        assert!(parse_url("http://example.com/").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("https://user@/").is_err());
    }
}
