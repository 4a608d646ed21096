//! Real egress proxies for the proxy tests: Dante (`danted`, SOCKS5) and
//! tinyproxy (HTTP CONNECT), each on a free loopback port with a config
//! written here, stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require_binary};

/// The address Dante's relayed connections and datagrams leave from, so an
/// origin can tell them from a direct client's (which come from
/// 127.0.0.1).
pub const DANTE_EXIT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// The address tinyproxy's tunnels leave from.
pub const TINYPROXY_EXIT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 3);

/// A proxy process and the port it listens on.
pub struct ProxyProcess {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    fn spawn(mut command: Command, port: u16, dir: tempfile::TempDir, what: &str) -> Self {
        // Its own process group: danted forks helpers, and all of them go.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let proxy = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(proxy._dir.path().join("log")).unwrap_or_default();
        panic!("{what} did not listen on port {port}:\n{log}");
    }

    /// Dante as a SOCKS5 proxy without authentication. With `hosts`, it
    /// resolves names from that `/etc/hosts` text (bind-mounted in a mount
    /// namespace of its own), so a test can name origins only it knows.
    /// Its outgoing connections and datagrams leave from [`DANTE_EXIT`].
    pub fn dante(hosts: Option<&str>) -> Self {
        Self::dante_with(hosts, "connect udpassociate udpreply", None)
    }

    /// Dante relaying TCP only: UDP ASSOCIATE is refused.
    #[allow(dead_code)]
    pub fn dante_without_udp() -> Self {
        Self::dante_with(None, "connect", None)
    }

    /// Dante asking for RFC 1929 user and password: `user` with the
    /// password whose crypt(3) hash is `hash`, as a system account seen
    /// only by Dante (its `passwd` and `shadow` bind-mounted).
    #[allow(dead_code)]
    pub fn dante_with_account(user: &str, hash: &str) -> Self {
        Self::dante_with(None, "connect udpassociate udpreply", Some((user, hash)))
    }

    fn dante_with(hosts: Option<&str>, commands: &str, account: Option<(&str, &str)>) -> Self {
        let danted = require_binary("danted", "dante-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(None);
        let conf = dir.path().join("danted.conf");
        let method = if account.is_some() { "username" } else { "none" };
        std::fs::write(
            &conf,
            format!(
                "logoutput: stderr\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: {DANTE_EXIT}\n\
                 clientmethod: none\n\
                 socksmethod: {method}\n\
                 user.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: {commands} }}\n"
            ),
        )
        .unwrap();
        let mut mounts = Vec::new();
        if let Some(hosts) = hosts {
            mounts.push((dir.path().join("hosts"), hosts.to_owned(), "/etc/hosts"));
        }
        if let Some((user, hash)) = account {
            let system = |path: &str| std::fs::read_to_string(path).unwrap();
            let passwd = format!(
                "{}{user}:x:4242:4242::/nonexistent:/usr/sbin/nologin\n",
                system("/etc/passwd")
            );
            let shadow = format!("{}{user}:{hash}:19000:0:99999:7:::\n", system("/etc/shadow"));
            mounts.push((dir.path().join("passwd"), passwd, "/etc/passwd"));
            mounts.push((dir.path().join("shadow"), shadow, "/etc/shadow"));
        }
        let command = if mounts.is_empty() {
            let mut c = Command::new(danted);
            c.arg("-f").arg(&conf);
            c
        } else {
            // Each file over the system's, seen only in Dante's own mount
            // namespace.
            let unshare = require_binary("unshare", "util-linux");
            let mut script = String::new();
            let mut c = Command::new(unshare);
            c.args(["-m", "sh", "-c"]);
            let mut args = Vec::new();
            for (i, (file, text, target)) in mounts.iter().enumerate() {
                std::fs::write(file, text).unwrap();
                script.push_str(&format!("mount --bind \"${}\" {target} && ", i + 3));
                args.push(file.clone());
            }
            script.push_str("exec \"$1\" -f \"$2\"");
            c.arg(script).arg("sh").arg(&danted).arg(&conf).args(args);
            c
        };
        Self::spawn(command, port, dir, "danted")
    }

    /// tinyproxy as an HTTP CONNECT proxy (any port), asking for
    /// `user:password` with Basic authentication if given.
    pub fn tinyproxy(basic_auth: Option<(&str, &str)>) -> Self {
        let tinyproxy = require_binary("tinyproxy", "tinyproxy");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(None);
        let conf = dir.path().join("tinyproxy.conf");
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\nBind {TINYPROXY_EXIT}\nDisableViaHeader Yes\nLogLevel Info\n"
        );
        if let Some((user, password)) = basic_auth {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let mut command = Command::new(tinyproxy);
        command.arg("-d").arg("-c").arg(&conf);
        Self::spawn(command, port, dir, "tinyproxy")
    }

    /// stunnel as TLS in front of the local `port` (a TLS proxy's front
    /// end), with `cert_pem` and `key_pem` as its certificate.
    #[allow(dead_code)]
    pub fn stunnel(port: u16, cert_pem: &str, key_pem: &str) -> Self {
        let stunnel = require_binary("stunnel4", "stunnel4");
        let dir = tempfile::tempdir().unwrap();
        let listen = free_port(None);
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let conf = dir.path().join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\ndebug = notice\n[proxy]\naccept = 127.0.0.1:{listen}\n\
                 connect = 127.0.0.1:{port}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut command = Command::new(stunnel);
        command.arg(&conf);
        Self::spawn(command, listen, dir, "stunnel")
    }

    /// The log it wrote so far.
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
