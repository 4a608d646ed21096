//! QUIC through a SOCKS5 proxy: a UDP socket for quinn whose datagrams go
//! by way of the proxy's UDP relay (RFC 1928 section 7, UDP ASSOCIATE).
//!
//! Every datagram sent gets the SOCKS5 UDP header naming the origin (by
//! name through `socks5h://`, so the proxy resolves it), and every one
//! received loses it. One socket serves one connection: quinn is told the
//! origin is at [`placeholder`], and whatever the relay sends is reported
//! as from there. The association lives as long as the TCP connection that
//! asked for it, which the socket holds.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::ReadBuf;
use tokio::net::{TcpStream, UdpSocket};

use super::socks5::{self, Target};
use super::Proxy;
use crate::error::Error;

/// The address quinn is given for an origin reached through the relay
/// (TEST-NET-1, never routed): the relay knows the real one.
pub(crate) fn placeholder(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), port))
}

/// A UDP socket relayed by a SOCKS5 proxy, for one QUIC connection.
pub(crate) struct RelayedSocket {
    socket: UdpSocket,
    relay: SocketAddr,
    /// `RSV FRAG ATYP DST.ADDR DST.PORT`, the same for every datagram.
    header: Vec<u8>,
    /// Where quinn believes the origin is.
    origin: SocketAddr,
    /// The association ends when this closes.
    _control: TcpStream,
}

impl fmt::Debug for RelayedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayedSocket")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

impl RelayedSocket {
    /// Asks the proxy for a UDP association (over `control`, already
    /// connected to it) carrying datagrams to `host:port`, or to `addr`
    /// when names are resolved here.
    pub(super) async fn associate(
        proxy: &Proxy,
        mut control: TcpStream,
        host: &str,
        port: u16,
        addr: Option<SocketAddr>,
    ) -> Result<Self, Error> {
        let local_ip = control
            .local_addr()
            .map_err(|e| proxy.error(format!("no local address: {e}"), None))?
            .ip();
        let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))
            .await
            .map_err(|e| proxy.error(format!("cannot open a UDP socket: {e}"), None))?;
        let from = socket
            .local_addr()
            .map_err(|e| proxy.error(format!("no local UDP address: {e}"), None))?;
        let relay = socks5::udp_associate(proxy, &mut control, from).await?;
        let target = match addr {
            Some(addr) => Target::Addr(addr),
            None => Target::Name(host, port),
        };
        let mut header = vec![0, 0, 0];
        header.extend(socks5::address(proxy, &target)?);
        tracing::debug!(proxy = %proxy, %relay, %host, port, "UDP association open");
        Ok(Self {
            socket,
            relay,
            header,
            origin: placeholder(port),
            _control: control,
        })
    }

    /// The proxy's UDP relay.
    pub(super) fn relay(&self) -> SocketAddr {
        self.relay
    }

    /// The length of the SOCKS5 UDP header at the start of `datagram`, if
    /// it is a whole, unfragmented one.
    fn header_len(datagram: &[u8]) -> Option<usize> {
        let (rsv_frag, rest) = datagram.split_at_checked(4)?;
        if rsv_frag[..3] != [0, 0, 0] {
            return None;
        }
        let addr_len = match rsv_frag[3] {
            1 => 4,
            4 => 16,
            3 => usize::from(*rest.first()?) + 1,
            _ => return None,
        };
        let len = 4 + addr_len + 2;
        (datagram.len() >= len).then_some(len)
    }
}

impl AsyncUdpSocket for RelayedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let mut datagram = Vec::with_capacity(self.header.len() + transmit.contents.len());
        datagram.extend_from_slice(&self.header);
        datagram.extend_from_slice(transmit.contents);
        self.socket.try_send_to(&datagram, self.relay).map(drop)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            let mut read = ReadBuf::new(buf);
            let from = match self.socket.poll_recv_from(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(from)) => from,
            };
            let n = read.filled().len();
            // Only the relay speaks for the origin; anything else is dropped.
            let Some(header) = Self::header_len(read.filled()).filter(|_| from == self.relay) else {
                continue;
            };
            buf.copy_within(header..n, 0);
            let len = n - header;
            *slot = RecvMeta {
                addr: self.origin,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            return Poll::Ready(Ok(1));
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// Tells quinn when the relayed socket can send again.
#[derive(Debug)]
struct Writable(Arc<RelayedSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.socket.poll_send_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::RelayedSocket;

    #[test]
    fn udp_headers_are_measured_and_fragments_refused() {
        assert_eq!(
            RelayedSocket::header_len(&[0, 0, 0, 1, 127, 0, 0, 1, 1, 187, 0xc0]),
            Some(10)
        );
        assert_eq!(RelayedSocket::header_len(&[0, 0, 0, 3, 1, b'a', 0, 80]), Some(8));
        assert_eq!(
            RelayedSocket::header_len(&[0, 0, 1, 1, 127, 0, 0, 1, 1, 187]),
            None,
            "a fragment"
        );
        assert_eq!(RelayedSocket::header_len(&[0, 0, 0, 1, 127]), None, "cut short");
    }
}
