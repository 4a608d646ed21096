//! Hosts reached directly despite a proxy (`NO_PROXY`, curl's
//! `--noproxy`), with reqwest's rules.

use std::net::IpAddr;

/// A list of hosts a proxy is not used for, as reqwest's `NoProxy`.
///
/// Comma-separated entries: `*` (every host); an IP address, optionally
/// with a prefix length (`10.0.0.0/8`, `::1`); or a domain name, which
/// covers itself and every subdomain (`example.com` and `.example.com`
/// alike).
///
/// ```
/// use h3fleet::NoProxy;
///
/// let list = NoProxy::from_string("localhost, .internal.example, 10.0.0.0/8").unwrap();
/// assert!(list.matches("api.internal.example"));
/// assert!(list.matches("10.1.2.3"));
/// assert!(!list.matches("example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    domains: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl NoProxy {
    /// The list in `NO_PROXY` (or `no_proxy`); `None` if neither is set or
    /// the list is empty.
    pub fn from_env() -> Option<Self> {
        let value = std::env::var("NO_PROXY")
            .or_else(|_| std::env::var("no_proxy"))
            .ok()?;
        Self::from_string(&value)
    }

    /// Parses a list; `None` if it has no entry.
    pub fn from_string(list: &str) -> Option<Self> {
        let mut parsed = Self {
            all: false,
            domains: Vec::new(),
            nets: Vec::new(),
        };
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                parsed.all = true;
            } else if let Some(net) = parse_net(entry) {
                parsed.nets.push(net);
            } else {
                let domain = entry.trim_start_matches('.').trim_end_matches('.');
                parsed.domains.push(domain.to_ascii_lowercase());
            }
        }
        (parsed.all || !parsed.domains.is_empty() || !parsed.nets.is_empty()).then_some(parsed)
    }

    /// True if `host` (a name, or an IP literal with or without brackets)
    /// is reached directly.
    pub fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host[..host.len() - d.len()].ends_with('.'))
        })
    }
}

/// `ADDR` or `ADDR/BITS`.
fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let ip: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((ip, bits))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::NoProxy;

    #[test]
    fn domains_cover_their_subdomains_and_nothing_else() {
        let list = NoProxy::from_string("example.com").unwrap();
        assert!(list.matches("example.com") && list.matches("A.Example.com."));
        assert!(!list.matches("badexample.com") && !list.matches("example.org"));
    }

    #[test]
    fn addresses_and_ranges_match_ip_literals() {
        let list = NoProxy::from_string("10.0.0.0/8, ::1, 192.168.1.7").unwrap();
        assert!(list.matches("10.200.0.1") && list.matches("[::1]") && list.matches("192.168.1.7"));
        assert!(!list.matches("11.0.0.1") && !list.matches("192.168.1.8"));
        assert!(NoProxy::from_string("0.0.0.0/0").unwrap().matches("8.8.8.8"));
    }

    #[test]
    fn a_star_matches_everything_and_an_empty_list_is_none() {
        assert!(NoProxy::from_string(" * ").unwrap().matches("anything"));
        assert!(NoProxy::from_string(" , ").is_none());
    }
}
