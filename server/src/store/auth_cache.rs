//! A short-lived cache of the two reads every authenticated request makes: the token (with its
//! user) and the caller's access to a customer. Without it a tenant-scoped read pays three
//! queries for authentication and authorization before its own.
//!
//! Changes made through this server are seen at once: every write that can change an answer
//! (revoking a token, deactivating a user, membership and customer changes) bumps a generation
//! after it commits, and an entry filled under an older generation is never used. An entry is
//! stamped with the generation read *before* its database read, so a read racing a write can
//! only leave an entry that is already stale. Changes made through another server sharing the
//! database are seen within [`TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;
use super::access::CustomerAccess;
use super::tokens::AuthenticatedToken;

/// How long an entry is used at most.
pub const TTL: Duration = Duration::from_secs(2);
/// Entries per map; beyond it, expired ones are dropped, and all of them if that is not enough.
const MAX_ENTRIES: usize = 10_000;

pub(super) struct AuthCache {
    generation: AtomicU64,
    /// The generation, for long-lived streams that re-check their caller's access whenever an
    /// answer may have changed on this server.
    changes: tokio::sync::watch::Sender<u64>,
    /// Token hash → token and user (unknown tokens are not kept).
    pub tokens: Slots<String, Option<AuthenticatedToken>>,
    /// (customer id, user id) → access (`None`: no such customer).
    pub access: Slots<(i64, i64), Option<CustomerAccess>>,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            tokens: Slots::default(),
            access: Slots::default(),
        }
    }
}

impl AuthCache {
    /// Bumped after every write that may change who may do what (see [`AuthCache::invalidate`]).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The current generation; read it before the database read whose result is cached.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes every entry stale; call after a write that may change an answer has committed.
    pub fn invalidate(&self) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.tokens.clear();
        self.access.clear();
        self.changes.send_replace(generation);
    }

    /// The fresh entry of `slots` for `key`, or what `read` gives (from the database), kept
    /// when `keep` says so.
    pub async fn read_through<K, V, Fut>(
        &self,
        slots: &Slots<K, V>,
        key: K,
        keep: impl Fn(&V) -> bool,
        read: impl FnOnce() -> Fut,
    ) -> Result<V, StoreError>
    where
        K: Eq + Hash,
        V: Clone,
        Fut: Future<Output = Result<V, StoreError>>,
    {
        let generation = self.generation();
        if let Some(value) = slots.get(&key, generation) {
            return Ok(value);
        }
        let value = read().await?;
        if keep(&value) {
            slots.put(key, value.clone(), generation);
        }
        Ok(value)
    }
}

struct Entry<V> {
    value: V,
    generation: u64,
    filled_at: Instant,
}

/// One map of cached answers.
pub(super) struct Slots<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> Default for Slots<K, V> {
    fn default() -> Self {
        Slots {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Slots<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &K, generation: u64) -> Option<V> {
        let entries = self.lock();
        let entry = entries.get(key)?;
        (entry.generation == generation && entry.filled_at.elapsed() < TTL)
            .then(|| entry.value.clone())
    }

    /// Stores `value`, read from the database after `generation` was read.
    fn put(&self, key: K, value: V, generation: u64) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.filled_at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                generation,
                filled_at: Instant::now(),
            },
        );
    }

    /// Drops the entries `forget` picks.
    pub fn forget(&self, forget: impl Fn(&V) -> bool) {
        self.lock().retain(|_, entry| !forget(&entry.value));
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_an_older_generation_are_not_used() {
        let cache = AuthCache::default();
        let before = cache.generation();
        cache.access.put((1, 2), None, before);
        assert_eq!(cache.access.get(&(1, 2), cache.generation()), Some(None));
        cache.invalidate();
        assert_eq!(cache.access.get(&(1, 2), cache.generation()), None);
        // A read that began before the write and finished after it stays unused.
        cache.access.put((1, 2), None, before);
        assert_eq!(cache.access.get(&(1, 2), cache.generation()), None);
    }

    #[test]
    fn the_maps_stay_bounded() {
        let cache = AuthCache::default();
        for key in 0..(MAX_ENTRIES as i64 + 10) {
            cache.access.put((key, 0), None, cache.generation());
        }
        assert!(cache.access.lock().len() <= MAX_ENTRIES);
    }
}
