//! `h3fleet demo`: two replica processes share one session through the
//! embedded SQLite backend.
//!
//! Until HTTP requests land (issue #4), the session is synthetic: real
//! cache code, real processes, real SQLite file, but no TLS handshake. The
//! demo says so when it runs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use h3fleet::cache::{
    backend_from_uri, CachedSession, Clock, Envelope, ErrorCallback, PersistableSessionCache, Protocol,
    SystemClock, TicketSource,
};

use super::CliError;

/// An origin that can never resolve (RFC 2606), so the demo session can
/// never be offered to a real server.
const DEMO_HOST: &str = "demo.h3fleet.invalid";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Store a session, as a replica that just finished a full handshake.
    Write,
    /// Look the session up from a cold start, as a freshly started replica.
    Read,
}

#[derive(Debug, Args)]
pub(crate) struct ReplicaArgs {
    #[arg(long, value_enum)]
    role: Role,
    #[arg(long)]
    cache: String,
    /// The ticket, in hex, that the writer stores and the reader expects.
    #[arg(long)]
    ticket: String,
}

pub(crate) async fn run(cache: &str) -> Result<(), CliError> {
    println!("h3fleet demo: one ticket, shared by two replica processes");
    println!("  note: HTTP/3 requests are not built yet (issue #4); this demo runs the fleet-wide");
    println!("  session cache for real, across processes, with a synthetic session and no network.");
    println!("  cache: {cache}\n");
    let ticket = random_hex(32);
    let exe = std::env::current_exe()?;
    for role in ["write", "read"] {
        let status = Command::new(&exe)
            .args([
                "demo-replica",
                "--role",
                role,
                "--cache",
                cache,
                "--ticket",
                &ticket,
            ])
            .status()?;
        if !status.success() {
            return Err(format!("the {role} replica failed ({status})").into());
        }
    }
    println!("\nok: replica B found replica A's ticket in the shared cache. Once HTTP/3 lands, that is");
    println!("    the ticket it resumes (and sends 0-RTT on) instead of paying a full handshake.");
    Ok(())
}

pub(crate) async fn replica(args: ReplicaArgs) -> Result<(), CliError> {
    let pid = std::process::id();
    let on_error: ErrorCallback = Arc::new(move |op: &str, key: &str, err: &h3fleet::cache::BackendError| {
        eprintln!("replica {pid}: backend {op} failed for {key}: {err}");
    });
    let backend = backend_from_uri(&args.cache)?;
    let cache = PersistableSessionCache::with_backend(backend, "default", Protocol::H3, Some(on_error));
    let ticket = from_hex(&args.ticket).ok_or("--ticket is not hex")?;
    match args.role {
        Role::Write => {
            let started = Instant::now();
            cache.put(DEMO_HOST, 443, synthetic_session(&ticket));
            let stored = started.elapsed();
            if !cache.flush(Duration::from_secs(5)).await {
                return Err("the backend write did not finish within 5 s".into());
            }
            println!(
                "replica A (pid {pid}): stored a ticket for {DEMO_HOST}:443 in {:.2} ms; backend write done after {:.2} ms",
                stored.as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        Role::Read => {
            let started = Instant::now();
            let hit = cache
                .get(DEMO_HOST, 443)
                .await
                .ok_or("no session found in the backend")?;
            let source = match hit.source {
                TicketSource::Backend => "backend",
                TicketSource::Local => "local",
            };
            println!(
                "replica B (pid {pid}): cold start, found the ticket in {:.2} ms (ticket_source: {source}, same ticket: {})",
                started.elapsed().as_secs_f64() * 1e3,
                if hit.session.ticket == ticket { "yes" } else { "NO" }
            );
            if hit.session.ticket != ticket || hit.source != TicketSource::Backend {
                return Err("replica B did not get replica A's ticket from the backend".into());
            }
            // Leave nothing behind in the user's cache.
            cache.invalidate(DEMO_HOST, 443, &ticket);
            cache.flush(Duration::from_secs(5)).await;
        }
    }
    Ok(())
}

fn synthetic_session(ticket: &[u8]) -> CachedSession {
    CachedSession {
        ticket: ticket.to_vec(),
        envelope: Envelope {
            protocol: Protocol::H3,
            session: b"h3fleet demo: synthetic session, not resumable".to_vec(),
            lifetime_secs: 600,
            issued_at: SystemClock.unix_secs(),
            alpn: b"h3".to_vec(),
            early_data: false,
            transport_params: Vec::new(),
        },
    }
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    // Each RandomState is seeded from the OS's randomness (std's HashMap
    // keys); good enough for a demo ticket, which is no secret.
    let state = RandomState::new();
    for block in 0u64.. {
        if out.len() >= bytes * 2 {
            break;
        }
        let mut h = state.build_hasher();
        h.write_u64(block);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(bytes * 2);
    out
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}
