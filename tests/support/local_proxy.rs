//! `h3fleet proxy` processes, and the real clients that go through them:
//! curl, Python `requests` and Node's fetch (undici), the last two from
//! `tests/clients` (installed there by `scripts/install-deps.sh --test`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// A running `h3fleet proxy`, with the JSON lines it printed after the
/// first.
pub struct ProxyProc {
    child: Child,
    pub addr: std::net::SocketAddr,
    pub lines: Arc<Mutex<Vec<Value>>>,
}

impl ProxyProc {
    /// Starts `h3fleet proxy --listen 127.0.0.1:0 ARGS` and waits for its
    /// `{"listen": ...}` line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`start`](Self::start) with these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_h3fleet"))
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let hello: Value =
            serde_json::from_str(&first).unwrap_or_else(|e| panic!("proxy printed {first:?} first: {e}"));
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
            lines,
        }
    }

    /// `http://127.0.0.1:PORT`, the proxy URL clients take.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM (graceful shutdown), then waits for the process; true if it
    /// exited successfully.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        status.success()
    }

    /// The request lines, waiting briefly for `n` of them.
    pub fn records(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            if self.lines.lock().unwrap().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
}

/// `curl ARGS`, which must be installed.
pub fn curl(args: &[&str]) -> Output {
    let curl = super::require_binary("curl", "curl");
    Command::new(curl).args(args).output().unwrap()
}

/// Python `requests` through `proxy` for `url`; one JSON object per request.
pub fn python_requests(proxy: &str, url: &str, headers: &[&str], repeat: usize) -> Vec<Value> {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `scripts/install-deps.sh --test` (or `make test`), which installs Python requests there",
        python.display()
    );
    let out = Command::new(python)
        .arg(clients_dir().join("requests_get.py"))
        .args([proxy, url])
        .args(headers)
        .env("H3FLEET_REPEAT", repeat.to_string())
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "requests failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Node's fetch (undici's, with its `ProxyAgent`) through `proxy` for `url`.
pub fn node_fetch(proxy: &str, url: &str, headers: &[&str]) -> Value {
    let node = super::require_binary("node", "nodejs");
    let undici = clients_dir().join("node_modules/undici/package.json");
    assert!(
        undici.is_file(),
        "{} is missing: run `scripts/install-deps.sh --test` (or `make test`), which installs undici there",
        undici.display()
    );
    let out = Command::new(node)
        .arg(clients_dir().join("undici_fetch.mjs"))
        .args([proxy, url])
        .args(headers)
        .current_dir(clients_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
