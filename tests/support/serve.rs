//! An `h3fleet serve` origin process for tests that run `h3fleet get`
//! replica processes against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// An `h3fleet serve` process, with the JSON lines it printed.
pub struct Serve {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub cert: String,
    pub lines: Arc<Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
}

impl Serve {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", extra)
    }

    pub fn start_on(listen: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("origin.pem");
        let mut child = Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args(["serve", "--listen", listen, "--cert-out"])
            .arg(&cert)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let hello: Value = serde_json::from_str(&first).expect("serve prints JSON first");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Self {
            child,
            addr: hello["listen"].as_str().unwrap().parse().unwrap(),
            cert: hello["cert"].as_str().unwrap().to_owned(),
            lines,
            _dir: dir,
        }
    }

    /// The request log lines, waiting briefly for `n` of them.
    pub async fn requests(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            if self.lines.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
