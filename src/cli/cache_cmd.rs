//! `h3fleet cache ...`: checks and inspection of a backend.

use std::time::{Duration, Instant};

use clap::Subcommand;
use h3fleet::cache::{backend_from_uri, KeyFormat, ParsedKey, TlsSessionState};

use super::{default_cache_uri, CliError};

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Write, read and delete a probe entry, and print each call's latency:
    /// is this backend reachable and quick from here?
    Check {
        /// Backend URI (default: the embedded SQLite file).
        #[arg(long, env = "H3FLEET_CACHE", hide_env_values = true)]
        cache: Option<String>,
        /// Also check this key file (lines `ID BASE64KEY`).
        #[arg(long, value_name = "FILE", env = "H3FLEET_CACHE_KEYS_FILE")]
        cache_keys: Option<std::path::PathBuf>,
    },
    /// Print a new random cache key line (`ID BASE64KEY`) for a key file.
    /// The first line of a key file seals; every line opens. To rotate, add
    /// the new line second, deploy, move it first, deploy, drop the old one.
    Keygen,
    /// Show what a cache key names.
    ParseKey {
        /// A key such as `h3fleet:sessions:default:h3:example.com:443`.
        key: String,
        /// The key prefix in use.
        #[arg(long, default_value = h3fleet::cache::DEFAULT_KEY_PREFIX)]
        prefix: String,
    },
}

pub(crate) async fn run(cmd: CacheCommand) -> Result<(), CliError> {
    match cmd {
        CacheCommand::Check { cache, cache_keys } => {
            if let Some(keys) = super::cache_keys(cache_keys.as_deref())? {
                println!("keys:   {} (the first seals)", keys.ids().join(", "));
            }
            check(&cache.unwrap_or_else(default_cache_uri)).await
        }
        CacheCommand::Keygen => {
            println!("{}", h3fleet::cache::CacheKeys::generate_line()?);
            Ok(())
        }
        CacheCommand::ParseKey { key, prefix } => {
            match KeyFormat::with_prefix(prefix)?.parse(&key)? {
                ParsedKey::Session {
                    id,
                    preset,
                    protocol,
                    host,
                    port,
                } => println!(
                    "session  identifier={}  preset={preset}  protocol={protocol}  host={host}  port={port}",
                    id.as_deref().unwrap_or("-")
                ),
                ParsedKey::Ech { preset, host, port } => {
                    println!("ech  preset={preset}  host={host}  port={port}")
                }
            }
            Ok(())
        }
    }
}

async fn check(uri: &str) -> Result<(), CliError> {
    let backend = backend_from_uri(uri)?;
    let key = format!("h3fleet:probe:{}:{}", hostname(), std::process::id());
    let probe = TlsSessionState {
        ticket: "cHJvYmU=".into(),
        state: "cHJvYmU=".into(),
        created_at: chrono::Utc::now(),
    };
    println!(
        "backend: {} ({})",
        backend.name(),
        h3fleet::cache::redact_uri(uri)
    );
    let started = Instant::now();
    backend.put(&key, &probe, Duration::from_secs(30)).await?;
    println!("put     {:>8.2} ms", ms(started));
    let started = Instant::now();
    let read = backend.get(&key).await?;
    println!("get     {:>8.2} ms", ms(started));
    let started = Instant::now();
    backend.delete(&key).await?;
    println!("delete  {:>8.2} ms", ms(started));
    if read.as_ref() != Some(&probe) {
        return Err("the probe read back differs from what was written".into());
    }
    println!("ok: the backend stores, returns and deletes entries");
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned())
}
