//! Offering a stored session: what it must prove before it goes into a
//! ClientHello.
//!
//! A resumed TLS 1.3 connection authenticates the server by the session's
//! secret alone: no certificate is checked. So before a session from the
//! cache is offered, the peer chain it carries is verified again, for this
//! host, against this connection's roots: a session won under other trust
//! settings (another `--cacert`), or copied from an impostor's connection,
//! is never offered. This is defence in depth, not a seal: a crafted
//! session can carry the real server's public chain with a secret its
//! author knows. Only cache keys (`cache::CacheKeys`) stop that, by making
//! any value not written by the fleet fail to open.

use std::net::IpAddr;

use boring::ssl::{SslRef, SslSession, SslVersion};
use boring::stack::Stack;
use boring::x509::store::X509StoreRef;
use boring::x509::{X509StoreContext, X509};

use super::{ffi, TlsError};
use crate::cache::CachedSession;

/// Offers `cached` on `ssl` (a connection to `server_name`) if it is a
/// session of at least `min_version` whose peer chain verifies for
/// `server_name` against `ssl`'s roots.
///
/// # Errors
///
/// The session does not parse, is of an older version, or its chain does
/// not verify: the caller does a full handshake.
pub(crate) fn offer(
    ssl: &mut SslRef,
    cached: &CachedSession,
    server_name: &str,
    min_version: SslVersion,
) -> Result<(), TlsError> {
    let session = SslSession::from_der(&cached.envelope.session)
        .map_err(|e| TlsError::boring("cannot parse the stored session", e))?;
    let version = session.protocol_version();
    if version != SslVersion::TLS1_3 && (min_version == SslVersion::TLS1_3 || version != SslVersion::TLS1_2) {
        return Err(TlsError::new("the stored session is not TLS 1.3"));
    }
    let chain = ffi::session_peer_chain(&session);
    if !chain_verifies(ssl.ssl_context().cert_store(), &chain, server_name) {
        return Err(TlsError::new(format!(
            "the stored session's certificate does not verify for {server_name} under this session's roots"
        )));
    }
    ffi::set_session(ssl, &session).map_err(|e| TlsError::boring("session refused", e))
}

/// True if `chain` (DER, leaf first) verifies for `name` against `store`.
pub(crate) fn chain_verifies(store: &X509StoreRef, chain: &[Vec<u8>], name: &str) -> bool {
    let verify = || -> Result<bool, boring::error::ErrorStack> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Ok(false);
        };
        let leaf = X509::from_der(leaf)?;
        let mut intermediates = Stack::new()?;
        for der in rest {
            intermediates.push(X509::from_der(der)?)?;
        }
        let mut ctx = X509StoreContext::new()?;
        ctx.init(store, &leaf, &intermediates, |ctx| {
            match name.parse::<IpAddr>() {
                Ok(ip) => ctx.verify_param_mut().set_ip(ip)?,
                Err(_) => ctx.verify_param_mut().set_host(name)?,
            }
            ctx.verify_cert()
        })
    };
    verify().unwrap_or(false)
}
