//! Trust anchors: the system's CA bundle, or roots the caller gives.

use boring::ssl::SslContextBuilder;
use boring::x509::X509;

use super::TlsError;

/// Where Debian, Fedora, Alpine, SUSE and macOS keep the system CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Trusts `extra_pem` roots and, when `system` is set, the system bundle
/// (`SSL_CERT_FILE` first, as OpenSSL does).
pub(crate) fn load_roots(
    ctx: &mut SslContextBuilder,
    system: bool,
    extra_pem: &[Vec<u8>],
) -> Result<(), TlsError> {
    let mut certs = Vec::new();
    for pem in extra_pem {
        let stack =
            X509::stack_from_pem(pem).map_err(|e| TlsError::boring("cannot parse a root certificate", e))?;
        if stack.is_empty() {
            return Err(TlsError::new("a root certificate PEM holds no certificate"));
        }
        certs.extend(stack);
    }
    if system {
        let env = std::env::var("SSL_CERT_FILE").ok();
        let bundle = env
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_BUNDLES.iter().copied())
            .find_map(|p| std::fs::read(p).ok());
        match bundle.map(|b| X509::stack_from_pem(&b)) {
            Some(Ok(stack)) => certs.extend(stack),
            Some(Err(e)) => return Err(TlsError::boring("cannot parse the system CA bundle", e)),
            None => tracing::warn!("no system CA bundle found; only explicitly given roots are trusted"),
        }
    }
    let store = ctx.cert_store_mut();
    for cert in certs {
        // A bundle may list a certificate twice; BoringSSL reports that as an
        // error, which is harmless.
        let _ = store.add_cert(cert);
    }
    Ok(())
}
