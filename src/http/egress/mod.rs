//! Egress proxies: a session's TCP connections go out through an HTTP
//! CONNECT proxy ([`http_connect`], spoken in the clear or, to an
//! `https://` proxy, inside TLS: [`tunnel`]) or a SOCKS5 proxy
//! ([`socks5`]).
//!
//! An `https://` proxy's certificate is verified against the session's
//! roots (as reqwest does), under the proxy's host name; the proxy's TLS
//! keeps no session: its tickets would link nothing the fleet shares.
//!
//! Two rules come with a proxy:
//!
//! - **Tickets stay with their exit.** A ticket won through one proxy and
//!   resumed through another links the two exits (and carries one's
//!   reputation to the other), so the proxy ([`Proxy::namespace`]: scheme,
//!   host, port and user, never the password) is part of every ticket key
//!   the session writes. No identifier has to be set by hand.
//! - **No name leaks.** Through `socks5h://` and HTTP proxies the proxy
//!   resolves the target's name: h3fleet looks up neither its addresses nor
//!   its HTTPS record (ECH configs then come from the builder, this
//!   process's cache or the backend).
//!
//! HTTP/3 goes through a SOCKS5 proxy's UDP relay ([`socks5_udp`], UDP
//! ASSOCIATE). An HTTP proxy carries TCP only: through one, `Auto` speaks
//! TCP without a QUIC attempt and `Http3` fails with
//! [`Error::is_proxy`](crate::Error::is_proxy); so does a SOCKS5 proxy that
//! refuses UDP, at once, so `Auto` goes on over TCP.

mod http_connect;
mod no_proxy;
mod socks5;
mod socks5_udp;
mod tunnel;

pub use no_proxy::NoProxy;
pub(crate) use tunnel::Tunnel;

use std::fmt;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::eyeballs::{self, SocketOptions};
use crate::error::Error;
use crate::tls::TcpClientConfig;

/// How a proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `http://` (in the clear) or `https://` (inside TLS): HTTP CONNECT.
    HttpConnect { tls: bool },
    /// `socks5://` (names resolved here) or `socks5h://` (by the proxy).
    Socks5 { remote_dns: bool },
}

/// An egress proxy, as reqwest's `Proxy`: set one with
/// [`SessionBuilder::proxy`](crate::SessionBuilder::proxy).
///
/// ```
/// use h3fleet::Proxy;
///
/// let exit = Proxy::all("socks5h://fleet:secret@10.0.0.9:1080")?;
/// // The password is never shown.
/// assert_eq!(exit.to_string(), "socks5h://fleet@10.0.0.9:1080");
/// # Ok::<(), h3fleet::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: Kind,
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    /// Hosts reached directly.
    no_proxy: Option<NoProxy>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self})")
    }
}

/// Shown without its password, so errors and logs never carry it.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.namespace())
    }
}

impl Proxy {
    /// An HTTP CONNECT proxy: `http://[user:password@]host[:port]` (port
    /// 1080 if none, as curl; `Proxy-Authorization: Basic` with a user), or
    /// `https://...` (port 443 if none), spoken to inside TLS.
    ///
    /// # Errors
    ///
    /// Not such a URL.
    pub fn http(url: &str) -> Result<Self, Error> {
        Self::parse(url, &["http", "https"])
    }

    /// A SOCKS5 proxy: `socks5://` (target names resolved here) or
    /// `socks5h://` (resolved by the proxy), `[user:password@]host[:port]`
    /// (port 1080 if none; RFC 1929 authentication with a user).
    ///
    /// # Errors
    ///
    /// Not such a URL.
    pub fn socks5(url: &str) -> Result<Self, Error> {
        Self::parse(url, &["socks5", "socks5h"])
    }

    /// A proxy of the kind its URL's scheme names (`http`, `https`,
    /// `socks5`, `socks5h`), as reqwest's `Proxy::all`.
    ///
    /// # Errors
    ///
    /// An unknown scheme, or not a proxy URL.
    pub fn all(url: &str) -> Result<Self, Error> {
        Self::parse(url, &["http", "https", "socks5", "socks5h"])
    }

    fn parse(raw: &str, schemes: &[&str]) -> Result<Self, Error> {
        // The message never repeats the URL: it may hold a password.
        let invalid = |why: &str| Error::Config(format!("proxy URL: {why}"));
        let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        let kind = match url.scheme() {
            s if !schemes.contains(&s) => {
                return Err(invalid(&format!(
                    "the scheme must be one of {}",
                    schemes.join(", ")
                )))
            }
            "http" => Kind::HttpConnect { tls: false },
            "https" => Kind::HttpConnect { tls: true },
            "socks5" => Kind::Socks5 { remote_dns: false },
            _ => Kind::Socks5 { remote_dns: true },
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?
            .to_owned();
        if url.path() != "/" && !url.path().is_empty() {
            return Err(invalid("a proxy URL has no path"));
        }
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| invalid("the user or password is not valid percent-encoded UTF-8"))
        };
        let user = match url.username() {
            "" => None,
            user => Some(decode(user)?),
        };
        let password = url.password().map(decode).transpose()?;
        Ok(Self {
            kind,
            host,
            port: explicit_port(raw, &url).unwrap_or(match kind {
                Kind::HttpConnect { tls: true } => 443,
                _ => 1080,
            }),
            user,
            password,
            no_proxy: None,
        })
    }

    /// The proxy the environment names for HTTPS, as curl and reqwest read
    /// it: `HTTPS_PROXY` (or `https_proxy`), else `ALL_PROXY` (or
    /// `all_proxy`), with the hosts of `NO_PROXY` (or `no_proxy`) reached
    /// directly. `None` if none is set; a value that is not a proxy URL is
    /// skipped with a warning (never echoed: it may hold a password).
    pub fn from_env() -> Option<Self> {
        let names = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
        let (name, value) = names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()).map(|v| (*n, v)))?;
        match Self::all(&value) {
            Ok(proxy) => Some(proxy.no_proxy(NoProxy::from_env())),
            Err(e) => {
                tracing::warn!(variable = name, error = %e, "ignoring a proxy variable that is not a proxy URL");
                None
            }
        }
    }

    /// Hosts to reach directly, not through this proxy, as reqwest's
    /// `Proxy::no_proxy`.
    pub fn no_proxy(mut self, hosts: Option<NoProxy>) -> Self {
        self.no_proxy = hosts;
        self
    }

    /// True if connections to `host` go through this proxy.
    pub(crate) fn applies_to(&self, host: &str) -> bool {
        !self.no_proxy.as_ref().is_some_and(|n| n.matches(host))
    }

    /// What the proxy is, for ticket keys, errors and logs: scheme, user,
    /// host and port, never the password.
    pub fn namespace(&self) -> String {
        let scheme = match self.kind {
            Kind::HttpConnect { tls: false } => "http",
            Kind::HttpConnect { tls: true } => "https",
            Kind::Socks5 { remote_dns: false } => "socks5",
            Kind::Socks5 { remote_dns: true } => "socks5h",
        };
        let user = self.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{scheme}://{user}{}:{}", self.host, self.port)
    }

    /// The proxy resolves target names: h3fleet must look none up.
    pub(crate) fn resolves_names(&self) -> bool {
        !matches!(self.kind, Kind::Socks5 { remote_dns: false })
    }

    /// The proxy is spoken to inside TLS (`https://`).
    pub(crate) fn speaks_tls(&self) -> bool {
        self.kind == Kind::HttpConnect { tls: true }
    }

    /// The proxy can relay UDP, so HTTP/3 may go through it.
    pub(crate) fn carries_udp(&self) -> bool {
        matches!(self.kind, Kind::Socks5 { .. })
    }

    /// A TCP connection to the proxy itself.
    async fn dial(&self, socket: &SocketOptions) -> Result<TcpStream, Error> {
        let proxy_addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.error(format!("cannot resolve the proxy: {e}"), None))?
            .collect::<Vec<_>>();
        let origin = format!("{}:{}", self.host, self.port);
        eyeballs::connect(&origin, &proxy_addrs, socket, eyeballs::STAGGER)
            .await
            .map_err(|e| self.error(format!("cannot connect to the proxy: {e}"), None))
    }

    /// A QUIC endpoint for one connection to `host:port` (or to `addr`,
    /// when names are resolved here) whose datagrams go through the
    /// proxy's UDP relay, the address to give quinn for the origin, and
    /// the relay's (the connection's far end as reports show it).
    pub(crate) async fn quic_endpoint(
        &self,
        host: &str,
        port: u16,
        addr: SocketAddr,
        socket: &SocketOptions,
    ) -> Result<(quinn::Endpoint, SocketAddr, Option<SocketAddr>), Error> {
        let Kind::Socks5 { remote_dns } = self.kind else {
            return Err(self.error(
                "HTTP/3 cannot go through an HTTP proxy (it carries TCP only)",
                None,
            ));
        };
        let control = self.dial(socket).await?;
        let host = super::connect::server_name(host);
        let addr = (!remote_dns).then_some(addr);
        let relayed = socks5_udp::RelayedSocket::associate(self, control, host, port, addr).await?;
        let relay = relayed.relay();
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            std::sync::Arc::new(relayed),
            std::sync::Arc::new(quinn::TokioRuntime),
        )
        .map_err(Error::Socket)?;
        Ok((endpoint, socks5_udp::placeholder(port), Some(relay)))
    }

    /// Where quinn is told a name-resolving proxy's origin is.
    pub(crate) fn quic_placeholder(port: u16) -> SocketAddr {
        socks5_udp::placeholder(port)
    }

    fn error(&self, reason: impl Into<String>, reply: Option<u16>) -> Error {
        Error::Proxy {
            proxy: self.namespace(),
            reason: reason.into(),
            reply,
        }
    }

    /// A connection to `host:port` (or, when names are resolved here, to
    /// the first of `addrs` the proxy reaches) through the proxy, ready
    /// for the origin's TLS. `tls` speaks to an `https://` proxy.
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
        addrs: &[SocketAddr],
        socket: &SocketOptions,
        tls: Option<&TcpClientConfig>,
    ) -> Result<Tunnel, Error> {
        let mut tcp = self.dial(socket).await?;
        let host = super::connect::server_name(host);
        let tunnel = match self.kind {
            Kind::HttpConnect { tls: false } => {
                http_connect::tunnel(self, &mut tcp, host, port).await?;
                Tunnel::Tcp(tcp)
            }
            Kind::HttpConnect { tls: true } => {
                let tls = tls.ok_or_else(|| self.error("no TLS configuration for an https proxy", None))?;
                let mut stream = self.handshake(tls, tcp).await?;
                http_connect::tunnel(self, &mut stream, host, port).await?;
                Tunnel::Tls(Box::new(stream))
            }
            Kind::Socks5 { remote_dns: true } => {
                socks5::connect(self, &mut tcp, socks5::Target::Name(host, port)).await?;
                Tunnel::Tcp(tcp)
            }
            Kind::Socks5 { remote_dns: false } => {
                let addr = addrs
                    .first()
                    .ok_or_else(|| self.error(format!("no address for {host}"), None))?;
                socks5::connect(self, &mut tcp, socks5::Target::Addr(*addr)).await?;
                Tunnel::Tcp(tcp)
            }
        };
        tracing::debug!(proxy = %self, %host, port, "tunnel through the proxy open");
        Ok(tunnel)
    }

    /// TLS to an `https://` proxy: its certificate verified for its host
    /// name; no session offered or kept.
    async fn handshake(
        &self,
        tls: &TcpClientConfig,
        tcp: TcpStream,
    ) -> Result<crate::tls::early_data::EarlyDataStream<TcpStream>, Error> {
        let options = crate::tls::ConnectOptions {
            resume: None,
            sink: None,
            early_data: None,
            report: std::sync::Arc::default(),
            ech: crate::tls::EchOffer::None,
            ech_rejection: std::sync::Arc::default(),
            alpn: &[b"http/1.1"],
        };
        let host = super::connect::server_name(&self.host);
        tls.connect(host, tcp, options)
            .await
            .map_err(|e| self.error(format!("TLS with the proxy failed: {e}"), None))
    }
}

/// The port the URL names, also when it is its scheme's default (which
/// `url` elides: `http://proxy:80` must not become port 1080).
fn explicit_port(raw: &str, url: &url::Url) -> Option<u16> {
    url.port().or_else(|| {
        let default = url.port_or_known_default()?;
        let authority = raw.split_once("://")?.1.split(['/', '?', '#']).next()?;
        authority.ends_with(&format!(":{default}")).then_some(default)
    })
}

/// `%XX` escapes decoded, if they make UTF-8 (a URL's user and password
/// are kept percent-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_show_the_password() {
        let p = Proxy::all("socks5h://us%40r:p%3Ass@proxy.example:9050").unwrap();
        assert_eq!(
            (p.user.as_deref(), p.password.as_deref()),
            (Some("us@r"), Some("p:ss"))
        );
        assert_eq!(p.namespace(), "socks5h://us@r@proxy.example:9050");
        assert!(!format!("{p:?} {p}").contains("p:ss"));
        assert!(p.resolves_names());
        let http = Proxy::http("http://10.0.0.1").unwrap();
        assert_eq!((http.port, http.resolves_names()), (1080, true));
        assert!(!Proxy::socks5("socks5://h:1").unwrap().resolves_names());
    }

    #[test]
    fn a_proxy_port_is_the_one_named_even_when_it_is_the_schemes_default() {
        let port = |url: &str| Proxy::all(url).unwrap().port;
        assert_eq!(port("http://proxy:80"), 80);
        assert_eq!(port("http://u:p@proxy:80/"), 80);
        assert_eq!(port("http://proxy"), 1080);
        assert_eq!(port("https://proxy"), 443);
        assert_eq!(port("https://proxy:8443"), 8443);
        let tls = Proxy::http("https://proxy").unwrap();
        assert_eq!(tls.to_string(), "https://proxy:443");
        assert!(tls.resolves_names() && !tls.carries_udp());
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_echoing_them() {
        for bad in ["ftp://h:1", "http://", "socks5://u:secret@h:1/path", "not a url"] {
            let e = Proxy::all(bad).unwrap_err();
            assert!(e.is_builder() && !e.to_string().contains("secret"), "{bad}: {e}");
        }
        assert!(Proxy::http("socks5://h:1").is_err());
    }
}
