//! Transient attributes: values a request keeps on this node for its
//! session, never stored on disk and never replicated (a database handle,
//! a cache of something expensive, any value that does not serialize).
//! After a failover to another node, or a restart, they are gone.

use std::any::Any;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;

use crate::id::DocKey;

/// One transient value.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// Sessions whose transient attributes a node keeps at most; the least
/// recently used go first.
const SESSIONS: usize = 100_000;

/// Every session's transient attributes on this node.
pub(crate) struct Transients {
    // std Mutex: a map lookup or update, never held across an await.
    sessions: Mutex<LruCache<DocKey, HashMap<String, Value>>>,
}

impl std::fmt::Debug for Transients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transients")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

impl Default for Transients {
    fn default() -> Self {
        Self::with_capacity(SESSIONS)
    }
}

impl Transients {
    pub(crate) fn with_capacity(sessions: usize) -> Self {
        let cap = NonZeroUsize::new(sessions).unwrap_or(NonZeroUsize::MIN);
        Self {
            sessions: Mutex::new(LruCache::new(cap)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<DocKey, HashMap<String, Value>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: DocKey, name: &str) -> Option<Value> {
        self.lock().get(&key)?.get(name).cloned()
    }

    /// Sets (`Some`) or removes (`None`) `name` of session `key`.
    pub(crate) fn set(&self, key: DocKey, name: &str, value: Option<Value>) {
        let mut sessions = self.lock();
        match value {
            Some(v) => {
                sessions
                    .get_or_insert_mut(key, HashMap::new)
                    .insert(name.to_owned(), v);
            }
            None => {
                if let Some(map) = sessions.get_mut(&key) {
                    map.remove(name);
                }
            }
        }
    }

    /// Forgets every transient attribute of `key` (the session ended).
    pub(crate) fn end(&self, key: DocKey) {
        self.lock().pop(&key);
    }

    /// Moves `from`'s attributes to `to` (the id was rotated).
    pub(crate) fn rename(&self, from: DocKey, to: DocKey) {
        let mut sessions = self.lock();
        if let Some(map) = sessions.pop(&from) {
            sessions.put(to, map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    #[test]
    fn the_least_recently_used_sessions_go_first() {
        let t = Transients::with_capacity(2);
        let keys: Vec<DocKey> = (0..3).map(|_| SessionId::random().doc_key()).collect();
        for k in &keys {
            t.set(*k, "v", Some(Arc::new(1u8)));
        }
        assert!(t.get(keys[0], "v").is_none());
        assert!(t.get(keys[2], "v").is_some());
        t.rename(keys[2], keys[0]);
        assert!(t.get(keys[2], "v").is_none());
        assert!(t.get(keys[0], "v").is_some());
        t.end(keys[0]);
        assert!(t.get(keys[0], "v").is_none());
    }
}
