//! Test support: real services on loopback ports chosen here, stopped on
//! `Drop`, and a recording wrapper that counts calls to a real backend.
//!
//! Each integration test file uses a different part of this module.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;
pub mod local_proxy;
pub mod memcached;
pub mod proxies;
pub mod quic;
pub mod recording;
pub mod redis;
pub mod serve;
pub mod sessions;
pub mod tcp;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;

/// The path of `binary`, or a panic that says which package installs it.
///
/// A missing service is a test failure, never a silent skip.
pub fn require_binary(binary: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{binary}` is not installed: run `apt-get install -y {package}` (or `make test`, which installs it)")
        })
}

/// A loopback TCP port that is free now (and, with `plus`, whose port +
/// `plus` is free too, as Redis Cluster's bus port needs).
///
/// A port is handed out once per test binary: the tests in it run in
/// parallel, and the kernel may give a port that one test has just closed
/// to the next one asking, so two servers would race for it and the loser's
/// readiness check would see the winner (a flake seen in CI).
pub fn free_port(plus: Option<u16>) -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    for _ in 0..500 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let other = match plus {
            None => port,
            Some(plus) => match port.checked_add(plus) {
                Some(other) => other,
                None => continue,
            },
        };
        if handed_out.contains(&port) || handed_out.contains(&other) {
            continue;
        }
        if plus.is_some()
            && (TcpListener::bind(("127.0.0.1", other)).is_err()
                || UdpSocket::bind(("127.0.0.1", other)).is_err())
        {
            continue;
        }
        handed_out.extend([port, other]);
        return port;
    }
    panic!("no free loopback port found");
}

/// A TCP server that accepts connections and never answers: what a backend
/// looks like when it hangs. Stops on drop.
pub struct BlackHole {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    pub fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP proxy on a loopback port that forwards to `upstream` and holds
/// every reply back for `delay`: what a backend looks like when it is slow.
/// Stops on drop.
pub struct SlowProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    pub async fn start(upstream: std::net::SocketAddr, delay: std::time::Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(delay).await;
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Self { port, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
