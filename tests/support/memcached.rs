//! A real `memcached` process on a free loopback port, killed on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_binary};

pub struct MemcachedServer {
    child: Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl MemcachedServer {
    /// Starts memcached (TCP only, 64 MiB) and waits until it accepts.
    pub fn start() -> Self {
        Self::start_with(&[], None)
    }

    /// Starts memcached with TLS only (`-Z`), serving `pki`'s certificate.
    pub fn start_tls(pki: &super::quic::TestPki) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, &pki.cert_pem).unwrap();
        std::fs::write(&key, &pki.key_pem).unwrap();
        let options = format!("ssl_chain_cert={},ssl_key={}", cert.display(), key.display());
        Self::start_with(&["-Z", "-o", &options], Some(dir))
    }

    fn start_with(extra: &[&str], dir: Option<tempfile::TempDir>) -> Self {
        let binary = require_binary("memcached", "memcached");
        let port = free_port(None);
        let child = Command::new(binary)
            .args(extra)
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-m",
                "64",
                "-u",
                "root",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("memcached exited ({status}) before listening on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "memcached did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// `memcached://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }

    /// `memcacheds://127.0.0.1:PORT` (for a server from [`start_tls`](Self::start_tls)).
    pub fn tls_uri(&self) -> String {
        format!("memcacheds://127.0.0.1:{}", self.port)
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
