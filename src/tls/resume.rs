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

/// Offers `cached` on `ssl` if it parses and is of at least `min_version`
/// (TLS 1.2 is allowed from memory on TCP, never on QUIC). Whether its
/// chain is trusted is decided before, by [`trusted`], where the session to
/// offer is chosen (so a session that fails is a miss, not a ticket
/// reported as used).
///
/// # Errors
///
/// The session does not parse or is of an older version: the caller does
/// a full handshake.
pub(crate) fn offer(
    ssl: &mut SslRef,
    cached: &CachedSession,
    min_version: SslVersion,
) -> Result<(), TlsError> {
    let session = parse(cached, min_version)?;
    ffi::set_session(ssl, &session).map_err(|e| TlsError::boring("session refused", e))
}

/// True if `cached` may be offered to `server_name`: it parses, is of at
/// least `min_version`, and the peer chain it carries verifies for
/// `server_name` against `store` (the connection's own roots).
pub(crate) fn trusted(
    store: &X509StoreRef,
    cached: &CachedSession,
    server_name: &str,
    min_version: SslVersion,
) -> bool {
    parse(cached, min_version)
        .is_ok_and(|session| chain_verifies(store, &ffi::session_peer_chain(&session), server_name))
}

fn parse(cached: &CachedSession, min_version: SslVersion) -> Result<SslSession, TlsError> {
    let session = SslSession::from_der(&cached.envelope.session)
        .map_err(|e| TlsError::boring("cannot parse the stored session", e))?;
    let version = session.protocol_version();
    let allowed =
        version == SslVersion::TLS1_3 || (min_version == SslVersion::TLS1_2 && version == SslVersion::TLS1_2);
    if !allowed {
        return Err(TlsError::new("the stored session is of an older TLS version"));
    }
    Ok(session)
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
