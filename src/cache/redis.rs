//! [`RedisBackend`] and [`RedisClusterBackend`]: the store for a fleet.
//!
//! Both keep values the same way: a session is its JSON text under `SET key
//! value PX ttl`, an ECH config its raw bytes. Only how a connection is made
//! differs, so one private core, generic over a [`Connector`], does the work.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError};
use tokio::sync::OnceCell;

use crate::cache::backend::{
    check_ttl, BackendError, BackendErrorKind, SessionCacheBackend, StoredSession, TlsSessionState,
    MAX_VALUE_LEN,
};
use crate::cache::pool::PoolTake;
use crate::cache::redact_uri;

/// Timeouts and TLS roots of a Redis connection.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// How long one connection attempt may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How long one command may wait for its reply. Default 2 s.
    pub response_timeout: Duration,
    /// For `rediss://`: the PEM roots the server's certificate must chain
    /// to, instead of the system's (`?ca=PATH` in a URI given to
    /// [`backend_from_uri`](crate::cache::backend_from_uri)).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .finish()
    }
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            ca_pem: None,
        }
    }
}

/// redis-rs's TLS settings for `options`: its own roots, if given.
fn tls_roots(options: &RedisOptions) -> Option<redis::TlsCertificates> {
    options.ca_pem.clone().map(|pem| redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// Deletes `KEYS[1]` if it holds the session whose `ticket` is `ARGV[2]`
/// (`ARGV[1]` = `ticket`), or a value that is no session h3fleet reads
/// (`ARGV[1]` = `unreadable`: longer than `ARGV[3]` bytes, not JSON, or
/// without a string ticket): compare and delete in one atomic step.
const DELETE_SESSION_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local t = nil
if #v <= tonumber(ARGV[3]) then
  local ok, d = pcall(cjson.decode, v)
  if ok and type(d) == 'table' and type(d.ticket) == 'string' then t = d.ticket end
end
if (ARGV[1] == 'ticket' and t == ARGV[2]) or (ARGV[1] == 'unreadable' and t == nil) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Deletes `KEYS[1]` if its value is exactly `ARGV[1]`.
const DELETE_VALUE_IF: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Adds `ARGV[1]` (a session's JSON) to the pool `KEYS[1]`, a sorted set
/// scored by each ticket's expiry (`ARGV[2]`, ms): drops the expired
/// (`ARGV[3]` = now) and all but the newest `ARGV[4]`, and lets the key
/// expire with its last ticket. Any copy of the same ticket (`ARGV[5]`, as
/// a JSON prefix) goes first, so a ticket is pooled once.
const POOL_ADD: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #ARGV[5]) == ARGV[5] then redis.call('ZREM', KEYS[1], m) end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[4])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1) end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
";

/// Takes the newest live ticket of the pool `KEYS[1]` (`ARGV[1]` = now, ms)
/// in one atomic step: `{ticket JSON, tickets left}`, `{}` when empty, or
/// `{'', left}` for a member longer than `ARGV[2]` bytes (taken, not sent).
const POOL_TAKE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local top = redis.call('ZPOPMAX', KEYS[1])
if #top == 0 then return {} end
local left = redis.call('ZCARD', KEYS[1])
if #top[1] > tonumber(ARGV[2]) then return {'', left} end
return {top[1], left}
";

/// Makes the connection a [`Store`] uses; the connection reconnects by itself.
#[async_trait]
trait Connector: Send + Sync + 'static {
    type Conn: ConnectionLike + Clone + Send + Sync + 'static;
    const NAME: &'static str;
    async fn connect(&self) -> Result<Self::Conn, RedisError>;
}

/// The shared core: connects on first use, then runs commands.
struct Store<C: Connector> {
    connector: C,
    conn: OnceCell<C::Conn>,
    /// The URI with any password replaced, for `Debug`.
    target: String,
}

impl<C: Connector> Store<C> {
    fn new(connector: C, target: String) -> Self {
        Self {
            connector,
            conn: OnceCell::new(),
            target,
        }
    }

    /// The connection, made on first use. A failed attempt is not cached:
    /// the next call tries again, so a Redis that starts late is picked up.
    async fn conn(&self) -> Result<C::Conn, BackendError> {
        self.conn
            .get_or_try_init(|| self.connector.connect())
            .await
            .cloned()
            .map_err(|e| error::<C>(&format!("cannot connect to {}", self.target), e))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd, what: &str) -> Result<T, BackendError> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(|e| error::<C>(what, e))
    }

    /// At most [`MAX_VALUE_LEN`] + 1 bytes of the value at `key` (one more
    /// than allowed tells a too-long value), or `None`: `GETRANGE` answers
    /// `""` for a missing key, and an empty value is no entry either.
    async fn get_bounded(&self, key: &str, what: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let cmd = redis::cmd("GETRANGE").arg(key).arg(0).arg(MAX_VALUE_LEN).clone();
        let value: Vec<u8> = self.query(&cmd, what).await?;
        Ok((!value.is_empty()).then_some(value))
    }

    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
        let value = self.get_bounded(key, "GET of a session failed").await?;
        value.map(|v| TlsSessionState::from_json(C::NAME, &v)).transpose()
    }

    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
        let ms = check_ttl(C::NAME, ttl)?;
        let json = session.to_json()?;
        self.query(
            redis::cmd("SET").arg(key).arg(json).arg("PX").arg(ms),
            "SET of a session failed",
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.query::<i64>(redis::cmd("DEL").arg(key), "DEL failed")
            .await
            .map(drop)
    }

    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_bounded(key, "GET of an ECH config failed").await
    }

    async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
        let (mode, ticket) = match expected {
            StoredSession::Ticket(ticket) => ("ticket", ticket),
            StoredSession::Unreadable => ("unreadable", ""),
        };
        let script = redis::Script::new(DELETE_SESSION_IF);
        let mut invocation = script.key(key);
        invocation.arg(mode).arg(ticket).arg(MAX_VALUE_LEN);
        self.deleted_by(invocation, "conditional DEL of a session failed")
            .await
    }

    async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
        let script = redis::Script::new(DELETE_VALUE_IF);
        let mut invocation = script.key(key);
        invocation.arg(expected);
        self.deleted_by(invocation, "conditional DEL of an ECH config failed")
            .await
    }

    async fn pool_add(
        &self,
        key: &str,
        session: &TlsSessionState,
        ttl: Duration,
        max: NonZeroUsize,
    ) -> Result<(), BackendError> {
        let ms = check_ttl(C::NAME, ttl)?;
        let now = now_ms();
        let same_ticket = format!(
            "{{\"ticket\":{}",
            serde_json::Value::from(session.ticket.as_str())
        );
        let script = redis::Script::new(POOL_ADD);
        let mut invocation = script.key(key);
        invocation
            .arg(session.to_json()?)
            .arg(now.saturating_add(ms))
            .arg(now)
            .arg(max.get())
            .arg(same_ticket);
        let mut conn = self.conn().await?;
        let _: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| error::<C>("adding a ticket to a pool failed", e))?;
        Ok(())
    }

    async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
        let script = redis::Script::new(POOL_TAKE);
        let mut invocation = script.key(key);
        invocation.arg(now_ms()).arg(MAX_VALUE_LEN);
        let mut conn = self.conn().await?;
        let reply: Vec<redis::Value> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| error::<C>("taking a ticket from a pool failed", e))?;
        let (json, left) = match reply.as_slice() {
            [] => return Ok(None),
            [redis::Value::BulkString(json), redis::Value::Int(left)] => (json, *left),
            _ => {
                return Err(BackendError::new(
                    C::NAME,
                    BackendErrorKind::Decode,
                    "a pool take answered an unexpected shape",
                ))
            }
        };
        if json.is_empty() {
            return Err(BackendError::new(
                C::NAME,
                BackendErrorKind::Decode,
                format!("a pooled ticket longer than {MAX_VALUE_LEN} bytes was dropped"),
            ));
        }
        Ok(Some(PoolTake {
            session: TlsSessionState::from_json(C::NAME, json)?,
            left: usize::try_from(left).ok(),
        }))
    }

    async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
        let cmd = redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg(format!("({}", now_ms()))
            .arg("+inf")
            .clone();
        let members: Vec<Vec<u8>> = self.query(&cmd, "reading a pool failed").await?;
        members
            .iter()
            .map(|m| TlsSessionState::from_json(C::NAME, m))
            .collect()
    }

    /// Runs a compare-and-delete script; true if it deleted the key.
    async fn deleted_by(
        &self,
        script: redis::ScriptInvocation<'_>,
        what: &str,
    ) -> Result<bool, BackendError> {
        let mut conn = self.conn().await?;
        let deleted: i64 = script
            .invoke_async(&mut conn)
            .await
            .map_err(|e| error::<C>(what, e))?;
        Ok(deleted == 1)
    }

    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let ms = check_ttl(C::NAME, ttl)?;
        self.query(
            redis::cmd("SET").arg(key).arg(config).arg("PX").arg(ms),
            "SET of an ECH config failed",
        )
        .await
    }
}

/// `SCAN`s one node for keys starting with `prefix` until it has `limit`
/// or the cursor comes back to 0; `send` runs one `SCAN` command.
async fn scan_keys<F, Fut>(prefix: &str, limit: usize, mut send: F) -> Result<Vec<String>, RedisError>
where
    F: FnMut(Cmd) -> Fut,
    Fut: std::future::Future<Output = Result<(u64, Vec<String>), RedisError>>,
{
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    let (mut keys, mut cursor) = (Vec::new(), 0u64);
    loop {
        let cmd = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .clone();
        let (next, batch) = send(cmd).await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 || keys.len() >= limit {
            keys.truncate(limit);
            return Ok(keys);
        }
    }
}

impl RedisBackend {
    async fn list_keys_with_scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let conn = self.store.conn().await?;
        let mut keys = scan_keys(prefix, limit, |cmd| {
            let mut conn = conn.clone();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
        .map_err(|e| error::<SingleNode>("SCAN failed", e))?;
        keys.sort();
        Ok(keys)
    }
}

fn now_ms() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn error<C: Connector>(what: &str, e: RedisError) -> BackendError {
    let kind = if e.is_timeout() {
        BackendErrorKind::Timeout
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        BackendErrorKind::Connect
    } else {
        BackendErrorKind::Io
    };
    BackendError::new(C::NAME, kind, what.to_owned()).with_source(e)
}

/// Implements [`SessionCacheBackend`] for a public type by handing every call
/// to its `store` field.
macro_rules! delegate_to_store {
    ($ty:ty, $name:expr) => {
        #[async_trait]
        impl SessionCacheBackend for $ty {
            async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
                self.store.get(key).await
            }
            async fn put(
                &self,
                key: &str,
                session: &TlsSessionState,
                ttl: Duration,
            ) -> Result<(), BackendError> {
                self.store.put(key, session, ttl).await
            }
            async fn delete(&self, key: &str) -> Result<(), BackendError> {
                self.store.delete(key).await
            }
            async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
                self.store.get_ech_config(key).await
            }
            async fn put_ech_config(
                &self,
                key: &str,
                config: &[u8],
                ttl: Duration,
            ) -> Result<(), BackendError> {
                self.store.put_ech_config(key, config, ttl).await
            }
            async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
                self.store.delete_if(key, expected).await
            }
            async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
                self.store.delete_ech_config_if(key, expected).await
            }
            async fn pool_add(
                &self,
                key: &str,
                session: &TlsSessionState,
                ttl: Duration,
                max: NonZeroUsize,
            ) -> Result<(), BackendError> {
                self.store.pool_add(key, session, ttl, max).await
            }
            async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
                self.store.pool_take(key).await
            }
            async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
                self.store.pool_peek(key).await
            }
            async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
                self.list_keys_with_scan(prefix, limit).await
            }
            fn name(&self) -> &'static str {
                $name
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("target", &self.store.target)
                    .finish()
            }
        }
    };
}

struct SingleNode {
    client: redis::Client,
    config: ConnectionManagerConfig,
}

#[async_trait]
impl Connector for SingleNode {
    type Conn = ConnectionManager;
    const NAME: &'static str = "redis";

    async fn connect(&self) -> Result<ConnectionManager, RedisError> {
        ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await
    }
}

/// A backend on one Redis server (or a Redis-compatible one: Valkey, KeyDB,
/// Dragonfly), shared by a fleet.
///
/// ## Behavior
///
/// - No I/O happens in [`new`](Self::new); the connection is made on first
///   use, and a failed attempt is retried by the next call, so a replica that
///   starts before Redis does is not stuck.
/// - The connection is a `redis` crate `ConnectionManager`: one multiplexed
///   connection that reconnects by itself when it breaks. A reconnect is
///   tried once per command, without back-off sleeps: a Redis that refuses
///   connections costs a command well under a millisecond (with retries it
///   cost about half a second each), and the circuit breaker, not the
///   connection, decides when to stop asking.
/// - Each command waits at most [`RedisOptions::response_timeout`].
///
/// ```
/// use h3fleet::cache::RedisBackend;
///
/// let backend = RedisBackend::new("redis://127.0.0.1:6379/0")?;
/// # Ok::<(), h3fleet::cache::BackendError>(())
/// ```
pub struct RedisBackend {
    store: Store<SingleNode>,
}

impl RedisBackend {
    /// A backend for `uri`, `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`,
    /// or `rediss://...` for TLS (the certificate is verified against the
    /// system roots, or [`RedisOptions::ca_pem`]). A user name is a Redis
    /// ACL user.
    ///
    /// # Errors
    ///
    /// The URI cannot be parsed.
    pub fn new(uri: &str) -> Result<Self, BackendError> {
        Self::with_options(uri, RedisOptions::default())
    }

    /// As [`new`](Self::new), with the given timeouts.
    ///
    /// # Errors
    ///
    /// The URI cannot be parsed.
    pub fn with_options(uri: &str, options: RedisOptions) -> Result<Self, BackendError> {
        let client = match tls_roots(&options) {
            Some(roots) => redis::Client::build_with_tls(uri, roots),
            None => redis::Client::open(uri),
        }
        .map_err(|e| {
            BackendError::new(
                "redis",
                BackendErrorKind::InvalidUri,
                format!("cannot parse {}", redact_uri(uri)),
            )
            .with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            // No retries: a request must not sleep through back-offs (see above).
            .set_number_of_retries(0);
        Ok(Self {
            store: Store::new(SingleNode { client, config }, redact_uri(uri)),
        })
    }
}

delegate_to_store!(RedisBackend, "redis");

#[cfg(feature = "redis-cluster")]
pub use cluster::RedisClusterBackend;

#[cfg(feature = "redis-cluster")]
mod cluster {
    use super::*;
    use redis::cluster::ClusterClient;
    use redis::cluster_async::ClusterConnection;
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

    pub(super) struct Cluster {
        client: ClusterClient,
    }

    #[async_trait]
    impl Connector for Cluster {
        type Conn = ClusterConnection;
        const NAME: &'static str = "redis-cluster";

        async fn connect(&self) -> Result<ClusterConnection, RedisError> {
            self.client.get_async_connection().await
        }
    }

    /// A backend on a Redis Cluster, for fleets that outgrow one Redis.
    ///
    /// Every key is independent, so keys spread evenly over the cluster's
    /// slots. The connection learns the cluster's topology from the seed
    /// nodes, follows `MOVED`/`ASK` redirections and reconnects by itself;
    /// like [`RedisBackend`] it is made on first use.
    ///
    /// ```
    /// use h3fleet::cache::RedisClusterBackend;
    ///
    /// let backend = RedisClusterBackend::new(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?;
    /// # Ok::<(), h3fleet::cache::BackendError>(())
    /// ```
    pub struct RedisClusterBackend {
        pub(super) store: Store<Cluster>,
    }

    impl RedisClusterBackend {
        /// A backend whose seed nodes are `nodes`, each a `redis://` URI (or
        /// all `rediss://`, for TLS).
        ///
        /// # Errors
        ///
        /// No node is given, or a node URI cannot be parsed.
        pub fn new<I, S>(nodes: I) -> Result<Self, BackendError>
        where
            I: IntoIterator<Item = S>,
            S: AsRef<str>,
        {
            Self::with_options(nodes, RedisOptions::default())
        }

        /// As [`new`](Self::new), with the given timeouts.
        ///
        /// # Errors
        ///
        /// As [`new`](Self::new).
        pub fn with_options<I, S>(nodes: I, options: RedisOptions) -> Result<Self, BackendError>
        where
            I: IntoIterator<Item = S>,
            S: AsRef<str>,
        {
            let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
            let target = nodes.iter().map(|n| redact_uri(n)).collect::<Vec<_>>().join(",");
            let invalid = |msg: String| BackendError::new("redis-cluster", BackendErrorKind::InvalidUri, msg);
            if nodes.is_empty() {
                return Err(invalid("a Redis Cluster needs at least one seed node".into()));
            }
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .retries(2);
            if let Some(roots) = tls_roots(&options) {
                builder = builder.certs(roots);
            }
            let client = builder
                .build()
                .map_err(|e| invalid(format!("cannot use seed nodes {target}")).with_source(e))?;
            Ok(Self {
                store: Store::new(Cluster { client }, target),
            })
        }
    }

    impl RedisClusterBackend {
        /// SCANs every primary: the cluster's keys are spread over them.
        async fn list_keys_with_scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
            let conn = self.store.conn().await?;
            let failed = |e| error::<Cluster>("SCAN failed", e);
            let slots = conn
                .clone()
                .route_command(
                    redis::cmd("CLUSTER").arg("SLOTS").clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await
                .map_err(failed)?;
            let mut keys = Vec::new();
            for (host, port) in primaries(&slots) {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let batch = scan_keys(prefix, limit.saturating_sub(keys.len()), |cmd| {
                    let (mut conn, routing) = (conn.clone(), routing.clone());
                    async move {
                        let reply = conn.route_command(cmd, routing).await?;
                        Ok(redis::from_redis_value(reply)?)
                    }
                })
                .await
                .map_err(failed)?;
                keys.extend(batch);
                if keys.len() >= limit {
                    break;
                }
            }
            keys.sort();
            Ok(keys)
        }
    }

    /// The primaries' `(host, port)` in a `CLUSTER SLOTS` reply: each range
    /// is `[start, end, [host, port, id, ...], replicas...]`.
    fn primaries(slots: &redis::Value) -> Vec<(String, u16)> {
        let redis::Value::Array(ranges) = slots else {
            return Vec::new();
        };
        let mut out: Vec<(String, u16)> = Vec::new();
        for range in ranges {
            let redis::Value::Array(fields) = range else {
                continue;
            };
            let Some(redis::Value::Array(node)) = fields.get(2) else {
                continue;
            };
            let host = match node.first() {
                Some(redis::Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                _ => continue,
            };
            let Some(redis::Value::Int(port)) = node.get(1) else {
                continue;
            };
            let Ok(port) = u16::try_from(*port) else { continue };
            if !out.contains(&(host.clone(), port)) {
                out.push((host, port));
            }
        }
        out
    }

    delegate_to_store!(RedisClusterBackend, "redis-cluster");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_debug_output() {
        let backend = RedisBackend::new("redis://app:hunter2@127.0.0.1:6379/2").unwrap();
        let text = format!("{backend:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("127.0.0.1:6379/2"), "{text}");
    }

    #[test]
    fn unparsable_uri_is_invalid_uri() {
        let err = RedisBackend::new("redis://127.0.0.1:notaport").unwrap_err();
        assert_eq!(err.kind(), BackendErrorKind::InvalidUri);
    }
}
