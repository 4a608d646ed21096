//! What every h3fleet TLS client context is set up with, QUIC or TCP: the
//! trusted roots, peer verification, ALPN, GREASE and session export.

use boring::ssl::{SslContextBuilder, SslVerifyMode};

use super::{alpn_list, alpn_wire, load_roots, tickets, TlsError};

/// The client settings the QUIC and TCP configuration builders share.
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    alpn: Vec<Vec<u8>>,
    system_roots: bool,
    roots_pem: Vec<Vec<u8>>,
    keylog: Option<super::KeyLog>,
    /// False only under `danger_accept_invalid_certs`.
    verify_peer: bool,
    /// The client certificate offered to servers that ask for one.
    identity: Option<super::Identity>,
}

impl ClientSettings {
    /// Offering `alpn`, trusting the system's roots.
    pub(crate) fn new(alpn: &[&[u8]]) -> Self {
        Self {
            alpn: alpn_list(alpn),
            system_roots: true,
            roots_pem: Vec::new(),
            keylog: None,
            verify_peer: true,
            identity: None,
        }
    }

    pub(crate) fn set_alpn<I, P>(&mut self, protocols: I)
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.alpn = alpn_list(protocols);
    }

    pub(crate) fn add_roots_pem(&mut self, pem: Vec<u8>) {
        self.roots_pem.push(pem);
    }

    pub(crate) fn set_system_roots(&mut self, enabled: bool) {
        self.system_roots = enabled;
    }

    /// Whether the peer's certificate is verified (default true).
    pub(crate) fn set_verify_peer(&mut self, verify: bool) {
        self.verify_peer = verify;
    }

    pub(crate) fn set_identity(&mut self, identity: Option<super::Identity>) {
        self.identity = identity;
    }

    pub(crate) fn set_keylog(&mut self, keylog: Option<super::KeyLog>) {
        self.keylog = keylog;
    }

    /// Applies the settings to a client context: verify the peer against
    /// the roots, offer ALPN (at least one protocol), GREASE, and export
    /// every new session to the connection's ticket sink.
    pub(crate) fn apply(&self, ctx: &mut SslContextBuilder) -> Result<(), TlsError> {
        if self.alpn.is_empty() {
            return Err(TlsError::new("offer at least one ALPN protocol"));
        }
        ctx.set_verify(if self.verify_peer {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        load_roots(ctx, self.system_roots, &self.roots_pem)?;
        ctx.set_alpn_protos(&alpn_wire(&self.alpn)?)
            .map_err(|e| TlsError::boring("cannot set ALPN", e))?;
        ctx.set_grease_enabled(true);
        tickets::export_new_sessions(ctx);
        if let Some(keylog) = &self.keylog {
            keylog.attach(ctx);
        }
        if let Some(identity) = &self.identity {
            identity.apply(ctx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use boring::ssl::SslMethod;

    use super::*;

    #[test]
    fn a_context_without_alpn_is_refused() {
        let mut ctx = SslContextBuilder::new(SslMethod::tls()).unwrap();
        let mut settings = ClientSettings::new(&[b"h2"]);
        settings.set_system_roots(false);
        settings.set_alpn(Vec::<Vec<u8>>::new());
        assert!(settings.apply(&mut ctx).is_err());
        settings.set_alpn(["h2"]);
        assert!(settings.apply(&mut ctx).is_ok());
    }
}
