//! Real `redis-server` processes: one server, or a 3-master Redis Cluster.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_binary};

/// One `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server with persistence off and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(Some(10000));
        let child = spawn_redis(dir.path(), port, extra);
        let server = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        wait_until_ready(port);
        server
    }

    /// A server that also speaks TLS, with `pki`'s certificate, on its own
    /// port ([`tls_uri`](Self::tls_uri)); clients need no certificate.
    pub fn start_tls(pki: &super::quic::TestPki, extra: &[&str]) -> (Self, u16) {
        let files = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = files.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (cert, key, ca) = (
            write("cert.pem", &pki.cert_pem),
            write("key.pem", &pki.key_pem),
            write("ca.pem", &pki.ca_pem),
        );
        let tls_port = free_port(Some(10000)).to_string();
        let mut args = vec![
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ];
        args.extend_from_slice(extra);
        let server = Self::start_with(&args);
        // redis-server has read the files by the time it answers PING.
        drop(files);
        (server, tls_port.parse().unwrap())
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn uri(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain synchronous client, to inspect or damage what is stored.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.uri()).unwrap().get_connection().unwrap()
    }

    /// Kills the server (it stays down until [`restart`](Self::restart)).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_redis(self._dir.path(), self.port, &[]));
        wait_until_ready(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_redis(dir: &Path, port: u16, extra: &[&str]) -> Child {
    let binary = require_binary("redis-server", "redis-server");
    Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start redis-server")
}

/// Waits until `PING` on `port` answers `PONG` (or, with a password set,
/// `-NOAUTH`: the server is up and refusing the unauthenticated client).
fn wait_until_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ping(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

fn ping(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
}

/// A Redis Cluster of three masters (no replicas), created with
/// `redis-cli --cluster create`, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them, and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_nodes(|args| (RedisServer::start_with(args), 0)).0
    }

    /// The same with TLS on every node (the cluster bus too), with `pki`'s
    /// certificate; returns the nodes' TLS ports.
    pub fn start_tls(pki: &super::quic::TestPki) -> (Self, Vec<u16>) {
        Self::start_nodes(|args| {
            let mut args = args.to_vec();
            args.extend_from_slice(&["--tls-cluster", "yes"]);
            RedisServer::start_tls(pki, &args)
        })
    }

    fn start_nodes(start: impl Fn(&[&str]) -> (RedisServer, u16)) -> (Self, Vec<u16>) {
        let cli = require_binary("redis-cli", "redis-tools");
        let (nodes, tls_ports): (Vec<RedisServer>, Vec<u16>) = (0..3)
            .map(|_| {
                start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .unzip();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        (cluster, tls_ports)
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.client())
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Redis Cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn uri(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The seed node URIs.
    pub fn node_uris(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::uri).collect()
    }

    /// A cluster-aware synchronous client.
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClient::new(self.node_uris())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}
