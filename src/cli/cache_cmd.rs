//! `h3fleet cache ...`: checks and inspection of a backend.

use std::time::{Duration, Instant};

use clap::Subcommand;
use h3fleet::cache::{backend_from_uri, KeyFormat, TlsSessionState};

use super::cache_inspect as inspect;
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
    /// List the entries under the key prefix, one per line (or `--json`):
    /// kind (ticket, pool, ech), protocol, preset, identifier, host, port,
    /// pool size, age, remaining lifetime, 0-RTT, ECH-bound, sealing key.
    /// Never a ticket or session byte. memcached cannot list.
    Ls {
        #[command(flatten)]
        target: Target,
        /// Only this host's entries.
        #[arg(long)]
        host: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Everything the metadata of one entry says (for a pool, of each
    /// ticket in it).
    Show {
        /// The entry's key, as `cache ls` prints it.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete one entry, every entry of a host, or every entry under the
    /// prefix.
    Rm {
        /// The entry's key.
        #[arg(required_unless_present_any = ["host", "all"], conflicts_with_all = ["host", "all"])]
        key: Option<String>,
        /// Every entry of this host.
        #[arg(long, conflicts_with = "all")]
        host: Option<String>,
        /// Every entry under the prefix.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Count the entries by kind and protocol, and the pooled tickets.
    Stats {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a cache key names.
    ParseKey {
        /// A key such as `h3fleet:sessions:default:h3:example.com:443`.
        key: String,
        /// The key prefix in use.
        #[arg(long, default_value = h3fleet::cache::DEFAULT_KEY_PREFIX)]
        prefix: String,
    },
}

/// Which backend, prefix and keys an inspection reads.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// Backend URI (default: the embedded SQLite file).
    #[arg(long, env = "H3FLEET_CACHE", hide_env_values = true)]
    cache: Option<String>,
    /// The key prefix in use.
    #[arg(long, default_value = h3fleet::cache::DEFAULT_KEY_PREFIX)]
    prefix: String,
    /// The fleet's key file, to read the metadata of sealed entries.
    #[arg(long, value_name = "FILE", env = "H3FLEET_CACHE_KEYS_FILE")]
    cache_keys: Option<std::path::PathBuf>,
}

impl Target {
    fn open(&self) -> Result<Opened, CliError> {
        let uri = self.cache.clone().unwrap_or_else(default_cache_uri);
        Ok(Opened {
            backend: backend_from_uri(&uri)?,
            format: KeyFormat::with_prefix(self.prefix.clone())?,
            keys: super::cache_keys(self.cache_keys.as_deref())?,
        })
    }
}

struct Opened {
    backend: std::sync::Arc<dyn h3fleet::cache::SessionCacheBackend>,
    format: KeyFormat,
    keys: Option<h3fleet::cache::CacheKeys>,
}

pub(crate) async fn run(cmd: CacheCommand) -> Result<(), CliError> {
    match cmd {
        CacheCommand::Ls { target, host, json } => {
            let o = target.open()?;
            inspect::ls(&o.backend, &o.format, host.as_deref(), o.keys.as_ref(), json).await
        }
        CacheCommand::Show { key, target } => {
            let o = target.open()?;
            inspect::show(&o.backend, &o.format, &key, o.keys.as_ref()).await
        }
        CacheCommand::Rm {
            key,
            host,
            all,
            target,
        } => {
            let o = target.open()?;
            let what = match (&key, &host, all) {
                (Some(key), _, _) => inspect::RmTarget::Key(key),
                (None, Some(host), _) => inspect::RmTarget::Host(host),
                _ => inspect::RmTarget::All,
            };
            inspect::rm(&o.backend, &o.format, what).await
        }
        CacheCommand::Stats { target, json } => {
            let o = target.open()?;
            inspect::stats(&o.backend, &o.format, json).await
        }
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
        CacheCommand::ParseKey { key, prefix } => parse_key(&key, prefix),
    }
}

/// `cache parse-key`: prints the fields a key names.
fn parse_key(key: &str, prefix: String) -> Result<(), CliError> {
    let parsed = KeyFormat::with_prefix(prefix)?.parse(key)?;
    match parsed.protocol() {
        Some(protocol) => println!(
            "{}  identifier={}  preset={}  protocol={protocol}  host={}  port={}",
            if parsed.kind() == "pool" {
                "pool"
            } else {
                "session"
            },
            parsed.identifier().unwrap_or("-"),
            parsed.preset(),
            parsed.host(),
            parsed.port()
        ),
        None => println!(
            "ech  preset={}  host={}  port={}",
            parsed.preset(),
            parsed.host(),
            parsed.port()
        ),
    }
    Ok(())
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
