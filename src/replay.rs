//! The proof that a request may be sent as replayable early data.
//!
//! Early data (TLS 1.3 0-RTT) can be captured and replayed by an attacker
//! (RFC 8446 §8, RFC 9110 §9.2.2), so only requests a server may see twice
//! without harm may go in it. Every function that writes early data takes a
//! [`ReplaySafe`] value, and the only ways to make one are the method check
//! ([`ReplaySafe::check`]) and the caller's explicit opt-in
//! ([`ReplaySafe::opted_in`]): a request that passed neither cannot reach
//! the wire before the handshake.

use http::Method;

/// A request may be sent before the handshake completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplaySafe {
    _proof: (),
}

impl ReplaySafe {
    /// `GET`, `HEAD` and `OPTIONS` without a body (RFC 9110 §9.2.2: safe
    /// methods, which a server may see twice without harm).
    pub(crate) fn check(method: &Method, body_len: usize) -> Option<Self> {
        (is_replay_safe(method) && body_len == 0).then_some(Self { _proof: () })
    }

    /// The caller said, for this one request, that a replay does no harm.
    pub(crate) fn opted_in() -> Self {
        Self { _proof: () }
    }
}

/// Methods whose requests a server may see twice without harm (RFC 9110
/// §9.2.2); also the rule for resending on a new connection.
pub(crate) fn is_replay_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_without_a_body_pass_the_check() {
        assert!(ReplaySafe::check(&Method::GET, 0).is_some());
        assert!(ReplaySafe::check(&Method::HEAD, 0).is_some());
        assert!(ReplaySafe::check(&Method::OPTIONS, 0).is_some());
        assert!(ReplaySafe::check(&Method::GET, 1).is_none());
        assert!(ReplaySafe::check(&Method::POST, 0).is_none());
        assert!(ReplaySafe::check(&Method::PUT, 0).is_none());
        assert!(ReplaySafe::check(&Method::DELETE, 0).is_none());
    }
}
