//! Named client profiles. A preset fixes the TLS and QUIC settings a
//! client offers, and its canonical name is part of every cache key: a
//! ticket won under one profile is only offered under the same profile,
//! by every replica that uses it.

use std::time::Duration;

/// The canonical name of the default preset.
pub const DEFAULT_PRESET: &str = "default";

/// The presets this build knows, by canonical name.
pub const KNOWN_PRESETS: &[&str] = &[DEFAULT_PRESET];

/// No preset has the name asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {name:?}; known presets: {known}", known = KNOWN_PRESETS.join(", "))]
pub struct UnknownPresetError {
    name: String,
}

impl UnknownPresetError {
    /// The name that was asked for.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A client profile: what the client offers on the wire.
///
/// Replicas that should share tickets must use the same preset. Aliases
/// resolve to the canonical name before it goes into keys, so `"Default"`
/// and `"default"` share keys everywhere.
///
/// ```
/// use h3fleet::Preset;
///
/// let preset = Preset::named("Default")?;
/// assert_eq!(preset.name(), "default");
/// assert!(Preset::named("chrome-131").is_err());
/// # Ok::<(), h3fleet::UnknownPresetError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    name: &'static str,
    alpn: &'static [&'static [u8]],
    quic_idle_timeout: Duration,
    quic_keep_alive: Option<Duration>,
}

impl Default for Preset {
    fn default() -> Self {
        Self {
            name: DEFAULT_PRESET,
            alpn: &[b"h3"],
            quic_idle_timeout: Duration::from_secs(30),
            quic_keep_alive: None,
        }
    }
}

impl Preset {
    /// The preset called `name` (case-insensitive).
    ///
    /// # Errors
    ///
    /// [`UnknownPresetError`], whose message names the known presets.
    pub fn named(name: &str) -> Result<Self, UnknownPresetError> {
        match name.trim().to_ascii_lowercase().as_str() {
            DEFAULT_PRESET => Ok(Self::default()),
            _ => Err(UnknownPresetError {
                name: name.to_owned(),
            }),
        }
    }

    /// The canonical name, as written in cache keys.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The ALPN protocols offered on QUIC, most preferred first.
    pub fn alpn(&self) -> &'static [&'static [u8]] {
        self.alpn
    }

    /// The QUIC idle timeout the client asks for.
    pub fn quic_idle_timeout(&self) -> Duration {
        self.quic_idle_timeout
    }

    /// The QUIC keep-alive interval, if any.
    pub fn quic_keep_alive(&self) -> Option<Duration> {
        self.quic_keep_alive
    }
}
