//! Following redirects, as reqwest does: up to ten hops by default, the
//! method turned into `GET` where browsers turn it, and credentials never
//! carried to another origin.

use http::header::{
    HeaderName, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
};
use http::{Method, StatusCode};

use super::response::TlsInfo;
use crate::error::Error;
use crate::http::PreparedRequest;

/// How many redirects a request follows.
///
/// ```
/// use h3fleet::{redirect::Policy, Session};
///
/// let session = Session::builder().redirect(Policy::limited(3)).build()?;
/// # drop(session);
/// # Ok::<(), h3fleet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    max: usize,
}

impl Policy {
    /// Follows at most `max` redirects; one more is an error
    /// ([`Error::is_redirect`]).
    pub fn limited(max: usize) -> Self {
        Self { max }
    }

    /// Follows none: a redirect is returned as the response.
    pub fn none() -> Self {
        Self { max: 0 }
    }

    /// True when this policy follows no redirect at all.
    pub(crate) fn follows(self) -> bool {
        self.max > 0
    }
}

impl Default for Policy {
    /// Ten hops, as reqwest.
    fn default() -> Self {
        Self::limited(10)
    }
}

/// One redirect a response went through: where it was, what it answered,
/// and what TLS did on the way.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Hop {
    /// The URL that answered with a redirect.
    pub url: url::Url,
    /// Its status (301, 302, 303, 307 or 308).
    pub status: StatusCode,
    /// What TLS did for that request.
    pub tls: TlsInfo,
    /// The request as it went (as [`Response::request`](crate::Response::request)).
    pub request: http::request::Parts,
    /// The redirect's response headers (`Location` among them).
    pub headers: http::HeaderMap,
    /// The address of the server that answered.
    pub remote_addr: Option<std::net::SocketAddr>,
}

/// Statuses that carry a `Location` to follow.
fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The request to send after `status` from `url` said go to `location`,
/// or `None` when the response is final. Rules (RFC 9110 section 15.4, as
/// browsers and reqwest apply them): 303 turns every method but `HEAD`
/// into `GET`; 301 and 302 turn `POST` into `GET`; a request that becomes
/// a `GET` loses its body and the headers describing it; 307 and 308 keep
/// both. `Authorization`, `Cookie` and `Proxy-Authorization` are dropped
/// when the scheme, host or port changes.
///
/// # Errors
///
/// `location` is not a URL, or the hop is one more than `policy` allows.
pub(crate) fn next(
    policy: Policy,
    hops: usize,
    url: &url::Url,
    status: StatusCode,
    location: Option<&http::HeaderValue>,
    request: &PreparedRequest,
) -> Result<Option<(url::Url, PreparedRequest)>, Error> {
    if !policy.follows() || !is_redirect(status) {
        return Ok(None);
    }
    let Some(location) = location else {
        return Ok(None);
    };
    let failed = |reason: String| Error::Redirect {
        url: Box::new(url.clone()),
        reason,
    };
    if hops >= policy.max {
        return Err(failed(format!("more than {} redirects", policy.max)));
    }
    let location = location
        .to_str()
        .map_err(|_| failed("the Location header is not text".into()))?;
    let mut target = url
        .join(location)
        .map_err(|e| failed(format!("the Location {location:?} is not a URL: {e}")))?;
    target.set_fragment(None);
    let uri = target
        .as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| failed(format!("the Location {location:?}: {e}")))?;
    let mut next = request.clone();
    next.uri = uri;
    let to_get = match status.as_u16() {
        303 => request.method != Method::HEAD,
        301 | 302 => request.method == Method::POST,
        _ => false,
    };
    if to_get {
        next.method = Method::GET;
        next.body = crate::http::body::RequestBody::default();
        remove(
            &mut next.headers,
            &[CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING],
        );
    }
    if url.origin() != target.origin() {
        remove(&mut next.headers, &[AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION]);
    }
    Ok(Some((target, next)))
}

fn remove(headers: &mut http::HeaderMap, names: &[HeaderName]) {
    for name in names {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn post_with_credentials() -> PreparedRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        PreparedRequest {
            method: Method::POST,
            uri: "https://a.example/start".parse().unwrap(),
            headers,
            body: crate::http::body::RequestBody::Full(bytes::Bytes::from_static(b"{}")),
            replay_safe: None,
            protocol: None,
        }
    }

    fn follow(status: u16, location: &'static str) -> Result<Option<(url::Url, PreparedRequest)>, Error> {
        let url = url::Url::parse("https://a.example/start").unwrap();
        let location = HeaderValue::from_static(location);
        let status = StatusCode::from_u16(status).unwrap();
        next(
            Policy::default(),
            0,
            &url,
            status,
            Some(&location),
            &post_with_credentials(),
        )
    }

    #[test]
    fn a_303_turns_a_post_into_a_bodiless_get_and_keeps_credentials_on_the_same_origin() {
        let (url, next) = follow(303, "/done").unwrap().unwrap();
        assert_eq!(url.as_str(), "https://a.example/done");
        assert_eq!((next.method, next.body.len()), (Method::GET, Some(0)));
        assert!(next.headers.get(CONTENT_TYPE).is_none());
        assert!(next.headers.get(AUTHORIZATION).is_some());
    }

    #[test]
    fn a_307_keeps_method_and_body_and_another_origin_loses_credentials() {
        let (url, next) = follow(307, "https://b.example:8443/x#frag").unwrap().unwrap();
        assert_eq!(url.as_str(), "https://b.example:8443/x");
        assert_eq!((next.method, next.body.len()), (Method::POST, Some(2)));
        assert!(next.headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn hops_beyond_the_limit_and_bad_locations_are_redirect_errors() {
        let url = url::Url::parse("https://a.example/").unwrap();
        let location = HeaderValue::from_static("/again");
        let request = post_with_credentials();
        let too_many = next(
            Policy::limited(2),
            2,
            &url,
            StatusCode::FOUND,
            Some(&location),
            &request,
        );
        assert!(too_many.is_err_and(|e| e.is_redirect()));
        assert!(follow(302, "http://[::1").is_err_and(|e| e.is_redirect()));
        assert!(follow(200, "/ignored").unwrap().is_none());
        let none = next(
            Policy::none(),
            0,
            &url,
            StatusCode::FOUND,
            Some(&location),
            &request,
        );
        assert!(none.unwrap().is_none());
    }
}
