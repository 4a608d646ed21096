//! A real authoritative DNS server (hickory-server) on a loopback UDP port,
//! serving one zone whose records the test chooses.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::svcb::{Alpn, EchConfigList, SvcParamKey, SvcParamValue, SVCB};
use hickory_server::proto::rr::rdata::{A, HTTPS, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;

/// An HTTPS record to serve: owner name, `alpn`, and `ech` if any.
pub type HttpsSpec<'a> = (&'a str, &'a [&'a str], Option<Vec<u8>>);

/// Serves `zone` (e.g. `fleet.test.`) with the given A records until dropped.
pub struct DnsServer {
    addr: SocketAddr,
    https_queries: Arc<AtomicUsize>,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// The catalog, counting queries (and HTTPS ones) on the way.
struct Counting {
    catalog: Catalog,
    https_queries: Arc<AtomicUsize>,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if request
            .request_info()
            .is_ok_and(|info| info.query.query_type() == RecordType::HTTPS)
        {
            self.https_queries.fetch_add(1, Ordering::SeqCst);
        }
        self.catalog.handle_request(request, response).await
    }
}

impl DnsServer {
    pub async fn start(zone: &str, a_records: &[(&str, Ipv4Addr)]) -> Self {
        Self::start_with_https(zone, a_records, &[]).await
    }

    /// Also serves, for each `(name, ech)`, an HTTPS record (priority 1,
    /// target `.`, alpn h3 and h2) carrying the ECHConfigList `ech`.
    pub async fn start_with_https(
        zone: &str,
        a_records: &[(&str, Ipv4Addr)],
        https: &[(&str, Vec<u8>)],
    ) -> Self {
        let records: Vec<HttpsSpec<'_>> = https
            .iter()
            .map(|(name, ech)| (*name, &["h3", "h2"][..], Some(ech.clone())))
            .collect();
        Self::start_with_records(zone, a_records, &records).await
    }

    /// Also serves, for each `(name, alpn, ech)`, an HTTPS record (priority
    /// 1, target `.`) with that `alpn` and, if given, `ech`.
    pub async fn start_with_records(
        zone: &str,
        a_records: &[(&str, Ipv4Addr)],
        https: &[HttpsSpec<'_>],
    ) -> Self {
        let origin = Name::from_str(zone).unwrap();
        let mut authority = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        let soa = SOA::new(
            Name::from_str(&format!("ns.{zone}")).unwrap(),
            Name::from_str(&format!("admin.{zone}")).unwrap(),
            1,
            3600,
            600,
            86400,
            60,
        );
        authority.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 0);
        for (name, ip) in a_records {
            let name = Name::from_str(name).unwrap();
            authority.upsert_mut(Record::from_rdata(name, 60, RData::A(A(*ip))), 0);
        }
        for (name, alpn, ech) in https {
            let mut params = vec![(
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(alpn.iter().map(|a| (*a).to_owned()).collect())),
            )];
            if let Some(ech) = ech {
                params.push((
                    SvcParamKey::EchConfigList,
                    SvcParamValue::EchConfigList(EchConfigList(ech.clone())),
                ));
            }
            let svcb = SVCB::new(1, Name::root(), params);
            let name = Name::from_str(name).unwrap();
            authority.upsert_mut(Record::from_rdata(name, 300, RData::HTTPS(HTTPS(svcb))), 0);
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(authority)]);
        let https_queries = Arc::new(AtomicUsize::new(0));
        let queries = Arc::new(AtomicUsize::new(0));
        let mut server = ServerFuture::new(Counting {
            catalog,
            https_queries: Arc::clone(&https_queries),
            queries: Arc::clone(&queries),
        });
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        server.register_socket(socket);
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Self {
            addr,
            https_queries,
            queries,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// HTTPS-record queries answered so far.
    #[allow(dead_code)]
    pub fn https_queries(&self) -> usize {
        self.https_queries.load(Ordering::SeqCst)
    }

    /// Queries of any type answered so far.
    #[allow(dead_code)]
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
