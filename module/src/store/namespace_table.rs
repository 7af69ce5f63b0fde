//! Namespaces in a Redis Cluster. A key lives in one slot, so a `P.namespaces` hash would exist
//! on one primary only (a write to it from any other is refused as a non-local key, and a copy
//! per node would break the resharding of its slot). In cluster mode every node keeps the
//! namespaces in memory instead: `GYRE.NAMESPACE SET`/`DEL` run on every primary (gyre sends
//! them to each) and are replicated verbatim, so replicas and the AOF have them too. A node that
//! restarts without an AOF has none until gyre registers them again, which it does whenever it
//! (re)connects; until then its publishes without `HISTORY` use the `gyre.history-*` defaults.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::core::namespace::NamespaceOptions;

/// Only touched on Redis's main thread (commands); the lock just makes the static sound.
static TABLE: Mutex<BTreeMap<Vec<u8>, NamespaceOptions>> = Mutex::new(BTreeMap::new());

fn table() -> std::sync::MutexGuard<'static, BTreeMap<Vec<u8>, NamespaceOptions>> {
    // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn get(name: &[u8]) -> Option<NamespaceOptions> {
    table().get(name).copied()
}

pub fn set(name: &[u8], options: NamespaceOptions) {
    table().insert(name.to_vec(), options);
}

/// Whether the namespace was there.
pub fn remove(name: &[u8]) -> bool {
    table().remove(name).is_some()
}

/// The registered names, sorted.
pub fn names() -> Vec<Vec<u8>> {
    table().keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove_list() {
        let options = NamespaceOptions {
            history_size: 3,
            history_ttl: 60,
            meta_ttl: 600,
        };
        set(b"table-test-b", options);
        set(b"table-test-a", options);
        assert_eq!(get(b"table-test-a"), Some(options));
        let names = names();
        let a = names.iter().position(|n| n == b"table-test-a");
        let b = names.iter().position(|n| n == b"table-test-b");
        assert!(a < b, "sorted");
        assert!(remove(b"table-test-a"));
        assert!(!remove(b"table-test-a"));
        assert_eq!(get(b"table-test-a"), None);
    }
}
