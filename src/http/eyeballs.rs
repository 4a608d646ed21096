//! Opening a connection to a name with several addresses, Happy Eyeballs
//! style (RFC 8305): the addresses are interleaved by family, and a new
//! attempt starts every [`STAGGER`] (or as soon as the previous one fails)
//! while the earlier ones keep running; the first to connect wins and the
//! others are dropped. [`first_to_answer`] is that schedule, for TCP
//! ([`connect`]) and QUIC (`Connector::open_h3`) alike.
//!
//! Why: trying addresses one after the other lets a dead first address
//! (a black-holed IPv6 route, a host that is down) cost the whole connect
//! timeout. With a stagger it costs at most the stagger.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::Error;

/// How long one attempt runs alone before the next address is tried too
/// (RFC 8305 section 5 recommends 250 ms).
pub(crate) const STAGGER: Duration = Duration::from_millis(250);

/// What every TCP socket of a session is set up with.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketOptions {
    /// The local address to bind before connecting; addresses of the
    /// other family are then not tried.
    pub(crate) local_address: Option<IpAddr>,
    /// TCP keepalive: the idle time before the first probe.
    pub(crate) keepalive: Option<Duration>,
}

impl SocketOptions {
    fn socket_for(&self, addr: &SocketAddr) -> std::io::Result<TcpSocket> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.local_address {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        Ok(socket)
    }

    /// Settings applied once connected.
    fn apply(&self, tcp: &TcpStream) -> std::io::Result<()> {
        // Requests are small writes that must not wait for Nagle.
        tcp.set_nodelay(true)?;
        if let Some(idle) = self.keepalive {
            // The kernel counts whole seconds, and refuses zero.
            let keepalive = socket2::TcpKeepalive::new().with_time(idle.max(Duration::from_secs(1)));
            socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)?;
        }
        Ok(())
    }

    /// The addresses worth trying, in the order they are tried: the family
    /// of the first one first, then alternating (RFC 8305 section 4), and
    /// only the local address's family when one is bound.
    pub(crate) fn order(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let usable = |a: &&SocketAddr| match self.local_address {
            Some(local) => local.is_ipv4() == a.is_ipv4(),
            None => true,
        };
        let Some(first) = addrs.iter().find(usable) else {
            return Vec::new();
        };
        let (mut lead, mut other): (Vec<&SocketAddr>, Vec<&SocketAddr>) = addrs
            .iter()
            .filter(usable)
            .partition(|a| a.is_ipv4() == first.is_ipv4());
        lead.reverse();
        other.reverse();
        let mut ordered = Vec::with_capacity(lead.len() + other.len());
        while let Some(a) = lead.pop() {
            ordered.push(*a);
            if let Some(b) = other.pop() {
                ordered.push(*b);
            }
        }
        ordered.extend(other.into_iter().rev().copied());
        ordered
    }
}

/// Runs `attempt(i, addr)` on each of `ordered` in turn, the next one
/// `stagger` after the one before started or as soon as it failed, the
/// earlier ones still running; the first success wins and the others are
/// dropped. `committed` names an attempt that has won in all but name (a
/// QUIC handshake completed, its request under way): no attempt starts
/// after it, and its failure ends the whole. On failure: every attempt's
/// error, in the order they came.
pub(crate) async fn first_to_answer<T, F, Fut>(
    ordered: &[SocketAddr],
    stagger: Duration,
    committed: impl Fn() -> Option<usize>,
    mut attempt: F,
) -> Result<T, Vec<(usize, Error)>>
where
    F: FnMut(usize, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut waiting = ordered.iter().copied().enumerate();
    let mut running = FuturesUnordered::new();
    let mut failures = Vec::new();
    let mut start = |running: &mut FuturesUnordered<_>,
                     waiting: &mut dyn Iterator<Item = (usize, SocketAddr)>| {
        if let Some((i, addr)) = waiting.next() {
            let attempt = attempt(i, addr);
            running.push(async move { (i, attempt.await) });
        }
    };
    start(&mut running, &mut waiting);
    while !running.is_empty() {
        let more = waiting.len() > 0 && committed().is_none();
        tokio::select! {
            Some((i, outcome)) = running.next() => match outcome {
                Ok(won) => return Ok(won),
                Err(e) => {
                    failures.push((i, e));
                    if committed() == Some(i) {
                        return Err(failures);
                    }
                    if committed().is_none() {
                        start(&mut running, &mut waiting);
                    }
                }
            },
            () = tokio::time::sleep(stagger), if more => start(&mut running, &mut waiting),
        }
    }
    Err(failures)
}

/// Connects to one of `addrs` (see the module's documentation); the error,
/// when none connects, is the last attempt's.
pub(crate) async fn connect(
    origin: &str,
    addrs: &[SocketAddr],
    options: &SocketOptions,
    stagger: Duration,
) -> Result<TcpStream, Error> {
    let ordered = options.order(addrs);
    let attempt = |_, addr| async move {
        let connected = async {
            let tcp = options.socket_for(&addr)?.connect(addr).await?;
            options.apply(&tcp)?;
            Ok(tcp)
        };
        connected.await.map_err(|source| {
            tracing::debug!(%origin, %addr, error = %source, "TCP connect failed");
            Error::Tcp {
                origin: origin.to_owned(),
                addr,
                source,
            }
        })
    };
    first_to_answer(&ordered, stagger, || None, attempt)
        .await
        .map_err(|mut failures| match failures.pop() {
            Some((_, last)) => last,
            None => no_address(origin, options),
        })
}

/// The error when none of a name's addresses is worth trying.
pub(crate) fn no_address(origin: &str, options: &SocketOptions) -> Error {
    Error::Url {
        url: origin.to_owned(),
        reason: match options.local_address {
            Some(local) => format!("no address of the local address {local}'s family"),
            None => "no address".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_starting_with_the_first_address() {
        let addrs = [
            addr("[::1]:1"),
            addr("[::2]:1"),
            addr("[::3]:1"),
            addr("10.0.0.1:1"),
        ];
        let ordered = SocketOptions::default().order(&addrs);
        let expected = [addrs[0], addrs[3], addrs[1], addrs[2]];
        assert_eq!(ordered, expected);
    }

    #[test]
    fn a_bound_local_address_keeps_only_its_family() {
        let addrs = [addr("[::1]:1"), addr("10.0.0.1:1"), addr("10.0.0.2:1")];
        let options = SocketOptions {
            local_address: Some(IpAddr::from([127, 0, 0, 1])),
            keepalive: None,
        };
        assert_eq!(options.order(&addrs), [addrs[1], addrs[2]]);
    }
}
