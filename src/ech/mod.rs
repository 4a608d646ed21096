//! Encrypted Client Hello: configs from DNS HTTPS records, validated,
//! cached locally and shared through the session backend, so one replica's
//! DNS lookup serves the fleet.
//!
//! Source order for an origin: a config given to the session builder, the
//! local cache, then the backend
//! (`{prefix}:ech:{preset}:{host}:{port}`), then the origin's DNS HTTPS
//! record. A config from DNS is validated ([`validate_ech_config_list`])
//! before use and written back with the record's TTL clamped to
//! [60 s, 24 h].

mod cache;
mod config;
pub(crate) mod dns;

pub(crate) use cache::EchCache;
pub use config::{validate_ech_config_list, EchConfigError, EchConfigInfo, MAX_ECH_CONFIG_LIST_LEN};

/// Reads `rdata` as the wire form of an HTTPS record, as the resolver does,
/// and validates any ECHConfigList in it. The entry point of the
/// `https_record` fuzz target (built only under `cargo fuzz`).
#[cfg(fuzzing)]
pub fn fuzz_https_rdata(rdata: &[u8]) {
    dns::read_wire(rdata);
}

/// Whether a session uses ECH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EchPolicy {
    /// ECH when a config is found; otherwise GREASE ECH (a fake extension
    /// that makes ECH connections look like every other).
    #[default]
    Auto,
    /// ECH or no connection: a host with no config fails with a clear error.
    Require,
    /// Neither ECH nor GREASE.
    Off,
}

/// What happened to ECH on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchStatus {
    /// The server decrypted the inner ClientHello (the real name stayed
    /// hidden).
    Accepted,
    /// ECH was offered and the server could not use it.
    Rejected,
    /// No config: a GREASE extension was sent.
    Grease,
    /// ECH was not used (policy `Off`, or an IP literal).
    Off,
}

impl EchStatus {
    /// `accepted`, `rejected`, `grease` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Grease => "grease",
            Self::Off => "off",
        }
    }
}

/// Where a connection's ECH config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchSource {
    /// Given to the session builder.
    Config,
    /// This process's ECH cache.
    Local,
    /// The shared backend (another replica looked it up).
    Backend,
    /// The origin's DNS HTTPS record.
    Dns,
}

impl EchSource {
    /// `config`, `local`, `backend` or `dns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Local => "local",
            Self::Backend => "backend",
            Self::Dns => "dns",
        }
    }
}
