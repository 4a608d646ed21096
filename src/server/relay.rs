//! A UDP relay on loopback that adds a round-trip time, so the handshake
//! round trips that resumption and 0-RTT save show up in milliseconds on
//! one machine (`tc netem` needs privileges and a real interface).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ServerError;

type Queue = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

/// Forwards datagrams between clients and one upstream, delaying each by
/// half the RTT in each direction and keeping their order, as a real path
/// does. Each client gets its own upstream socket. Stops when dropped.
#[derive(Debug)]
pub struct LatencyRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Sends queued datagrams once each is due, in arrival order.
fn delayed_sender(tasks: &mut JoinSet<()>, socket: Arc<UdpSocket>, to: Option<SocketAddr>) -> Queue {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tasks.spawn(async move {
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

impl LatencyRelay {
    /// A relay on a free loopback port to `upstream`, adding `rtt`.
    ///
    /// # Errors
    ///
    /// No loopback UDP socket could be bound.
    pub async fn start(upstream: SocketAddr, rtt: Duration) -> Result<Self, ServerError> {
        Self::start_holding_second(upstream, rtt, Duration::ZERO).await
    }

    /// Like [`start`](Self::start), but each client's second datagram (and,
    /// to keep the order, everything after it) waits `hold` longer: a
    /// ClientHello that spans two datagrams reaches the server in two parts.
    /// For tests of that case.
    ///
    /// # Errors
    ///
    /// No loopback UDP socket could be bound.
    pub async fn start_holding_second(
        upstream: SocketAddr,
        rtt: Duration,
        hold: Duration,
    ) -> Result<Self, ServerError> {
        Self::bind(([127, 0, 0, 1], 0).into(), upstream, rtt, hold).await
    }

    /// A relay listening on `listen` (another loopback address with the
    /// origin's port, say, so a URL keeps its port) to `upstream`.
    ///
    /// # Errors
    ///
    /// `listen` cannot be bound.
    pub async fn start_at(
        listen: SocketAddr,
        upstream: SocketAddr,
        rtt: Duration,
    ) -> Result<Self, ServerError> {
        Self::bind(listen, upstream, rtt, Duration::ZERO).await
    }

    async fn bind(
        bind: SocketAddr,
        upstream: SocketAddr,
        rtt: Duration,
        hold: Duration,
    ) -> Result<Self, ServerError> {
        let front = UdpSocket::bind(bind)
            .await
            .map_err(|source| ServerError::Bind { addr: bind, source })?;
        let addr = front
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: bind, source })?;
        let task = tokio::spawn(relay(Arc::new(front), upstream, rtt / 2, hold));
        Ok(Self { addr, task })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn relay(front: Arc<UdpSocket>, upstream: SocketAddr, half: Duration, hold: Duration) {
    // Dropping the set (when the relay is dropped) stops every helper task.
    let mut tasks = JoinSet::new();
    let mut clients: HashMap<SocketAddr, (Queue, u64)> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let (to_server, seen) = match clients.get_mut(&client) {
            Some((queue, seen)) => {
                *seen += 1;
                (queue.clone(), *seen)
            }
            None => {
                let Ok(back) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                    continue;
                };
                if back.connect(upstream).await.is_err() {
                    continue;
                }
                let back = Arc::new(back);
                let to_client = delayed_sender(&mut tasks, Arc::clone(&front), Some(client));
                let reader = Arc::clone(&back);
                tasks.spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = reader.recv(&mut buf).await {
                        let _ = to_client.send((Instant::now() + half, buf[..n].to_vec()));
                    }
                });
                let queue = delayed_sender(&mut tasks, back, None);
                clients.insert(client, (queue.clone(), 1));
                (queue, 1)
            }
        };
        let extra = if seen == 2 { hold } else { Duration::ZERO };
        let _ = to_server.send((Instant::now() + half + extra, buf[..n].to_vec()));
    }
}

impl Drop for LatencyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TCP counterpart of [`LatencyRelay`]: every byte from a client reaches
/// the upstream half the RTT later, and every byte back likewise, in order.
/// (The TCP handshake to the relay itself is local and instant; the relay's
/// own connection to the upstream is made when the client connects, so a
/// client sees one RTT before its first bytes arrive, as on a real path.)
#[derive(Debug)]
pub struct TcpLatencyRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpLatencyRelay {
    /// A relay on `listen` (port 0: a free one) to `upstream`, adding `rtt`.
    ///
    /// # Errors
    ///
    /// The listening socket could not be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, rtt: Duration) -> Result<Self, ServerError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind { addr: listen, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: listen, source })?;
        let half = rtt / 2;
        let task = tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                tasks.spawn(async move {
                    // The client's connection attempt reaches the upstream
                    // half an RTT later, its SYN-ACK comes back half an RTT
                    // after that.
                    tokio::time::sleep(half).await;
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::time::sleep(half).await;
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = tokio::spawn(delayed_pipe(client_read, server_write, half));
                    delayed_pipe(server_read, client_write, half).await;
                    up.abort();
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpLatencyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn delayed_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
