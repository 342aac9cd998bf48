//! The upstream the fetchers read: a stand-in for eager-cache's HTTP sources, which a test (or
//! the demo) can change, make fail, or slow down, and which counts its loads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

/// The upstream failed (as a test asked it to).
#[derive(Debug, thiserror::Error)]
#[error("the upstream source of {kind:?} is down")]
pub struct SourceDown {
    kind: &'static str,
}

/// The upstream data: its version moves when the test or demo "changes the source".
#[derive(Debug, Clone, Default)]
pub struct Source {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    version: AtomicU64,
    failing: AtomicBool,
    loads: Mutex<BTreeMap<String, u64>>,
}

impl Source {
    /// A source at version 0, up.
    ///
    /// # Examples
    ///
    /// ```
    /// let source = matroska_eager::Source::new();
    /// assert_eq!(source.loads("weather"), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the data (every value of every type).
    ///
    /// # Examples
    ///
    /// ```
    /// matroska_eager::Source::new().change();
    /// ```
    pub fn change(&self) {
        self.inner.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every load fail (`true`) or succeed again.
    ///
    /// # Examples
    ///
    /// ```
    /// matroska_eager::Source::new().set_failing(false);
    /// ```
    pub fn set_failing(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// How many loads of `kind` reached the source.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(matroska_eager::Source::new().loads("user"), 0);
    /// ```
    pub fn loads(&self, kind: &str) -> u64 {
        let loads = self
            .inner
            .loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loads.get(kind).copied().unwrap_or(0)
    }

    /// Loads a value of `kind` for `query`.
    pub(crate) fn load(
        &self,
        kind: &'static str,
        query: &BTreeMap<&str, Value>,
    ) -> Result<Value, SourceDown> {
        *self
            .inner
            .loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.to_owned())
            .or_default() += 1;
        if self.inner.failing.load(Ordering::SeqCst) {
            return Err(SourceDown { kind });
        }
        let version = self.inner.version.load(Ordering::SeqCst);
        Ok(json!({ "kind": kind, "query": query, "version": version }))
    }
}
