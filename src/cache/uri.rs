//! [`backend_from_uri`]: one string picks and configures a backend, so the
//! command line, environment variables and config files can all name one.

use std::sync::Arc;

use crate::cache::backend::{BackendError, BackendErrorKind, SessionCacheBackend};
use crate::cache::memory::MemoryBackend;

/// The forms [`backend_from_uri`] accepts, for error messages and docs.
pub const ACCEPTED_BACKEND_URIS: &str = "memory:, sqlite:PATH, redis://[[USER]:PASSWORD@]HOST:PORT[/DB], \
     rediss://[[USER]:PASSWORD@]HOST:PORT[/DB][?ca=PEM], redis+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT,..., \
     rediss+cluster://...[?ca=PEM], memcached://HOST:PORT, memcacheds://HOST:PORT[?ca=PEM]";

/// Builds the backend a URI names.
///
/// | URI | backend |
/// |---|---|
/// | `memory:` | [`MemoryBackend`] (this process only) |
/// | `sqlite:PATH` (also `sqlite://PATH`) | [`SqliteBackend`](crate::cache::SqliteBackend) on the file `PATH` |
/// | `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]` | [`RedisBackend`](crate::cache::RedisBackend) |
/// | `redis+cluster://[[USER]:PASSWORD@]HOST:PORT,HOST:PORT,...` | [`RedisClusterBackend`](crate::cache::RedisClusterBackend), with those seed nodes |
/// | `rediss://...`, `rediss+cluster://...` | the same over TLS, the certificate verified against the system roots, or the PEM file `?ca=PATH` |
/// | `memcached://HOST:PORT` | [`MemcachedBackend`](crate::cache::MemcachedBackend) |
/// | `memcacheds://HOST:PORT[?ca=PATH]` | the same over TLS (memcached's `-Z`), verified against the system roots or `PATH` |
///
/// Redis backends connect on first use, so this makes no network call;
/// `sqlite:` opens (and if needed creates) the file.
///
/// ```
/// use h3fleet::cache::backend_from_uri;
///
/// let backend = backend_from_uri("memory:")?;
/// assert_eq!(backend.name(), "memory");
/// let err = backend_from_uri("mongodb://localhost").unwrap_err();
/// assert!(err.to_string().contains("redis+cluster://"));
/// # Ok::<(), h3fleet::cache::BackendError>(())
/// ```
///
/// # Errors
///
/// A URI of no accepted form (the message lists them), a backend this build
/// left out (its cargo feature is off), or a backend that cannot be set up.
pub fn backend_from_uri(uri: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    let (scheme, rest) = uri.split_once(':').ok_or_else(|| invalid(uri))?;
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if rest.is_empty() || rest == "//" => Ok(Arc::new(MemoryBackend::new())),
        "sqlite" => sqlite(uri, rest.strip_prefix("//").unwrap_or(rest)),
        "redis" | "rediss" => redis(uri),
        "redis+cluster" | "rediss+cluster" => {
            redis_cluster(uri, scheme, rest.strip_prefix("//").ok_or_else(|| invalid(uri))?)
        }
        "memcached" => memcached(uri, rest.strip_prefix("//").ok_or_else(|| invalid(uri))?, false),
        "memcacheds" => memcached(uri, rest.strip_prefix("//").ok_or_else(|| invalid(uri))?, true),
        _ => Err(invalid(uri)),
    }
}

#[cfg(feature = "memcached")]
fn memcached(uri: &str, rest: &str, tls: bool) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    let (addr, ca) = match rest.split_once('?') {
        Some((addr, query)) if tls => match query.strip_prefix("ca=") {
            Some(path) if !path.contains('&') => (addr, Some(read_ca(uri, path)?)),
            _ => return Err(invalid(uri)),
        },
        Some(_) => return Err(invalid(uri)),
        None => (rest, None),
    };
    let addr = addr.trim_end_matches('/');
    let valid = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(invalid(uri));
    }
    if tls {
        return Ok(Arc::new(crate::cache::MemcachedBackend::with_tls(
            addr,
            ca.as_deref(),
        )?));
    }
    Ok(Arc::new(crate::cache::MemcachedBackend::new(addr)))
}

#[cfg(not(feature = "memcached"))]
fn memcached(_uri: &str, _addr: &str, _tls: bool) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    Err(BackendError::new(
        "uri",
        BackendErrorKind::InvalidUri,
        "this build has no memcached backend (cargo feature `memcached`)",
    ))
}

fn invalid(uri: &str) -> BackendError {
    let shown: String = redact_uri(uri).chars().take(120).collect();
    BackendError::new(
        "uri",
        BackendErrorKind::InvalidUri,
        format!("`{shown}` is not a backend URI; use one of: {ACCEPTED_BACKEND_URIS}"),
    )
}

/// `uri` with every secret replaced by `<redacted>`: the password of the
/// userinfo (up to the last `@`, as URL parsers read it; a userinfo without
/// `:` is redacted whole) and the `pass`/`password` query parameters. Safe
/// to print, log or put in a report.
///
/// ```
/// use h3fleet::cache::redact_uri;
///
/// assert_eq!(redact_uri("redis://app:p@ss@db:6379/0"), "redis://app:<redacted>@db:6379/0");
/// assert_eq!(redact_uri("redis+unix:///run/r.sock?pass=x&db=1"), "redis+unix:///run/r.sock?pass=<redacted>&db=1");
/// assert_eq!(redact_uri("sqlite:/tmp/cache.db"), "sqlite:/tmp/cache.db");
/// ```
pub fn redact_uri(uri: &str) -> String {
    let (base, query) = match uri.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (uri, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
                None => format!("{scheme}://<redacted>@{host}"),
            },
            None => base.to_owned(),
        },
        None if base.contains('@') => match base.rsplit_once('@') {
            Some((_, host)) => format!("<redacted>@{host}"),
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}=<redacted>"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    ["pass", "password"].iter().any(|s| name.eq_ignore_ascii_case(s))
}

#[cfg(not(all(feature = "sqlite", feature = "redis", feature = "redis-cluster")))]
fn not_built(feature: &str) -> BackendError {
    BackendError::new(
        "uri",
        BackendErrorKind::InvalidUri,
        format!("this build of h3fleet has no {feature} backend (enable the `{feature}` cargo feature)"),
    )
}

#[cfg(feature = "sqlite")]
fn sqlite(uri: &str, path: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    if path.is_empty() {
        return Err(invalid(uri));
    }
    Ok(Arc::new(crate::cache::sqlite::SqliteBackend::open(path)?))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &str, _: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    Err(not_built("sqlite"))
}

/// The PEM roots in the file `path`, named by `uri`'s `ca=` parameter.
#[cfg(any(feature = "redis", feature = "memcached"))]
fn read_ca(uri: &str, path: &str) -> Result<Vec<u8>, BackendError> {
    std::fs::read(path).map_err(|e| {
        BackendError::new(
            "uri",
            BackendErrorKind::InvalidUri,
            format!("cannot read the CA file {path} of {}", redact_uri(uri)),
        )
        .with_source(e)
    })
}

/// `uri` without its `ca=PATH` query parameter, and the PEM roots read from
/// `PATH`.
#[cfg(feature = "redis")]
fn take_ca(uri: &str) -> Result<(String, crate::cache::RedisOptions), BackendError> {
    let mut options = crate::cache::RedisOptions::default();
    let Some((base, query)) = uri.split_once('?') else {
        return Ok((uri.to_owned(), options));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("ca=") {
            Some(path) => options.ca_pem = Some(read_ca(uri, path)?),
            None => kept.push(pair),
        }
    }
    let uri = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((uri, options))
}

#[cfg(feature = "redis")]
fn redis(uri: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    let (uri, options) = take_ca(uri)?;
    Ok(Arc::new(crate::cache::redis::RedisBackend::with_options(
        &uri, options,
    )?))
}

#[cfg(not(feature = "redis"))]
fn redis(_: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    Err(not_built("redis"))
}

/// `[userinfo@]h1:p1,h2:p2` → `redis://[userinfo@]h1:p1`, ... (`rediss://`
/// for `rediss+cluster`).
#[cfg(feature = "redis-cluster")]
fn redis_cluster(uri: &str, scheme: &str, rest: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    let (rest, options) = take_ca(rest)?;
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), rest.as_str()),
    };
    let hosts = hosts.trim_end_matches('/');
    if hosts.is_empty() || hosts.split(',').any(|h| h.is_empty() || h.contains(['/', '?'])) {
        return Err(invalid(uri));
    }
    let node_scheme = scheme.split('+').next().unwrap_or("redis").to_ascii_lowercase();
    let nodes = hosts.split(',').map(|h| format!("{node_scheme}://{userinfo}{h}"));
    Ok(Arc::new(crate::cache::redis::RedisClusterBackend::with_options(
        nodes, options,
    )?))
}

#[cfg(not(feature = "redis-cluster"))]
fn redis_cluster(_: &str, _: &str, _: &str) -> Result<Arc<dyn SessionCacheBackend>, BackendError> {
    Err(not_built("redis-cluster"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_accepted_form_builds_its_backend() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        assert_eq!(backend_from_uri("memory:").unwrap().name(), "memory");
        assert_eq!(
            backend_from_uri(&format!("sqlite:{}", db.display()))
                .unwrap()
                .name(),
            "sqlite"
        );
        assert_eq!(
            backend_from_uri(&format!("sqlite://{}", db.display()))
                .unwrap()
                .name(),
            "sqlite"
        );
        assert_eq!(
            backend_from_uri("redis://127.0.0.1:6379/1").unwrap().name(),
            "redis"
        );
        assert_eq!(
            backend_from_uri("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
                .unwrap()
                .name(),
            "redis-cluster"
        );
        assert_eq!(
            backend_from_uri("redis+cluster://:pw@127.0.0.1:7000")
                .unwrap()
                .name(),
            "redis-cluster"
        );
    }

    #[test]
    fn bad_uris_name_the_accepted_forms() {
        for bad in [
            "",
            "memory",
            "memory:x",
            "sqlite:",
            "postgres://x",
            "redis+cluster://",
            "redis+cluster:x",
            "redis+cluster://a:1,,b:2",
        ] {
            let err = backend_from_uri(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert_eq!(err.kind(), BackendErrorKind::InvalidUri, "{bad:?}");
            assert!(err.to_string().contains("sqlite:PATH"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn passwords_never_appear_in_uri_errors() {
        let err = backend_from_uri("foo://user:hunter2@host").err().unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
