//! QUIC against TCP for a new connection to an origin whose protocol is
//! not known (or known to be HTTP/3 but perhaps blocked).
//!
//! QUIC starts alone; TCP joins after the head start or as soon as QUIC
//! fails; the first to complete its handshake carries the request and the
//! other is dropped. A replay-safe request may already have left in QUIC
//! 0-RTT when TCP wins; any other request is sent only on the winner.
//!
//! QUIC cannot tell a closed UDP port from a slow one (quinn does not see
//! ICMP port-unreachable), so once TCP has failed, QUIC gets only
//! [`QUIC_GRACE_AFTER_TCP_FAILED`] more to answer: an origin that refuses
//! TCP and ignores UDP fails in about a second with the TCP error, as curl
//! does, instead of after the whole connect timeout.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Conn, OnReady, SharedReady};
use super::connect::{Connector, NewConnection, Opened, Target};
use super::ech_offer::EchChoice;
use super::tcp::TcpConnection;
use crate::cache::Protocol;
use crate::error::Error;

/// How long QUIC may still take to complete its handshake once TCP failed.
pub(crate) const QUIC_GRACE_AFTER_TCP_FAILED: Duration = Duration::from_millis(750);

/// The state of a race, between the arms of its loop.
#[derive(Default)]
struct Race {
    tcp_started: bool,
    /// QUIC completed its handshake: the request may have reached the
    /// server, so TCP no longer competes.
    handshaken: bool,
    signal_done: bool,
    quic_error: Option<Error>,
    tcp_error: Option<Error>,
}

impl Race {
    /// QUIC failed before its handshake: TCP goes on alone, or, if it
    /// failed too, the race ends with the error that says more.
    fn quic_failed(&mut self, e: Error) -> Result<(), Error> {
        if let Some(tcp_error) = self.tcp_error.take() {
            return Err(worse_failure(e, tcp_error));
        }
        self.quic_error = Some(e);
        self.tcp_started = true;
        Ok(())
    }

    /// TCP failed: QUIC gets a short grace, unless it failed already.
    fn tcp_failed(&mut self, e: Error) -> Result<(), Error> {
        if let Some(quic_error) = self.quic_error.take() {
            return Err(worse_failure(quic_error, e));
        }
        self.tcp_error = Some(e);
        Ok(())
    }

    /// The grace after TCP's failure ran out: TCP's error ends the race.
    fn give_up(&mut self) -> Error {
        self.tcp_error.take().unwrap_or(Error::Timeout {
            what: "connecting over QUIC",
            after: QUIC_GRACE_AFTER_TCP_FAILED,
        })
    }
}

impl Connector {
    /// Races QUIC (to `h3_port`) against TCP (to the origin's port).
    /// `expected`: the origin was believed to speak HTTP/3.
    pub(crate) async fn open_raced(
        &self,
        new: NewConnection<'_>,
        ech: EchChoice,
        h3_port: u16,
        expected: bool,
    ) -> Result<Opened, Error> {
        let (host, port, request) = (new.host, new.port, new.request);
        // Whoever is ready first hands its connection to waiting requests.
        let ready = SharedReady::new(new.on_ready);
        let (handshaken_tx, mut handshaken_rx) = tokio::sync::oneshot::channel();
        let tcp = self.tcp_attempt(new.identifier.clone(), host, port, ech.clone());
        let quic_target = self.target(new.identifier, host, h3_port, &[Protocol::H3], ech);
        let quic = async {
            let target = quic_target.await?;
            self.open_h3(target, request, ready.hook(), Some(handshaken_tx))
                .await
        };
        let (mut quic, mut tcp) = (pin!(quic), pin!(tcp));
        let mut head_start = pin!(tokio::time::sleep(self.head_start));
        let mut grace = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
        let mut race = Race::default();
        loop {
            tokio::select! {
                result = &mut quic, if race.quic_error.is_none() => match result {
                    Ok(opened) => {
                        self.memory.quic_won(host, port, h3_port);
                        return Ok(opened);
                    }
                    // QUIC worked but the exchange failed: the request may
                    // have reached the server, so it does not go again.
                    Err(e) if race.handshaken => return Err(e),
                    Err(e) => {
                        tracing::debug!(origin = %format!("{host}:{h3_port}"), error = %e, "QUIC attempt failed; TCP goes on");
                        race.quic_failed(e)?;
                    }
                },
                signal = &mut handshaken_rx, if !race.signal_done => {
                    race.signal_done = true;
                    race.handshaken = signal.is_ok();
                }
                () = &mut head_start, if !race.tcp_started => race.tcp_started = true,
                () = &mut grace, if race.tcp_error.is_some() && !race.handshaken => {
                    tracing::debug!(origin = %format!("{host}:{h3_port}"), "QUIC has not answered since TCP failed; giving up");
                    return Err(race.give_up());
                }
                result = &mut tcp, if race.tcp_started && !race.handshaken && race.tcp_error.is_none() => match result {
                    Ok((target, conn)) => {
                        self.memory.tcp_won(host, port, expected);
                        return self.tcp_won(&target, conn, &ready, request).await;
                    }
                    Err(e) => {
                        race.tcp_failed(e)?;
                        grace.as_mut().reset(tokio::time::Instant::now() + QUIC_GRACE_AFTER_TCP_FAILED);
                    }
                },
            }
        }
    }

    /// The TCP side of a race: connected and handshaken, no request yet.
    async fn tcp_attempt(
        &self,
        identifier: Option<String>,
        host: &str,
        port: u16,
        ech: EchChoice,
    ) -> Result<(Target, Arc<TcpConnection>), Error> {
        let protocols = self.mode.tcp_protocols();
        let mut target = self.target(identifier, host, port, protocols, ech).await?;
        let conn = self.dial_tcp(&mut target, None).await?;
        Ok((target, conn))
    }

    /// TCP completed its handshake first: it carries the request.
    async fn tcp_won(
        &self,
        target: &Target,
        conn: Arc<TcpConnection>,
        ready: &SharedReady<'_>,
        request: &super::PreparedRequest,
    ) -> Result<Opened, Error> {
        tracing::debug!(origin = %target.origin, "TCP won the race against QUIC");
        let conn = Conn::Tcp(conn);
        self.check_resumed(target, &conn);
        let hook: OnReady<'_> = ready.hook();
        hook(conn.clone());
        Ok(Opened::new(conn.exchange(request).await?))
    }
}

/// Of two failed attempts, the error that says more: a refused TCP
/// connection only says nothing listens on TCP, so QUIC's reason wins then.
fn worse_failure(quic: Error, tcp: Error) -> Error {
    match tcp {
        Error::Tcp { .. } => quic,
        other => other,
    }
}
