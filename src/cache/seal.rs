//! Sealing: what a backend holds is encrypted and bound to its key.
//!
//! A stored session is a resumption secret, and a TLS 1.3 client that
//! resumes verifies no certificate (DESIGN.md section 8). So whoever can read
//! the store could decrypt the fleet's 0-RTT requests, and whoever can write
//! it could make every replica "resume" with a server of their choosing. A
//! fleet key closes both: values are sealed with AES-256-GCM, and the
//! associated data is the seal format version, the key id and the whole
//! cache key (prefix, identifier, preset, protocol, host, port), plus the
//! ticket for sessions. An entry copied under another key, or a value written
//! without the fleet key, does not open.
//!
//! Layout of a sealed value (version 1):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `H3SL` |
//! | 1 | seal version `1` |
//! | 1 + n | id of the key that sealed it, length-prefixed (1 to 32 bytes) |
//! | 12 | nonce, random |
//! | n + 16 | ciphertext and GCM tag |
//!
//! A key file ([`CacheKeys::from_file`]) holds one key per line, `ID
//! BASE64KEY` (32 bytes); the first line's key seals, every listed key
//! opens, so a fleet rotates keys without turning cold: add the new key
//! second, deploy, move it first, deploy, drop the old one.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 4] = b"H3SL";
const SEAL_VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const MAX_ID_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The most bytes sealing adds to a value.
pub(crate) const MAX_SEAL_OVERHEAD: usize = MAGIC.len() + 2 + MAX_ID_LEN + NONCE_LEN + TAG_LEN;

/// Why a key file or key line is unusable. Never shows key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheKeysError {
    /// The key file could not be read.
    #[error("cannot read the cache key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not `ID BASE64KEY` with a 32-byte key.
    #[error("cache key line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two lines share an id.
    #[error("cache key id {0:?} is listed twice")]
    DuplicateId(String),
    /// No key at all.
    #[error("the cache key list is empty")]
    Empty,
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// Why a stored value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The value is sealed but this process has no keys: a miss, left in
    /// place for the replicas that have them.
    #[error("the value is sealed and no cache keys are configured")]
    NoKeys,
    /// Keys are configured and the value is not sealed.
    #[error("the value is not sealed (cache keys are configured)")]
    Unsealed,
    /// The value names a key that is not in the keyring.
    #[error("the value is sealed with unknown key {0:?}")]
    UnknownKey(String),
    /// The value does not authenticate: damaged, forged, or moved from
    /// another cache key.
    #[error("the value does not authenticate under its cache key")]
    Forged,
    /// The sealed layout is broken (or, sealing, the value is too long).
    #[error("the sealed value is malformed")]
    Malformed,
    /// The system random generator failed (sealing only).
    #[error("the system random generator failed")]
    Random,
}

impl SealError {
    /// True for a value this process cannot judge (sealed, no keys here):
    /// a miss, not corrupt.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Self::NoKeys)
    }
}

struct SealKey {
    id: String,
    key: LessSafeKey,
}

/// A keyring for sealing cache values: the first key seals, every key
/// opens. Cheap to clone. `Debug` shows the key ids only.
///
/// # Example
///
/// ```
/// use h3fleet::cache::CacheKeys;
///
/// let line = CacheKeys::generate_line()?;
/// let keys = CacheKeys::parse(&line)?;
/// assert_eq!(keys.ids().len(), 1);
/// assert!(!format!("{keys:?}").contains(line.split(' ').nth(1).unwrap()));
/// # Ok::<(), h3fleet::cache::CacheKeysError>(())
/// ```
#[derive(Clone)]
pub struct CacheKeys {
    keys: Arc<[SealKey]>,
}

impl fmt::Debug for CacheKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKeys").field("ids", &self.ids()).finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl CacheKeys {
    /// Parses key lines, `ID BASE64KEY` each (a 32-byte key in standard
    /// base64); blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// A malformed line, a key of the wrong size, a repeated id, no key.
    pub fn parse(text: &str) -> Result<Self, CacheKeysError> {
        let mut keys: Vec<SealKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason| CacheKeysError::Line { line: n + 1, reason };
            let mut fields = line.split_whitespace();
            let (Some(id), Some(encoded), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected `ID BASE64KEY`"));
            };
            if !valid_id(id) {
                return Err(bad("the id must be 1 to 32 letters, digits, `-`, `_` or `.`"));
            }
            let raw = BASE64.decode(encoded).map_err(|_| bad("the key is not base64"))?;
            if raw.len() != KEY_LEN {
                return Err(bad("the key must be 32 bytes"));
            }
            let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| bad("the key is unusable"))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(CacheKeysError::DuplicateId(id.to_owned()));
            }
            keys.push(SealKey {
                id: id.to_owned(),
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            return Err(CacheKeysError::Empty);
        }
        Ok(Self { keys: keys.into() })
    }

    /// Reads a key file (see [`parse`](Self::parse)). The file should be
    /// readable by its owner only; a file others can read is logged.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or [`parse`](Self::parse) fails.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CacheKeysError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CacheKeysError::Read {
            path: path.display().to_string(),
            source,
        })?;
        crate::cache::private::warn_if_shared(path);
        Self::parse(&text)
    }

    /// A new random key as a key-file line, `ID BASE64KEY`.
    ///
    /// # Errors
    ///
    /// The system random generator failed.
    pub fn generate_line() -> Result<String, CacheKeysError> {
        let rng = SystemRandom::new();
        let mut key = [0u8; KEY_LEN];
        let mut tag = [0u8; 4];
        rng.fill(&mut key).map_err(|_| CacheKeysError::Random)?;
        rng.fill(&mut tag).map_err(|_| CacheKeysError::Random)?;
        let id = format!("k{}", tag.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let line = format!("{id} {}", BASE64.encode(key));
        key.fill(0);
        Ok(line)
    }

    /// The key ids, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Seals `plaintext` under the first key, bound to `context` (the
    /// cache seals a session under its backend key and ticket): only
    /// [`open`](Self::open) with the same context and a keyring holding
    /// that key returns it.
    ///
    /// # Errors
    ///
    /// The system random generator failed.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        // `parse` refuses an empty list, so the first key is always there.
        let key = self.keys.first().ok_or(SealError::NoKeys)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut out = header(&key.id);
        let aad = associated_data(&out, context);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut body)
            // GCM refuses only inputs of 64 GiB and more.
            .map_err(|_| SealError::Malformed)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a value sealed by [`seal`](Self::seal) with any listed key.
    ///
    /// # Errors
    ///
    /// A malformed value, an unknown key id, or a value that does not
    /// authenticate under `context` ([`SealError::Forged`]).
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let parts = SealedParts::split(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id.as_bytes() == parts.id)
            .ok_or_else(|| SealError::UnknownKey(String::from_utf8_lossy(parts.id).into_owned()))?;
        let aad = associated_data(parts.header, context);
        let nonce = Nonce::try_assume_unique_for_key(parts.nonce).map_err(|_| SealError::Malformed)?;
        let mut body = parts.body.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&aad), &mut body)
            .map_err(|_| SealError::Forged)?;
        Ok(plain.to_vec())
    }
}

fn header(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_SEAL_OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.push(SEAL_VERSION);
    // `valid_id` bounds the id at 32 bytes.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id.as_bytes());
    out
}

/// The header (magic, version, key id) and the context, length-framed.
fn associated_data(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len() + 8);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&(context.len() as u64).to_be_bytes());
    aad.extend_from_slice(context);
    aad
}

struct SealedParts<'a> {
    header: &'a [u8],
    id: &'a [u8],
    nonce: &'a [u8],
    body: &'a [u8],
}

impl<'a> SealedParts<'a> {
    fn split(sealed: &'a [u8]) -> Result<Self, SealError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::Malformed)?;
        let (&version, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        if version != SEAL_VERSION {
            return Err(SealError::Malformed);
        }
        let (&id_len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > MAX_ID_LEN || rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let header_len = MAGIC.len() + 2 + id_len;
        Ok(Self {
            header: &sealed[..header_len],
            id,
            nonce,
            body,
        })
    }
}

/// The id of the key that sealed `value`, if it is a well-formed sealed
/// value (the id is not secret; it names which fleet key to open it with).
pub(crate) fn sealing_key_id(value: &[u8]) -> Option<String> {
    let parts = SealedParts::split(value).ok()?;
    Some(String::from_utf8_lossy(parts.id).into_owned())
}

/// True if `value` starts like a sealed value.
pub(crate) fn looks_sealed(value: &[u8]) -> bool {
    value.starts_with(MAGIC)
}

/// The sealing policy of one cache: with keys, values are sealed on the way
/// out and must open on the way in; without, they pass as they are.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sealing {
    keys: Option<CacheKeys>,
    accept_unsealed: bool,
}

impl Sealing {
    pub(crate) fn new(keys: Option<CacheKeys>, accept_unsealed: bool) -> Self {
        Self {
            keys,
            accept_unsealed,
        }
    }

    /// The stored form of `plain` under `context`.
    pub(crate) fn seal(&self, context: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, SealError> {
        match &self.keys {
            Some(keys) => keys.seal(context, &plain),
            None => Ok(plain),
        }
    }

    /// The plain form of a stored value under `context`.
    pub(crate) fn open(&self, context: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, SealError> {
        match (&self.keys, looks_sealed(&stored)) {
            (Some(keys), true) => keys.open(context, &stored),
            (Some(_), false) if self.accept_unsealed => Ok(stored),
            (Some(_), false) => Err(SealError::Unsealed),
            (None, true) => Err(SealError::NoKeys),
            (None, false) => Ok(stored),
        }
    }
}

/// What a session value is bound to: its cache key and its ticket.
pub(crate) fn session_context(key: &str, ticket: &[u8]) -> Vec<u8> {
    let mut context = Vec::with_capacity(key.len() + ticket.len() + 16);
    context.extend_from_slice(b"session\0");
    context.extend_from_slice(&(key.len() as u64).to_be_bytes());
    context.extend_from_slice(key.as_bytes());
    context.extend_from_slice(ticket);
    context
}

/// What an ECH value is bound to: its cache key.
pub(crate) fn ech_context(key: &str) -> Vec<u8> {
    let mut context = Vec::with_capacity(key.len() + 4);
    context.extend_from_slice(b"ech\0");
    context.extend_from_slice(key.as_bytes());
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lines: &[&str]) -> CacheKeys {
        CacheKeys::parse(&lines.join("\n")).unwrap()
    }

    const K1: &str = "one AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "two HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

    #[test]
    fn a_sealed_value_opens_under_its_key_only() {
        let ring = keys(&[K1]);
        let sealed = ring
            .seal(b"h3fleet:sessions:default:h3:a.example:443", b"secret")
            .unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            ring.open(b"h3fleet:sessions:default:h3:a.example:443", &sealed)
                .unwrap(),
            b"secret"
        );
        assert_eq!(
            ring.open(b"h3fleet:sessions:default:h3:b.example:443", &sealed),
            Err(SealError::Forged)
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let ring = keys(&[K1]);
        let sealed = ring.seal(b"ctx", b"secret value").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(ring.open(b"ctx", &bad).is_err(), "byte {i}");
        }
        for len in 0..sealed.len() {
            assert!(ring.open(b"ctx", &sealed[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_first_key() {
        let old = keys(&[K1]).seal(b"ctx", b"v").unwrap();
        let rotated = keys(&[K2, K1]);
        assert_eq!(rotated.open(b"ctx", &old).unwrap(), b"v");
        let new = rotated.seal(b"ctx", b"v").unwrap();
        assert_eq!(SealedParts::split(&new).unwrap().id, b"two");
        assert_eq!(
            keys(&[K2]).open(b"ctx", &old),
            Err(SealError::UnknownKey("one".into()))
        );
    }

    #[test]
    fn policy_refuses_unsealed_values_unless_told() {
        let strict = Sealing::new(Some(keys(&[K1])), false);
        assert_eq!(
            strict.open(b"c", b"H3FS plain".to_vec()),
            Err(SealError::Unsealed)
        );
        let migrating = Sealing::new(Some(keys(&[K1])), true);
        assert_eq!(
            migrating.open(b"c", b"H3FS plain".to_vec()).unwrap(),
            b"H3FS plain"
        );
        let sealed = strict.seal(b"c", b"v".to_vec()).unwrap();
        assert_eq!(Sealing::default().open(b"c", sealed), Err(SealError::NoKeys));
        assert!(SealError::NoKeys.is_foreign() && !SealError::Forged.is_foreign());
    }

    #[test]
    fn key_lines_are_checked() {
        assert!(matches!(CacheKeys::parse(""), Err(CacheKeysError::Empty)));
        assert!(matches!(
            CacheKeys::parse("# only\n\n"),
            Err(CacheKeysError::Empty)
        ));
        assert!(matches!(
            CacheKeys::parse("id"),
            Err(CacheKeysError::Line { line: 1, .. })
        ));
        assert!(matches!(
            CacheKeys::parse("id AAAA"),
            Err(CacheKeysError::Line { .. })
        ));
        assert!(matches!(
            CacheKeys::parse("bad/id AAAA"),
            Err(CacheKeysError::Line { .. })
        ));
        let twice = format!("{K1}\n{K1}");
        assert!(matches!(
            CacheKeys::parse(&twice),
            Err(CacheKeysError::DuplicateId(_))
        ));
        let generated = CacheKeys::generate_line().unwrap();
        assert_eq!(keys(&[&generated, K1]).ids()[1], "one");
    }

    #[test]
    fn contexts_keep_key_and_ticket_apart() {
        assert_ne!(session_context("ab", b"c"), session_context("a", b"bc"));
        assert_ne!(ech_context("k"), session_context("k", b""));
    }
}
