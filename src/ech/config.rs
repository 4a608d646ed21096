//! ECHConfigList validation (RFC 9849 §4), before a list from DNS or a
//! backend is handed to BoringSSL: a malformed list, or one with no config
//! this client can use, is refused with the reason.

/// The ECHConfig version this client speaks (RFC 9849).
const VERSION: u16 = 0xfe0d;
/// DHKEM(X25519, HKDF-SHA256), the KEM BoringSSL's client supports.
const KEM_X25519: u16 = 0x0020;
const X25519_PUBLIC_KEY_LEN: usize = 32;
/// HKDF-SHA256.
const KDF_HKDF_SHA256: u16 = 0x0001;
/// AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
const AEADS: [u16; 3] = [0x0001, 0x0002, 0x0003];
/// Extensions whose type has this bit are mandatory: a config carrying an
/// unknown mandatory extension must be skipped.
const MANDATORY: u16 = 0x8000;

/// Why an ECHConfigList cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EchConfigError {
    /// The bytes do not follow the ECHConfigList structure.
    #[error("malformed ECHConfigList: {0}")]
    Malformed(&'static str),
    /// Well formed, but no config uses a version, KEM, cipher suite or
    /// extension this client supports.
    #[error("no usable ECH config in the list ({0})")]
    Unsupported(String),
}

/// One usable config, as read from the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchConfigInfo {
    /// The config's identifier.
    pub config_id: u8,
    /// The name the outer (cleartext) ClientHello carries.
    pub public_name: String,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EchConfigError> {
        if self.0.len() < n {
            return Err(EchConfigError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, EchConfigError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, EchConfigError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], EchConfigError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], EchConfigError> {
        let len = self.u8(what)?;
        self.take(usize::from(len), what)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The longest ECHConfigList accepted (8 KiB): real lists are under 1 KiB,
/// and one is kept per origin, in memory and in the backend.
pub const MAX_ECH_CONFIG_LIST_LEN: usize = 8 * 1024;

/// Checks an ECHConfigList (with its 2-byte length prefix) and returns the
/// configs this client can use, in list order. A list longer than
/// [`MAX_ECH_CONFIG_LIST_LEN`] is refused.
///
/// # Errors
///
/// The list is malformed, or no config in it is usable.
///
/// ```
/// use h3fleet::ech::validate_ech_config_list;
/// assert!(validate_ech_config_list(b"\x00\x01").is_err());
/// ```
pub fn validate_ech_config_list(list: &[u8]) -> Result<Vec<EchConfigInfo>, EchConfigError> {
    if list.len() > MAX_ECH_CONFIG_LIST_LEN {
        return Err(EchConfigError::Malformed("longer than 8 KiB"));
    }
    let mut outer = Reader(list);
    let body = outer.vec16("list length")?;
    if !outer.is_empty() {
        return Err(EchConfigError::Malformed("bytes after the list"));
    }
    if body.is_empty() {
        return Err(EchConfigError::Malformed("empty list"));
    }
    let mut configs = Reader(body);
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    while !configs.is_empty() {
        let version = configs.u16("config version")?;
        let contents = configs.vec16("config length")?;
        if version != VERSION {
            skipped.push(format!("version {version:#06x}"));
            continue;
        }
        match read_contents(contents)? {
            Ok(info) => usable.push(info),
            Err(why) => skipped.push(why),
        }
    }
    if usable.is_empty() {
        return Err(EchConfigError::Unsupported(skipped.join(", ")));
    }
    Ok(usable)
}

/// Reads one version-0xfe0d config: `Err` if malformed, `Ok(Err(why))` if
/// well formed but not usable here.
fn read_contents(contents: &[u8]) -> Result<Result<EchConfigInfo, String>, EchConfigError> {
    let mut r = Reader(contents);
    let config_id = r.u8("config id")?;
    let kem = r.u16("KEM id")?;
    let public_key = r.vec16("public key")?;
    let suites = r.vec16("cipher suites")?;
    if suites.is_empty() || suites.len() % 4 != 0 {
        return Err(EchConfigError::Malformed("cipher suites"));
    }
    let _max_name_len = r.u8("maximum name length")?;
    let public_name = r.vec8("public name")?;
    let extensions = r.vec16("extensions")?;
    if !r.is_empty() {
        return Err(EchConfigError::Malformed("bytes after a config"));
    }
    if public_key.is_empty() {
        return Err(EchConfigError::Malformed("empty public key"));
    }
    let mut ext = Reader(extensions);
    let mut mandatory_unknown = None;
    while !ext.is_empty() {
        let kind = ext.u16("extension type")?;
        ext.vec16("extension body")?;
        if kind & MANDATORY != 0 {
            mandatory_unknown = Some(kind);
        }
    }
    let name = match std::str::from_utf8(public_name) {
        Ok(n) if is_dns_name(n) => n.to_owned(),
        _ => return Err(EchConfigError::Malformed("public name is not a DNS name")),
    };
    if kem != KEM_X25519 {
        return Ok(Err(format!("KEM {kem:#06x}")));
    }
    if public_key.len() != X25519_PUBLIC_KEY_LEN {
        return Err(EchConfigError::Malformed("X25519 public key length"));
    }
    let supported_suite = suites.chunks_exact(4).any(|s| {
        u16::from_be_bytes([s[0], s[1]]) == KDF_HKDF_SHA256
            && AEADS.contains(&u16::from_be_bytes([s[2], s[3]]))
    });
    if !supported_suite {
        return Ok(Err("no supported cipher suite".to_owned()));
    }
    if let Some(kind) = mandatory_unknown {
        return Ok(Err(format!("mandatory extension {kind:#06x}")));
    }
    Ok(Ok(EchConfigInfo {
        config_id,
        public_name: name,
    }))
}

/// A host name of letters, digits, hyphens and dots (RFC 9849 §4: the
/// public name is a DNS name, not an IP literal).
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list with one config built field by field.
    fn list(kem: u16, key_len: usize, suites: &[(u16, u16)], name: &str, ext: &[(u16, &[u8])]) -> Vec<u8> {
        let mut c = vec![7u8];
        c.extend_from_slice(&kem.to_be_bytes());
        c.extend_from_slice(&(key_len as u16).to_be_bytes());
        c.extend(std::iter::repeat_n(0x42, key_len));
        c.extend_from_slice(&((suites.len() * 4) as u16).to_be_bytes());
        for (kdf, aead) in suites {
            c.extend_from_slice(&kdf.to_be_bytes());
            c.extend_from_slice(&aead.to_be_bytes());
        }
        c.push(0);
        c.push(name.len() as u8);
        c.extend_from_slice(name.as_bytes());
        let mut e = Vec::new();
        for (kind, body) in ext {
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&(body.len() as u16).to_be_bytes());
            e.extend_from_slice(body);
        }
        c.extend_from_slice(&(e.len() as u16).to_be_bytes());
        c.extend_from_slice(&e);
        let mut config = VERSION.to_be_bytes().to_vec();
        config.extend_from_slice(&(c.len() as u16).to_be_bytes());
        config.extend_from_slice(&c);
        let mut out = (config.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&config);
        out
    }

    #[test]
    fn a_good_list_is_accepted_with_its_public_name() {
        let good = list(KEM_X25519, 32, &[(1, 1)], "public.test", &[]);
        let infos = validate_ech_config_list(&good).unwrap();
        assert_eq!(infos[0].public_name, "public.test");
        assert_eq!(infos[0].config_id, 7);
    }

    #[test]
    fn unsupported_configs_are_refused_with_the_reason() {
        let p256 = list(0x0010, 65, &[(1, 1)], "public.test", &[]);
        assert!(
            matches!(validate_ech_config_list(&p256), Err(EchConfigError::Unsupported(r)) if r.contains("KEM"))
        );
        let suite = list(KEM_X25519, 32, &[(2, 9)], "public.test", &[]);
        assert!(matches!(
            validate_ech_config_list(&suite),
            Err(EchConfigError::Unsupported(_))
        ));
        let mandatory = list(KEM_X25519, 32, &[(1, 1)], "public.test", &[(0xfe01, b"x")]);
        assert!(
            matches!(validate_ech_config_list(&mandatory), Err(EchConfigError::Unsupported(r)) if r.contains("mandatory"))
        );
        // An optional unknown extension is fine.
        let optional = list(KEM_X25519, 32, &[(1, 1)], "public.test", &[(0x0042, b"x")]);
        assert!(validate_ech_config_list(&optional).is_ok());
    }

    #[test]
    fn malformed_lists_are_refused() {
        let good = list(KEM_X25519, 32, &[(1, 1)], "public.test", &[]);
        for cut in 0..good.len() {
            assert!(validate_ech_config_list(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(validate_ech_config_list(&extra).is_err());
        assert!(validate_ech_config_list(&list(KEM_X25519, 31, &[(1, 1)], "public.test", &[])).is_err());
        assert!(validate_ech_config_list(&list(KEM_X25519, 32, &[(1, 1)], "10.0.0.1", &[])).is_err());
        assert!(validate_ech_config_list(&list(KEM_X25519, 32, &[(1, 1)], "a..b", &[])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate_ech_config_list(&bytes);
        }

        #[test]
        fn flipped_bytes_of_a_good_list_never_panic(at in 0usize..80, to in proptest::num::u8::ANY) {
            let mut l = list(KEM_X25519, 32, &[(1, 1)], "public.test", &[]);
            let i = at % l.len();
            l[i] = to;
            let _ = validate_ech_config_list(&l);
        }
    }
}
