//! Two "replicas" (here two caches in one process) share a ticket through
//! any backend URI.
//!
//! ```sh
//! cargo run --example shared_cache                      # a temporary SQLite file
//! cargo run --example shared_cache -- redis://127.0.0.1:6379/0
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use h3fleet::cache::{
    backend_from_uri, BackendError, CachedSession, Envelope, ErrorCallback, PersistableSessionCache, Protocol,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("cache.db").display()));
    let backend = backend_from_uri(&uri)?;
    let on_error: ErrorCallback = Arc::new(|op: &str, key: &str, err: &BackendError| {
        eprintln!("session cache {op} failed for {key}: {err}");
    });

    // Replica A: a full handshake just gave it a ticket (synthetic here).
    let a = PersistableSessionCache::with_backend(
        backend.clone(),
        "default",
        Protocol::H3,
        Some(on_error.clone()),
    );
    let issued_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ticket = CachedSession {
        ticket: b"example-ticket".to_vec(),
        envelope: Envelope {
            protocol: Protocol::H3,
            session: b"opaque session bytes".to_vec(),
            lifetime_secs: 7200,
            issued_at,
            alpn: b"h3".to_vec(),
            early_data: false,
            ech: false,
            transport_params: Vec::new(),
        },
    };
    a.put("example.com", 443, ticket);
    a.flush(Duration::from_secs(5)).await;

    // Replica B: cold, finds A's ticket in the backend.
    let b = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, Some(on_error));
    match b.get("example.com", 443).await {
        Some(hit) => println!("replica B found a ticket ({:?}) via {uri}", hit.source),
        None => println!("replica B found nothing via {uri}"),
    }
    Ok(())
}
