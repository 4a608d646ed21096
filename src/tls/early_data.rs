//! TLS 1.3 early data over TCP, below hyper.
//!
//! With early data enabled and a session that allows it, the TLS handshake
//! returns right after the ClientHello, and hyper writes its first request
//! (for HTTP/2: preface, SETTINGS and HEADERS) as early data. If the server
//! takes it, the first read completes the handshake and nothing more is
//! needed. If it refuses it (a new ticket key, a HelloRetryRequest, ...),
//! BoringSSL stops every read and write with `EARLY_DATA_REJECTED`; hyper
//! cannot recover from that (HTTP/2 even reduces it to the string "15"). So
//! [`EarlyDataStream`] sits between hyper and the TLS stream and, on that
//! stop:
//!
//! 1. lets the handshake go on at 1-RTT (exactly once: BoringSSL aborts the
//!    process if that is done in the wrong state);
//! 2. completes the handshake with its own reads, keeping any application
//!    bytes that arrive for hyper's next read;
//! 3. checks that the server chose the protocol (ALPN) hyper was predicting:
//!    bytes written for HTTP/2 are garbage to an HTTP/1.1 server, so if ALPN
//!    changed nothing is replayed and the connection fails, marked for a
//!    retry on a new connection;
//! 4. writes again every byte hyper wrote as early data, then gets out of
//!    the way.
//!
//! A server that answers an early-data ClientHello with TLS 1.2 fails the
//! handshake (`WRONG_VERSION_ON_EARLY_DATA`); that too is marked for a retry
//! on a new connection, without early data.
//!
//! What happened is kept in an [`EarlyDataReport`] shared with the
//! connection, because errors that pass through hyper lose their type.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_boring::SslStream;

use super::{ffi, EchRejection};

/// How the handshake of a TCP connection ended, once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandshakeOutcome {
    pub(crate) resumed: bool,
    /// `None`: no early data was offered.
    pub(crate) early_data_accepted: Option<bool>,
    pub(crate) alpn: Option<Vec<u8>>,
    pub(crate) ech_accepted: bool,
    pub(crate) completed_at: Instant,
}

/// Why a connection that tried early data must be given up for a new one
/// (without early data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryFresh {
    /// Early data was refused and the server chose another protocol than
    /// the one the early bytes were written for.
    AlpnChanged,
    /// The server answered the early-data ClientHello with TLS 1.2.
    WrongVersion,
    /// The server rejected ECH (its retry configs are in the connection's
    /// ECH rejection report).
    EchRejected,
}

/// What a connection's early data came to, shared between the stream (on
/// hyper's task) and the connection (on the caller's).
#[derive(Debug, Default)]
pub(crate) struct EarlyDataReport {
    state: Mutex<ReportState>,
}

#[derive(Debug, Default)]
struct ReportState {
    outcome: Option<HandshakeOutcome>,
    retry_fresh: Option<RetryFresh>,
}

impl EarlyDataReport {
    /// The handshake's outcome, once it is complete.
    pub(crate) fn outcome(&self) -> Option<HandshakeOutcome> {
        crate::sync::lock(&self.state).outcome.clone()
    }

    /// Set when the connection failed in a way a new connection without
    /// early data avoids.
    pub(crate) fn retry_fresh(&self) -> Option<RetryFresh> {
        crate::sync::lock(&self.state).retry_fresh
    }

    fn set_outcome(&self, outcome: HandshakeOutcome) {
        {
            let mut s = crate::sync::lock(&self.state);
            s.outcome.get_or_insert(outcome);
        }
    }

    fn set_retry_fresh(&self, why: RetryFresh) {
        {
            let mut s = crate::sync::lock(&self.state);
            s.retry_fresh = Some(why);
        }
    }
}

/// A TLS stream that recovers from refused early data (see the module
/// documentation).
pub(crate) struct EarlyDataStream<S> {
    inner: SslStream<S>,
    phase: Phase,
    report: Arc<EarlyDataReport>,
    ech_rejection: Arc<EchRejection>,
}

enum Phase {
    /// Early data offered; the server has not answered yet. `sent` is every
    /// byte written so far, `alpn` the protocol they were written for.
    /// Reads wait (in `reader`) until something has been written: a read
    /// would complete the handshake, and what follows would not be early.
    Early {
        sent: Vec<u8>,
        alpn: Option<Vec<u8>>,
        reader: Option<Waker>,
    },
    /// Early data refused: finishing the handshake, then replaying `sent`
    /// from `replayed` on.
    Recovering {
        sent: Vec<u8>,
        alpn: Option<Vec<u8>>,
        replayed: usize,
        handshake_done: bool,
        pending: Vec<u8>,
    },
    /// Plain TLS from here on; `pending` are application bytes read during
    /// recovery, handed out first.
    Open { pending: Vec<u8> },
    /// The connection cannot go on.
    Failed,
}

impl<S> EarlyDataStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a stream fresh from the TLS handshake, which may have returned
    /// early (in early data) or complete.
    pub(crate) fn new(
        inner: SslStream<S>,
        report: Arc<EarlyDataReport>,
        ech_rejection: Arc<EchRejection>,
    ) -> Self {
        let phase = if ffi::in_early_data(inner.ssl()) {
            Phase::Early {
                sent: Vec::new(),
                alpn: inner.ssl().selected_alpn_protocol().map(<[u8]>::to_vec),
                reader: None,
            }
        } else {
            Phase::Open { pending: Vec::new() }
        };
        let stream = Self {
            inner,
            phase,
            report,
            ech_rejection,
        };
        if matches!(stream.phase, Phase::Open { .. }) {
            stream.complete(None);
        }
        stream
    }

    /// True while the server may still refuse what is written.
    pub(crate) fn in_early_data(&self) -> bool {
        matches!(self.phase, Phase::Early { .. })
    }

    /// The TLS connection (its state may still be a prediction while in
    /// early data).
    pub(crate) fn ssl(&self) -> &boring::ssl::SslRef {
        self.inner.ssl()
    }

    /// The stream TLS runs on.
    pub(crate) fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    fn complete(&self, early_data_accepted: Option<bool>) {
        let ssl = self.inner.ssl();
        self.report.set_outcome(HandshakeOutcome {
            resumed: ssl.session_reused(),
            early_data_accepted,
            alpn: ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
            ech_accepted: ssl.ech_accepted(),
            completed_at: Instant::now(),
        });
    }

    /// While in early data: notes a completed handshake (the server took the
    /// early data) or classifies a failure.
    fn after_early_io(&mut self, failure: Option<&io::Error>) -> Option<io::Error> {
        match failure {
            None => {
                if !ffi::in_init(self.inner.ssl()) {
                    // Early data counts as used only if bytes went as early data.
                    let used = matches!(&self.phase, Phase::Early { sent, .. } if !sent.is_empty());
                    let accepted = ffi::early_data_accepted(self.inner.ssl());
                    self.complete(used.then_some(accepted));
                    self.phase = Phase::Open { pending: Vec::new() };
                }
                None
            }
            Some(e) if is_rejection(e) => {
                if let Phase::Early { sent, alpn, .. } = std::mem::replace(&mut self.phase, Phase::Failed) {
                    tracing::debug!(
                        bytes = sent.len(),
                        "early data refused; finishing the handshake to send again"
                    );
                    if !ffi::reset_early_data_reject(self.inner.ssl_mut()) {
                        return Some(io::Error::other("early data refused in an unexpected TLS state"));
                    }
                    self.phase = Phase::Recovering {
                        sent,
                        alpn,
                        replayed: 0,
                        handshake_done: false,
                        pending: Vec::new(),
                    };
                }
                None
            }
            Some(e) => {
                if is_wrong_version(e) {
                    tracing::debug!("server chose TLS 1.2 for an early-data ClientHello");
                    self.report.set_retry_fresh(RetryFresh::WrongVersion);
                } else {
                    // With early data the handshake ends here, not in connect.
                    self.note_ech_rejection(e);
                }
                self.phase = Phase::Failed;
                None
            }
        }
    }

    /// If `e` is the server's rejection of ECH, keeps its retry configs and
    /// marks the connection for a retry on a new one.
    fn note_ech_rejection(&self, e: &io::Error) {
        if let Some(stack) = ssl_error(e).and_then(boring::ssl::Error::ssl_error) {
            if self.ech_rejection.record(self.inner.ssl(), stack) {
                self.report.set_retry_fresh(RetryFresh::EchRejected);
            }
        }
    }

    /// Drives recovery after a refusal: handshake, ALPN check, replay.
    fn poll_recover(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Phase::Recovering {
            sent,
            alpn,
            replayed,
            handshake_done,
            pending,
        } = &mut self.phase
        else {
            return Poll::Ready(Ok(()));
        };
        while !*handshake_done {
            if ffi::in_init(self.inner.ssl()) {
                // A read runs the handshake; keep what it returns for hyper.
                let mut scratch = [0u8; 4096];
                let mut buf = ReadBuf::new(&mut scratch);
                if let Err(e) = ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                    // The handshake after a refusal can still fail: ECH
                    // rejected shows up only here when early data was offered.
                    self.note_ech_rejection(&e);
                    self.phase = Phase::Failed;
                    return Poll::Ready(Err(e));
                }
                if buf.filled().is_empty() && ffi::in_init(self.inner.ssl()) {
                    self.phase = Phase::Failed;
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
                pending.extend_from_slice(buf.filled());
                continue;
            }
            let chosen = self.inner.ssl().selected_alpn_protocol().map(<[u8]>::to_vec);
            if chosen != *alpn {
                tracing::debug!(
                    predicted = ?alpn.as_deref().map(String::from_utf8_lossy),
                    chosen = ?chosen.as_deref().map(String::from_utf8_lossy),
                    "the server chose another protocol; nothing is sent again"
                );
                self.report.set_retry_fresh(RetryFresh::AlpnChanged);
                self.phase = Phase::Failed;
                self.complete(Some(false));
                return Poll::Ready(Err(io::Error::other(
                    "early data refused and the server chose another protocol",
                )));
            }
            *handshake_done = true;
        }
        while *replayed < sent.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &sent[*replayed..]))?;
            if n == 0 {
                self.phase = Phase::Failed;
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *replayed += n;
        }
        let pending = std::mem::take(pending);
        tracing::debug!(bytes = sent.len(), "early data sent again after the handshake");
        self.phase = Phase::Open { pending };
        self.complete(Some(false));
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncRead for EarlyDataStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Early { sent, reader, .. } if sent.is_empty() => {
                    *reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Phase::Early { .. } => {
                    let result = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
                    match this.after_early_io(result.as_ref().err()) {
                        Some(e) => return Poll::Ready(Err(e)),
                        None if matches!(this.phase, Phase::Recovering { .. }) => continue,
                        None => return Poll::Ready(result),
                    }
                }
                Phase::Recovering { .. } => ready!(this.poll_recover(cx))?,
                Phase::Open { pending } if !pending.is_empty() => {
                    let n = pending.len().min(buf.remaining());
                    buf.put_slice(&pending[..n]);
                    pending.drain(..n);
                    return Poll::Ready(Ok(()));
                }
                Phase::Open { .. } | Phase::Failed => return Pin::new(&mut this.inner).poll_read(cx, buf),
            }
        }
    }
}

impl<S> AsyncWrite for EarlyDataStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Early { .. } => {
                    let result = ready!(Pin::new(&mut this.inner).poll_write(cx, data));
                    if let Some(e) = this.after_early_io(result.as_ref().err()) {
                        return Poll::Ready(Err(e));
                    }
                    match (&mut this.phase, result) {
                        (Phase::Recovering { .. }, _) => continue,
                        // Written while the server may still refuse it: keep
                        // a copy to send again.
                        (Phase::Early { sent, reader, .. }, Ok(n)) => {
                            sent.extend_from_slice(&data[..n]);
                            if let Some(reader) = reader.take() {
                                reader.wake();
                            }
                            return Poll::Ready(Ok(n));
                        }
                        (_, result) => return Poll::Ready(result),
                    }
                }
                Phase::Recovering { .. } => ready!(this.poll_recover(cx))?,
                Phase::Open { .. } | Phase::Failed => return Pin::new(&mut this.inner).poll_write(cx, data),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.phase, Phase::Recovering { .. }) {
            ready!(this.poll_recover(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn ssl_error(e: &io::Error) -> Option<&boring::ssl::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<boring::ssl::Error>())
}

fn is_rejection(e: &io::Error) -> bool {
    ssl_error(e).is_some_and(|s| s.code().as_raw() == ffi::ERROR_EARLY_DATA_REJECTED)
}

fn is_wrong_version(e: &io::Error) -> bool {
    ssl_error(e)
        .and_then(boring::ssl::Error::ssl_error)
        .is_some_and(|stack| {
            stack
                .errors()
                .iter()
                .any(|err| err.reason_code() == ffi::REASON_WRONG_VERSION_ON_EARLY_DATA)
        })
}
