//! Session tickets leaving BoringSSL: the new-session callback, the
//! per-connection sink it hands each exported ticket to, and the export
//! itself, for QUIC and TCP connections alike.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use boring::ex_data::Index;
use boring::ssl::{Ssl, SslContextBuilder, SslRef, SslSession, SslSessionCacheMode};

use super::{ffi, TlsError};
use boring::ssl::SslVersion;

use crate::cache::{
    CachedSession, Envelope, Protocol, Sharing, MAX_TICKET_LIFETIME_SECS, MAX_TRANSPORT_PARAMS_LEN,
};

/// Receives every session ticket a server sends on a connection, exported
/// and ready to store, with where it may go (only TLS 1.3 sessions may
/// leave the process).
pub type TicketSink = Arc<dyn Fn(CachedSession, Sharing) + Send + Sync>;

/// Per-connection hooks, reached from BoringSSL's new-session callback.
struct ConnectionHooks {
    on_ticket: Option<TicketSink>,
}

fn hooks_index() -> Option<Index<Ssl, ConnectionHooks>> {
    static INDEX: OnceLock<Option<Index<Ssl, ConnectionHooks>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Makes a client context report every new session to the sink attached to
/// its connection ([`attach_sink`]).
pub(crate) fn export_new_sessions(ctx: &mut SslContextBuilder) {
    // Clients must opt in to session caching for the new-session callback
    // to fire; the sessions themselves live in h3fleet's cache.
    ctx.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL);
    ctx.set_new_session_callback(|ssl, session| {
        if catch_unwind(AssertUnwindSafe(|| deliver(ssl, &session))).is_err() {
            tracing::error!("the ticket sink panicked; the ticket was dropped");
        }
    });
}

/// Sends the tickets of the connection `ssl` to `sink`.
pub(crate) fn attach_sink(ssl: &mut SslRef, sink: Option<TicketSink>) {
    if let Some(index) = hooks_index() {
        ssl.set_ex_data(index, ConnectionHooks { on_ticket: sink });
    }
}

fn deliver(ssl: &mut SslRef, session: &SslSession) {
    let Some(sink) = hooks_index()
        .and_then(|i| ssl.ex_data(i))
        .and_then(|h| h.on_ticket.clone())
    else {
        return;
    };
    let sharing = if session.protocol_version() == SslVersion::TLS1_3 {
        Sharing::Fleet
    } else {
        Sharing::Local
    };
    match export(ssl, session) {
        Ok(cached) => sink(cached, sharing),
        Err(e) => tracing::debug!(error = %e, "a ticket could not be exported"),
    }
}

/// The protocol a session belongs to: `h3` on QUIC (which carries the
/// server's transport parameters), else what ALPN chose over TCP.
fn protocol_of(ssl: &SslRef, quic_params: Option<&[u8]>) -> Protocol {
    if quic_params.is_some() {
        return Protocol::H3;
    }
    match ssl.selected_alpn_protocol() {
        Some(b"h2") => Protocol::H2,
        _ => Protocol::H1,
    }
}

fn export(ssl: &SslRef, session: &SslSession) -> Result<CachedSession, TlsError> {
    let bytes = session
        .to_der()
        .map_err(|e| TlsError::boring("cannot serialise the session", e))?;
    let quic_params = ffi::peer_quic_transport_params(ssl);
    let protocol = protocol_of(ssl, quic_params.as_deref());
    let mut params = quic_params.unwrap_or_default();
    if params.len() > MAX_TRANSPORT_PARAMS_LEN {
        params.clear();
    }
    let capable = ffi::session_early_data_capable(session);
    // Pitfall: BoringSSL does not keep QUIC transport parameters in the
    // session, and 0-RTT without them is impossible, so on QUIC no
    // parameters means no early data.
    let early_data = capable && (protocol != Protocol::H3 || !params.is_empty());
    let envelope = Envelope {
        protocol,
        session: bytes,
        lifetime_secs: session.timeout().min(MAX_TICKET_LIFETIME_SECS),
        issued_at: session.time(),
        alpn: ssl.selected_alpn_protocol().unwrap_or_default().to_vec(),
        early_data,
        ech: ssl.ech_accepted(),
        transport_params: params,
    };
    Ok(CachedSession {
        ticket: ffi::session_ticket(session),
        envelope,
    })
}
