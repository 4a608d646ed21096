//! [`MemcachedBackend`]: sessions and ECH configs in memcached, over its
//! text protocol (`get`, `set`, `delete`) on a small pool of connections.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use crate::cache::backend::{
    check_ttl, BackendError, BackendErrorKind, SessionCacheBackend, StoredSession, TlsSessionState,
    MAX_VALUE_LEN,
};
use crate::cache::link_tls::{Link, LinkTls};
use crate::cache::pool::{PoolItem, PoolItems, PoolTake};

const NAME: &str = "memcached";
/// Idle connections kept for reuse.
const POOL_SIZE: usize = 8;
/// The longest connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a pool update starts again after another writer's CAS
/// won the race.
const POOL_ATTEMPTS: usize = 32;
/// memcached's longest key.
const MAX_KEY_LEN: usize = 250;
/// Keys that memcached could not take as they are are stored under this
/// prefix and the SHA-256 of the key (and so is any key with this prefix).
const HASHED_PREFIX: &str = "h3fleet#sha256:";

type Conn = BufStream<Box<dyn Link>>;

/// A backend on one memcached server.
///
/// memcached keeps time in whole seconds and may evict entries early under
/// memory pressure (a miss, which the cache treats as such). So that every
/// TTL holds to the millisecond, as the contract asks, each value carries its
/// deadline and a read past it is a miss; memcached's own expiry (a second
/// later) reclaims the memory.
///
/// Keys memcached cannot store as they are (longer than 250 bytes, or with
/// spaces or control characters) are stored under their SHA-256.
///
/// ```no_run
/// use h3fleet::cache::backend_from_uri;
/// let backend = backend_from_uri("memcached://127.0.0.1:11211")?;
/// # Ok::<(), h3fleet::cache::BackendError>(())
/// ```
pub struct MemcachedBackend {
    addr: String,
    tls: Option<LinkTls>,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl MemcachedBackend {
    /// A backend on the server at `addr` (`HOST:PORT`), over plain TCP.
    /// Connections are made on first use. memcached has no authentication
    /// on its text protocol: use it on a private network, seal the values
    /// (cache keys), or use [`with_tls`](Self::with_tls).
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            tls: None,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A backend on a memcached started with TLS (`-Z`), whose certificate
    /// is verified for the host of `addr` against `ca_pem` (PEM roots) or
    /// the system roots (`memcacheds://HOST:PORT[?ca=PATH]`).
    ///
    /// # Errors
    ///
    /// The roots cannot be read.
    pub fn with_tls(addr: impl Into<String>, ca_pem: Option<&[u8]>) -> Result<Self, BackendError> {
        let tls = LinkTls::new(ca_pem).map_err(|e| error(BackendErrorKind::InvalidUri, e))?;
        Ok(Self {
            tls: Some(tls),
            ..Self::new(addr)
        })
    }

    async fn checkout(&self) -> Result<Conn, BackendError> {
        let reused = crate::sync::lock(&self.idle).pop();
        if let Some(conn) = reused {
            return Ok(conn);
        }
        let connect = TcpStream::connect(&self.addr);
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| error(BackendErrorKind::Timeout, format!("connecting to {}", self.addr)))?
            .map_err(|e| error(BackendErrorKind::Connect, format!("{}: {e}", self.addr)))?;
        let _ = tcp.set_nodelay(true);
        let link: Box<dyn Link> = match &self.tls {
            Some(tls) => {
                let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let handshake = tls.connect(host, tcp);
                tokio::time::timeout(CONNECT_TIMEOUT, handshake)
                    .await
                    .map_err(|_| error(BackendErrorKind::Timeout, format!("TLS with {}", self.addr)))?
                    .map_err(|e| error(BackendErrorKind::Connect, e))?
            }
            None => Box::new(tcp),
        };
        Ok(BufStream::new(link))
    }

    fn checkin(&self, conn: Conn) {
        {
            let mut idle = crate::sync::lock(&self.idle);
            if idle.len() < POOL_SIZE {
                idle.push(conn);
            }
        }
    }

    /// Runs one command on a pooled connection; a connection that failed
    /// is dropped, not returned to the pool.
    async fn with_conn<T, F>(&self, run: F) -> Result<T, BackendError>
    where
        F: for<'c> FnOnce(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, BackendError>> + Send + 'c>,
        >,
    {
        let mut conn = self.checkout().await?;
        let result = run(&mut conn).await;
        if result.is_ok() {
            self.checkin(conn);
        }
        result
    }

    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let key = wire_key(key);
        let stored = self
            .with_conn(|conn| {
                Box::pin(async move {
                    conn.write_all(format!("get {key}\r\n").as_bytes())
                        .await
                        .map_err(io)?;
                    conn.flush().await.map_err(io)?;
                    read_get_reply(conn).await
                })
            })
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (deadline, value) = split_deadline(&stored)?;
        if deadline <= now_millis() {
            return Ok(None);
        }
        Ok(Some(value.to_vec()))
    }

    async fn set_raw(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), BackendError> {
        check_ttl(NAME, ttl)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let deadline = now_millis().saturating_add(ttl_ms);
        let mut stored = format!("{deadline}\n").into_bytes();
        stored.extend_from_slice(value);
        // Whole seconds, one past the deadline; at most 30 days (memcached
        // reads larger numbers as absolute times).
        let exptime = (ttl.as_secs() + 2).min(30 * 24 * 3600);
        let key = wire_key(key);
        self.with_conn(|conn| {
            Box::pin(async move {
                let head = format!("set {key} 0 {exptime} {}\r\n", stored.len());
                conn.write_all(head.as_bytes()).await.map_err(io)?;
                conn.write_all(&stored).await.map_err(io)?;
                conn.write_all(b"\r\n").await.map_err(io)?;
                conn.flush().await.map_err(io)?;
                match read_line(conn).await?.as_str() {
                    "STORED" => Ok(()),
                    other => Err(error(BackendErrorKind::Io, format!("set answered {other:?}"))),
                }
            })
        })
        .await
    }

    /// Deletes `key` if `matches` its value (without the deadline; `None`
    /// for a value too long to read), in one step: the meta get returns the
    /// item's CAS token, and the meta delete removes the item only if that
    /// token is still current.
    async fn delete_raw_if(
        &self,
        key: &str,
        matches: impl FnOnce(Option<&[u8]>) -> bool,
    ) -> Result<bool, BackendError> {
        let wire = wire_key(key);
        let mut conn = self.checkout().await?;
        conn.write_all(format!("mg {wire} v c\r\n").as_bytes())
            .await
            .map_err(io)?;
        conn.flush().await.map_err(io)?;
        let (cas, matched) = match read_meta_get_reply(&mut conn).await? {
            MetaGet::Missing => {
                self.checkin(conn);
                return Ok(false);
            }
            MetaGet::Value(stored, cas) => {
                self.checkin(conn);
                let value = split_deadline(&stored).map_or(&stored[..], |(_, value)| value);
                (cas, matches(Some(value)))
            }
            // The unread value goes with the connection.
            MetaGet::TooLong(cas) => (cas, matches(None)),
        };
        if !matched {
            return Ok(false);
        }
        self.command(format!("md {wire} C{cas}\r\n"), |reply| match reply {
            "HD" => Some(true),
            "NF" | "EX" => Some(false),
            _ => None,
        })
        .await
    }

    /// Sends one command line and reads its one-line reply, which `read`
    /// turns into the result (`None`: an unexpected reply, an error).
    async fn command<T: Send + 'static>(
        &self,
        line: String,
        read: impl FnOnce(&str) -> Option<T> + Send + 'static,
    ) -> Result<T, BackendError> {
        self.with_conn(|conn| {
            Box::pin(async move {
                conn.write_all(line.as_bytes()).await.map_err(io)?;
                conn.flush().await.map_err(io)?;
                let reply = read_line(conn).await?;
                let verb = line.split(' ').next().unwrap_or_default().to_owned();
                read(&reply).ok_or_else(|| error(BackendErrorKind::Io, format!("{verb} answered {reply:?}")))
            })
        })
        .await
    }

    /// Reads the pool at `key` and its CAS token, lets `edit` change it, and
    /// writes it back only if no one wrote it in between (`ms ... C<cas>`,
    /// or `ME` to add a new one); on a race it starts again, up to
    /// [`POOL_ATTEMPTS`] times. That makes every take atomic: of two
    /// takers that read the same pool, only one's write lands.
    async fn update_pool<T>(
        &self,
        key: &str,
        edit: impl Fn(&mut PoolItems, u64) -> T,
    ) -> Result<T, BackendError> {
        let wire = wire_key(key);
        for _ in 0..POOL_ATTEMPTS {
            let (mut items, cas) = self.read_pool(&wire).await?;
            let out = edit(&mut items, now_millis());
            if self.write_pool(&wire, &items, cas).await? {
                return Ok(out);
            }
        }
        Err(error(
            BackendErrorKind::Timeout,
            format!("the pool changed under {POOL_ATTEMPTS} attempts in a row"),
        ))
    }

    /// The pool at `wire` and its CAS token (`None`: no item). A value that
    /// is not a pool counts as an empty one, to be overwritten.
    async fn read_pool(&self, wire: &str) -> Result<(PoolItems, Option<u64>), BackendError> {
        let mut conn = self.checkout().await?;
        conn.write_all(format!("mg {wire} v c\r\n").as_bytes())
            .await
            .map_err(io)?;
        conn.flush().await.map_err(io)?;
        match read_meta_get_reply(&mut conn).await? {
            MetaGet::Missing => {
                self.checkin(conn);
                Ok((PoolItems::default(), None))
            }
            MetaGet::Value(stored, cas) => {
                self.checkin(conn);
                let items = split_deadline(&stored)
                    .and_then(|(_, json)| PoolItems::from_json(NAME, json))
                    .unwrap_or_default();
                Ok((items, Some(cas)))
            }
            MetaGet::TooLong(cas) => Ok((PoolItems::default(), Some(cas))),
        }
    }

    /// Writes `items` at `wire` if its CAS token is still `cas`; false if it
    /// changed (or appeared, or went) in the meantime.
    async fn write_pool(
        &self,
        wire: &str,
        items: &PoolItems,
        cas: Option<u64>,
    ) -> Result<bool, BackendError> {
        let Some(deadline) = items.last_expiry().filter(|_| !items.is_empty()) else {
            let Some(cas) = cas else { return Ok(true) };
            return self
                .command(format!("md {wire} C{cas}\r\n"), |reply| match reply {
                    "HD" | "NF" => Some(reply == "HD"),
                    "EX" => Some(false),
                    _ => None,
                })
                .await;
        };
        let mut stored = format!("{deadline}\n").into_bytes();
        stored.extend_from_slice(&items.to_json()?);
        let secs = deadline.saturating_sub(now_millis()) / 1000 + 2;
        let exptime = secs.min(30 * 24 * 3600);
        let mode = cas.map_or_else(|| "ME".to_owned(), |cas| format!("C{cas}"));
        let head = format!("ms {wire} {} T{exptime} {mode}\r\n", stored.len());
        self.with_conn(|conn| {
            Box::pin(async move {
                conn.write_all(head.as_bytes()).await.map_err(io)?;
                conn.write_all(&stored).await.map_err(io)?;
                conn.write_all(b"\r\n").await.map_err(io)?;
                conn.flush().await.map_err(io)?;
                match read_line(conn).await?.as_str() {
                    "HD" => Ok(true),
                    "NS" | "EX" | "NF" => Ok(false),
                    other => Err(error(BackendErrorKind::Io, format!("ms answered {other:?}"))),
                }
            })
        })
        .await
    }

    async fn delete_raw(&self, key: &str) -> Result<(), BackendError> {
        let line = format!("delete {}\r\n", wire_key(key));
        self.command(line, |reply| {
            matches!(reply, "DELETED" | "NOT_FOUND").then_some(())
        })
        .await
    }
}

#[async_trait]
impl SessionCacheBackend for MemcachedBackend {
    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
        match self.get_raw(key).await? {
            Some(json) => TlsSessionState::from_json(NAME, &json).map(Some),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
        let json = session.to_json()?;
        self.set_raw(key, json.as_bytes(), ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.delete_raw(key).await
    }

    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_raw(key).await
    }

    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError> {
        self.set_raw(key, config, ttl).await
    }

    async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
        self.delete_raw_if(key, |value| {
            let ticket = value
                .filter(|v| v.len() <= MAX_VALUE_LEN)
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                .and_then(|v| v.get("ticket").and_then(|t| t.as_str()).map(str::to_owned));
            match expected {
                StoredSession::Ticket(want) => ticket.as_deref() == Some(want),
                StoredSession::Unreadable => ticket.is_none(),
            }
        })
        .await
    }

    async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
        self.delete_raw_if(key, |value| value == Some(expected)).await
    }

    async fn pool_add(
        &self,
        key: &str,
        session: &TlsSessionState,
        ttl: Duration,
        max: NonZeroUsize,
    ) -> Result<(), BackendError> {
        check_ttl(NAME, ttl)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.update_pool(key, |items, now| {
            let item = PoolItem {
                session: session.clone(),
                expires_at: now.saturating_add(ttl_ms),
            };
            items.add(item, now, max);
        })
        .await
    }

    async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
        self.update_pool(key, |items, now| items.take(now)).await
    }

    async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
        let (items, _) = self.read_pool(&wire_key(key)).await?;
        Ok(items.live(now_millis()).map(|i| i.session.clone()).collect())
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(NAME, kind, message)
}

fn io(e: std::io::Error) -> BackendError {
    error(BackendErrorKind::Io, e.to_string())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The key as memcached gets it: as is when it can be, else hashed.
fn wire_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && !key.starts_with(HASHED_PREFIX)
        && key.bytes().all(|b| b > b' ' && b != 0x7f);
    if plain {
        return key.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// Splits a stored value into its deadline (ms since the epoch) and the
/// value.
fn split_deadline(stored: &[u8]) -> Result<(u64, &[u8]), BackendError> {
    let corrupt = || error(BackendErrorKind::Decode, "stored value has no deadline");
    let newline = stored.iter().position(|&b| b == b'\n').ok_or_else(corrupt)?;
    let deadline = std::str::from_utf8(&stored[..newline])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(corrupt)?;
    Ok((deadline, &stored[newline + 1..]))
}

/// The longest reply line read (`VALUE <250-byte key> <flags> <bytes>` and
/// the status lines are far shorter).
const MAX_LINE_LEN: u64 = 512;
/// The longest value read: h3fleet's largest plus the deadline line.
const MAX_STORED_LEN: usize = MAX_VALUE_LEN + 32;

/// Reads one `\r\n`-terminated line (without the terminator), of at most
/// [`MAX_LINE_LEN`] bytes.
async fn read_line(conn: &mut Conn) -> Result<String, BackendError> {
    let mut line = Vec::new();
    let n = (&mut *conn)
        .take(MAX_LINE_LEN)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io)?;
    if n == 0 {
        return Err(error(BackendErrorKind::Io, "connection closed"));
    }
    if !line.ends_with(b"\n") {
        return Err(error(BackendErrorKind::Io, "a reply line without its end"));
    }
    let line = String::from_utf8_lossy(&line);
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The answer to `mg <key> v c`.
enum MetaGet {
    /// `EN`: no item.
    Missing,
    /// The value and its CAS token.
    Value(Vec<u8>, u64),
    /// A value longer than h3fleet reads (left unread) and its CAS token.
    TooLong(u64),
}

/// Reads the answer to `mg <key> v c`: `VA <bytes> c<cas>`, the data; or
/// `EN` (no item).
async fn read_meta_get_reply(conn: &mut Conn) -> Result<MetaGet, BackendError> {
    let head = read_line(conn).await?;
    if head == "EN" {
        return Ok(MetaGet::Missing);
    }
    let bad = || error(BackendErrorKind::Io, format!("mg answered {head:?}"));
    let mut fields = head.strip_prefix("VA ").ok_or_else(bad)?.split(' ');
    let len = fields
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(bad)?;
    let cas = fields
        .find_map(|f| f.strip_prefix('c').and_then(|c| c.parse::<u64>().ok()))
        .ok_or_else(bad)?;
    if len > MAX_STORED_LEN {
        return Ok(MetaGet::TooLong(cas));
    }
    Ok(MetaGet::Value(read_data(conn, len).await?, cas))
}

/// Reads `len` bytes of item data and its line end.
async fn read_data(conn: &mut Conn, len: usize) -> Result<Vec<u8>, BackendError> {
    if len > MAX_STORED_LEN {
        // The connection is dropped with the unread value.
        return Err(error(
            BackendErrorKind::Decode,
            format!("stored value of {len} bytes is longer than {MAX_STORED_LEN}"),
        ));
    }
    let mut data = vec![0u8; len.saturating_add(2)];
    conn.read_exact(&mut data).await.map_err(io)?;
    if !data.ends_with(b"\r\n") {
        return Err(error(BackendErrorKind::Io, "data without its line end"));
    }
    data.truncate(len);
    Ok(data)
}

/// Reads the answer to a one-key `get`: `VALUE <key> <flags> <bytes>`, the
/// data, `END`; or just `END`.
async fn read_get_reply(conn: &mut Conn) -> Result<Option<Vec<u8>>, BackendError> {
    let head = read_line(conn).await?;
    if head == "END" {
        return Ok(None);
    }
    let len = head
        .strip_prefix("VALUE ")
        .and_then(|rest| rest.split(' ').nth(2))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| error(BackendErrorKind::Io, format!("get answered {head:?}")))?;
    let data = read_data(conn, len).await?;
    match read_line(conn).await?.as_str() {
        "END" => Ok(Some(data)),
        other => Err(error(
            BackendErrorKind::Io,
            format!("get: expected END, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_memcached_cannot_take_are_hashed_and_never_collide_with_plain_ones() {
        assert_eq!(
            wire_key("h3fleet:sessions:default:h3:a.example:443"),
            "h3fleet:sessions:default:h3:a.example:443"
        );
        for awkward in [
            "with space",
            "",
            "tab\there",
            &"x".repeat(251),
            "h3fleet#sha256:abc",
        ] {
            let wire = wire_key(awkward);
            assert!(wire.starts_with(HASHED_PREFIX), "{awkward:?}");
            assert!(wire.len() <= MAX_KEY_LEN);
        }
        assert_ne!(wire_key("a b"), wire_key("a  b"));
    }

    #[test]
    fn stored_values_carry_their_deadline() {
        assert_eq!(split_deadline(b"123\nabc").unwrap(), (123, &b"abc"[..]));
        assert_eq!(split_deadline(b"123\n").unwrap(), (123, &b""[..]));
        assert!(split_deadline(b"abc").is_err());
        assert!(split_deadline(b"x\nabc").is_err());
    }
}
