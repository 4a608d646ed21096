//! [`SqliteBackend`]: the embedded default, one database file per host.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use crate::cache::backend::{
    check_ttl, BackendError, BackendErrorKind, SessionCacheBackend, StoredSession, TlsSessionState,
    MAX_VALUE_LEN,
};
use crate::cache::clock::{Clock, SystemClock};
use crate::cache::pool::PoolTake;
use crate::cache::private;

const NAME: &str = "sqlite";
/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for reuse.
const MAX_IDLE_CONNECTIONS: usize = 4;
/// Expired rows are purged once per this many writes.
const WRITES_BETWEEN_PURGES: u64 = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS h3fleet_sessions (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS h3fleet_sessions_expiry ON h3fleet_sessions (expires_at);
CREATE TABLE IF NOT EXISTS h3fleet_ech_configs (
    key        TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS h3fleet_ech_configs_expiry ON h3fleet_ech_configs (expires_at);
CREATE TABLE IF NOT EXISTS h3fleet_pool (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS h3fleet_pool_key ON h3fleet_pool (key, id);
CREATE INDEX IF NOT EXISTS h3fleet_pool_expiry ON h3fleet_pool (expires_at);
";

/// A backend in one SQLite database file, shared by every process on the
/// host that opens the same path.
///
/// This is the default for a single machine: tickets survive restarts and
/// are shared between the processes of one host, with nothing to run. For a
/// fleet of machines use [`RedisBackend`](crate::cache::RedisBackend).
///
/// ## Behavior
///
/// - The database runs in WAL mode, so readers never block the writer, and
///   every connection waits up to 5 s for another process's write lock
///   instead of failing.
/// - Every call runs on Tokio's blocking pool (`spawn_blocking`), never on a
///   runtime worker thread, over a small pool of connections.
/// - Each row carries its expiry (Unix milliseconds). Reads ignore expired
///   rows; every 64th write from this process purges them.
/// - Session values are stored as the same JSON text as in Redis; ECH
///   configs as raw bytes.
///
/// ```
/// use h3fleet::cache::SqliteBackend;
///
/// let dir = tempfile::tempdir()?;
/// let backend = SqliteBackend::open(dir.path().join("cache.db"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: Arc<Pool>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    writes: AtomicU64,
}

impl SqliteBackend {
    /// Opens (creating if needed, with its parent directories) the database
    /// at `path`. This blocks briefly on file I/O; call it at start-up.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or the file cannot be opened as a
    /// SQLite database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// As [`open`](Self::open), reading time from `clock`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private::create_dir(dir).map_err(|e| {
                BackendError::new(
                    NAME,
                    BackendErrorKind::Io,
                    format!("cannot create directory {}", dir.display()),
                )
                .with_source(e)
            })?;
        }
        private::warn_if_shared(&path);
        private::create_file(&path).map_err(|e| {
            BackendError::new(
                NAME,
                BackendErrorKind::Io,
                format!("cannot create database {}", path.display()),
            )
            .with_source(e)
        })?;
        let conn = connect(&path)?;
        // SQLite gives its `-wal` and `-shm` files the database's mode; older
        // builds left them world-readable.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            private::restrict(Path::new(&side));
        }
        conn.execute_batch(SCHEMA)
            .map_err(|e| db_error("cannot create the schema", e))?;
        let pool = Pool {
            path,
            idle: Mutex::new(vec![conn]),
            writes: AtomicU64::new(0),
        };
        Ok(Self {
            pool: Arc::new(pool),
            clock,
        })
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    fn now_ms(&self) -> i64 {
        let ms = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    fn expiry_ms(&self, ttl: Duration) -> Result<i64, BackendError> {
        let ttl = i64::try_from(check_ttl(NAME, ttl)?).unwrap_or(i64::MAX);
        Ok(self.now_ms().saturating_add(ttl))
    }

    /// Runs `job` with a pooled connection on the blocking pool.
    async fn run<T, F>(&self, job: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = job(&conn);
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|e| BackendError::new(NAME, BackendErrorKind::Io, "database task failed").with_source(e))?
    }

    /// After a write: purge expired rows now and then.
    fn purge_due(&self) -> bool {
        self.pool.writes.fetch_add(1, Ordering::Relaxed) % WRITES_BETWEEN_PURGES == WRITES_BETWEEN_PURGES - 1
    }
}

impl Pool {
    fn take(&self) -> Result<Connection, BackendError> {
        let idle = crate::sync::lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => connect(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = crate::sync::lock(&self.idle);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }
}

fn connect(path: &Path) -> Result<Connection, BackendError> {
    let conn = Connection::open(path)
        .map_err(|e| db_error(&format!("cannot open database {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_error("cannot set busy timeout", e))?;
    enable_wal(&conn)?;
    // NORMAL sync in WAL mode is durable across process crashes, which is
    // all a ticket cache needs.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| db_error("cannot set synchronous mode", e))?;
    Ok(conn)
}

/// Switches the file to WAL, which lets other processes read while one
/// writes. The mode is stored in the file, so only the first opener changes
/// it; but two processes opening a new file at once can see `SQLITE_BUSY`
/// here without SQLite running the busy handler, so this retries until the
/// busy timeout.
fn enable_wal(conn: &Connection) -> Result<(), BackendError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(BackendError::new(
                    NAME,
                    BackendErrorKind::Io,
                    format!("the database cannot use WAL (journal mode stays {mode})"),
                ))
            }
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(db_error("cannot enable WAL", e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn db_error(what: &str, e: rusqlite::Error) -> BackendError {
    let kind = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            BackendErrorKind::Timeout
        }
        _ => BackendErrorKind::Io,
    };
    BackendError::new(NAME, kind, what.to_owned()).with_source(e)
}

fn purge(conn: &Connection, now: i64) -> Result<(), BackendError> {
    conn.execute(
        "DELETE FROM h3fleet_sessions WHERE expires_at <= ?1",
        params![now],
    )
    .and_then(|_| {
        conn.execute(
            "DELETE FROM h3fleet_ech_configs WHERE expires_at <= ?1",
            params![now],
        )
    })
    .and_then(|_| conn.execute("DELETE FROM h3fleet_pool WHERE expires_at <= ?1", params![now]))
    .map(drop)
    .map_err(|e| db_error("cannot purge expired rows", e))
}

/// Compare-and-delete in one statement: the session whose JSON `ticket` is
/// `?2` (a value that is not valid JSON never matches).
const DELETE_SESSION_WITH_TICKET: &str = "DELETE FROM h3fleet_sessions WHERE key = ?1 AND \
     (CASE WHEN json_valid(value) THEN json_type(value, '$.ticket') = 'text' \
      AND json_extract(value, '$.ticket') = ?2 ELSE 0 END)";

/// The same for a value that is no session h3fleet reads: longer than `?2`
/// bytes, not JSON, or without a string ticket.
const DELETE_UNREADABLE_SESSION: &str = "DELETE FROM h3fleet_sessions WHERE key = ?1 AND \
     (CASE WHEN length(CAST(value AS BLOB)) > ?2 THEN 1 \
      WHEN json_valid(value) THEN coalesce(json_type(value, '$.ticket'), '') != 'text' ELSE 1 END)";

/// Reads stop one byte past the longest value accepted, so a hostile row
/// costs a miss, not memory.
const READ_LIMIT: i64 = MAX_VALUE_LEN as i64 + 1;

/// Takes the newest live ticket of pool `?1` (now `?2`) in one statement:
/// SQLite runs it under the database's write lock, so two processes never
/// both delete (and so both get) the same row.
const TAKE_FROM_POOL: &str = "DELETE FROM h3fleet_pool WHERE id = (SELECT id FROM h3fleet_pool \
     WHERE key = ?1 AND expires_at > ?2 ORDER BY id DESC LIMIT 1) RETURNING substr(value, 1, ?3)";

/// Keeps pool `?1`'s newest `?3` live tickets (now `?2`).
const TRIM_POOL: &str = "DELETE FROM h3fleet_pool WHERE key = ?1 AND (expires_at <= ?2 OR id NOT IN \
     (SELECT id FROM h3fleet_pool WHERE key = ?1 AND expires_at > ?2 ORDER BY id DESC LIMIT ?3))";

const LIST_KEYS: &str = "SELECT key FROM h3fleet_sessions WHERE substr(key, 1, length(?1)) = ?1 \
     UNION SELECT key FROM h3fleet_ech_configs WHERE substr(key, 1, length(?1)) = ?1 \
     UNION SELECT key FROM h3fleet_pool WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key LIMIT ?2";

/// Adds a ticket to a pool, dropping a copy of the same ticket, the expired
/// ones and those beyond `max`, in one transaction.
fn add_to_pool(
    conn: &Connection,
    key: &str,
    session: &TlsSessionState,
    expires_at: i64,
    now: i64,
    max: usize,
) -> Result<(), BackendError> {
    let json = session.to_json()?;
    let failed = |e| db_error("cannot add a ticket to a pool", e);
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(failed)?;
    tx.execute(
        "DELETE FROM h3fleet_pool WHERE key = ?1 AND json_valid(value) AND json_extract(value, '$.ticket') = ?2",
        params![key, session.ticket],
    )
    .map_err(failed)?;
    tx.execute(
        "INSERT INTO h3fleet_pool (key, value, expires_at) VALUES (?1, ?2, ?3)",
        params![key, json, expires_at],
    )
    .map_err(failed)?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    tx.execute(TRIM_POOL, params![key, now, max]).map_err(failed)?;
    tx.commit().map_err(failed)
}

fn take_from_pool(conn: &Connection, key: &str, now: i64) -> Result<Option<(String, usize)>, BackendError> {
    let failed = |e| db_error("cannot take a ticket from a pool", e);
    let taken: Option<String> = conn
        .query_row(TAKE_FROM_POOL, params![key, now, READ_LIMIT], |row| row.get(0))
        .optional()
        .map_err(failed)?;
    let Some(taken) = taken else { return Ok(None) };
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM h3fleet_pool WHERE key = ?1 AND expires_at > ?2",
            params![key, now],
            |row| row.get(0),
        )
        .map_err(failed)?;
    Ok(Some((taken, usize::try_from(left).unwrap_or(0))))
}

#[async_trait]
impl SessionCacheBackend for SqliteBackend {
    async fn get(&self, key: &str) -> Result<Option<TlsSessionState>, BackendError> {
        let (key, now) = (key.to_owned(), self.now_ms());
        let text: Option<String> = self
            .run(move |conn| {
                conn.query_row(
                    "SELECT substr(value, 1, ?3) FROM h3fleet_sessions WHERE key = ?1 AND expires_at > ?2",
                    params![key, now, READ_LIMIT],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| db_error("cannot read a session", e))
            })
            .await?;
        text.map(|t| TlsSessionState::from_json(NAME, t.as_bytes()))
            .transpose()
    }

    async fn put(&self, key: &str, session: &TlsSessionState, ttl: Duration) -> Result<(), BackendError> {
        let (key, json, expires_at) = (key.to_owned(), session.to_json()?, self.expiry_ms(ttl)?);
        let (purge_now, now) = (self.purge_due(), self.now_ms());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO h3fleet_sessions (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                params![key, json, expires_at],
            )
            .map_err(|e| db_error("cannot write a session", e))?;
            if purge_now {
                purge(conn, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM h3fleet_sessions WHERE key = ?1", params![key])
                .map(drop)
                .map_err(|e| db_error("cannot delete a session", e))
        })
        .await
    }

    async fn delete_if(&self, key: &str, expected: StoredSession<'_>) -> Result<bool, BackendError> {
        let key = key.to_owned();
        let ticket = match expected {
            StoredSession::Ticket(ticket) => Some(ticket.to_owned()),
            StoredSession::Unreadable => None,
        };
        self.run(move |conn| {
            match &ticket {
                Some(ticket) => conn.execute(DELETE_SESSION_WITH_TICKET, params![key, ticket]),
                None => conn.execute(DELETE_UNREADABLE_SESSION, params![key, MAX_VALUE_LEN as i64]),
            }
            .map(|n| n > 0)
            .map_err(|e| db_error("cannot delete a session", e))
        })
        .await
    }

    async fn delete_ech_config_if(&self, key: &str, expected: &[u8]) -> Result<bool, BackendError> {
        let (key, expected) = (key.to_owned(), expected.to_vec());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM h3fleet_ech_configs WHERE key = ?1 AND value = ?2",
                params![key, expected],
            )
            .map(|n| n > 0)
            .map_err(|e| db_error("cannot delete an ECH config", e))
        })
        .await
    }

    async fn get_ech_config(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let (key, now) = (key.to_owned(), self.now_ms());
        self.run(move |conn| {
            conn.query_row(
                "SELECT substr(value, 1, ?3) FROM h3fleet_ech_configs WHERE key = ?1 AND expires_at > ?2",
                params![key, now, READ_LIMIT],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| db_error("cannot read an ECH config", e))
        })
        .await
    }

    async fn put_ech_config(&self, key: &str, config: &[u8], ttl: Duration) -> Result<(), BackendError> {
        let (key, config, expires_at) = (key.to_owned(), config.to_vec(), self.expiry_ms(ttl)?);
        let (purge_now, now) = (self.purge_due(), self.now_ms());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO h3fleet_ech_configs (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                params![key, config, expires_at],
            )
            .map_err(|e| db_error("cannot write an ECH config", e))?;
            if purge_now {
                purge(conn, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn pool_add(
        &self,
        key: &str,
        session: &TlsSessionState,
        ttl: Duration,
        max: NonZeroUsize,
    ) -> Result<(), BackendError> {
        let (key, session, expires_at) = (key.to_owned(), session.clone(), self.expiry_ms(ttl)?);
        let now = self.now_ms();
        self.run(move |conn| add_to_pool(conn, &key, &session, expires_at, now, max.get()))
            .await
    }

    async fn pool_take(&self, key: &str) -> Result<Option<PoolTake>, BackendError> {
        let (key, now) = (key.to_owned(), self.now_ms());
        let Some((text, left)) = self.run(move |conn| take_from_pool(conn, &key, now)).await? else {
            return Ok(None);
        };
        let session = TlsSessionState::from_json(NAME, text.as_bytes())?;
        Ok(Some(PoolTake {
            session,
            left: Some(left),
        }))
    }

    async fn pool_peek(&self, key: &str) -> Result<Vec<TlsSessionState>, BackendError> {
        let (key, now) = (key.to_owned(), self.now_ms());
        let texts: Vec<String> = self
            .run(move |conn| {
                let failed = |e| db_error("cannot read a pool", e);
                let mut stmt = conn
                    .prepare(
                        "SELECT substr(value, 1, ?3) FROM h3fleet_pool \
                         WHERE key = ?1 AND expires_at > ?2 ORDER BY id",
                    )
                    .map_err(failed)?;
                let rows = stmt
                    .query_map(params![key, now, READ_LIMIT], |row| row.get(0))
                    .map_err(failed)?;
                rows.collect::<Result<_, _>>().map_err(failed)
            })
            .await?;
        texts
            .iter()
            .map(|t| TlsSessionState::from_json(NAME, t.as_bytes()))
            .collect()
    }

    async fn pool_delete(&self, key: &str) -> Result<(), BackendError> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM h3fleet_pool WHERE key = ?1", params![key])
                .map(drop)
                .map_err(|e| db_error("cannot delete a pool", e))
        })
        .await
    }

    async fn list_keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>, BackendError> {
        let (prefix, limit) = (prefix.to_owned(), i64::try_from(limit).unwrap_or(i64::MAX));
        self.run(move |conn| {
            let failed = |e| db_error("cannot list keys", e);
            let mut stmt = conn.prepare(LIST_KEYS).map_err(failed)?;
            let rows = stmt
                .query_map(params![prefix, limit], |row| row.get(0))
                .map_err(failed)?;
            rows.collect::<Result<_, _>>().map_err(failed)
        })
        .await
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::clock::ManualClock;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_its_sidecars_and_the_new_directory_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("sub").join("c.db");
        let backend = SqliteBackend::open(&path).unwrap();
        backend
            .put_ech_config("k", b"x", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        assert_eq!(mode(&dir.path().join("new").join("sub")), 0o700);
        for side in ["c.db-wal", "c.db-shm"] {
            let side = path.with_file_name(side);
            assert!(side.exists(), "{}", side.display());
            assert_eq!(mode(&side), 0o600, "{}", side.display());
        }
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_sidecars_of_an_older_build_are_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteBackend::open(&path).unwrap());
        let wal = dir.path().join("c.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        let backend = SqliteBackend::open(&path).unwrap();
        assert_eq!(mode(&wal), 0o600);
        drop(backend);
    }

    #[tokio::test]
    async fn expired_rows_are_purged_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::starting_now();
        let backend = SqliteBackend::open_with_clock(dir.path().join("c.db"), clock.clone()).unwrap();
        backend
            .put_ech_config("old", b"x", Duration::from_secs(1))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(2));
        for i in 0..WRITES_BETWEEN_PURGES {
            backend
                .put_ech_config(&format!("new{i}"), b"y", Duration::from_secs(60))
                .await
                .unwrap();
        }
        let rows: i64 = backend
            .run(|c| {
                c.query_row(
                    "SELECT count(*) FROM h3fleet_ech_configs WHERE key = 'old'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| db_error("count", e))
            })
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let err = SqliteBackend::open("/proc/h3fleet-cannot-exist/cache.db").unwrap_err();
        assert_eq!(err.backend(), "sqlite");
        assert!(err.to_string().contains("/proc/h3fleet-cannot-exist"), "{err}");
    }
}
