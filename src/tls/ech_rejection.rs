//! A client connection's report that the server rejected its ECH, with the
//! retry configs the server sent: what the caller needs to retry once with
//! the server's current config (RFC 9849 §6.1.6).
//!
//! The report is taken inside the TLS layer the moment the handshake fails,
//! because under quinn the `SSL` is dropped with the connection and only an
//! error code reaches the application.

use std::sync::Mutex;

use boring::error::ErrorStack;
use boring::ssl::SslRef;

use super::ffi;

/// Filled when a handshake fails because the server rejected ECH.
#[derive(Debug, Default)]
pub(crate) struct EchRejection {
    retry_configs: Mutex<Option<Vec<u8>>>,
}

impl EchRejection {
    /// If `stack` says the server rejected ECH, keeps its retry configs
    /// (empty: the server sent none, i.e. it has turned ECH off). Returns
    /// true if it did.
    ///
    /// The retry configs are read only after the rejection is confirmed:
    /// BoringSSL asserts (and a debug build aborts) if they are asked for
    /// after any other failure.
    pub(crate) fn record(&self, ssl: &SslRef, stack: &ErrorStack) -> bool {
        if !is_ech_rejection(stack) {
            return false;
        }
        let retry = ssl
            .get_ech_retry_configs()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        tracing::debug!(retry_config_bytes = retry.len(), "the server rejected ECH");
        *crate::sync::lock(&self.retry_configs) = Some(retry);
        true
    }

    /// The retry configs, if the server rejected ECH (empty: none sent).
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        crate::sync::lock(&self.retry_configs).take()
    }
}

/// True if BoringSSL's error stack holds `SSL_R_ECH_REJECTED`.
pub(crate) fn is_ech_rejection(stack: &ErrorStack) -> bool {
    stack
        .errors()
        .iter()
        .any(|e| e.library_reason(ffi::LIB_SSL) == Some(ffi::REASON_ECH_REJECTED))
}
