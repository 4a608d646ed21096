//! Protocol selection per origin: what a session has learned about which
//! origins speak HTTP/3 (an `Alt-Svc` header, a DNS HTTPS record's `alpn`,
//! a race won by QUIC) or do not (a race QUIC lost), each fact with an
//! expiry.

use std::time::Duration;

use super::HttpProtocol;
use crate::cache::Protocol;
use crate::expiring::ExpiringMap;

/// The longest an advertisement or a race result is believed.
pub(crate) const MAX_BELIEF: Duration = Duration::from_secs(24 * 3600);
/// How long a race won by QUIC is remembered.
const QUIC_WON_FOR: Duration = Duration::from_secs(3600);
/// How long an origin whose QUIC lost the race is reached over TCP only
/// (then QUIC gets another chance).
const TCP_WON_FOR: Duration = Duration::from_secs(300);
/// `ma` when an `Alt-Svc` entry gives none (RFC 7838 §3.1).
const DEFAULT_MAX_AGE: u64 = 86_400;

/// What is known about one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// It speaks HTTP/3 on `port` (of the same host).
    H3 { port: u16 },
    /// Reach it over TCP. `quic_broken`: QUIC was expected to work and did
    /// not, so `Alt-Svc` advertisements are not believed for a while.
    Tcp { quic_broken: bool },
}

/// The most origins a session remembers protocols for; past it the belief
/// closest to expiring goes first.
const MAX_ORIGINS: usize = 4096;

/// What a session knows about its origins' protocols.
#[derive(Debug)]
pub(crate) struct ProtocolMemory {
    origins: ExpiringMap<(String, u16), Known>,
}

impl Default for ProtocolMemory {
    fn default() -> Self {
        Self {
            origins: ExpiringMap::new(MAX_ORIGINS),
        }
    }
}

impl ProtocolMemory {
    /// What is known about `host:port`, if it has not expired.
    pub(crate) fn get(&self, host: &str, port: u16) -> Option<Known> {
        self.origins.get(&(host.to_owned(), port))
    }

    fn set(&self, host: &str, port: u16, known: Known, lasting: Duration) {
        self.origins
            .insert((host.to_owned(), port), known, lasting.min(MAX_BELIEF));
    }

    /// A TCP response from `host:port` carried `Alt-Svc` `header`.
    pub(crate) fn advertised(&self, host: &str, port: u16, header: &str) {
        match parse_alt_svc(header) {
            AltSvc::Clear => {
                if matches!(self.get(host, port), Some(Known::H3 { .. })) {
                    self.origins.remove(&(host.to_owned(), port));
                }
            }
            AltSvc::H3 {
                port: h3_port,
                max_age,
            } => {
                if matches!(self.get(host, port), Some(Known::Tcp { quic_broken: true })) {
                    return;
                }
                self.set(host, port, Known::H3 { port: h3_port }, max_age);
            }
            AltSvc::Nothing => {}
        }
    }

    /// The origin's DNS HTTPS record lists `h3` in its `alpn` (at `h3_port`),
    /// valid for `ttl`.
    pub(crate) fn https_record_says_h3(&self, host: &str, port: u16, h3_port: u16, ttl: Duration) {
        if !matches!(self.get(host, port), Some(Known::Tcp { quic_broken: true })) {
            self.set(host, port, Known::H3 { port: h3_port }, ttl);
        }
    }

    /// The origin's DNS HTTPS record lists protocols without `h3`: it does
    /// not speak HTTP/3 there, so no QUIC attempt is made for `ttl`.
    pub(crate) fn https_record_says_tcp(&self, host: &str, port: u16, ttl: Duration) {
        if self.get(host, port).is_none() {
            self.set(host, port, Known::Tcp { quic_broken: false }, ttl);
        }
    }

    /// QUIC completed its handshake first.
    pub(crate) fn quic_won(&self, host: &str, port: u16, h3_port: u16) {
        // An advertisement lasts as long as it said; a race result an hour.
        if !matches!(self.get(host, port), Some(Known::H3 { .. })) {
            self.set(host, port, Known::H3 { port: h3_port }, QUIC_WON_FOR);
        }
    }

    /// TCP won (QUIC failed or was too slow). `quic_was_expected`: the
    /// origin was believed to speak HTTP/3.
    pub(crate) fn tcp_won(&self, host: &str, port: u16, quic_was_expected: bool) {
        self.set(
            host,
            port,
            Known::Tcp {
                quic_broken: quic_was_expected,
            },
            TCP_WON_FOR,
        );
    }
}

/// How one request reaches its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Open connections to reuse, by protocol, in order of preference.
    pub(crate) pooled: &'static [Protocol],
    pub(crate) open: Open,
}

/// How a new connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    H3,
    Tcp,
    /// QUIC to `h3_port` first, TCP after the head start or QUIC's failure.
    /// `expected`: the origin was believed to speak HTTP/3.
    Race {
        h3_port: u16,
        expected: bool,
    },
}

impl Open {
    /// The protocol under which requests wait for this connection.
    pub(crate) fn lead_protocol(self) -> Protocol {
        match self {
            Self::H3 | Self::Race { .. } => Protocol::H3,
            Self::Tcp => Protocol::H2,
        }
    }
}

/// How a request to `host:port` goes, from the mode and what `memory`
/// knows about the origin.
pub(crate) fn plan(mode: HttpProtocol, memory: &ProtocolMemory, host: &str, port: u16) -> Plan {
    use Protocol::{H1, H2, H3};
    let (pooled, open): (&'static [Protocol], Open) = match mode {
        HttpProtocol::Http3 => (&[H3], Open::H3),
        // A server without HTTP/2 answers in HTTP/1.1.
        HttpProtocol::Http2 => (&[H2, H1], Open::Tcp),
        HttpProtocol::Http1 => (&[H1], Open::Tcp),
        HttpProtocol::Auto => match memory.get(host, port) {
            Some(Known::Tcp { .. }) => (&[H3, H2, H1], Open::Tcp),
            // Known to speak HTTP/3 (perhaps newly advertised while a TCP
            // connection is open): use it.
            Some(Known::H3 { port: h3_port }) => (
                &[H3],
                Open::Race {
                    h3_port,
                    expected: true,
                },
            ),
            None => (
                &[H3, H2, H1],
                Open::Race {
                    h3_port: port,
                    expected: false,
                },
            ),
        },
    };
    Plan { pooled, open }
}

impl Plan {
    /// TCP only (HTTP/2, else HTTP/1.1): no QUIC attempt at all.
    pub(crate) fn tcp_only() -> Self {
        Self {
            pooled: &[Protocol::H2, Protocol::H1],
            open: Open::Tcp,
        }
    }

    /// The plan for a request that must go over `required`: only open
    /// connections of exactly that protocol carry it.
    pub(crate) fn requiring(mut self, required: HttpProtocol) -> Self {
        use Protocol::{H1, H2, H3};
        self.pooled = match required {
            HttpProtocol::Http3 => &[H3],
            HttpProtocol::Http2 => &[H2],
            HttpProtocol::Http1 => &[H1],
            HttpProtocol::Auto => self.pooled,
        };
        self
    }
}

/// What an `Alt-Svc` header value says about HTTP/3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AltSvc {
    /// `clear`: forget every alternative.
    Clear,
    /// HTTP/3 on this host, at `port`.
    H3 { port: u16, max_age: Duration },
    /// Nothing usable (other protocols, other hosts, a malformed value).
    Nothing,
}

/// Reads an `Alt-Svc` value (RFC 7838): the first `h3` alternative on the
/// same host (empty host part), with its `ma`. Alternatives on other hosts
/// are not used.
pub(crate) fn parse_alt_svc(value: &str) -> AltSvc {
    if value.trim().eq_ignore_ascii_case("clear") {
        return AltSvc::Clear;
    }
    for alternative in value.split(',') {
        let mut parts = alternative.split(';').map(str::trim);
        let Some((protocol, authority)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        if protocol.trim() != "h3" {
            continue;
        }
        let authority = authority.trim().trim_matches('"');
        let Some((host, port)) = authority.rsplit_once(':') else {
            continue;
        };
        if !host.is_empty() {
            continue;
        }
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let mut max_age = DEFAULT_MAX_AGE;
        for parameter in parts {
            if let Some(("ma", v)) = parameter.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                match v.trim_matches('"').parse::<u64>() {
                    Ok(v) => max_age = v,
                    Err(_) => return AltSvc::Nothing,
                }
            }
        }
        return AltSvc::H3 {
            port,
            max_age: Duration::from_secs(max_age),
        };
    }
    AltSvc::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_svc_values_are_read_as_rfc_7838_says() {
        assert_eq!(
            parse_alt_svc(r#"h3=":8443"; ma=3600"#),
            AltSvc::H3 {
                port: 8443,
                max_age: Duration::from_secs(3600)
            }
        );
        assert_eq!(
            parse_alt_svc(r#"h3-29=":443", h3=":443""#),
            AltSvc::H3 {
                port: 443,
                max_age: Duration::from_secs(86_400)
            }
        );
        assert_eq!(parse_alt_svc("clear"), AltSvc::Clear);
        assert_eq!(parse_alt_svc(r#"h3="other.example:443""#), AltSvc::Nothing);
        assert_eq!(parse_alt_svc(r#"h2=":443""#), AltSvc::Nothing);
        for garbage in [
            "",
            "h3",
            "h3=",
            r#"h3=":""#,
            r#"h3=":99999""#,
            r#"h3=":443"; ma=soon"#,
            "=,;\"",
        ] {
            assert_eq!(parse_alt_svc(garbage), AltSvc::Nothing, "{garbage:?}");
        }
    }

    #[test]
    fn an_advertisement_is_believed_unless_quic_just_failed() {
        let memory = ProtocolMemory::default();
        assert_eq!(memory.get("a.test", 443), None);
        memory.tcp_won("a.test", 443, false);
        memory.advertised("a.test", 443, r#"h3=":4433""#);
        assert_eq!(memory.get("a.test", 443), Some(Known::H3 { port: 4433 }));
        memory.tcp_won("a.test", 443, true);
        memory.advertised("a.test", 443, r#"h3=":4433""#);
        assert_eq!(memory.get("a.test", 443), Some(Known::Tcp { quic_broken: true }));
        // Another origin is another story.
        assert_eq!(memory.get("a.test", 8443), None);
    }

    #[test]
    fn an_https_record_with_h3_is_believed_for_its_ttl() {
        let memory = ProtocolMemory::default();
        memory.https_record_says_h3("a.test", 443, 443, Duration::from_secs(60));
        assert_eq!(memory.get("a.test", 443), Some(Known::H3 { port: 443 }));
        memory.tcp_won("b.test", 443, true);
        memory.https_record_says_h3("b.test", 443, 443, Duration::from_secs(60));
        assert_eq!(memory.get("b.test", 443), Some(Known::Tcp { quic_broken: true }));
    }

    #[test]
    fn beliefs_expire() {
        let memory = ProtocolMemory::default();
        memory.advertised("a.test", 443, r#"h3=":443"; ma=0"#);
        assert_eq!(memory.get("a.test", 443), None);
        memory.advertised("a.test", 443, r#"h3=":443""#);
        memory.advertised("a.test", 443, "clear");
        assert_eq!(memory.get("a.test", 443), None);
    }
}
