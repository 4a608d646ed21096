//! A client certificate and its private key, offered to servers that ask
//! for one ([`SessionBuilder::identity`](crate::SessionBuilder::identity)).
//!
//! A TLS 1.3 session resumes the client's authentication along with the
//! keys: a server that resumes a session won with a certificate treats the
//! resuming client as that certificate's holder, with no certificate sent.
//! So tickets won under an identity must never be offered without it (or
//! under another): the identity's [`fingerprint`](Identity::fingerprint)
//! becomes part of every backend key its sessions are stored under, and
//! this process's own caches belong to one session, hence one identity.

use std::fmt;

use boring::hash::MessageDigest;
use boring::pkey::{PKey, Private};
use boring::ssl::SslContextBuilder;
use boring::x509::X509;

use super::TlsError;

/// A client certificate chain and its private key, as reqwest's
/// `Identity`.
///
/// ```
/// # fn run(pem: &[u8]) -> Result<(), h3fleet::tls::TlsError> {
/// // One PEM buffer: the certificate, any intermediates, the private key.
/// let identity = h3fleet::tls::Identity::from_pem(pem)?;
/// println!("client certificate sha256 {}", identity.fingerprint());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Identity {
    leaf: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
    fingerprint: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of every log.
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads a PEM buffer holding the client's certificate first, then any
    /// intermediate certificates, and its private key (PKCS#8, RSA or EC),
    /// in any order of blocks.
    ///
    /// # Errors
    ///
    /// No certificate, no private key, or a key that is not the
    /// certificate's.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        let mut certs = X509::stack_from_pem(pem)
            .map_err(|e| TlsError::boring("client identity: unreadable certificate PEM", e))?
            .into_iter();
        let leaf = certs
            .next()
            .ok_or_else(|| TlsError::new("client identity: no certificate in the PEM"))?;
        let key = PKey::private_key_from_pem(pem)
            .map_err(|_| TlsError::new("client identity: no readable private key in the PEM"))?;
        let public = leaf
            .public_key()
            .map_err(|e| TlsError::boring("client identity: certificate has no public key", e))?;
        if !public.public_eq(&key) {
            return Err(TlsError::new(
                "client identity: the private key is not the certificate's",
            ));
        }
        let digest = leaf
            .digest(MessageDigest::sha256())
            .map_err(|e| TlsError::boring("client identity: cannot hash the certificate", e))?;
        Ok(Self {
            fingerprint: hex(&digest),
            leaf,
            chain: certs.collect(),
            key,
        })
    }

    /// The SHA-256 of the client certificate (DER), in lowercase hex: what
    /// keeps its sessions apart in the backend.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key component that names this identity: the first 128 bits of
    /// the fingerprint (32 hex digits).
    pub(crate) fn key_tag(&self) -> &str {
        &self.fingerprint[..32]
    }

    /// Offers the certificate (and its chain) with its key on `ctx`.
    pub(crate) fn apply(&self, ctx: &mut SslContextBuilder) -> Result<(), TlsError> {
        ctx.set_certificate(&self.leaf)
            .map_err(|e| TlsError::boring("cannot set the client certificate", e))?;
        for cert in &self.chain {
            ctx.add_extra_chain_cert(cert.clone())
                .map_err(|e| TlsError::boring("cannot add a client chain certificate", e))?;
        }
        ctx.set_private_key(&self.key)
            .map_err(|e| TlsError::boring("cannot set the client key", e))?;
        ctx.check_private_key()
            .map_err(|e| TlsError::boring("the client key is not the certificate's", e))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
