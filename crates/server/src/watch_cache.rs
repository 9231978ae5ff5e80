//! Decode each watched change once, however many watchers see it.
//!
//! A watch stream turns store events into JSON lines. With a thousand watchers on one
//! kind, decoding and re-encoding the same object a thousand times dominated the server's
//! CPU. [`EventCache`] memoizes, per (revision, key), the decoded object (for selectors)
//! and its serialized form with `resourceVersion` filled in, so each watcher only runs
//! its selector and copies bytes. The cache is a bounded FIFO: entries outlive the burst
//! of deliveries of one change and are then dropped.
//!
//! Secrets are cached in their keys-only form ([`crate::secrets::redact`]); a watcher who
//! may read values has them opened from the event, not from here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use serde_json::Value;

use store::KeyValue;

use crate::error::ApiError;
use crate::registry::decode;

/// One stored object as watchers need it.
pub struct Decoded {
    /// The object with `metadata.resourceVersion` set, for selectors.
    pub object: Value,
    /// `{"type":"ADDED","object":…}\n` and friends, each built when first sent and then
    /// shared (an event is mostly sent as one type: a created object as ADDED).
    lines: [OnceLock<Bytes>; 3],
}

impl Decoded {
    fn new(object: Value) -> Self {
        Self {
            object,
            lines: Default::default(),
        }
    }

    /// The watch line of type `kind` (`ADDED`, `MODIFIED` or `DELETED`) for the object.
    pub fn line(&self, kind: &str) -> Bytes {
        let slot = match kind {
            "ADDED" => 0,
            "MODIFIED" => 1,
            _ => 2,
        };
        self.lines[slot]
            .get_or_init(|| crate::watch::line(kind, &self.object))
            .clone()
    }
}

/// Bounded memo of decoded watch events, shared by every watch of the server.
pub struct EventCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<(i64, String), Arc<Decoded>>,
    order: VecDeque<(i64, String)>,
}

impl Default for EventCache {
    fn default() -> Self {
        Self::new(4_096)
    }
}

impl EventCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// The decoded form of `kv` (for a delete: its last value, stamped with the delete's
    /// revision, which is `kv.mod_revision`).
    pub fn get(&self, kv: &KeyValue) -> Result<Arc<Decoded>, ApiError> {
        let id = (kv.mod_revision, kv.key.clone());
        if let Some(hit) = self
            .inner
            .lock()
            .expect("watch cache poisoned")
            .map
            .get(&id)
        {
            return Ok(Arc::clone(hit));
        }
        // Decode outside the lock; two watchers racing on a miss both decode, one wins.
        // A Secret is kept in its keys-only form: what the cache serves never holds a
        // value or a sealed blob, whoever the watcher (see `crate::watch`).
        let mut object = decode(kv)?;
        crate::secrets::redact(&mut object);
        let decoded = Arc::new(Decoded::new(object));
        let mut inner = self.inner.lock().expect("watch cache poisoned");
        if let Some(existing) = inner.map.get(&id) {
            return Ok(Arc::clone(existing));
        }
        inner.map.insert(id.clone(), Arc::clone(&decoded));
        inner.order.push_back(id);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.map.remove(&old);
            }
        }
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: i64, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn decodes_once_and_stamps_the_revision() {
        let cache = EventCache::new(2);
        let a = cache
            .get(&kv("/registry/sites/a", 7, r#"{"metadata":{"name":"a"}}"#))
            .expect("decodes");
        let again = cache
            .get(&kv("/registry/sites/a", 7, r#"{"metadata":{"name":"a"}}"#))
            .expect("decodes");
        assert!(
            Arc::ptr_eq(&a, &again),
            "the second watcher reuses the first decode"
        );
        assert_eq!(a.object["metadata"]["resourceVersion"], "7");
        assert_eq!(
            &a.line("ADDED")[..],
            br#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}
"#
        );
    }

    #[test]
    fn stays_bounded() {
        let cache = EventCache::new(2);
        for rev in 1..=5 {
            cache
                .get(&kv("/k", rev, r#"{"metadata":{}}"#))
                .expect("decodes");
        }
        let inner = cache.inner.lock().expect("lock");
        assert_eq!(inner.map.len(), 2);
        assert_eq!(inner.order.len(), 2);
    }
}
