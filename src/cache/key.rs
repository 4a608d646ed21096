//! Cache key formats.
//!
//! ```text
//! {prefix}:sessions:{preset}:{protocol}:{host}:{port}
//! {prefix}:sessions:{id}:{preset}:{protocol}:{host}:{port}
//! {prefix}:ech:{preset}:{host}:{port}
//! {prefix}:pool:[{id}:]{preset}:{protocol}:{host}:{port}
//! ```
//!
//! A session with a client certificate
//! ([`SessionBuilder::identity`](crate::SessionBuilder::identity)) writes
//! `{preset}@{fingerprint}` in the preset's place in `sessions` and `pool`
//! keys (the first 32 hex digits of the certificate's SHA-256): resuming
//! resumes the authentication, so those tickets belong to that certificate.
//!
//! A `pool` key holds the tickets of one origin under
//! [`TicketReuse::SingleUse`](crate::cache::TicketReuse), each to be taken
//! once; a `sessions` key holds the one ticket every replica shares.
//!
//! Every replica on the same preset must compute the same key for the same
//! origin, and no two origins may ever share one, so:
//!
//! - host names are lower-cased and lose trailing dots (DNS names are case
//!   insensitive, and TLS never sends the root dot);
//! - an IPv6 literal is written in its canonical form, in brackets
//!   (`[2001:db8::1]`), so `::1` and `0:0::1` share a key; an IP literal never
//!   shares a key with a host name;
//! - `port` is the real port, never a scheme default left implicit;
//! - in any other component `%`, `:`, `[` and `]` are percent-encoded
//!   (`%25`, `%3A`, `%5B`, `%5D`), so an identifier such as `tenant:7` cannot
//!   shift the other fields.
//!
//! This module is pure: it reads no clock and touches no I/O.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "h3fleet";

/// The wire protocol a session ticket was won on. Tickets never cross
/// protocols, so each has its own cache and its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 over TLS over TCP.
    H1,
    /// HTTP/2 over TLS over TCP.
    H2,
    /// HTTP/3 over QUIC.
    H3,
}

impl Protocol {
    /// The label used in keys and error reports: `h1`, `h2` or `h3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "h1",
            Self::H2 => "h2",
            Self::H3 => "h3",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "h1" => Ok(Self::H1),
            "h2" => Ok(Self::H2),
            "h3" => Ok(Self::H3),
            _ => Err(KeyError::new("protocol must be h1, h2 or h3")),
        }
    }
}

/// A key that does not have one of the formats of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cache key: {0}")]
pub struct KeyError(&'static str);

impl KeyError {
    fn new(what: &'static str) -> Self {
        Self(what)
    }
}

/// A key taken apart by [`KeyFormat::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedKey {
    /// A TLS session key.
    Session {
        /// The session identifier, if the key is namespaced by one.
        id: Option<String>,
        /// The preset's canonical name.
        preset: String,
        /// The protocol the ticket belongs to.
        protocol: Protocol,
        /// The host: a lower-case name, an IPv4 literal, or an IPv6 literal
        /// without brackets.
        host: String,
        /// The real port.
        port: u16,
    },
    /// An ECH config key.
    Ech {
        /// The preset's canonical name.
        preset: String,
        /// The host, as for sessions.
        host: String,
        /// The real port.
        port: u16,
    },
    /// The key of a ticket pool (single-use tickets): the fields of a
    /// session key.
    Pool {
        /// The session identifier, if the key is namespaced by one.
        id: Option<String>,
        /// The preset's canonical name.
        preset: String,
        /// The protocol the tickets belong to.
        protocol: Protocol,
        /// The host, as in [`ParsedKey::Session`].
        host: String,
        /// The real port.
        port: u16,
    },
}

impl ParsedKey {
    /// `ticket`, `pool` or `ech`: what the key holds.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Session { .. } => "ticket",
            Self::Pool { .. } => "pool",
            Self::Ech { .. } => "ech",
        }
    }

    /// The session identifier (none for an ECH key).
    pub fn identifier(&self) -> Option<&str> {
        match self {
            Self::Session { id, .. } | Self::Pool { id, .. } => id.as_deref(),
            Self::Ech { .. } => None,
        }
    }

    /// The preset's canonical name.
    pub fn preset(&self) -> &str {
        match self {
            Self::Session { preset, .. } | Self::Pool { preset, .. } | Self::Ech { preset, .. } => preset,
        }
    }

    /// The protocol (none for an ECH key: configs serve every protocol).
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            Self::Session { protocol, .. } | Self::Pool { protocol, .. } => Some(*protocol),
            Self::Ech { .. } => None,
        }
    }

    /// The host, as the key holds it.
    pub fn host(&self) -> &str {
        match self {
            Self::Session { host, .. } | Self::Pool { host, .. } | Self::Ech { host, .. } => host,
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            Self::Session { port, .. } | Self::Pool { port, .. } | Self::Ech { port, .. } => *port,
        }
    }
}

/// Builds and parses keys under one prefix.
///
/// # Example
///
/// ```
/// use h3fleet::cache::{KeyFormat, Protocol};
///
/// let keys = KeyFormat::default();
/// assert_eq!(
///     keys.session(Some("tenant:7"), "default", Protocol::H3, "Example.COM.", 443),
///     "h3fleet:sessions:tenant%3A7:default:h3:example.com:443"
/// );
/// assert_eq!(keys.ech("default", "::1", 8443), "h3fleet:ech:default:[::1]:8443");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }
}

impl KeyFormat {
    /// Keys under `prefix` instead of `h3fleet`. The prefix is written as
    /// given (it may contain `:`, as Redis namespaces often do).
    ///
    /// # Errors
    ///
    /// An empty prefix is rejected.
    pub fn with_prefix(prefix: impl Into<String>) -> Result<Self, KeyError> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(KeyError::new("the key prefix must not be empty"));
        }
        Ok(Self { prefix })
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of a TLS session. An empty identifier counts as none.
    pub fn session(
        &self,
        id: Option<&str>,
        preset: &str,
        protocol: Protocol,
        host: &str,
        port: u16,
    ) -> String {
        self.ticket_key("sessions", id, preset, protocol, host, port)
    }

    /// The key of the ticket pool of an origin, for
    /// [`TicketReuse::SingleUse`](crate::cache::TicketReuse): a session key
    /// with `pool` for `sessions`.
    pub fn pool(&self, id: Option<&str>, preset: &str, protocol: Protocol, host: &str, port: u16) -> String {
        self.ticket_key("pool", id, preset, protocol, host, port)
    }

    fn ticket_key(
        &self,
        kind: &str,
        id: Option<&str>,
        preset: &str,
        protocol: Protocol,
        host: &str,
        port: u16,
    ) -> String {
        let mut key = format!("{}:{kind}:", self.prefix);
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            push_encoded(&mut key, id);
            key.push(':');
        }
        push_encoded(&mut key, preset);
        key.push(':');
        key.push_str(protocol.as_str());
        push_origin(&mut key, host, port);
        key
    }

    /// The key of a host's ECH config.
    pub fn ech(&self, preset: &str, host: &str, port: u16) -> String {
        let mut key = format!("{}:ech:", self.prefix);
        push_encoded(&mut key, preset);
        push_origin(&mut key, host, port);
        key
    }

    /// Takes a key of this prefix apart. `parse` is the inverse of
    /// [`session`](Self::session) and [`ech`](Self::ech): for every key they
    /// write, formatting the parsed fields gives the same key back.
    ///
    /// # Errors
    ///
    /// Any key these methods could not have written.
    pub fn parse(&self, key: &str) -> Result<ParsedKey, KeyError> {
        let rest = key
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix(':'))
            .ok_or(KeyError::new("the key does not start with the prefix"))?;
        let (middle, host, port) = split_origin(rest)?;
        let fields: Vec<&str> = middle.split(':').collect();
        let (kind, id, preset, protocol) = match fields.as_slice() {
            ["ech", preset] => {
                let preset = decode(preset)?;
                return Ok(ParsedKey::Ech { preset, host, port });
            }
            [kind, preset, protocol] => (*kind, None, *preset, *protocol),
            [_, "", _, _] => {
                return Err(KeyError::new("an identifier must not be empty"));
            }
            [kind, id, preset, protocol] => (*kind, Some(decode(id)?), *preset, *protocol),
            _ => return Err(KeyError::new(EXPECTED)),
        };
        let (preset, protocol) = (decode(preset)?, protocol.parse()?);
        match kind {
            "sessions" => Ok(ParsedKey::Session {
                id,
                preset,
                protocol,
                host,
                port,
            }),
            "pool" => Ok(ParsedKey::Pool {
                id,
                preset,
                protocol,
                host,
                port,
            }),
            _ => Err(KeyError::new(EXPECTED)),
        }
    }
}

const EXPECTED: &str = "expected sessions:[id:]preset:protocol, pool:[id:]preset:protocol or ech:preset";

/// Appends `:{host}:{port}` with the host in canonical form.
fn push_origin(key: &mut String, host: &str, port: u16) {
    key.push(':');
    push_host(key, host);
    key.push(':');
    key.push_str(&port.to_string());
}

fn push_host(key: &mut String, host: &str) {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Some(v6) = canonical_ipv6(bare) {
        key.push('[');
        key.push_str(&v6);
        key.push(']');
        return;
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    push_encoded(key, &name);
}

/// `fe80::0:1%eth0` → `fe80::1%25eth0`; `None` if `text` is no IPv6 literal.
fn canonical_ipv6(text: &str) -> Option<String> {
    let (addr, zone) = match text.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (text, None),
    };
    let addr = Ipv6Addr::from_str(addr).ok()?;
    let mut out = addr.to_string();
    if let Some(zone) = zone {
        out.push_str("%25");
        push_encoded(&mut out, zone);
    }
    Some(out)
}

fn push_encoded(out: &mut String, component: &str) {
    for c in component.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            c => out.push(c),
        }
    }
}

fn decode(component: &str) -> Result<String, KeyError> {
    let mut out = String::with_capacity(component.len());
    let mut rest = component;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest
            .get(at..at + 3)
            .ok_or(KeyError::new("truncated percent escape"))?;
        out.push(match escape {
            "%25" => '%',
            "%3A" => ':',
            "%5B" => '[',
            "%5D" => ']',
            _ => return Err(KeyError::new("unexpected percent escape")),
        });
        rest = &rest[at + 3..];
    }
    if rest.contains(['[', ']']) {
        return Err(KeyError::new("unencoded bracket"));
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `...:{host}:{port}` from the right, keeping a bracketed host whole.
fn split_origin(rest: &str) -> Result<(&str, String, u16), KeyError> {
    let (before, port) = rest.rsplit_once(':').ok_or(KeyError::new("no port"))?;
    let port = parse_port(port)?;
    if let Some(inside) = before.strip_suffix(']') {
        let open = inside.rfind('[').ok_or(KeyError::new("unbalanced brackets"))?;
        let middle = inside[..open]
            .strip_suffix(':')
            .ok_or(KeyError::new("no field before the host"))?;
        let literal = &inside[open + 1..];
        let host = match literal.split_once("%25") {
            Some((addr, zone)) => format!("{addr}%{}", decode(zone)?),
            None => literal.to_owned(),
        };
        // Only the canonical form is ever written.
        if canonical_ipv6(&host).as_deref() != Some(literal) {
            return Err(KeyError::new("bracketed host is not a canonical IPv6 literal"));
        }
        return Ok((middle, host, port));
    }
    let (middle, host) = before.rsplit_once(':').ok_or(KeyError::new("no host"))?;
    let host = decode(host)?;
    let canonical = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || canonical != host || Ipv6Addr::from_str(&host).is_ok() {
        return Err(KeyError::new("host is empty or not in canonical form"));
    }
    Ok((middle, host, port))
}

fn parse_port(text: &str) -> Result<u16, KeyError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(KeyError::new("port is not a decimal number"));
    }
    text.parse().map_err(|_| KeyError::new("port out of range"))
}

/// `host:port` in the canonical form keys use, for in-memory maps.
pub(crate) fn canonical_origin(host: &str, port: u16) -> String {
    let mut out = String::with_capacity(host.len() + 6);
    push_host(&mut out, host);
    out.push(':');
    out.push_str(&port.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn keys() -> KeyFormat {
        KeyFormat::default()
    }

    #[test]
    fn session_key_without_identifier() {
        assert_eq!(
            keys().session(None, "default", Protocol::H3, "example.com", 443),
            "h3fleet:sessions:default:h3:example.com:443"
        );
    }

    #[test]
    fn empty_identifier_counts_as_none() {
        assert_eq!(
            keys().session(Some(""), "default", Protocol::H2, "example.com", 443),
            keys().session(None, "default", Protocol::H2, "example.com", 443)
        );
    }

    #[test]
    fn pool_key_is_the_session_key_with_pool_and_parses_back() {
        let key = keys().pool(Some("alice"), "default", Protocol::H3, "Example.COM.", 443);
        assert_eq!(key, "h3fleet:pool:alice:default:h3:example.com:443");
        assert_eq!(
            keys().parse(&key),
            Ok(ParsedKey::Pool {
                id: Some("alice".into()),
                preset: "default".into(),
                protocol: Protocol::H3,
                host: "example.com".into(),
                port: 443,
            })
        );
        assert!(keys().parse("h3fleet:pool::default:h3:a:1").is_err());
        assert!(keys().parse("h3fleet:other:default:h3:a:1").is_err());
    }

    #[test]
    fn session_key_with_identifier() {
        assert_eq!(
            keys().session(Some("alice"), "default", Protocol::H1, "example.com", 8443),
            "h3fleet:sessions:alice:default:h1:example.com:8443"
        );
    }

    #[test]
    fn identifier_with_colon_is_percent_encoded_and_parses_back() {
        let key = keys().session(Some("tenant:7%"), "default", Protocol::H3, "a.example", 443);
        assert_eq!(key, "h3fleet:sessions:tenant%3A7%25:default:h3:a.example:443");
        assert_eq!(
            keys().parse(&key),
            Ok(ParsedKey::Session {
                id: Some("tenant:7%".into()),
                preset: "default".into(),
                protocol: Protocol::H3,
                host: "a.example".into(),
                port: 443,
            })
        );
    }

    #[test]
    fn identifier_cannot_impersonate_other_fields() {
        let sneaky = keys().session(Some("default:h3"), "x", Protocol::H3, "a", 1);
        let plain = keys().session(None, "default", Protocol::H3, "a", 1);
        assert_ne!(sneaky, plain);
    }

    #[test]
    fn ech_key() {
        assert_eq!(
            keys().ech("default", "Example.com", 443),
            "h3fleet:ech:default:example.com:443"
        );
    }

    #[test]
    fn ipv6_host_is_bracketed_and_canonical() {
        assert_eq!(
            keys().session(None, "default", Protocol::H3, "2001:DB8:0:0::1", 443),
            "h3fleet:sessions:default:h3:[2001:db8::1]:443"
        );
        assert_eq!(
            keys().session(None, "default", Protocol::H3, "[::1]", 443),
            keys().session(None, "default", Protocol::H3, "0:0::1", 443)
        );
    }

    #[test]
    fn ipv6_zone_is_percent_encoded() {
        let key = keys().ech("default", "fe80::1%eth0", 443);
        assert_eq!(key, "h3fleet:ech:default:[fe80::1%25eth0]:443");
        assert_eq!(
            keys().parse(&key),
            Ok(ParsedKey::Ech {
                preset: "default".into(),
                host: "fe80::1%eth0".into(),
                port: 443
            })
        );
    }

    #[test]
    fn ip_literal_and_name_never_share_a_key() {
        let by_ip = keys().session(None, "default", Protocol::H3, "127.0.0.1", 443);
        let by_name = keys().session(None, "default", Protocol::H3, "localhost", 443);
        assert_ne!(by_ip, by_name);
    }

    #[test]
    fn port_is_the_real_port() {
        assert!(keys().ech("p", "h", 8443).ends_with(":h:8443"));
        assert!(keys().ech("p", "h", 443).ends_with(":h:443"));
    }

    #[test]
    fn custom_prefix_with_colon() {
        let fmt = KeyFormat::with_prefix("prod:edge").unwrap();
        let key = fmt.session(Some("bob"), "default", Protocol::H2, "h", 443);
        assert_eq!(key, "prod:edge:sessions:bob:default:h2:h:443");
        assert!(matches!(fmt.parse(&key), Ok(ParsedKey::Session { id: Some(id), .. }) if id == "bob"));
        assert!(KeyFormat::with_prefix("").is_err());
    }

    #[test]
    fn malformed_keys_are_errors() {
        let k = keys();
        for bad in [
            "",
            "h3fleet",
            "other:sessions:default:h3:h:443",
            "h3fleet:sessions:default:h4:h:443",
            "h3fleet:sessions:default:h3:h:",
            "h3fleet:sessions:default:h3:h:65536",
            "h3fleet:sessions:default:h3:h:0443",
            "h3fleet:sessions:default:h3:h:+443",
            "h3fleet:sessions:default:h3:H:443",
            "h3fleet:sessions:default:h3:[::0:1]:443",
            "h3fleet:sessions:default:h3:[zz]:443",
            "h3fleet:sessions:default:h3:::1]:443",
            "h3fleet:sessions::default:h3:h:443",
            "h3fleet:sessions:a%2:default:h3:h:443",
            "h3fleet:sessions:a%41:default:h3:h:443",
            "h3fleet:sessions:a:b:default:h3:h:443",
            "h3fleet:ech:default:h3:h:443",
            "h3fleet:sessions:default:h3::443",
        ] {
            assert!(k.parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:%\\[\\]._~-]{1,12}"
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9.-]{1,20}".prop_filter("not empty once trailing dots go", |h| {
                !h.trim_end_matches('.').is_empty()
            }),
            any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
            any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string()),
        ]
    }

    proptest! {
        #[test]
        fn session_keys_parse_back(id in proptest::option::of(component()), preset in component(),
                                   host in host(), port in any::<u16>(), proto in 0..3u8) {
            let protocol = [Protocol::H1, Protocol::H2, Protocol::H3][usize::from(proto)];
            let key = keys().session(id.as_deref(), &preset, protocol, &host, port);
            let parsed = keys().parse(&key).unwrap();
            let ParsedKey::Session { id: pid, preset: ppreset, protocol: pproto, host: phost, port: pport } = parsed else {
                panic!("not a session key");
            };
            prop_assert_eq!(keys().session(pid.as_deref(), &ppreset, pproto, &phost, pport), key);
            prop_assert_eq!(pid, id);
            prop_assert_eq!(ppreset, preset);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,60}") {
            let _ = keys().parse(&text);
        }
    }
}
