//! Every raw BoringSSL call h3fleet makes, behind safe functions.
//!
//! The `boring` crate wraps most of BoringSSL safely, but none of its QUIC
//! API, early-data controls or a few session accessors. Those are called
//! here, and only here: the crate root denies `unsafe_code`, this module
//! alone allows it, and each block says why it is sound.
//!
//! ## Callbacks
//!
//! BoringSSL's QUIC method calls back into Rust while `SSL_do_handshake`,
//! `SSL_provide_quic_data` or `SSL_process_quic_post_handshake` run. The
//! callbacks here only append what they receive to a [`QuicEvents`] record
//! stored in the `SSL`'s ex-data; the caller drains it with
//! [`take_quic_events`] after the call returns. No callback can unwind:
//! each body runs under `catch_unwind` and turns a panic into a failure
//! return, which BoringSSL reports as an internal error.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use boring::error::ErrorStack;
use boring::ex_data::Index;
#[cfg(feature = "server")]
use boring::ssl::SslContextBuilder;
use boring::ssl::{Ssl, SslRef, SslSession, SslSessionRef};
use boring_sys as sys;
use foreign_types::ForeignTypeRef;

/// A QUIC encryption level (RFC 9001 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Level {
    Initial,
    EarlyData,
    Handshake,
    Application,
}

impl Level {
    fn from_raw(level: sys::ssl_encryption_level_t) -> Option<Self> {
        match level {
            sys::ssl_encryption_level_t::ssl_encryption_initial => Some(Self::Initial),
            sys::ssl_encryption_level_t::ssl_encryption_early_data => Some(Self::EarlyData),
            sys::ssl_encryption_level_t::ssl_encryption_handshake => Some(Self::Handshake),
            sys::ssl_encryption_level_t::ssl_encryption_application => Some(Self::Application),
            _ => None,
        }
    }
}

/// Which way a secret protects traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// A traffic secret BoringSSL installed.
pub(crate) struct NewSecret {
    pub(crate) direction: Direction,
    pub(crate) level: Level,
    /// The IANA id of the cipher suite (0x1301..0x1303).
    pub(crate) cipher: u16,
    pub(crate) secret: Vec<u8>,
}

/// What the QUIC callbacks received during one BoringSSL call.
#[derive(Default)]
pub(crate) struct QuicEvents {
    pub(crate) secrets: Vec<NewSecret>,
    pub(crate) handshake: Vec<(Level, Vec<u8>)>,
    pub(crate) alert: Option<u8>,
}

/// The outcome of driving the handshake one step.
#[derive(Debug)]
pub(crate) enum Progress {
    /// The handshake is complete (or, with 0-RTT, far enough to send early data).
    Done,
    /// BoringSSL needs more handshake bytes from the peer.
    WantRead,
    /// The server refused our early data; the handshake goes on at 1-RTT.
    EarlyDataRejected,
    /// The handshake failed.
    Failed(ErrorStack),
}

fn events_index() -> Option<Index<Ssl, QuicEvents>> {
    static INDEX: OnceLock<Option<Index<Ssl, QuicEvents>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Runs `f` on the events record of the `SSL` a callback was called for.
fn with_events(ssl: *mut sys::SSL, f: impl FnOnce(&mut QuicEvents) -> bool) -> c_int {
    let run = AssertUnwindSafe(|| {
        let Some(index) = events_index() else { return false };
        // SAFETY: BoringSSL calls the QUIC method with the `SSL` it was set
        // on, which is alive for the whole call. The caller up the stack
        // holds a `&mut SslRef`, but that is an opaque zero-sized handle
        // (foreign-types) covering no Rust-visible bytes, and it touches no
        // ex-data until the call returns; so the ex-data reached here has no
        // other live reference, the same pattern `boring`'s own callbacks use.
        let ssl = unsafe { SslRef::from_ptr_mut(ssl) };
        ssl.ex_data_mut(index).is_some_and(f)
    });
    c_int::from(catch_unwind(run).unwrap_or(false))
}

fn secret_callback(
    direction: Direction,
    ssl: *mut sys::SSL,
    level: sys::ssl_encryption_level_t,
    cipher: *const sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
) -> c_int {
    if cipher.is_null() || secret.is_null() {
        return 0;
    }
    // SAFETY: BoringSSL passes a valid cipher and `secret_len` readable bytes
    // at `secret`, both alive for the duration of the callback; we copy them.
    let (cipher, secret) = unsafe {
        (
            sys::SSL_CIPHER_get_protocol_id(cipher),
            std::slice::from_raw_parts(secret, secret_len).to_vec(),
        )
    };
    with_events(ssl, |events| {
        let Some(level) = Level::from_raw(level) else {
            return false;
        };
        events.secrets.push(NewSecret {
            direction,
            level,
            cipher,
            secret,
        });
        true
    })
}

extern "C" fn set_read_secret(
    ssl: *mut sys::SSL,
    level: sys::ssl_encryption_level_t,
    cipher: *const sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
) -> c_int {
    secret_callback(Direction::Read, ssl, level, cipher, secret, secret_len)
}

extern "C" fn set_write_secret(
    ssl: *mut sys::SSL,
    level: sys::ssl_encryption_level_t,
    cipher: *const sys::SSL_CIPHER,
    secret: *const u8,
    secret_len: usize,
) -> c_int {
    secret_callback(Direction::Write, ssl, level, cipher, secret, secret_len)
}

extern "C" fn add_handshake_data(
    ssl: *mut sys::SSL,
    level: sys::ssl_encryption_level_t,
    data: *const u8,
    len: usize,
) -> c_int {
    if data.is_null() && len > 0 {
        return 0;
    }
    let bytes = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: BoringSSL passes `len` readable bytes at `data`, alive for
        // the duration of the callback; we copy them.
        unsafe { std::slice::from_raw_parts(data, len).to_vec() }
    };
    with_events(ssl, |events| {
        let Some(level) = Level::from_raw(level) else {
            return false;
        };
        events.handshake.push((level, bytes));
        true
    })
}

extern "C" fn flush_flight(_ssl: *mut sys::SSL) -> c_int {
    // quinn pulls handshake bytes with `write_handshake`; nothing to flush.
    1
}

extern "C" fn send_alert(ssl: *mut sys::SSL, _level: sys::ssl_encryption_level_t, alert: u8) -> c_int {
    with_events(ssl, |events| {
        events.alert = Some(alert);
        true
    })
}

static QUIC_METHOD: sys::SSL_QUIC_METHOD = sys::SSL_QUIC_METHOD {
    set_read_secret: Some(set_read_secret),
    set_write_secret: Some(set_write_secret),
    add_handshake_data: Some(add_handshake_data),
    flush_flight: Some(flush_flight),
    send_alert: Some(send_alert),
};

/// Turns `ssl` into a QUIC connection that sends `transport_params`, with
/// an events record for the callbacks.
pub(crate) fn enable_quic(ssl: &mut SslRef, transport_params: &[u8]) -> Result<(), ErrorStack> {
    let index = events_index().ok_or_else(ErrorStack::get)?;
    ssl.set_ex_data(index, QuicEvents::default());
    clear_errors();
    // SAFETY: `ssl` is a valid `SSL`; `QUIC_METHOD` is a static that outlives
    // it; the callbacks it names only touch the ex-data slot set just above.
    let ok = unsafe { sys::SSL_set_quic_method(ssl.as_ptr(), &QUIC_METHOD) };
    check(ok)?;
    // SAFETY: the parameters are copied by BoringSSL before the call returns.
    let ok = unsafe {
        sys::SSL_set_quic_transport_params(ssl.as_ptr(), transport_params.as_ptr(), transport_params.len())
    };
    check(ok)
}

/// What the callbacks recorded since the last call.
pub(crate) fn take_quic_events(ssl: &mut SslRef) -> QuicEvents {
    events_index()
        .and_then(|index| ssl.ex_data_mut(index))
        .map(std::mem::take)
        .unwrap_or_default()
}

/// Hands the peer's handshake bytes to BoringSSL at its current read level.
pub(crate) fn provide_quic_data(ssl: &mut SslRef, data: &[u8]) -> Result<(), ErrorStack> {
    clear_errors();
    // SAFETY: `ssl` is valid and `data` is readable for `data.len()` bytes;
    // BoringSSL buffers what it needs before returning.
    let ok = unsafe {
        let level = sys::SSL_quic_read_level(ssl.as_ptr());
        sys::SSL_provide_quic_data(ssl.as_ptr(), level, data.as_ptr(), data.len())
    };
    check(ok)
}

/// Drives the handshake as far as the data provided allows.
///
/// On an early-data rejection this also calls `SSL_reset_early_data_reject`,
/// which BoringSSL allows only in exactly that state (elsewhere it aborts the
/// process), so callers cannot misuse it.
pub(crate) fn do_handshake(ssl: &mut SslRef) -> Progress {
    clear_errors();
    // SAFETY: `ssl` is a valid `SSL` configured by this module.
    let ret = unsafe { sys::SSL_do_handshake(ssl.as_ptr()) };
    if ret == 1 {
        return Progress::Done;
    }
    // SAFETY: `ret` is the return value of the call just made on `ssl`.
    let error = unsafe { sys::SSL_get_error(ssl.as_ptr(), ret) };
    match error {
        sys::SSL_ERROR_WANT_READ => Progress::WantRead,
        sys::SSL_ERROR_EARLY_DATA_REJECTED => {
            // SAFETY: SSL_get_error just reported SSL_ERROR_EARLY_DATA_REJECTED,
            // the one state in which resetting is allowed.
            unsafe { sys::SSL_reset_early_data_reject(ssl.as_ptr()) };
            Progress::EarlyDataRejected
        }
        _ => Progress::Failed(ErrorStack::get()),
    }
}

/// Processes post-handshake messages (NewSessionTicket) after completion.
pub(crate) fn process_post_handshake(ssl: &mut SslRef) -> Result<(), ErrorStack> {
    clear_errors();
    // SAFETY: `ssl` is a valid QUIC `SSL` whose handshake is complete.
    check(unsafe { sys::SSL_process_quic_post_handshake(ssl.as_ptr()) })
}

/// True while the handshake has not finished (with 0-RTT, `SSL_do_handshake`
/// returns early, so completion is checked here instead).
pub(crate) fn in_init(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a valid `SSL`; this only reads its state.
    unsafe { sys::SSL_in_init(ssl.as_ptr()) == 1 }
}

/// True when the server accepted our early data (meaningful once the
/// handshake is complete).
pub(crate) fn early_data_accepted(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a valid `SSL`; this only reads its state.
    unsafe { sys::SSL_early_data_accepted(ssl.as_ptr()) == 1 }
}

/// BoringSSL's words for why early data was or was not used.
pub(crate) fn early_data_reason(ssl: &SslRef) -> &'static str {
    // SAFETY: `ssl` is valid; the returned string is a static C string (or
    // null for an unknown reason, handled below).
    unsafe {
        let reason = sys::SSL_get_early_data_reason(ssl.as_ptr());
        let text = sys::SSL_early_data_reason_string(reason);
        if text.is_null() {
            return "unknown";
        }
        CStr::from_ptr(text).to_str().unwrap_or("unknown")
    }
}

/// True while the connection is in early data: a client that offered it
/// has not yet learned whether the server took it; a server that accepted it
/// has not yet read the client's Finished.
pub(crate) fn in_early_data(ssl: &SslRef) -> bool {
    // SAFETY: `ssl` is a valid `SSL`; this only reads its state.
    unsafe { sys::SSL_in_early_data(ssl.as_ptr()) == 1 }
}

/// After a TCP read or write failed with `SSL_ERROR_EARLY_DATA_REJECTED`,
/// lets the handshake go on at 1-RTT (`SSL_reset_early_data_reject`). Returns
/// false, doing nothing, in any other state.
///
/// BoringSSL aborts the process if the reset is called anywhere but in the
/// rejected state, so the state is checked first: the connection must still
/// be in early data (the reset clears that, so a second call is refused) and
/// the last I/O call must have stopped on the rejection (BoringSSL repeats
/// that stop on every call until the reset).
pub(crate) fn reset_early_data_reject(ssl: &mut SslRef) -> bool {
    clear_errors();
    // SAFETY: `ssl` is valid; with an empty error queue and a non-positive
    // return code, `SSL_get_error` only reads the connection's last I/O state.
    let stopped = unsafe { sys::SSL_get_error(ssl.as_ptr(), -1) } == sys::SSL_ERROR_EARLY_DATA_REJECTED;
    if !(stopped && in_early_data(ssl)) {
        return false;
    }
    // SAFETY: the connection is in early data and its handshake stopped on
    // the rejection, the one state in which BoringSSL allows the reset.
    unsafe { sys::SSL_reset_early_data_reject(ssl.as_ptr()) };
    true
}

/// BoringSSL's library code for TLS errors.
pub(crate) const LIB_SSL: sys::ErrLib = sys::ERR_LIB_SSL;

/// The reason code for a server's rejection of ECH.
pub(crate) const REASON_ECH_REJECTED: c_int = sys::SSL_R_ECH_REJECTED;

/// `SSL_get_error`'s code for a refusal of early data.
pub(crate) const ERROR_EARLY_DATA_REJECTED: c_int = sys::SSL_ERROR_EARLY_DATA_REJECTED;

/// The reason code BoringSSL gives when a server that was offered early data
/// chose a TLS version without it: the request must go on a new connection.
pub(crate) const REASON_WRONG_VERSION_ON_EARLY_DATA: c_int = sys::SSL_R_WRONG_VERSION_ON_EARLY_DATA;

/// Offers (client) or accepts (server) early data on this connection.
pub(crate) fn set_early_data_enabled(ssl: &mut SslRef, enabled: bool) {
    // SAFETY: `ssl` is valid and its handshake has not started.
    unsafe { sys::SSL_set_early_data_enabled(ssl.as_ptr(), c_int::from(enabled)) }
}

#[cfg(feature = "server")]
/// Enables early data for every connection of a context.
pub(crate) fn ctx_set_early_data_enabled(ctx: &mut SslContextBuilder, enabled: bool) {
    // SAFETY: `ctx` is a valid `SSL_CTX` under construction.
    unsafe { sys::SSL_CTX_set_early_data_enabled(ctx.as_ptr(), c_int::from(enabled)) }
}

#[cfg(feature = "server")]
/// The server's context for 0-RTT: early data is accepted only from tickets
/// issued under the same context (BoringSSL requires one for QUIC servers).
pub(crate) fn set_quic_early_data_context(ssl: &mut SslRef, context: &[u8]) -> Result<(), ErrorStack> {
    clear_errors();
    // SAFETY: `ssl` is valid; BoringSSL copies `context`.
    check(unsafe { sys::SSL_set_quic_early_data_context(ssl.as_ptr(), context.as_ptr(), context.len()) })
}

/// The transport parameters the peer sent, once it has.
pub(crate) fn peer_quic_transport_params(ssl: &SslRef) -> Option<Vec<u8>> {
    let mut ptr = std::ptr::null();
    let mut len = 0;
    // SAFETY: `ssl` is valid; on return `ptr` is null or points at `len`
    // bytes owned by `ssl`, which we copy before `ssl` can change.
    unsafe {
        sys::SSL_get_peer_quic_transport_params(ssl.as_ptr(), &mut ptr, &mut len);
        (!ptr.is_null() && len > 0).then(|| std::slice::from_raw_parts(ptr, len).to_vec())
    }
}

/// The raw ticket of a session (empty for a session without one).
pub(crate) fn session_ticket(session: &SslSessionRef) -> Vec<u8> {
    let mut ptr = std::ptr::null();
    let mut len = 0;
    // SAFETY: `session` is valid; `ptr` is null or points at `len` bytes
    // owned by it, copied at once.
    unsafe {
        sys::SSL_SESSION_get0_ticket(session.as_ptr(), &mut ptr, &mut len);
        if ptr.is_null() || len == 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(ptr, len).to_vec()
    }
}

/// True when the session's ticket allows early data.
pub(crate) fn session_early_data_capable(session: &SslSessionRef) -> bool {
    // SAFETY: `session` is valid; this only reads it.
    unsafe { sys::SSL_SESSION_early_data_capable(session.as_ptr()) == 1 }
}

/// The peer certificate chain a session carries, DER-encoded, leaf first.
/// Empty if it carries none.
pub(crate) fn session_peer_chain(session: &SslSessionRef) -> Vec<Vec<u8>> {
    // SAFETY: `session` is valid for the call; the stack it returns, and
    // each buffer in it, are owned by the session, which outlives this
    // function; each buffer's bytes are copied before returning, and the
    // index stays below the stack's length.
    unsafe {
        let stack = sys::SSL_SESSION_get0_peer_certificates(session.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        let stack = stack.cast::<sys::OPENSSL_STACK>();
        (0..sys::OPENSSL_sk_num(stack))
            .filter_map(|i| {
                let buffer = sys::OPENSSL_sk_value(stack, i).cast::<sys::CRYPTO_BUFFER>();
                if buffer.is_null() {
                    return None;
                }
                let (data, len) = (sys::CRYPTO_BUFFER_data(buffer), sys::CRYPTO_BUFFER_len(buffer));
                (!data.is_null()).then(|| std::slice::from_raw_parts(data, len).to_vec())
            })
            .collect()
    }
}

/// Offers `session` for resumption on `ssl`.
pub(crate) fn set_session(ssl: &mut SslRef, session: &SslSession) -> Result<(), ErrorStack> {
    // SAFETY: boring marks this unsafe because a session must come from a
    // context of the same TLS method. The session is parsed from untrusted
    // backend bytes: BoringSSL's parser yields a self-consistent
    // `SSL_SESSION` for any input (or fails), and at handshake time it
    // refuses to resume one whose version, method, QUIC-ness or session id
    // context do not match, so no input can make it misbehave. h3fleet's
    // callers also check the version (`tls::resume::offer`), and `Session`
    // the peer chain before choosing the session (`tls::resume::trusted`).
    unsafe { ssl.set_session(session) }
}

#[cfg(feature = "server")]
/// A fresh X25519 HPKE key and the ECHConfig that publishes it.
pub(crate) struct NewEchKey {
    /// The 32-byte X25519 private key. Secret.
    pub(crate) private_key: Vec<u8>,
    /// One ECHConfig (RFC 9849 §4), without the list's length prefix.
    pub(crate) ech_config: Vec<u8>,
}

#[cfg(feature = "server")]
/// Generates an ECH key and its ECHConfig for `public_name`.
pub(crate) fn generate_ech_key(config_id: u8, public_name: &str) -> Result<NewEchKey, ErrorStack> {
    let public_name = std::ffi::CString::new(public_name).map_err(|_| ErrorStack::get())?;
    clear_errors();
    // SAFETY: the key is allocated, used and freed within this block; every
    // out-pointer points at a live local; the config BoringSSL allocates is
    // copied, then freed with OPENSSL_free as its documentation requires.
    unsafe {
        let key = sys::EVP_HPKE_KEY_new();
        if key.is_null() {
            return Err(ErrorStack::get());
        }
        let result = (|| {
            check(sys::EVP_HPKE_KEY_generate(
                key,
                sys::EVP_hpke_x25519_hkdf_sha256(),
            ))?;
            let mut private_key = vec![0u8; 32];
            let mut len = 0;
            check(sys::EVP_HPKE_KEY_private_key(
                key,
                private_key.as_mut_ptr(),
                &mut len,
                private_key.len(),
            ))?;
            private_key.truncate(len);
            let (mut out, mut out_len) = (std::ptr::null_mut(), 0);
            check(sys::SSL_marshal_ech_config(
                &mut out,
                &mut out_len,
                config_id,
                key,
                public_name.as_ptr(),
                0,
            ))?;
            let ech_config = std::slice::from_raw_parts(out, out_len).to_vec();
            sys::OPENSSL_free(out.cast());
            Ok(NewEchKey {
                private_key,
                ech_config,
            })
        })();
        sys::EVP_HPKE_KEY_free(key);
        result
    }
}

/// Makes `ssl` the client (`true`) or server side of a connection.
pub(crate) fn set_side(ssl: &mut SslRef, client: bool) {
    // SAFETY: `ssl` is a valid `SSL` whose handshake has not started.
    unsafe {
        if client {
            sys::SSL_set_connect_state(ssl.as_ptr());
        } else {
            sys::SSL_set_accept_state(ssl.as_ptr());
        }
    }
}

/// Empties BoringSSL's thread-local error queue, so that the errors read
/// after a call are that call's.
pub(crate) fn clear_errors() {
    // SAFETY: only touches this thread's error queue.
    unsafe { sys::ERR_clear_error() }
}

fn check(ok: c_int) -> Result<(), ErrorStack> {
    if ok == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}
