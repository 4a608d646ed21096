//! What every h3fleet TLS server context is set up with, QUIC or TCP: the
//! certificate chain and key, and ALPN chosen by the server's preference.

use boring::pkey::PKey;
use boring::ssl::{AlpnError, SslContextBuilder};
use boring::x509::X509;

use super::TlsError;

/// Installs the chain in `cert_chain_pem` (leaf first) and its private key.
pub(crate) fn set_identity(
    ctx: &mut SslContextBuilder,
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(), TlsError> {
    let mut chain = X509::stack_from_pem(cert_chain_pem)
        .map_err(|e| TlsError::boring("cannot parse the certificate chain", e))?
        .into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| TlsError::new("the certificate chain is empty"))?;
    ctx.set_certificate(&leaf)
        .map_err(|e| TlsError::boring("cannot use the certificate", e))?;
    for cert in chain {
        ctx.add_extra_chain_cert(cert)
            .map_err(|e| TlsError::boring("cannot use a chain certificate", e))?;
    }
    let key = PKey::private_key_from_pem(key_pem)
        .map_err(|e| TlsError::boring("cannot parse the private key", e))?;
    ctx.set_private_key(&key)
        .map_err(|e| TlsError::boring("cannot use the private key", e))?;
    ctx.check_private_key()
        .map_err(|e| TlsError::boring("the private key does not match the certificate", e))
}

/// Chooses the first of `ours` the client offers. With no common protocol
/// the handshake fails if `required` (QUIC needs one), else it goes on
/// without ALPN (an HTTP/1.1 server may serve a client that offers none).
pub(crate) fn select_alpn_by_preference(ctx: &mut SslContextBuilder, ours: Vec<Vec<u8>>, required: bool) {
    let refusal = if required {
        AlpnError::ALERT_FATAL
    } else {
        AlpnError::NOACK
    };
    ctx.set_alpn_select_callback(move |_, offered| select_alpn(&ours, offered).ok_or(refusal));
}

/// The first of `ours` that the client `offered` (TLS wire form), as a
/// slice of `offered`.
fn select_alpn<'a>(ours: &[Vec<u8>], offered: &'a [u8]) -> Option<&'a [u8]> {
    let mut theirs = Vec::new();
    let mut rest = offered;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        let name = tail.get(..len)?;
        theirs.push(name);
        rest = &tail[len..];
    }
    ours.iter()
        .find_map(|p| theirs.iter().copied().find(|t| *t == p.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_preference_wins_and_truncated_lists_are_refused() {
        let ours = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(select_alpn(&ours, b"\x08http/1.1\x02h2"), Some(&b"h2"[..]));
        assert_eq!(select_alpn(&ours, b"\x08http/1.1"), Some(&b"http/1.1"[..]));
        assert_eq!(select_alpn(&ours, b"\x02h3"), None);
        assert_eq!(select_alpn(&ours, b"\x09http/1.1"), None);
    }
}
