//! [`RedisBackend`] and [`RedisClusterBackend`]: the store for a fleet.
//!
//! Both keep values the same way: a session is its JSON text under `SET key
//! value PX ttl`, an ECH config its raw bytes. Only how a connection is made
//! differs, so one private core, generic over a [`Connector`], does the work.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, RedisError};
use tokio::sync::OnceCell;

use crate::cache::backend::{
    check_ttl, BackendError, BackendErrorKind, SessionCacheBackend, StoredSession, TlsSessionState,
    MAX_VALUE_LEN,
};
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
