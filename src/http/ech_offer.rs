//! What a new connection offers of Encrypted Client Hello: the choice per
//! the policy (builder config, caches, DNS HTTPS record, or GREASE), and
//! what a rejection allows for the one retry (RFC 9849 §6.1.6).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::EchOffered;
use super::connect::{Connector, Target};
use super::HttpProtocol;
use crate::ech::{self, EchPolicy, EchSource};
use crate::error::Error;
use crate::tls::EchRejection;

/// How long retry configs from a server that rejected ECH are kept.
const ECH_RETRY_TTL: Duration = Duration::from_secs(3600);

/// The longest a connection waits for an origin's HTTPS record (ECH).
const HTTPS_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// What a new connection offers of ECH, and where the config came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct EchChoice {
    pub(crate) list: Option<Vec<u8>>,
    pub(crate) source: Option<EchSource>,
    pub(crate) grease: bool,
    /// This offer is the one retry after a rejection.
    pub(crate) retried: bool,
    /// The host's DNS says it must be reached with ECH only (RFC 9848).
    pub(crate) reliant: bool,
}

impl EchChoice {
    pub(crate) fn offered(&self) -> EchOffered {
        EchOffered {
            source: self.source,
            config: self.list.is_some(),
            grease: self.grease,
        }
    }
}

impl Connector {
    /// With [`HttpProtocol::Auto`] and nothing known of the origin yet, the
    /// ECH choice is made before the plan: the origin's HTTPS record (looked
    /// up with its ECH config) may say whether it speaks HTTP/3. The choice
    /// is handed on to the connection, so it is made once.
    pub(crate) async fn choose_ech_early(&self, host: &str, port: u16) -> Result<Option<EchChoice>, Error> {
        if self.mode != HttpProtocol::Auto || self.memory.get(host, port).is_some() {
            return Ok(None);
        }
        self.ech_for(super::connect::server_name(host), port)
            .await
            .map(Some)
    }

    /// The ECH offer for a connection to `host:port`, per the policy.
    pub(crate) async fn ech_for(&self, host: &str, port: u16) -> Result<EchChoice, Error> {
        let policy = self.ech_policy;
        // No ECH for IP literals: there is no name to hide.
        if policy == EchPolicy::Off || host.parse::<IpAddr>().is_ok() {
            return Ok(EchChoice::default());
        }
        if let Some(list) = self.ech_configs.get(&(host.to_ascii_lowercase(), port)) {
            return Ok(EchChoice {
                list: Some(list.clone()),
                source: Some(EchSource::Config),
                ..EchChoice::default()
            });
        }
        // RFC 9848: when every HTTPS record of the host carries `ech`, the
        // client must not fall back to a cleartext ClientHello.
        let reliant = AtomicBool::new(false);
        let found = self
            .ech
            .find(host, port, || self.https_record(host, port, &reliant))
            .await;
        let reliant = reliant.load(Ordering::Relaxed);
        match found {
            Some((list, source)) => Ok(EchChoice {
                list: Some(list),
                source: Some(source),
                reliant,
                ..EchChoice::default()
            }),
            None if reliant => Err(Error::Ech {
                host: host.to_owned(),
                reason: "every HTTPS record of the host requires ECH (RFC 9848) and its config is unusable"
                    .to_owned(),
            }),
            None if policy == EchPolicy::Require => Err(Error::Ech {
                host: host.to_owned(),
                reason: "no usable config in the caches or its DNS HTTPS record".to_owned(),
            }),
            None => Ok(EchChoice {
                grease: true,
                ..EchChoice::default()
            }),
        }
    }

    /// The ECHConfigList and TTL of `host`'s HTTPS record, if it has one;
    /// its `alpn` also teaches protocol selection.
    async fn https_record(&self, host: &str, port: u16, reliant: &AtomicBool) -> Option<(Vec<u8>, Duration)> {
        // Through a proxy that resolves names, looking the record up here
        // would tell the resolver where the connection goes.
        if self
            .proxy_for(host)
            .is_some_and(super::egress::Proxy::resolves_names)
        {
            return None;
        }
        if self.resolver.is_overridden(host, port) {
            return None;
        }
        let hickory = self.resolver.hickory().await.ok()?;
        let record =
            match tokio::time::timeout(HTTPS_LOOKUP_TIMEOUT, ech::dns::lookup_https(hickory, host)).await {
                Ok(Ok(Some(record))) => record,
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => {
                    tracing::debug!(host, error = %e, "HTTPS record lookup failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(host, "HTTPS record lookup timed out");
                    return None;
                }
            };
        if self.mode == HttpProtocol::Auto && !record.alpn.is_empty() {
            if record.alpn.iter().any(|a| a == "h3") {
                let h3_port = record.port.unwrap_or(port);
                self.memory.https_record_says_h3(host, port, h3_port, record.ttl);
            } else {
                self.memory.https_record_says_tcp(host, port, record.ttl);
            }
        }
        reliant.store(record.all_have_ech && record.ech.is_some(), Ordering::Relaxed);
        record.ech.map(|list| (list, record.ttl))
    }

    /// A completed handshake with ECH accepted proves the config it offered:
    /// one from DNS or retry configs is shared with the fleet now.
    pub(crate) fn ech_proven(&self, target: &Target, accepted: bool) {
        if let (true, Some(list)) = (accepted, &target.ech.list) {
            self.ech.proven(&target.server_name, target.port, list);
        }
    }

    /// The config `target` offered (from a cache or DNS, not the builder)
    /// failed: forget it here and, if unchanged, in the backend.
    pub(crate) fn ech_failed(&self, target: &Target) {
        if let (Some(list), false) = (&target.ech.list, target.ech.source == Some(EchSource::Config)) {
            self.ech.failed(&target.server_name, target.port, list);
        }
    }

    /// After a failed connection: if the server rejected ECH, decides what
    /// the one retry offers (RFC 9849 §6.1.6). With retry configs, they are
    /// validated, kept locally and in the backend, and offered. Without
    /// (the server turned ECH off), the retry goes without ECH unless ECH is
    /// required. Returns true if a retry should be made; an error if ECH
    /// failed for good.
    pub(crate) fn adopt_ech_retry(&self, target: &mut Target) -> Result<bool, Error> {
        let Some(retry) = target.ech_rejection.take() else {
            return Ok(false);
        };
        let fail = |reason: String| Error::Ech {
            host: target.server_name.clone(),
            reason,
        };
        // Whatever comes next, the config just offered has failed.
        self.ech_failed(target);
        if target.ech.retried {
            return Err(fail(
                "the server rejected ECH again, even with its own retry configs".into(),
            ));
        }
        target.ech_rejection = Arc::new(EchRejection::default());
        if retry.is_empty() {
            if self.ech_policy == EchPolicy::Require || target.ech.reliant {
                return Err(fail("the server rejected ECH and sent no retry config".into()));
            }
            tracing::warn!(host = %target.server_name, "the server rejected ECH and sent no retry config; retrying without ECH");
            target.ech = EchChoice {
                retried: true,
                ..EchChoice::default()
            };
            // A ticket won over ECH never goes in a cleartext ClientHello:
            // it would link the hidden connections to the real name.
            if target.hit.as_ref().is_some_and(|h| h.session.envelope.ech) {
                target.hit = None;
            }
            return Ok(true);
        }
        if let Err(e) = ech::validate_ech_config_list(&retry) {
            return Err(fail(format!(
                "the server rejected ECH and its retry configs are unusable: {e}"
            )));
        }
        tracing::debug!(host = %target.server_name, "ECH rejected; retrying once with the server's retry configs");
        // Shared with the fleet only once the retry has ECH accepted.
        self.ech
            .keep_unproven(&target.server_name, target.port, retry.clone(), ECH_RETRY_TTL);
        target.ech = EchChoice {
            list: Some(retry),
            source: Some(EchSource::Local),
            grease: false,
            retried: true,
            reliant: target.ech.reliant,
        };
        Ok(true)
    }
}
