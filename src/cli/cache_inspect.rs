//! `h3fleet cache ls | show | rm | stats`: what a backend holds, told by its
//! metadata. No ticket, session or key byte is ever printed: entries are
//! described through `h3fleet::cache::summarize_session`, which returns
//! none.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use h3fleet::cache::{
    ech_sealed_with, summarize_session, CacheKeys, KeyFormat, ParsedKey, SessionCacheBackend,
};

use super::CliError;

/// The most keys one listing reads.
const LIST_LIMIT: usize = 100_000;

/// One entry as `ls` and `show` print it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Row {
    key: String,
    /// `ticket`, `pool` or `ech`.
    kind: &'static str,
    protocol: Option<String>,
    preset: String,
    identifier: Option<String>,
    host: String,
    port: u16,
    /// For a pool: the live tickets it holds.
    pool_size: Option<usize>,
    /// Seconds since the entry (a pool: its newest ticket) was written.
    age_secs: Option<i64>,
    /// Seconds it may still be offered.
    remaining_secs: Option<u64>,
    early_data: Option<bool>,
    ech_bound: Option<bool>,
    /// The id of the fleet key that sealed it; `null`: unsealed.
    sealed_with: Option<String>,
    /// Why its metadata could not be read (sealed without the keys given,
    /// corrupt, another version).
    unreadable: Option<String>,
    /// For an ECH config: its length in bytes.
    ech_config_len: Option<usize>,
}

/// The parts of a key, as a row begins.
fn row_of(key: &str, parsed: &ParsedKey) -> Row {
    Row {
        key: key.to_owned(),
        kind: parsed.kind(),
        protocol: parsed.protocol().map(|p| p.to_string()),
        preset: parsed.preset().to_owned(),
        identifier: parsed.identifier().map(str::to_owned),
        host: parsed.host().to_owned(),
        port: parsed.port(),
        pool_size: None,
        age_secs: None,
        remaining_secs: None,
        early_data: None,
        ech_bound: None,
        sealed_with: None,
        unreadable: None,
        ech_config_len: None,
    }
}

/// Reads the entry under `key` and describes it; `None` if it is gone.
pub(crate) async fn describe(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    key: &str,
    keys: Option<&CacheKeys>,
) -> Result<Option<Row>, CliError> {
    let parsed = format.parse(key)?;
    let mut row = row_of(key, &parsed);
    let (protocol, states) = match &parsed {
        ParsedKey::Session { protocol, .. } => (*protocol, backend.get(key).await?.into_iter().collect()),
        ParsedKey::Pool { protocol, .. } => {
            let items = backend.pool_peek(key).await?;
            row.pool_size = Some(items.len());
            (*protocol, items)
        }
        _ => {
            let Some(config) = backend.get_ech_config(key).await? else {
                return Ok(None);
            };
            row.ech_config_len = Some(config.len());
            row.sealed_with = ech_sealed_with(&config);
            return Ok(Some(row));
        }
    };
    let Some(newest) = states.last() else {
        return Ok(row.pool_size.map(|_| row));
    };
    let now = Utc::now();
    let summary = summarize_session(newest, key, protocol, keys);
    row.age_secs = Some((now - summary.created_at).num_seconds());
    row.sealed_with = summary.sealed_with;
    row.unreadable = summary.unreadable;
    if let Some(e) = summary.envelope {
        row.remaining_secs = Some(e.remaining_secs(now));
        row.early_data = Some(e.early_data);
        row.ech_bound = Some(e.ech_bound);
    }
    Ok(Some(row))
}

/// The keys under the prefix, those of `host` only if given.
pub(crate) async fn keys_of(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    host: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let prefix = format!("{}:", format.prefix());
    let keys = backend.list_keys(&prefix, LIST_LIMIT).await.map_err(|e| {
        if e.kind() == h3fleet::cache::BackendErrorKind::Unsupported {
            format!("{e} (memcached has no way to list keys; use `cache show KEY`)").into()
        } else {
            CliError::from(e)
        }
    })?;
    let wanted = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    Ok(keys
        .into_iter()
        .filter(|k| match (&wanted, format.parse(k)) {
            (None, Ok(_)) => true,
            (Some(h), Ok(parsed)) => parsed.host() == h,
            (_, Err(_)) => false,
        })
        .collect())
}

/// `cache ls`: one line (or JSON object) per entry.
pub(crate) async fn ls(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    host: Option<&str>,
    keys: Option<&CacheKeys>,
    json: bool,
) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for key in keys_of(backend, format, host).await? {
        if let Some(row) = describe(backend, format, &key, keys).await? {
            rows.push(row);
        }
    }
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(());
    }
    println!(
        "{:<6} {:<5} {:<10} {:<8} {:<28} {:>5} {:>6} {:>9} {:>5} {:>4} {:<8} KEY",
        "KIND", "PROTO", "PRESET", "ID", "HOST:PORT", "POOL", "AGE", "REMAINING", "0RTT", "ECH", "SEALED"
    );
    for r in &rows {
        println!("{}", line(r));
    }
    Ok(())
}

fn line(r: &Row) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let flag = |v: Option<bool>| opt(v.map(|b| if b { "yes" } else { "no" }.to_owned()));
    format!(
        "{:<6} {:<5} {:<10} {:<8} {:<28} {:>5} {:>6} {:>9} {:>5} {:>4} {:<8} {}",
        r.kind,
        opt(r.protocol.clone()),
        r.preset,
        opt(r.identifier.clone()),
        format!("{}:{}", r.host, r.port),
        opt(r.pool_size.map(|n| n.to_string())),
        opt(r.age_secs.map(|s| format!("{s}s"))),
        opt(r.remaining_secs.map(|s| format!("{s}s"))),
        flag(r.early_data),
        flag(r.ech_bound),
        opt(r
            .sealed_with
            .clone()
            .or(r.unreadable.as_ref().map(|_| "?".to_owned()))),
        r.key
    )
}

/// `cache show KEY`: every field of one entry (for a pool, of each ticket).
pub(crate) async fn show(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    key: &str,
    keys: Option<&CacheKeys>,
) -> Result<(), CliError> {
    let row = describe(backend, format, key, keys)
        .await?
        .ok_or_else(|| format!("no entry under {key}"))?;
    println!("{}", serde_json::to_string_pretty(&row)?);
    if let ParsedKey::Pool { protocol, .. } = format.parse(key)? {
        for (i, item) in backend.pool_peek(key).await?.iter().enumerate() {
            let summary = summarize_session(item, key, protocol, keys);
            println!("ticket {i}: {}", serde_json::to_string(&summary)?);
        }
    }
    Ok(())
}

/// `cache rm`: deletes `key`, every entry of `host`, or (`all`) every entry
/// under the prefix; prints how many went.
pub(crate) async fn rm(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    target: RmTarget<'_>,
) -> Result<(), CliError> {
    let keys = match target {
        RmTarget::Key(key) => vec![key.to_owned()],
        RmTarget::Host(host) => keys_of(backend, format, Some(host)).await?,
        RmTarget::All => keys_of(backend, format, None).await?,
    };
    let mut removed = 0usize;
    for key in &keys {
        removed += usize::from(remove(backend, format, key).await?);
    }
    println!("removed {removed} entr{}", if removed == 1 { "y" } else { "ies" });
    Ok(())
}

/// What `cache rm` deletes.
pub(crate) enum RmTarget<'a> {
    Key(&'a str),
    Host(&'a str),
    All,
}

async fn remove(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    key: &str,
) -> Result<bool, CliError> {
    Ok(match format.parse(key)? {
        ParsedKey::Session { .. } => {
            let present = backend.get(key).await.map(|s| s.is_some()).unwrap_or(true);
            backend.delete(key).await?;
            present
        }
        ParsedKey::Pool { .. } => {
            let present = !backend.pool_peek(key).await.unwrap_or_default().is_empty();
            backend.pool_delete(key).await?;
            present
        }
        _ => match backend.get_ech_config(key).await? {
            Some(config) => backend.delete_ech_config_if(key, &config).await?,
            None => false,
        },
    })
}

/// `cache stats`: entries by kind and protocol, and pooled tickets.
pub(crate) async fn stats(
    backend: &Arc<dyn SessionCacheBackend>,
    format: &KeyFormat,
    json: bool,
) -> Result<(), CliError> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut pooled = 0usize;
    for key in keys_of(backend, format, None).await? {
        let Some(row) = describe(backend, format, &key, None).await? else {
            continue;
        };
        let label = format!("{}:{}", row.kind, row.protocol.as_deref().unwrap_or("-"));
        *counts.entry(label).or_default() += 1;
        pooled += row.pool_size.unwrap_or(0);
    }
    if json {
        let report = serde_json::json!({ "entries": counts, "pooled_tickets": pooled });
        println!("{report}");
        return Ok(());
    }
    for (label, n) in &counts {
        println!("{label:<12} {n}");
    }
    println!("{:<12} {pooled}", "pooled");
    Ok(())
}
