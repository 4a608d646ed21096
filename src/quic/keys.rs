//! QUIC v1 packet and header protection (RFC 9001 §5), from TLS secrets.
//!
//! BoringSSL hands the QUIC layer raw traffic secrets; quinn wants
//! [`PacketKey`](quinn_proto::crypto::PacketKey)s and
//! [`HeaderKey`](quinn_proto::crypto::HeaderKey)s. This module derives them
//! with HKDF-Expand-Label (`quic key`, `quic iv`, `quic hp`, `quic ku`) and
//! implements them on `ring`, which already ships AES-GCM, ChaCha20-Poly1305
//! and QUIC header-protection masks. Initial keys need no TLS at all: they
//! come from the destination connection ID and the version's salt.

use bytes::BytesMut;
use quinn_proto::crypto::{self, CryptoError, KeyPair, Keys};
use quinn_proto::Side;
use ring::aead::{self, quic, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// RFC 9001 §5.2: the salt of QUIC v1's initial secret.
const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc,
    0xbb, 0x7f, 0x0a,
];
/// RFC 9001 §5.8: the fixed key and nonce of QUIC v1's Retry integrity tag.
const RETRY_KEY_V1: [u8; 16] = [
    0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e,
];
const RETRY_NONCE_V1: [u8; 12] = [
    0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
];

/// The only QUIC version this layer speaks.
pub(crate) const QUIC_V1: u32 = 1;

const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;
const NONCE_LEN: usize = 12;

/// A TLS 1.3 cipher suite usable with QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Suite {
    /// From the IANA cipher-suite value BoringSSL reports (0x1301..0x1303).
    pub(crate) fn from_tls_id(id: u16) -> Option<Self> {
        match id {
            0x1301 => Some(Self::Aes128Gcm),
            0x1302 => Some(Self::Aes256Gcm),
            0x1303 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Aes256Gcm => hkdf::HKDF_SHA384,
            Self::Aes128Gcm | Self::ChaCha20Poly1305 => hkdf::HKDF_SHA256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn header_protection(self) -> &'static quic::Algorithm {
        match self {
            Self::Aes128Gcm => &quic::AES_128,
            Self::Aes256Gcm => &quic::AES_256,
            Self::ChaCha20Poly1305 => &quic::CHACHA20,
        }
    }

    fn key_len(self) -> usize {
        self.aead().key_len()
    }

    /// RFC 9001 §6.6: packets one key may protect, and forgeries it may see.
    fn limits(self) -> (u64, u64) {
        match self {
            Self::Aes128Gcm | Self::Aes256Gcm => (1 << 23, 1 << 52),
            Self::ChaCha20Poly1305 => (u64::MAX, 1 << 36),
        }
    }
}

/// A traffic secret and the suite it belongs to. Secret: never logged.
#[derive(Clone)]
pub(crate) struct Secret {
    suite: Suite,
    bytes: Vec<u8>,
}

impl Secret {
    pub(crate) fn new(suite: Suite, bytes: &[u8]) -> Self {
        Self {
            suite,
            bytes: bytes.to_vec(),
        }
    }

    pub(crate) fn suite(&self) -> Suite {
        self.suite
    }

    pub(crate) fn packet_key(&self) -> PacketKey {
        let key = expand_label(self.suite.hkdf(), &self.bytes, b"quic key", self.suite.key_len());
        let iv = expand_label(self.suite.hkdf(), &self.bytes, b"quic iv", NONCE_LEN);
        let mut nonce = [0; NONCE_LEN];
        nonce.copy_from_slice(&iv);
        // The key has exactly the length the algorithm wants, so this
        // cannot fail; an error would be a bug in the suite table.
        let unbound = UnboundKey::new(self.suite.aead(), &key).unwrap_or_else(|_| unreachable!("key length"));
        PacketKey {
            key: LessSafeKey::new(unbound),
            iv: nonce,
            limits: self.suite.limits(),
        }
    }

    pub(crate) fn header_key(&self) -> HeaderKey {
        let hp = expand_label(self.suite.hkdf(), &self.bytes, b"quic hp", self.suite.key_len());
        let key = quic::HeaderProtectionKey::new(self.suite.header_protection(), &hp)
            .unwrap_or_else(|_| unreachable!("key length"));
        HeaderKey(key)
    }

    /// RFC 9001 §6.1: the secret of the next key phase.
    pub(crate) fn next(&self) -> Self {
        let len = self.bytes.len();
        Self {
            suite: self.suite,
            bytes: expand_label(self.suite.hkdf(), &self.bytes, b"quic ku", len),
        }
    }
}

/// The keys of the Initial packet space for a connection whose client chose
/// `dst_cid` (RFC 9001 §5.2).
pub(crate) fn initial_keys(dst_cid: &[u8], side: Side) -> Keys {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &INITIAL_SALT_V1);
    let initial = salt.extract(dst_cid);
    let derive = |label: &[u8]| {
        let mut out = [0; 32];
        fill(&initial, label, &mut out);
        Secret::new(Suite::Aes128Gcm, &out)
    };
    let (client, server) = (derive(b"client in"), derive(b"server in"));
    let (local, remote) = match side {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    keys(&local, &remote)
}

/// Packet and header keys for both directions.
pub(crate) fn keys(local: &Secret, remote: &Secret) -> Keys {
    Keys {
        header: KeyPair {
            local: Box::new(local.header_key()),
            remote: Box::new(remote.header_key()),
        },
        packet: KeyPair {
            local: Box::new(local.packet_key()),
            remote: Box::new(remote.packet_key()),
        },
    }
}

/// RFC 9001 §5.8: the integrity tag of a Retry packet (`packet` is the
/// Retry packet without its tag).
pub(crate) fn retry_tag(orig_dst_cid: &[u8], packet: &[u8]) -> [u8; TAG_LEN] {
    let mut pseudo = Vec::with_capacity(1 + orig_dst_cid.len() + packet.len());
    pseudo.push(u8::try_from(orig_dst_cid.len()).unwrap_or(u8::MAX));
    pseudo.extend_from_slice(orig_dst_cid);
    pseudo.extend_from_slice(packet);
    let key = retry_key();
    let nonce = Nonce::assume_unique_for_key(RETRY_NONCE_V1);
    let mut empty = [];
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(&pseudo), &mut empty)
        .unwrap_or_else(|_| unreachable!("sealing an empty input"));
    let mut out = [0; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks the tag at the end of `payload` against a freshly computed one.
pub(crate) fn is_valid_retry(orig_dst_cid: &[u8], header: &[u8], payload: &[u8]) -> bool {
    let Some(tag_start) = payload.len().checked_sub(TAG_LEN) else {
        return false;
    };
    let mut packet = Vec::with_capacity(header.len() + tag_start);
    packet.extend_from_slice(header);
    packet.extend_from_slice(&payload[..tag_start]);
    let expected = retry_tag(orig_dst_cid, &packet);
    // Compare without an early exit, so timing says nothing about the tag.
    expected
        .iter()
        .zip(&payload[tag_start..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn retry_key() -> LessSafeKey {
    let unbound =
        UnboundKey::new(&aead::AES_128_GCM, &RETRY_KEY_V1).unwrap_or_else(|_| unreachable!("key length"));
    LessSafeKey::new(unbound)
}

/// TLS 1.3 HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(alg: hkdf::Algorithm, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Prk::new_less_safe(alg, secret);
    let mut out = vec![0; len];
    fill(&prk, label, &mut out);
    out
}

fn fill(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).unwrap_or(u8::MAX)];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    // Lengths here are fixed by this module and far below HKDF's limit.
    prk.expand(&info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .unwrap_or_else(|_| unreachable!("HKDF output length"));
}

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// An AEAD key and IV protecting packet payloads.
pub(crate) struct PacketKey {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    limits: (u64, u64),
}

impl PacketKey {
    /// RFC 9001 §5.3: the IV with the packet number XORed into its tail.
    fn nonce(&self, packet: u64) -> Nonce {
        let mut nonce = self.iv;
        for (n, p) in nonce[NONCE_LEN - 8..].iter_mut().zip(packet.to_be_bytes()) {
            *n ^= p;
        }
        Nonce::assume_unique_for_key(nonce)
    }
}

impl crypto::PacketKey for PacketKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        // quinn reserves `tag_len` bytes at the end of `buf` for the tag.
        let Some(tag_at) = buf.len().checked_sub(TAG_LEN).filter(|t| *t >= header_len) else {
            return;
        };
        let (header, rest) = buf.split_at_mut(header_len);
        let (payload, tag_space) = rest.split_at_mut(tag_at - header_len);
        if let Ok(tag) = self
            .key
            .seal_in_place_separate_tag(self.nonce(packet), Aad::from(&*header), payload)
        {
            tag_space.copy_from_slice(tag.as_ref());
        }
    }

    fn decrypt(&self, packet: u64, header: &[u8], payload: &mut BytesMut) -> Result<(), CryptoError> {
        let plain_len = self
            .key
            .open_in_place(self.nonce(packet), Aad::from(header), payload.as_mut())
            .map_err(|_| CryptoError)?
            .len();
        payload.truncate(plain_len);
        Ok(())
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        self.limits.0
    }

    fn integrity_limit(&self) -> u64 {
        self.limits.1
    }
}

/// A header-protection key (RFC 9001 §5.4).
pub(crate) struct HeaderKey(quic::HeaderProtectionKey);

impl HeaderKey {
    fn apply(&self, pn_offset: usize, packet: &mut [u8], removing: bool) {
        let sample_at = pn_offset + 4;
        let Some(mask) = packet
            .get(sample_at..sample_at + SAMPLE_LEN)
            .and_then(|sample| self.0.new_mask(sample).ok())
        else {
            return;
        };
        // Long headers protect 4 bits of the first byte, short headers 5.
        let bits = if packet[0] & 0x80 != 0 { 0x0f } else { 0x1f };
        let first = if removing {
            packet[0] ^ (mask[0] & bits)
        } else {
            packet[0]
        };
        let pn_len = usize::from(first & 0x03) + 1;
        packet[0] ^= mask[0] & bits;
        for (byte, m) in packet[pn_offset..pn_offset + pn_len].iter_mut().zip(&mask[1..]) {
            *byte ^= m;
        }
    }
}

impl crypto::HeaderKey for HeaderKey {
    fn decrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        self.apply(pn_offset, packet, true);
    }

    fn encrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        self.apply(pn_offset, packet, false);
    }

    fn sample_size(&self) -> usize {
        SAMPLE_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::crypto::{HeaderKey as _, PacketKey as _};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    #[test]
    fn initial_secrets_match_rfc9001_appendix_a1() {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &INITIAL_SALT_V1);
        let initial = salt.extract(&hex(DCID));
        let mut client = [0; 32];
        fill(&initial, b"client in", &mut client);
        assert_eq!(
            client.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        let client = Secret::new(Suite::Aes128Gcm, &client);
        let expand = |label: &[u8], len| expand_label(hkdf::HKDF_SHA256, &client.bytes, label, len);
        assert_eq!(expand(b"quic key", 16), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(expand(b"quic iv", 12), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(expand(b"quic hp", 16), hex("9f50449e04a0e810283a1e9933adedd2"));
        let mut server = [0; 32];
        fill(&initial, b"server in", &mut server);
        assert_eq!(
            server.to_vec(),
            hex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        );
        let server_key = expand_label(hkdf::HKDF_SHA256, &server, b"quic key", 16);
        assert_eq!(server_key, hex("cf3a5331653c364c88f0f379b6067e37"));
    }

    #[test]
    fn chacha20_short_header_packet_matches_rfc9001_appendix_a5() {
        let secret = Secret::new(
            Suite::ChaCha20Poly1305,
            &hex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b"),
        );
        assert_eq!(
            secret.next().bytes,
            hex("1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9")
        );
        let mut packet = hex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb");
        secret.header_key().decrypt(1, &mut packet);
        assert_eq!(&packet[..4], &hex("4200bff4")[..], "unprotected header");
        let mut payload = BytesMut::from(&packet[4..]);
        secret
            .packet_key()
            .decrypt(654_360_564, &hex("4200bff4"), &mut payload)
            .unwrap();
        assert_eq!(&payload[..], &[0x01], "a PING frame");
    }

    #[test]
    fn protection_round_trips_for_every_suite() {
        for suite in [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let secret = Secret::new(suite, &[7; 48][..if suite == Suite::Aes256Gcm { 48 } else { 32 }]);
            let (pk, hk) = (secret.packet_key(), secret.header_key());
            let header = [0x41, 0xaa, 0xbb, 0x00, 0x01];
            let mut packet = header.to_vec();
            packet.extend_from_slice(&[0x55; 40]);
            packet.extend_from_slice(&[0; TAG_LEN]);
            pk.encrypt(1, &mut packet, header.len());
            hk.encrypt(3, &mut packet);
            assert_ne!(&packet[..5], &header, "{suite:?}: header unprotected");
            hk.decrypt(3, &mut packet);
            assert_eq!(&packet[..5], &header, "{suite:?}");
            let mut payload = BytesMut::from(&packet[5..]);
            pk.decrypt(1, &header, &mut payload).unwrap();
            assert_eq!(&payload[..], &[0x55; 40]);
            let mut tampered = BytesMut::from(&packet[5..]);
            tampered[0] ^= 1;
            assert!(
                pk.decrypt(1, &header, &mut tampered).is_err(),
                "{suite:?}: forgery accepted"
            );
        }
    }

    #[test]
    fn full_size_packets_round_trip_and_tags_are_checked() {
        for suite in [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let secret = Secret::new(suite, &[9; 48][..if suite == Suite::Aes256Gcm { 48 } else { 32 }]);
            let pk = secret.packet_key();
            let header = [0x41, 1, 2, 3, 4];
            let payload: Vec<u8> = (0..1200u32).map(|i| i as u8).collect();
            let mut packet = [&header[..], &payload, &[0; TAG_LEN]].concat();
            pk.encrypt(77, &mut packet, header.len());
            let tag_is_zero = packet[packet.len() - TAG_LEN..].iter().all(|b| *b == 0);
            assert!(!tag_is_zero, "{suite:?}: no tag written");
            let mut body = BytesMut::from(&packet[header.len()..]);
            pk.decrypt(77, &header, &mut body).unwrap();
            assert_eq!(&body[..], &payload[..], "{suite:?}");
            let mut wrong_pn = BytesMut::from(&packet[header.len()..]);
            assert!(
                pk.decrypt(78, &header, &mut wrong_pn).is_err(),
                "{suite:?}: wrong nonce accepted"
            );
        }
    }

    #[test]
    fn retry_tag_round_trips_and_rejects_tampering() {
        let odcid = hex(DCID);
        let packet = hex("ff000000010008f067a5502a4262b5746f6b656e");
        let tag = retry_tag(&odcid, &packet);
        let (header, token) = packet.split_at(9);
        let mut payload = token.to_vec();
        payload.extend_from_slice(&tag);
        assert!(is_valid_retry(&odcid, header, &payload));
        payload[0] ^= 1;
        assert!(!is_valid_retry(&odcid, header, &payload));
        assert!(!is_valid_retry(&odcid, header, &[0; 3]), "short payload");
    }

    #[test]
    fn retry_tag_matches_rfc9001_appendix_a4() {
        let packet = hex("ff000000010008f067a5502a4262b5746f6b656e");
        assert_eq!(
            retry_tag(&hex(DCID), &packet).to_vec(),
            hex("04a265ba2eff4d829058fb3f0f2496ba")
        );
    }
}
