//! Server-side ECH keys: what h3fleet's own origin needs to accept
//! Encrypted Client Hello, and the ECHConfigList to publish.

use std::fmt;

use boring::hpke::HpkeKey;
use boring::ssl::SslEchKeys;

use super::{ffi, TlsError};

/// A server's ECH keys and the ECHConfigList that clients use to reach it.
///
/// Publish [`config_list`](Self::config_list) (in a DNS HTTPS record's
/// `ech` parameter, or hand it to clients directly); give the keys to a
/// server configuration. The private key never leaves this value.
pub struct EchKeys {
    pub(crate) keys: SslEchKeys,
    config_list: Vec<u8>,
}

impl fmt::Debug for EchKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchKeys")
            .field("config_list_len", &self.config_list.len())
            .finish()
    }
}

impl EchKeys {
    /// A new X25519 key (HPKE DHKEM(X25519, HKDF-SHA256)) whose config names
    /// `public_name`: the name an observer sees in the outer ClientHello,
    /// and the one the server's certificate must cover for retries.
    ///
    /// # Errors
    ///
    /// `public_name` is not a valid DNS name, or BoringSSL fails.
    pub fn generate(public_name: &str) -> Result<Self, TlsError> {
        let new = ffi::generate_ech_key(1, public_name)
            .map_err(|e| TlsError::boring(format!("cannot make an ECH config for {public_name:?}"), e))?;
        // boring's constructor is named after P-256 but loads a raw 32-byte
        // X25519 private key.
        let key = HpkeKey::dhkem_p256_sha256(&new.private_key)
            .map_err(|e| TlsError::boring("cannot load the ECH key", e))?;
        let mut builder = SslEchKeys::builder().map_err(|e| TlsError::boring("cannot create ECH keys", e))?;
        builder
            .add_key(true, &new.ech_config, key)
            .map_err(|e| TlsError::boring("cannot add the ECH key", e))?;
        let len = u16::try_from(new.ech_config.len()).map_err(|_| TlsError::new("ECHConfig too long"))?;
        let mut config_list = len.to_be_bytes().to_vec();
        config_list.extend_from_slice(&new.ech_config);
        Ok(Self {
            keys: builder.build(),
            config_list,
        })
    }

    /// The ECHConfigList (RFC 9849 §4: a 2-byte length, then the configs).
    pub fn config_list(&self) -> &[u8] {
        &self.config_list
    }
}
