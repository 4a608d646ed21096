//! A UDP relay on loopback that delays every datagram by half an RTT each
//! way, keeping their order (as a real path does), so QUIC round trips can
//! be counted in milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Forwards datagrams between clients and `upstream`, adding `rtt / 2` in
/// each direction. Stops when dropped.
pub struct UdpRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Sends queued datagrams once each is due, in arrival order.
fn delayed_sender(
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) -> mpsc::UnboundedSender<(Instant, Vec<u8>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((due, datagram)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = match to {
                Some(addr) => socket.send_to(&datagram, addr).await,
                None => socket.send(&datagram).await,
            };
        }
    });
    tx
}

impl UdpRelay {
    pub async fn start(upstream: SocketAddr, rtt: Duration) -> Self {
        Self::start_holding_second(upstream, rtt, Duration::ZERO).await
    }

    /// Like [`start`](Self::start), but each client's second datagram (and,
    /// to keep order, everything after it) waits `hold` longer: a ClientHello
    /// that spans two datagrams then reaches the server in two parts.
    pub async fn start_holding_second(upstream: SocketAddr, rtt: Duration, hold: Duration) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let half = rtt / 2;
        let task = tokio::spawn(async move {
            let mut upstreams: HashMap<SocketAddr, (mpsc::UnboundedSender<_>, u64)> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let (to_server, seen) = match upstreams.get_mut(&client) {
                    Some((tx, seen)) => {
                        *seen += 1;
                        (mpsc::UnboundedSender::clone(tx), *seen)
                    }
                    None => {
                        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        back.connect(upstream).await.unwrap();
                        let to_client = delayed_sender(Arc::clone(&front), Some(client));
                        let reader = Arc::clone(&back);
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = reader.recv(&mut buf).await {
                                let _ = to_client.send((Instant::now() + half, buf[..n].to_vec()));
                            }
                        });
                        let tx = delayed_sender(back, None);
                        upstreams.insert(client, (tx.clone(), 1));
                        (tx, 1)
                    }
                };
                let extra = if seen == 2 { hold } else { Duration::ZERO };
                let _ = to_server.send((Instant::now() + half + extra, buf[..n].to_vec()));
            }
        });
        Self { addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
