//! Real egress proxies for the proxy tests: Dante (`danted`, SOCKS5) and
//! tinyproxy (HTTP CONNECT), each on a free loopback port with a config
//! written here, stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require_binary};

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
    pub fn dante(hosts: Option<&str>) -> Self {
        Self::dante_with(hosts, "connect udpassociate udpreply")
    }

    /// Dante relaying TCP only: UDP ASSOCIATE is refused.
    #[allow(dead_code)]
    pub fn dante_without_udp() -> Self {
        Self::dante_with(None, "connect")
    }

    fn dante_with(hosts: Option<&str>, commands: &str) -> Self {
        let danted = require_binary("danted", "dante-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port(None);
        let conf = dir.path().join("danted.conf");
        std::fs::write(
            &conf,
            format!(
                "logoutput: stderr\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: 127.0.0.1\n\
                 clientmethod: none\n\
                 socksmethod: none\n\
                 user.privileged: root\n\
                 user.unprivileged: nobody\n\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: {commands} }}\n"
            ),
        )
        .unwrap();
        let command = match hosts {
            None => {
                let mut c = Command::new(danted);
                c.arg("-f").arg(&conf);
                c
            }
            Some(hosts) => {
                let file = dir.path().join("hosts");
                std::fs::write(&file, hosts).unwrap();
                let unshare = require_binary("unshare", "util-linux");
                let mut c = Command::new(unshare);
                c.args([
                    "-m",
                    "sh",
                    "-c",
                    "mount --bind \"$1\" /etc/hosts && exec \"$2\" -f \"$3\"",
                    "sh",
                ])
                .arg(&file)
                .arg(&danted)
                .arg(&conf);
                c
            }
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
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\nDisableViaHeader Yes\nLogLevel Info\n"
        );
        if let Some((user, password)) = basic_auth {
            text.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let mut command = Command::new(tinyproxy);
        command.arg("-d").arg("-c").arg(&conf);
        Self::spawn(command, port, dir, "tinyproxy")
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
