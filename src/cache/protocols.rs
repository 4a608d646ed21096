//! One ticket cache per protocol, all on the same backend: a ticket never
//! crosses protocols (what an h2 server issued is never offered to its h3
//! endpoint).

use super::{CacheOptions, PersistableSessionCache, Protocol};

/// The h3, h2 and h1 ticket caches of one session. Cheap to clone (the
/// caches are shared).
#[derive(Debug, Clone)]
pub(crate) struct TicketCaches {
    h3: PersistableSessionCache,
    h2: PersistableSessionCache,
    h1: PersistableSessionCache,
}

impl TicketCaches {
    pub(crate) fn new(options: &CacheOptions) -> Self {
        Self {
            h3: PersistableSessionCache::with_options(options.clone()),
            h2: PersistableSessionCache::with_options(options.clone()),
            h1: PersistableSessionCache::with_options(options.clone()),
        }
    }

    pub(crate) fn of(&self, protocol: Protocol) -> &PersistableSessionCache {
        match protocol {
            Protocol::H3 => &self.h3,
            Protocol::H2 => &self.h2,
            Protocol::H1 => &self.h1,
        }
    }

    /// Each cache with its protocol.
    pub(crate) fn all(&self) -> [(&PersistableSessionCache, Protocol); 3] {
        [
            (&self.h3, Protocol::H3),
            (&self.h2, Protocol::H2),
            (&self.h1, Protocol::H1),
        ]
    }

    /// The identifier new connections are opened under (the same in all).
    pub(crate) fn session_identifier(&self) -> Option<String> {
        self.h3.session_identifier()
    }

    pub(crate) fn set_session_identifier(&self, id: &str) {
        for (cache, _) in self.all() {
            cache.set_session_identifier(id);
        }
    }
}
