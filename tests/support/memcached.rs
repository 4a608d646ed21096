//! A real `memcached` process on a free loopback port, killed on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_binary};

pub struct MemcachedServer {
    child: Child,
    port: u16,
}

impl MemcachedServer {
    /// Starts memcached (TCP only, 64 MiB) and waits until it accepts.
    pub fn start() -> Self {
        let binary = require_binary("memcached", "memcached");
        let port = free_port(None);
        let child = Command::new(binary)
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "memcached did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    /// `memcached://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
