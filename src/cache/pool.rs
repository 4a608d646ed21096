//! Ticket pools: the policy ([`TicketReuse`]) and the bounded, expiring list
//! of tickets one origin's pool holds.
//!
//! Many servers accept a 0-RTT ticket once (RFC 8446 section 8), and RFC 8446
//! appendix C.4 asks clients not to offer one ticket twice, since a ticket
//! seen twice links two connections. Under [`TicketReuse::SingleUse`] every
//! ticket a connection receives joins its origin's pool, and a new
//! connection *takes* one: the backend hands each ticket to one taker only.
//!
//! This module is pure: the backends that keep pools in memory or in one
//! value ([`MemoryBackend`](crate::cache::MemoryBackend), memcached) use
//! [`PoolItems`]; Redis and SQLite keep the same rules in their own data
//! structures.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::cache::backend::{BackendError, BackendErrorKind, TlsSessionState};

/// The default number of tickets a pool keeps per origin.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// Whether replicas share one ticket per origin or each take their own.
///
/// ```
/// use h3fleet::cache::TicketReuse;
///
/// assert_eq!(TicketReuse::default(), TicketReuse::Shared);
/// assert_eq!("single-use".parse::<TicketReuse>().unwrap(), TicketReuse::single_use());
/// assert_eq!(TicketReuse::single_use().to_string(), "single-use");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketReuse {
    /// One ticket per origin, offered by every connection of every replica
    /// until it expires or is refused: the fewest full handshakes, but a
    /// server that takes each 0-RTT ticket once refuses every replay of it,
    /// and the server can link the connections that share it.
    #[default]
    Shared,
    /// Every ticket is offered once. Tickets received go to a pool of at most
    /// `per_key` per origin (the oldest dropped, each with its own expiry);
    /// a new connection takes one, and no two connections anywhere in the
    /// fleet get the same one. An empty pool means a full handshake.
    SingleUse {
        /// Tickets kept per origin (and identifier, preset, protocol).
        per_key: NonZeroUsize,
    },
}

impl TicketReuse {
    /// [`SingleUse`](Self::SingleUse) with [`DEFAULT_POOL_SIZE`] tickets per
    /// origin.
    pub fn single_use() -> Self {
        Self::SingleUse {
            per_key: NonZeroUsize::new(DEFAULT_POOL_SIZE).unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// `shared` or `single-use`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::SingleUse { .. } => "single-use",
        }
    }

    /// The pool size under `SingleUse`, `None` under `Shared`.
    pub fn pool_size(self) -> Option<NonZeroUsize> {
        match self {
            Self::Shared => None,
            Self::SingleUse { per_key } => Some(per_key),
        }
    }
}

impl std::fmt::Display for TicketReuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ticket reuse policy that is neither `shared` nor `single-use`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ticket reuse must be `shared` or `single-use`")]
pub struct TicketReuseError;

impl std::str::FromStr for TicketReuse {
    type Err = TicketReuseError;

    fn from_str(s: &str) -> Result<Self, TicketReuseError> {
        match s {
            "shared" => Ok(Self::Shared),
            "single-use" | "single_use" => Ok(Self::single_use()),
            _ => Err(TicketReuseError),
        }
    }
}

/// A ticket taken from a pool, and how many were left behind it (when the
/// backend can tell at no extra cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTake {
    /// The taken ticket; no other taker gets it.
    pub session: TlsSessionState,
    /// Live tickets still in the pool after this take, if known.
    pub left: Option<usize>,
}

/// One pooled ticket and when it expires (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolItem {
    /// The stored session, as a `sessions` key would hold it.
    #[serde(flatten)]
    pub session: TlsSessionState,
    /// When this ticket expires, in ms since the Unix epoch.
    pub expires_at: u64,
}

/// The tickets of one pool, oldest first: what a backend that keeps a pool
/// in one place holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PoolItems(Vec<PoolItem>);

impl PoolItems {
    /// Drops expired tickets, adds `item` as the newest and keeps the newest
    /// `max`.
    pub fn add(&mut self, item: PoolItem, now_ms: u64, max: NonZeroUsize) {
        self.0
            .retain(|i| i.expires_at > now_ms && i.session.ticket != item.session.ticket);
        self.0.push(item);
        let excess = self.0.len().saturating_sub(max.get());
        self.0.drain(..excess);
    }

    /// Removes and returns the newest live ticket (expired ones are dropped
    /// on the way), and the number left.
    pub fn take(&mut self, now_ms: u64) -> Option<PoolTake> {
        self.0.retain(|i| i.expires_at > now_ms);
        let item = self.0.pop()?;
        Some(PoolTake {
            session: item.session,
            left: Some(self.0.len()),
        })
    }

    /// The live tickets, oldest first.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &PoolItem> {
        self.0.iter().filter(move |i| i.expires_at > now_ms)
    }

    /// The latest expiry, for the TTL of the whole pool.
    pub fn last_expiry(&self) -> Option<u64> {
        self.0.iter().map(|i| i.expires_at).max()
    }

    /// True when the pool holds nothing (expired tickets count).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored text, for a custom backend that keeps a pool as one value
    /// (as memcached does).
    ///
    /// # Errors
    ///
    /// Serialisation failed (it cannot for this type in practice).
    pub fn to_json(&self) -> Result<Vec<u8>, BackendError> {
        serde_json::to_vec(self).map_err(|e| {
            BackendError::new("json", BackendErrorKind::Encode, "cannot serialise a pool").with_source(e)
        })
    }

    /// Parses the text written by [`to_json`](Self::to_json).
    ///
    /// # Errors
    ///
    /// Anything else is a [`BackendErrorKind::Decode`] error of `backend`
    /// that quotes nothing of the value.
    pub fn from_json(backend: &'static str, json: &[u8]) -> Result<Self, BackendError> {
        serde_json::from_slice(json).map_err(|_| {
            BackendError::new(backend, BackendErrorKind::Decode, "stored pool is not valid JSON")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(ticket: &str, expires_at: u64) -> PoolItem {
        PoolItem {
            session: TlsSessionState {
                ticket: ticket.into(),
                state: "cw==".into(),
                created_at: chrono::DateTime::UNIX_EPOCH,
            },
            expires_at,
        }
    }

    fn max(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn a_full_pool_drops_its_oldest_ticket() {
        let mut pool = PoolItems::default();
        for t in ["a", "b", "c"] {
            pool.add(item(t, 100), 0, max(2));
        }
        let tickets: Vec<_> = pool.live(0).map(|i| i.session.ticket.as_str()).collect();
        assert_eq!(tickets, ["b", "c"]);
    }

    #[test]
    fn takes_give_the_newest_live_ticket_once_and_skip_expired_ones() {
        let mut pool = PoolItems::default();
        pool.add(item("old", 50), 0, max(8));
        pool.add(item("live", 200), 0, max(8));
        pool.add(item("expired", 60), 0, max(8));
        let first = pool.take(100).unwrap();
        assert_eq!((first.session.ticket.as_str(), first.left), ("live", Some(0)));
        assert_eq!(pool.take(100), None);
        assert!(pool.is_empty());
    }

    #[test]
    fn the_same_ticket_added_twice_is_pooled_once() {
        let mut pool = PoolItems::default();
        pool.add(item("a", 100), 0, max(8));
        pool.add(item("a", 100), 0, max(8));
        assert_eq!(pool.live(0).count(), 1);
    }

    #[test]
    fn pool_json_round_trips_and_rejects_garbage_without_quoting_it() {
        let mut pool = PoolItems::default();
        pool.add(item("a", 100), 0, max(8));
        let json = pool.to_json().unwrap();
        assert_eq!(PoolItems::from_json("t", &json).unwrap(), pool);
        let err = PoolItems::from_json("t", b"{\"secret\":1}").unwrap_err();
        assert!(err.is_decode() && !err.to_string().contains("secret"));
    }

    #[test]
    fn policy_names_parse_and_print() {
        assert_eq!("shared".parse::<TicketReuse>(), Ok(TicketReuse::Shared));
        assert!("sometimes".parse::<TicketReuse>().is_err());
        assert_eq!(
            TicketReuse::single_use().pool_size(),
            Some(max(DEFAULT_POOL_SIZE))
        );
    }
}
