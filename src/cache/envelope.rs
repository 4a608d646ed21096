//! The versioned binary form of a stored session (the `state` field).
//!
//! A backend is shared by replicas that may run different h3fleet versions
//! during a rolling upgrade, and its values can be damaged or written by
//! something else entirely. So the envelope starts with a magic and a
//! version, every length is checked against both the input and a hard limit,
//! and any surprise is an [`EnvelopeError`], never a panic.
//!
//! Layout of version 1 (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `H3FS` |
//! | 1 | version: `1`, or `2` when a flag only version 2 knows is set |
//! | 1 | TLS engine that wrote the session, `1` = BoringSSL |
//! | 1 | protocol: `1` = h1, `2` = h2, `3` = h3 |
//! | 1 | flags: bit 0 = the ticket allows early data; bit 1 (version 2) = won over ECH; other bits zero |
//! | 4 | ticket lifetime in seconds (at most 7 days, RFC 8446 §4.6.1) |
//! | 8 | issue time, seconds since the Unix epoch |
//! | 1 + n | ALPN protocol, length-prefixed |
//! | 4 + n | the engine's serialised session (`SSL_SESSION_to_bytes`), 1 to 48 KiB |
//! | 2 + n | the server's QUIC transport parameters (h3 only; required for early data) |
//!
//! Nothing may follow. The session bytes are opaque here; only the TLS layer
//! reads them. This module is pure: no clock, no I/O.

use std::fmt;

use crate::cache::key::Protocol;

const MAGIC: &[u8; 4] = b"H3FS";
/// The newest envelope version this build writes and reads. It reads
/// version 1 too, and writes version 1 whenever the value needs nothing newer,
/// so replicas on the previous build keep using those tickets.
pub(crate) const ENVELOPE_VERSION: u8 = 2;
/// Version 1: no ECH flag.
const VERSION_1: u8 = 1;
/// The TLS engine id of BoringSSL, the only engine that writes sessions.
pub(crate) const ENGINE_BORINGSSL: u8 = 1;
/// The largest envelope accepted, in bytes.
pub(crate) const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// The largest serialised session accepted, in bytes.
pub(crate) const MAX_SESSION_LEN: usize = 48 * 1024;
/// The largest transport-parameter block accepted, in bytes.
pub(crate) const MAX_TRANSPORT_PARAMS_LEN: usize = 4 * 1024;
/// The longest ticket lifetime TLS 1.3 allows (RFC 8446 §4.6.1), seconds.
pub(crate) const MAX_TICKET_LIFETIME_SECS: u32 = 7 * 24 * 3600;

const FLAG_EARLY_DATA: u8 = 0b1;
const FLAG_ECH: u8 = 0b10;
const FIXED_HEADER_LEN: usize = 4 + 1 + 1 + 1 + 1 + 4 + 8;

/// Everything needed to resume one TLS session, as stored in a backend.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The protocol the ticket was won on.
    pub protocol: Protocol,
    /// The engine's serialised session. Secret.
    pub session: Vec<u8>,
    /// The ticket lifetime the server granted, in seconds.
    pub lifetime_secs: u32,
    /// When the ticket was issued, in seconds since the Unix epoch.
    pub issued_at: u64,
    /// The ALPN protocol negotiated on the connection that won the ticket.
    pub alpn: Vec<u8>,
    /// Whether the ticket allows early data (0-RTT).
    pub early_data: bool,
    /// The ticket was won on a connection whose ECH the server accepted.
    /// It is then offered only on connections that offer ECH: BoringSSL
    /// would otherwise send it in a cleartext ClientHello, next to the real
    /// name, linking the two connections.
    pub ech: bool,
    /// For h3, the server's transport parameters, which a 0-RTT connection
    /// must remember (RFC 9000 §7.4.1); empty otherwise.
    pub transport_params: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("protocol", &self.protocol)
            .field("session", &format_args!("<{} bytes>", self.session.len()))
            .field("lifetime_secs", &self.lifetime_secs)
            .field("issued_at", &self.issued_at)
            .field("alpn", &String::from_utf8_lossy(&self.alpn))
            .field("early_data", &self.early_data)
            .field("ech", &self.ech)
            .field(
                "transport_params",
                &format_args!("<{} bytes>", self.transport_params.len()),
            )
            .finish()
    }
}

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input ends before a field does.
    #[error("envelope truncated while reading {0}")]
    Truncated(&'static str),
    /// The input, or one of its fields, is over its size limit.
    #[error("envelope field {0} is over its size limit")]
    TooLarge(&'static str),
    /// Bytes follow the last field.
    #[error("{0} unexpected bytes after the envelope")]
    TrailingBytes(usize),
    /// Not an h3fleet envelope at all.
    #[error("not an h3fleet session envelope (bad magic)")]
    BadMagic,
    /// Written by another version of h3fleet.
    #[error("envelope version {0} is not supported (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u8),
    /// Written by another TLS engine.
    #[error("envelope written by TLS engine {0}, which this build cannot resume")]
    UnsupportedEngine(u8),
    /// A field has a value the format does not allow.
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}

impl EnvelopeError {
    /// True for a well-formed envelope from another version or engine. Such
    /// an entry is a miss but is left in place: a replica running the other
    /// version may still use it.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::UnsupportedVersion(_) | Self::UnsupportedEngine(_))
    }
}

impl Envelope {
    /// Serialises the envelope.
    ///
    /// # Errors
    ///
    /// The same checks as [`decode`](Self::decode): a value that could not be
    /// read back is never written.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.validate()?;
        let alpn_len = u8::try_from(self.alpn.len()).map_err(|_| EnvelopeError::TooLarge("alpn"))?;
        let session_len =
            u32::try_from(self.session.len()).map_err(|_| EnvelopeError::TooLarge("session"))?;
        let tp_len = u16::try_from(self.transport_params.len())
            .map_err(|_| EnvelopeError::TooLarge("transport_params"))?;
        let mut out = Vec::with_capacity(
            FIXED_HEADER_LEN + 1 + self.alpn.len() + 4 + self.session.len() + 2 + self.transport_params.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(if self.ech { ENVELOPE_VERSION } else { VERSION_1 });
        out.push(ENGINE_BORINGSSL);
        out.push(protocol_code(self.protocol));
        let mut flags = 0;
        if self.early_data {
            flags |= FLAG_EARLY_DATA;
        }
        if self.ech {
            flags |= FLAG_ECH;
        }
        out.push(flags);
        out.extend_from_slice(&self.lifetime_secs.to_be_bytes());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.push(alpn_len);
        out.extend_from_slice(&self.alpn);
        out.extend_from_slice(&session_len.to_be_bytes());
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&tp_len.to_be_bytes());
        out.extend_from_slice(&self.transport_params);
        if out.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge("envelope"));
        }
        Ok(out)
    }

    /// Parses and validates an envelope.
    ///
    /// # Errors
    ///
    /// Anything but a complete, valid envelope of version 1 or 2.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge("envelope"));
        }
        let mut r = Reader(bytes);
        let version = read_header(&mut r)?;
        let protocol = match r.u8("protocol")? {
            1 => Protocol::H1,
            2 => Protocol::H2,
            3 => Protocol::H3,
            _ => return Err(EnvelopeError::Invalid("unknown protocol")),
        };
        let flags = r.u8("flags")?;
        let known = if version == VERSION_1 {
            FLAG_EARLY_DATA
        } else {
            FLAG_EARLY_DATA | FLAG_ECH
        };
        if flags & !known != 0 {
            return Err(EnvelopeError::Invalid("unknown flag bits"));
        }
        let lifetime_secs = u32::from_be_bytes(r.array("lifetime")?);
        let issued_at = u64::from_be_bytes(r.array("issued_at")?);
        let alpn_len = usize::from(r.u8("alpn length")?);
        let alpn = r.take(alpn_len, "alpn")?.to_vec();
        let session_len = usize::try_from(u32::from_be_bytes(r.array("session length")?))
            .map_err(|_| EnvelopeError::TooLarge("session"))?;
        if session_len > MAX_SESSION_LEN {
            return Err(EnvelopeError::TooLarge("session"));
        }
        let session = r.take(session_len, "session")?.to_vec();
        let tp_len = usize::from(u16::from_be_bytes(r.array("transport_params length")?));
        if tp_len > MAX_TRANSPORT_PARAMS_LEN {
            return Err(EnvelopeError::TooLarge("transport_params"));
        }
        let transport_params = r.take(tp_len, "transport_params")?.to_vec();
        if !r.0.is_empty() {
            return Err(EnvelopeError::TrailingBytes(r.0.len()));
        }
        let envelope = Self {
            protocol,
            session,
            lifetime_secs,
            issued_at,
            alpn,
            early_data: flags & FLAG_EARLY_DATA != 0,
            ech: flags & FLAG_ECH != 0,
            transport_params,
        };
        envelope.validate()?;
        Ok(envelope)
    }

    /// The rules that hold across fields.
    fn validate(&self) -> Result<(), EnvelopeError> {
        if self.session.is_empty() {
            return Err(EnvelopeError::Invalid("empty session"));
        }
        if self.session.len() > MAX_SESSION_LEN {
            return Err(EnvelopeError::TooLarge("session"));
        }
        if self.transport_params.len() > MAX_TRANSPORT_PARAMS_LEN {
            return Err(EnvelopeError::TooLarge("transport_params"));
        }
        if self.lifetime_secs > MAX_TICKET_LIFETIME_SECS {
            return Err(EnvelopeError::Invalid("ticket lifetime over 7 days"));
        }
        if self.protocol != Protocol::H3 && !self.transport_params.is_empty() {
            return Err(EnvelopeError::Invalid("transport parameters on a TCP session"));
        }
        // A 0-RTT QUIC connection must apply the server's remembered transport
        // parameters (RFC 9000 §7.4.1); without them early data is impossible.
        if self.protocol == Protocol::H3 && self.early_data && self.transport_params.is_empty() {
            return Err(EnvelopeError::Invalid(
                "early data on h3 without transport parameters",
            ));
        }
        Ok(())
    }
}

fn protocol_code(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::H1 => 1,
        Protocol::H2 => 2,
        Protocol::H3 => 3,
    }
}

/// A cursor that never reads past its input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Truncated(field));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
}

/// Reads the magic, version and engine; returns the version.
fn read_header(r: &mut Reader<'_>) -> Result<u8, EnvelopeError> {
    if r.take(4, "magic")? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let version = r.u8("version")?;
    if version != ENVELOPE_VERSION && version != VERSION_1 {
        return Err(EnvelopeError::UnsupportedVersion(version));
    }
    let engine = r.u8("engine")?;
    if engine != ENGINE_BORINGSSL {
        return Err(EnvelopeError::UnsupportedEngine(engine));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope {
            protocol: Protocol::H3,
            session: vec![0x30, 0x82, 1, 2, 3],
            lifetime_secs: 7200,
            issued_at: 1_795_000_000,
            alpn: b"h3".to_vec(),
            early_data: true,
            ech: false,
            transport_params: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn an_ech_ticket_is_version_2_and_others_stay_version_1() {
        let plain = sample().encode().unwrap();
        assert_eq!(plain[4], 1, "a version-1 reader must keep reading plain tickets");
        let ech = Envelope {
            ech: true,
            ..sample()
        };
        let bytes = ech.encode().unwrap();
        assert_eq!(bytes[4], 2);
        assert_eq!(Envelope::decode(&bytes).unwrap(), ech);
        // The ECH flag is not a version-1 flag.
        let mut forged = bytes.clone();
        forged[4] = 1;
        assert!(Envelope::decode(&forged).is_err());
    }

    #[test]
    fn round_trip() {
        let bytes = sample().encode().unwrap();
        assert_eq!(Envelope::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                Envelope::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = sample().encode().unwrap();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(EnvelopeError::TrailingBytes(1)));
    }

    #[test]
    fn wrong_magic_is_an_error() {
        let mut bytes = sample().encode().unwrap();
        bytes[0] = b'X';
        assert_eq!(Envelope::decode(&bytes), Err(EnvelopeError::BadMagic));
    }

    #[test]
    fn other_version_and_engine_are_foreign() {
        let mut bytes = sample().encode().unwrap();
        bytes[4] = 3;
        let err = Envelope::decode(&bytes).unwrap_err();
        assert_eq!(err, EnvelopeError::UnsupportedVersion(3));
        assert!(err.is_foreign());
        let mut bytes = sample().encode().unwrap();
        bytes[5] = 9;
        assert!(Envelope::decode(&bytes).unwrap_err().is_foreign());
        assert!(!EnvelopeError::BadMagic.is_foreign());
    }

    #[test]
    fn oversized_inputs_are_errors() {
        let huge = vec![0; MAX_ENVELOPE_LEN + 1];
        assert_eq!(Envelope::decode(&huge), Err(EnvelopeError::TooLarge("envelope")));
        let big_session = Envelope {
            session: vec![7; MAX_SESSION_LEN + 1],
            ..sample()
        };
        assert_eq!(big_session.encode(), Err(EnvelopeError::TooLarge("session")));
        // A length field that claims more than the limit, in a short input.
        let mut bytes = sample().encode().unwrap();
        let at = FIXED_HEADER_LEN + 1 + 2;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Envelope::decode(&bytes), Err(EnvelopeError::TooLarge("session")));
    }

    #[test]
    fn cross_field_rules_are_enforced() {
        let no_params = Envelope {
            transport_params: vec![],
            ..sample()
        };
        assert!(no_params.encode().is_err());
        let tcp_with_params = Envelope {
            protocol: Protocol::H2,
            early_data: false,
            ..sample()
        };
        assert!(tcp_with_params.encode().is_err());
        let too_long = Envelope {
            lifetime_secs: MAX_TICKET_LIFETIME_SECS + 1,
            ..sample()
        };
        assert!(too_long.encode().is_err());
        let mut bytes = sample().encode().unwrap();
        bytes[7] |= 0x80;
        assert_eq!(
            Envelope::decode(&bytes),
            Err(EnvelopeError::Invalid("unknown flag bits"))
        );
    }

    #[test]
    fn debug_never_shows_the_session() {
        let text = format!(
            "{:?}",
            Envelope {
                session: b"SECRETSECRET".to_vec(),
                ..sample()
            }
        );
        assert!(!text.contains("SECRET"));
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        (
            0..3u8,
            proptest::collection::vec(any::<u8>(), 1..2048),
            0..=MAX_TICKET_LIFETIME_SECS,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..=255),
            (any::<bool>(), any::<bool>()),
            proptest::collection::vec(any::<u8>(), 1..512),
        )
            .prop_map(
                |(p, session, lifetime_secs, issued_at, alpn, (early_data, ech), tp)| {
                    let protocol = [Protocol::H1, Protocol::H2, Protocol::H3][usize::from(p)];
                    Envelope {
                        protocol,
                        session,
                        lifetime_secs,
                        issued_at,
                        alpn,
                        early_data,
                        ech,
                        transport_params: if protocol == Protocol::H3 { tp } else { vec![] },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_valid_envelope_round_trips(env in envelope()) {
            let bytes = env.encode().unwrap();
            prop_assert_eq!(Envelope::decode(&bytes), Ok(env));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn flipped_byte_never_panics(env in envelope(), at in any::<proptest::sample::Index>(), x in 1..=255u8) {
            let mut bytes = env.encode().unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= x;
            let _ = Envelope::decode(&bytes);
        }
    }
}
