//! Values of the model-based checker, in the cache's envelope.

use matroska_core::store::{Lookup, Store};
use matroska_core::{Bytes, Cache, MemoryStore};

/// Encodes and decodes values the way [`Cache`] does, on a private memory store: every value in
/// a case is a `u64` in the cache's envelope, so that store-level reads and cache-level loads
/// see the same entries.
pub(crate) struct Envelope {
    store: MemoryStore,
    cache: Cache<MemoryStore>,
}

impl Envelope {
    pub(crate) fn new() -> Self {
        let store = MemoryStore::new();
        Self {
            cache: Cache::new(store.clone()),
            store,
        }
    }

    pub(crate) async fn encode(&self, value: u64) -> Result<Bytes, String> {
        let k = crate::support::key("encode");
        self.cache
            .put(k.clone(), &value)
            .await
            .map_err(|e| format!("encode: {e}"))?;
        match self.store.get(&k).await {
            Ok(Lookup::Hit(bytes)) => Ok(bytes),
            other => Err(format!("encode: {other:?}")),
        }
    }

    pub(crate) async fn decode(&self, bytes: Bytes) -> Result<u64, String> {
        let k = crate::support::key("decode");
        self.store
            .put(&k, bytes.clone(), &[], None, None)
            .await
            .map_err(|e| format!("decode: {e}"))?;
        match self.cache.get::<u64>(k).await {
            Ok(Some(v)) => Ok(v),
            other => Err(format!(
                "the store returned bytes that are not a value of this case ({other:?}): {bytes:?}"
            )),
        }
    }
}
