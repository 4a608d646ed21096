//! A real authoritative DNS server (hickory-server) on a loopback UDP port,
//! serving one zone whose records the test chooses.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;

/// Serves `zone` (e.g. `fleet.test.`) with the given A records until dropped.
pub struct DnsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    pub async fn start(zone: &str, a_records: &[(&str, Ipv4Addr)]) -> Self {
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
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(authority)]);
        let mut server = ServerFuture::new(catalog);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        server.register_socket(socket);
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Self { addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
