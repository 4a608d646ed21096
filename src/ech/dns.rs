//! The DNS HTTPS record (RFC 9460) of an origin: its `ech` ECHConfigList,
//! `alpn` and `port`, looked up with hickory-resolver.

use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue, SVCB};
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
    let services = lookup.record_iter().filter_map(|r| match r.data() {
        RData::HTTPS(https) => Some(&https.0),
        _ => None,
    });
    Ok(read_https(services, ttl))
}

/// Reads what the best service-mode record pointing at the host itself
/// says. Alias-mode records (priority 0) and records naming another target
/// are not used.
pub(crate) fn read_https<'a>(records: impl Iterator<Item = &'a SVCB>, ttl: Duration) -> Option<HttpsRecord> {
    let mut services: Vec<&SVCB> = records.filter(|s| s.svc_priority() > 0).collect();
    if services.is_empty() {
        return None;
    }
    let all_have_ech = services.iter().all(|s| {
        s.svc_params()
            .iter()
            .any(|(k, _)| *k == SvcParamKey::EchConfigList)
    });
    services.sort_by_key(|s| s.svc_priority());
    let own = services.into_iter().find(|s| s.target_name().is_root())?;
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
    Some(record)
}

/// Decodes `rdata` as an HTTPS record the way the resolver would, reads it
/// and validates any ECHConfigList in it: none of it may panic. (For the
/// property tests and the fuzz target.)
#[cfg(any(test, fuzzing))]
pub(crate) fn read_wire(rdata: &[u8]) {
    use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};
    let mut decoder = BinDecoder::new(rdata);
    let length = Restrict::new(u16::try_from(rdata.len()).unwrap_or(u16::MAX));
    if let Ok(RData::HTTPS(https)) = RData::read(&mut decoder, RecordType::HTTPS, length) {
        if let Some(read) = read_https(std::iter::once(&https.0), Duration::ZERO) {
            if let Some(ech) = read.ech {
                let _ = crate::ech::validate_ech_config_list(&ech);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::rr::rdata::svcb::{Alpn, EchConfigList};
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::serialize::binary::{BinEncodable, BinEncoder};
    use proptest::prelude::*;

    use super::*;

    fn record(priority: u16, target: Name, ech: Option<&[u8]>) -> SVCB {
        let mut params = vec![(
            SvcParamKey::Alpn,
            SvcParamValue::Alpn(Alpn(vec!["h3".to_owned(), "h2".to_owned()])),
        )];
        if let Some(ech) = ech {
            params.push((
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(ech.to_vec())),
            ));
        }
        SVCB::new(priority, target, params)
    }

    #[test]
    fn only_the_hosts_own_service_record_is_read() {
        let own = record(2, Name::root(), Some(b"own"));
        let elsewhere = record(1, Name::from_ascii("cdn.example.").unwrap(), Some(b"cdn"));
        let alias = record(0, Name::from_ascii("other.example.").unwrap(), None);
        let read = read_https([&alias, &elsewhere, &own].into_iter(), Duration::from_secs(300)).unwrap();
        assert_eq!(read.ech.as_deref(), Some(&b"own"[..]));
        assert_eq!(read.alpn, ["h3", "h2"]);
        assert!(read.all_have_ech);
        let plain = record(3, Name::root(), None);
        assert!(
            !read_https([&own, &plain].into_iter(), Duration::ZERO)
                .unwrap()
                .all_have_ech
        );
        assert!(read_https([&alias].into_iter(), Duration::ZERO).is_none());
        assert!(read_https([&elsewhere].into_iter(), Duration::ZERO).is_none());
    }

    fn wire(svcb: &SVCB) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        svcb.emit(&mut encoder).unwrap();
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_https_rdata_never_panics(rdata in proptest::collection::vec(any::<u8>(), 0..200)) {
            read_wire(&rdata);
        }

        #[test]
        fn damaged_https_records_never_panic(
            ech in proptest::collection::vec(any::<u8>(), 0..120),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
        ) {
            let mut bytes = wire(&record(1, Name::root(), Some(&ech)));
            for (at, to) in flips {
                let i = at % bytes.len();
                bytes[i] = to;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            read_wire(&bytes);
        }
    }
}
