//! Address lookups: `--resolve`-style overrides first, then A/AAAA records
//! through hickory-resolver (the system's configuration, or one chosen
//! server).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use tokio::sync::OnceCell;

/// Why a name could not be turned into addresses.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system DNS configuration ({0}); pass a DNS server or a --resolve override")]
    Config(String),
    /// The lookup failed or found nothing.
    #[error("no address for {host}: {reason}")]
    NotFound {
        /// The name looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

/// Where lookups go.
#[derive(Debug, Clone, Default)]
pub(crate) enum Upstream {
    /// The system's configuration (`/etc/resolv.conf`, hosts file).
    #[default]
    System,
    /// One DNS server, over UDP and TCP.
    Server(SocketAddr),
}

/// Resolves host names for connections.
#[derive(Clone)]
pub(crate) struct Resolver {
    overrides: Arc<HashMap<(String, u16), Vec<IpAddr>>>,
    upstream: Upstream,
    resolver: Arc<OnceCell<TokioResolver>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("overrides", &self.overrides.len())
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Resolver {
    pub(crate) fn new(upstream: Upstream, overrides: HashMap<(String, u16), Vec<IpAddr>>) -> Self {
        Self {
            overrides: Arc::new(overrides),
            upstream,
            resolver: Arc::new(OnceCell::new()),
        }
    }

    /// The addresses for `host:port`, overrides and IP literals first.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Some(ips) = self.overrides.get(&(bare.to_ascii_lowercase(), port)) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let resolver = self.resolver.get_or_try_init(|| async { self.build() }).await?;
        let found = resolver.lookup_ip(bare).await.map_err(|e| DnsError::NotFound {
            host: bare.to_owned(),
            reason: e.to_string(),
        })?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(DnsError::NotFound {
                host: bare.to_owned(),
                reason: "no A or AAAA records".to_owned(),
            });
        }
        tracing::debug!(host = bare, ?addrs, "resolved");
        Ok(addrs)
    }

    /// The hickory resolver, built on first use.
    pub(crate) async fn hickory(&self) -> Result<&TokioResolver, DnsError> {
        self.resolver.get_or_try_init(|| async { self.build() }).await
    }

    /// True if `host:port` has a `--resolve`-style override: then DNS is
    /// not asked about it at all (not even for its HTTPS record).
    pub(crate) fn is_overridden(&self, host: &str, port: u16) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.overrides.contains_key(&(bare.to_ascii_lowercase(), port))
    }

    fn build(&self) -> Result<TokioResolver, DnsError> {
        let provider = TokioConnectionProvider::default();
        match &self.upstream {
            Upstream::System => TokioResolver::builder(provider)
                .map(|b| b.build())
                .map_err(|e| DnsError::Config(e.to_string())),
            Upstream::Server(addr) => {
                let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                Ok(TokioResolver::builder_with_config(config, provider).build())
            }
        }
    }
}

/// Parses a curl-style `HOST:PORT:ADDR` override (`ADDR` may be a
/// bracketed IPv6 literal, or several addresses separated by commas).
pub(crate) fn parse_override(spec: &str) -> Option<((String, u16), Vec<IpAddr>)> {
    let (host, rest) = spec.split_once(':')?;
    let (port, addrs) = rest.split_once(':')?;
    let port = port.parse().ok()?;
    let ips = addrs
        .split(',')
        .map(|a| {
            a.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .collect::<Option<Vec<IpAddr>>>()?;
    if host.is_empty() || ips.is_empty() {
        return None;
    }
    Some(((host.to_ascii_lowercase(), port), ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_parses_like_curl() {
        let ((host, port), ips) = parse_override("Example.com:443:127.0.0.1").unwrap();
        assert_eq!((host.as_str(), port), ("example.com", 443));
        assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let (_, ips) = parse_override("h:8443:[::1],127.0.0.2").unwrap();
        assert_eq!(ips.len(), 2);
        assert!(parse_override("h:443").is_none());
        assert!(parse_override("h:x:127.0.0.1").is_none());
        assert!(parse_override(":443:127.0.0.1").is_none());
        assert!(parse_override("h:443:not-an-ip").is_none());
    }

    #[tokio::test]
    async fn overrides_and_literals_need_no_dns() {
        let (key, ips) = parse_override("origin.test:443:127.0.0.9").unwrap();
        let r = Resolver::new(
            Upstream::Server("127.0.0.1:9".parse().unwrap()),
            HashMap::from([(key, ips)]),
        );
        assert_eq!(
            r.resolve("ORIGIN.test", 443).await.unwrap(),
            vec!["127.0.0.9:443".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("[::1]", 8443).await.unwrap(),
            vec!["[::1]:8443".parse().unwrap()]
        );
    }
}
