//! The DNS HTTPS record (RFC 9460) of an origin: its `ech` ECHConfigList,
//! `alpn` and `port`, looked up with hickory-resolver.

use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

/// What an origin's own HTTPS record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpsRecord {
    /// The ECHConfigList, as published (not yet validated).
    pub(crate) ech: Option<Vec<u8>>,
    /// The protocols the record advertises (`h3`, `h2`, ...).
    pub(crate) alpn: Vec<String>,
    /// Another port, if the record names one.
    pub(crate) port: Option<u16>,
    /// How long the answer may be cached.
    pub(crate) ttl: Duration,
    /// Every service record carried `ech` (RFC 9848: the client must then
    /// not fall back to a cleartext ClientHello).
    pub(crate) all_have_ech: bool,
}

/// Looks up `host`'s HTTPS records and reads the best service-mode record
/// that points at `host` itself (target `.`). Records that send the client
/// to another name are not followed: only the host's own record is used.
///
/// `Ok(None)`: the host has no usable HTTPS record.
pub(crate) async fn lookup_https(
    resolver: &TokioResolver,
    host: &str,
) -> Result<Option<HttpsRecord>, String> {
    let name = if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    };
    let lookup = match resolver.lookup(name.as_str(), RecordType::HTTPS).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let ttl = lookup.valid_until().saturating_duration_since(Instant::now());
    let mut services: Vec<_> = lookup
        .record_iter()
        .filter_map(|r| match r.data() {
            RData::HTTPS(https) if https.0.svc_priority() > 0 => Some(&https.0),
            _ => None,
        })
        .collect();
    if services.is_empty() {
        return Ok(None);
    }
    let all_have_ech = services.iter().all(|s| {
        s.svc_params()
            .iter()
            .any(|(k, _)| *k == SvcParamKey::EchConfigList)
    });
    services.sort_by_key(|s| s.svc_priority());
    let Some(own) = services.into_iter().find(|s| s.target_name().is_root()) else {
        return Ok(None);
    };
    let mut record = HttpsRecord {
        ech: None,
        alpn: Vec::new(),
        port: None,
        ttl,
        all_have_ech,
    };
    for (_, value) in own.svc_params() {
        match value {
            SvcParamValue::EchConfigList(list) => record.ech = Some(list.0.clone()),
            SvcParamValue::Alpn(alpn) => record.alpn.clone_from(&alpn.0),
            SvcParamValue::Port(port) => record.port = Some(*port),
            _ => {}
        }
    }
    Ok(Some(record))
}
