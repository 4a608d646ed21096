//! `h3fleet demo`: two replica processes, one HTTP/3 origin, one shared
//! SQLite cache. The first replica pays a full handshake; the second starts
//! cold, finds the first one's ticket in the backend and sends its request
//! as 0-RTT early data.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use h3fleet::server::{LatencyRelay, RequestRecord};

use super::serve;
use super::write_out::GetReport;
use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print `{"replicas":[...]}` (each as `h3fleet get --json` prints it).
    #[arg(long)]
    json: bool,
    /// Backend URI (default: a fresh SQLite file in a temporary directory).
    #[arg(long, env = "H3FLEET_CACHE", hide_env_values = true)]
    cache: Option<String>,
    /// The key file sealing the cache's values (default: a fresh key in
    /// the temporary directory).
    #[arg(long, value_name = "FILE", env = "H3FLEET_CACHE_KEYS_FILE")]
    cache_keys: Option<std::path::PathBuf>,
    /// Round-trip time added between the replicas and the origin, in ms, so
    /// the round trips 0-RTT saves are visible on loopback.
    #[arg(long, default_value_t = 20)]
    rtt_ms: u64,
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), CliError> {
    let dir = tempfile::tempdir()?;
    let fleet = Fleet::for_demo(&args, dir.path())?;
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let started = serve::start(
        listen,
        &[],
        Some(&dir.path().join("origin.pem")),
        &serve::Listeners::both(),
    )?;
    let records = Arc::new(Mutex::new(Vec::<RequestRecord>::new()));
    let log = Arc::clone(&records);
    started.set_request_log(Arc::new(move |r: &RequestRecord| {
        log.lock().unwrap_or_else(PoisonError::into_inner).push(r.clone());
    }));
    let origin_addr = started.addr;
    let relay = LatencyRelay::start(origin_addr, Duration::from_millis(args.rtt_ms)).await?;
    let port = relay.addr().port();
    let url = format!("https://localhost:{port}/demo");
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(replica(&url, &fleet, &started.cert, port).await?);
    }
    let seen = records.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let server_saw_early: Vec<bool> = (0..replicas.len())
        .map(|i| seen.get(i).is_some_and(|r| r.early_data))
        .collect();
    if args.json {
        println!("{}", serde_json::json!({ "replicas": replicas }));
    } else {
        print_table(&url, &fleet, args.rtt_ms, &replicas, &server_saw_early);
    }
    let (first, second) = (&replicas[0], &replicas[1]);
    let as_expected = first.ticket_source == "none"
        && !first.resumed
        && second.ticket_source == "backend"
        && second.resumed
        && second.early_data == "accepted"
        && server_saw_early.get(1).copied().unwrap_or(false);
    if !as_expected {
        return Err("the second replica did not resume from the backend with 0-RTT accepted".into());
    }
    if !args.json {
        println!(
            "\n  replica 2 resumed replica 1's ticket from the shared cache and its request rode in 0-RTT."
        );
    }
    Ok(())
}

/// The cache the replicas share: its URI (maybe with a password, so never
/// in argv or output) and its key file.
struct Fleet {
    cache: String,
    keys: std::path::PathBuf,
}

impl Fleet {
    /// The cache of `args`, or a fresh SQLite file in `dir`; the key file of
    /// `args`, or a fresh key in `dir`.
    fn for_demo(args: &DemoArgs, dir: &std::path::Path) -> Result<Self, CliError> {
        let cache = args
            .cache
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", dir.join("cache.db").display()));
        let keys = match &args.cache_keys {
            Some(path) => path.clone(),
            None => {
                let path = dir.join("cache-keys");
                let mut file = std::fs::OpenOptions::new();
                file.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
                let line = h3fleet::cache::CacheKeys::generate_line()? + "\n";
                std::io::Write::write_all(&mut file.open(&path)?, line.as_bytes())?;
                path
            }
        };
        Ok(Self { cache, keys })
    }
}

/// The human-readable report: one line per replica.
fn print_table(url: &str, fleet: &Fleet, rtt_ms: u64, replicas: &[GetReport], server_saw_early: &[bool]) {
    println!("h3fleet demo: two replica processes, one HTTP/3 origin (quinn + rustls), one shared cache");
    println!("  origin  {url} (a relay adds {rtt_ms} ms of round-trip time)");
    println!(
        "  cache   {} (values sealed with the keys in {})\n",
        h3fleet::cache::redact_uri(&fleet.cache),
        fleet.keys.display()
    );
    println!(
        "  {:<8} {:<9} {:<8} {:<14} {:<12} {:>10} {:>10}",
        "replica", "ticket", "resumed", "0-RTT", "server: early", "handshake", "total"
    );
    for (i, r) in replicas.iter().enumerate() {
        println!(
            "  {:<8} {:<9} {:<8} {:<14} {:<12} {:>7.1} ms {:>7.1} ms",
            i + 1,
            r.ticket_source,
            if r.resumed { "yes" } else { "no" },
            r.early_data,
            if server_saw_early.get(i).copied().unwrap_or(false) {
                "yes"
            } else {
                "no"
            },
            r.handshake_ms,
            r.total_ms
        );
    }
}

/// Runs one `h3fleet get --json` process and reads its report.
async fn replica(url: &str, fleet: &Fleet, cert: &std::path::Path, port: u16) -> Result<GetReport, CliError> {
    let exe = std::env::current_exe()?;
    let cert = cert.display().to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let out = tokio::process::Command::new(exe)
        .args([
            "get",
            url,
            "-w",
            "%{json}",
            "-o",
            "/dev/null",
            "--cacert",
            &cert,
            "--resolve",
            &resolve,
        ])
        .env("H3FLEET_CACHE", &fleet.cache)
        .env("H3FLEET_CACHE_KEYS_FILE", &fleet.keys)
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "a replica failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().ok_or("a replica printed nothing")?;
    Ok(serde_json::from_str(line).map_err(|e| format!("a replica printed {line:?}: {e}"))?)
}
